"""Bulk loading of validated leads: straight into ``leads``, or a staging table and set-based SQL.

Most files bring only new emails. Those are loaded *directly*: each batch goes into
``leads`` as it is read (PostgreSQL: ``COPY``; SQLite: ``executemany``), from a worker
thread so the database works while the next batch is read, with Ids made of the import's
prefix and a counter (each batch numbered in email order). A line whose email the file has
had before is *staged* instead (see below), and :func:`merge` with ``direct_prefix`` settles
each repeated email: the last line wins, over the directly loaded one too. A direct load
holds only while that is the right result: an email already in the CRM (the unique index
refuses it) or one that belongs to a Contact abandons it (:class:`DirectLoadAbandoned`); the
caller rolls it back and stages the whole file.

Staged, valid rows go into a temporary staging table, and :func:`merge` then works out,
in SQL, the in-file duplicates (the later line wins), the emails that belong to a Contact
or a converted Lead (reported, not created), updates the Leads that exist and inserts the
rest. Nothing is committed here: the file is all-or-nothing in the caller's transaction.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, DateTime, bindparam, text

STAGE = "hotcrm_lead_stage"
REPEATS = "hotcrm_lead_repeats"
# Staging columns: the file line, the lead's columns, and the original cells (JSON array).
LEAD_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "phone",
    "title",
    "industry",
    "website",
    "city",
    "state",
    "country",
    "lead_source",
    "status",
    "estimated_value",
    "owner_id",
)
STAGE_COLUMNS = ("line", *LEAD_COLUMNS, "raw")
# A directly loaded line whose email the file repeats: staged as (line, email, original cells,
# direct=1) so that the merge weighs it against the staged lines (see Stager.add_direct_lines).
DIRECT_LINE_COLUMNS = ("line", "email", "raw", "direct")
# The columns a direct load writes into ``leads``.
DIRECT_COLUMNS = ("id", *LEAD_COLUMNS, "created_date", "last_modified_date")
ISSUE_COLUMNS = ("file_id", "line_number", "kind", "reason", "email", "raw")
# LeadSource and Status of a new Lead whose cells are empty (the mapping file may change them).
DEFAULTS = ("Import", "New")
# Rows per COPY / executemany batch: large enough to amortize a round trip, small enough to keep memory flat.
STAGE_BATCH_ROWS = 20_000
# Rows turned into Python values at a time for SQLite's executemany.
SQLITE_SLICE_ROWS = 5_000
# Columns an update may overwrite only when the file has a value (an absent cell keeps the CRM's).
_UPDATABLE = tuple(c for c in LEAD_COLUMNS if c != "email")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class DirectLoadAbandoned(Exception):
    """The file cannot go straight into ``leads``; the message says why. Roll back and stage it."""


@dataclass
class MergeCounts:
    """What :func:`merge` did."""

    inserted: int
    updated: int
    duplicates: int
    matched_elsewhere: int
    replaced: int = 0  # directly loaded Leads a later line of their email replaced (deleted, re-inserted)


class Stager:
    """Sends valid rows, and rejected rows' issues, in batches; create with :func:`open_stage`.

    Rows go to the staging table, or with ``direct`` straight into ``leads`` but for those
    sent with ``staged=True`` (repeats of an earlier line's email). Batches keep memory flat.
    They go out from one worker thread, in order, while the caller reads on (at most two
    batches wait; the database driver lets the thread run while the database works);
    :meth:`sync` waits for them and re-raises the first failure. The caller must not
    use the connection until :meth:`close`.
    """

    def __init__(
        self,
        conn: Connection,
        batch_size: int | None = None,
        *,
        direct: bool = False,
        now: datetime | None = None,
        defaults: tuple[str, str] = DEFAULTS,
    ) -> None:
        self.conn = conn
        self.postgresql = conn.dialect.name == "postgresql"
        self.batch_size = batch_size or STAGE_BATCH_ROWS
        self.direct = direct
        self.now = now or datetime.now().astimezone()
        self.prefix = id_prefix(self.now)
        self.defaults = defaults
        self.rows = 0  # rows written (into leads or the staging table)
        self.staged = 0  # of those, rows sent to the staging table by a direct load
        self._numbered = 0
        self._batch: list[Sequence[Any]] = []
        self._staged_batch: list[Sequence[Any]] = []
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="lead-stage")
        self._prepare = ThreadPoolExecutor(1, thread_name_prefix="lead-stage-prepare")
        self._pending: deque[Future] = deque()
        self._lock = threading.Lock()

    def add(self, row: Sequence[Any], *, staged: bool = False) -> None:
        """Stage one row (a sequence in :data:`STAGE_COLUMNS` order); ``staged``: into the
        staging table even in a direct load."""
        if self.direct and staged:
            self.staged += 1
            self._staged_batch.append(row)
        else:
            self._batch.append(row)
        if len(self._batch) + len(self._staged_batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Send the buffered rows."""
        if self._batch:
            batch, self._batch = self._batch, []
            self._submit(self._send_rows, batch, self.direct)
        if self._staged_batch:
            batch, self._staged_batch = self._staged_batch, []
            self._submit(self._send_rows, batch, False)

    def add_columns(
        self,
        columns: Sequence[Any],
        *,
        backslash_free: bool = False,
        staged: bool = False,
        rows: np.ndarray | None = None,
    ) -> None:
        """Stage rows given column-wise: Arrow arrays in :data:`STAGE_COLUMNS` order, sent at once.

        The batch is made ready (sorted, numbered, written for ``COPY``: Arrow, no Python per
        row) in a second thread, ahead of the one that sends it, so neither the caller nor the
        database waits for it. ``backslash_free``: no value holds a backslash (PostgreSQL's text
        format may then do). ``staged``: into the staging table even in a direct load.
        ``rows``: only the rows at these positions (taken in that thread too).
        """
        import pyarrow as pa

        table = pa.table(list(columns), names=list(STAGE_COLUMNS))
        count = table.num_rows if rows is None else len(rows)
        if not count:
            return
        direct = self.direct and not staged
        if self.direct and staged:
            self.staged += count
        ready = self._prepare.submit(self._ready, table, backslash_free, direct, rows)
        self._submit(self._send_ready, ready)

    def add_direct_lines(self, rows: list[tuple[int, str, str]]) -> None:
        """Stage directly loaded lines (line, email, original cells as JSON) whose emails later
        lines repeat, for :func:`merge` to weigh against them."""
        if rows:
            self._submit(self._insert, STAGE, DIRECT_LINE_COLUMNS, [(*row, 1) for row in rows])

    def _ready(self, table: Any, backslash_free: bool, direct: bool, rows: np.ndarray | None = None) -> tuple:
        """(send function, its arguments) for a batch."""
        if rows is not None:
            table = table.take(rows)
        if direct:
            table = self._direct_table(table)
        target = "leads" if direct else STAGE
        # A column without a value in the batch is left out: it gets its default, NULL, all the same.
        table = table.select([n for n in table.column_names if table.column(n).null_count < table.num_rows])
        if not self.postgresql:
            return self._insert_table, (target, table)
        # (The staged rows' original cells are JSON, full of quotes: those always go as CSV.)
        text_ok = backslash_free and "raw" not in table.column_names
        return self._copy, (target, table.column_names, *_copy_payload(table, text_ok), table.num_rows)

    @staticmethod
    def _send_ready(ready: Future) -> None:
        send, args = ready.result()
        send(*args)

    def _insert_table(self, target: str, table: Any) -> None:
        # Python values for a slice at a time: the batch waits in the queue as compact Arrow data.
        for start in range(0, table.num_rows, SQLITE_SLICE_ROWS):
            part = table.slice(start, SQLITE_SLICE_ROWS)
            rows = list(zip(*(column.to_pylist() for column in part.columns), strict=True))
            self._insert(target, table.column_names, rows)
            self._count(len(rows))

    def _direct_table(self, table: Any) -> Any:
        """A staged batch as rows of ``leads`` (:data:`DIRECT_COLUMNS`)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        # In email order, numbered in that order: both unique indexes are filled in key order.
        table = table.take(pc.sort_indices(table, [("email", "ascending")]))
        ids = pc.binary_join_element_wise(self.prefix, self.hex_numbers(self._number(table.num_rows)), "")
        source, status = self.defaults
        columns = [
            ids,
            *(table.column(c) for c in LEAD_COLUMNS[:11]),
            pc.fill_null(table.column("lead_source"), source),
            pc.fill_null(table.column("status"), status),
            table.column("estimated_value"),
            table.column("owner_id"),
        ]
        if self.postgresql:  # the columns' default, now() (migration 0008): no timestamps to parse
            return pa.table(columns, names=list(DIRECT_COLUMNS[:-2]))
        stamp = pa.repeat(pa.scalar(self._stamp()), table.num_rows)
        return pa.table([*columns, stamp, stamp], names=list(DIRECT_COLUMNS))

    def _stamp(self) -> Any:
        """The import's timestamp as the driver stores it (SQLite: SQLAlchemy's text format)."""
        stamp = DateTime(timezone=True)
        process = stamp.dialect_impl(self.conn.dialect).bind_processor(self.conn.dialect)
        return process(self.now) if process else self.now

    def _copy(self, target: str, names: Sequence[str], options: str, payload: Any, rows: int) -> None:
        cursor = self.conn.connection.dbapi_connection.cursor()
        with cursor.copy(f"COPY {target} ({', '.join(names)}) FROM STDIN WITH ({options})") as copy:
            copy.write(payload)
        self._count(rows)

    def add_issues(self, issues: list[dict[str, Any]]) -> None:
        """Record rejected rows (dicts with :data:`ISSUE_COLUMNS`) in ``lead_import_issues``."""
        if issues:
            self._submit(self._send_issues, issues)

    def _send_rows(self, batch: list[Sequence[Any]], direct: bool) -> None:
        if direct:
            now, (source, status) = self._stamp(), self.defaults
            batch = sorted(batch, key=lambda row: row[1] or "")
            first = self._number(len(batch))[0]
            batch = [
                (f"{self.prefix}{number:08x}", *row[1:12], row[12] or source, row[13] or status, *row[14:16], now, now)
                for number, row in enumerate(batch, int(first))
            ]
            columns, target = DIRECT_COLUMNS, "leads"
        else:
            columns, target = STAGE_COLUMNS, STAGE
        self._insert(target, columns, batch)
        self._count(len(batch))

    def _send_issues(self, issues: list[dict[str, Any]]) -> None:
        rows = [
            (*(i[c] for c in ISSUE_COLUMNS[:5]), None if i["raw"] is None else json.dumps(i["raw"], ensure_ascii=False))
            for i in issues
        ]
        self._insert("lead_import_issues", ISSUE_COLUMNS, rows)

    def _insert(self, table: str, columns: Sequence[str], rows: list[Sequence[Any]]) -> None:
        if self.postgresql:
            cursor = self.conn.connection.dbapi_connection.cursor()
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            self.conn.exec_driver_sql(sql, list(map(tuple, rows)))  # (tuple() of a tuple is that tuple)

    def _count(self, rows: int) -> None:
        with self._lock:
            self.rows += rows

    def _number(self, count: int) -> np.ndarray:
        """The next ``count`` numbers of this import's Leads (the Ids' last 32 bits), from 1."""
        with self._lock:
            first, self._numbered = self._numbered + 1, self._numbered + count
        return np.arange(first, first + count, dtype=np.uint32)

    @staticmethod
    def hex_numbers(values: np.ndarray) -> Any:
        """Numbers as 8 hex digits each (an Arrow string array), without Python per value."""
        import pyarrow as pa

        shifts = np.arange(28, -1, -4, dtype=np.uint32)
        digits = _HEX[(values[:, None] >> shifts) & 0xF]
        return pa.array(np.ascontiguousarray(digits).view("S8").ravel(), pa.binary(8)).cast(pa.string())

    def _submit(self, job: Callable[..., Any], *args: Any) -> None:
        if self._worker is None:
            job(*args)
            return
        while len(self._pending) >= 2:
            self._pending.popleft().result()
        self._pending.append(self._worker.submit(job, *args))

    def sync(self) -> None:
        """Wait until everything sent has run; re-raises the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def close(self, *, discard: bool = False) -> None:
        """Send what is buffered, wait for it and stop the worker. ``discard`` (after a failure
        elsewhere): drop what is buffered and wait, without raising, for what runs, so the
        caller may roll back on a connection no thread is using."""
        try:
            if discard:
                self._batch = []
                while self._pending:
                    future = self._pending.popleft()
                    # (concurrent.futures.wait would hang on a future the executor's shutdown cancelled.)
                    if not future.cancel():
                        with contextlib.suppress(BaseException):  # the failure that brought us here matters
                            future.result()
            else:
                self.flush()
                self.sync()
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True, cancel_futures=True)
                self._prepare.shutdown(wait=True, cancel_futures=True)
                self._worker = None

    def check_direct(self) -> None:
        """After a direct load: :class:`DirectLoadAbandoned` if a loaded email belongs to a Contact
        (the unique index has already refused emails of other Leads)."""
        contact = self.conn.execute(
            text(
                "SELECT l.email FROM leads l JOIN contacts c ON lower(c.email) = l.email "
                "WHERE l.id >= :low AND l.id <= :high LIMIT 1"
            ),
            {"low": self.prefix + "00000000", "high": self.prefix + "ffffffff"},
        ).scalar()
        if contact is not None:
            raise DirectLoadAbandoned(f"{contact} belongs to a Contact")


def _copy_payload(table: Any, backslash_free: bool) -> tuple[str, Any]:
    """``COPY`` options and data for an Arrow table, written by Arrow.

    Text format when it can be (the server reads it faster than CSV): no value may hold a
    backslash, tab, line break or quote; an empty field is NULL (no value is an empty
    string: empty cells are staged as NULL). Otherwise CSV: NULL as an empty unquoted field,
    every string quoted.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if backslash_free:
        sink = pa.BufferOutputStream()
        try:  # Arrow refuses a value with a tab, a line break or a quote in it
            pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
            return "FORMAT text, NULL ''", sink.getvalue()
        except pa.ArrowInvalid:
            pass
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    return "FORMAT csv", sink.getvalue()


def open_stage(
    conn: Connection,
    batch_size: int | None = None,
    *,
    direct: bool = False,
    now: datetime | None = None,
    defaults: tuple[str, str] = DEFAULTS,
) -> Stager:
    """Create the (temporary) staging table on ``conn`` and return a writer for it (or, with
    ``direct``, a writer straight into ``leads``)."""
    stager = Stager(conn, batch_size, direct=direct, now=now, defaults=defaults)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {REPEATS}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {STAGE}")
    # (A direct load stages the lines that repeat an earlier line's email.)
    lead_cols = ", ".join(f"{c} TEXT" for c in LEAD_COLUMNS)
    on_commit = " ON COMMIT DROP" if stager.postgresql else ""
    conn.exec_driver_sql(f"CREATE TEMP TABLE {STAGE} (line INTEGER, {lead_cols}, raw TEXT, direct INTEGER){on_commit}")
    return stager


def drop_stage(conn: Connection) -> None:
    """Drop the staging table (a direct load that staged nothing has no merge to do it)."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {STAGE}")


def id_prefix(now: datetime) -> str:
    """The first 28 characters of this import's lead Ids: a UUIDv7 (RFC 9562) whose 48-bit
    timestamp is the import's millisecond and whose other bits are random, but for the last 32
    bits, left for a per-row counter: in a direct load, each batch numbered in email order
    after the last (:meth:`Stager._number`); in :func:`merge`, the rank in email order
    (:func:`_new_id_sql`).

    Ids that share a prefix and count up go into the primary-key index side by side, where
    random UUID4s would land on a random page each (at a million rows, ~40% of the insert).
    """
    millis = int(now.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    rand_a, rand_b = secrets.randbits(12), secrets.randbits(30)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | (rand_b << 32)
    return str(uuid.UUID(int=value))[:28]


def _new_id_sql(postgresql: bool) -> str:
    """A new Lead's Id: the import's prefix and the row's rank in email order, in hex (8 digits)."""
    rank = "row_number() OVER (ORDER BY w.email)"
    if postgresql:
        return f"CAST(:id_prefix AS TEXT) || lpad(to_hex({rank}), 8, '0')"
    return f":id_prefix || printf('%08x', {rank})"


def merge(
    conn: Connection,
    file_id: str,
    now: datetime,
    *,
    emails_unique: bool = False,
    defaults: tuple[str, str] = DEFAULTS,
    direct_prefix: str | None = None,
) -> MergeCounts:
    """Turn the staged rows into Leads and issues; returns the counts. Runs in ``conn``'s transaction.

    ``emails_unique`` (the caller knows no email is staged twice) skips the duplicate pass;
    ``defaults`` are the LeadSource and Status of a new Lead whose cells were empty.
    ``direct_prefix``: the Id prefix of a direct load that staged its repeated lines, and the
    directly loaded lines of their emails (:meth:`Stager.add_direct_lines`): where a staged
    line is the last of its email, the directly loaded Lead is replaced by it (deleted, and the
    winner inserted as a new Lead would be: the file's values, not merged with the earlier line's).
    """
    pg = conn.dialect.name == "postgresql"
    if not pg:  # SQLite's joins need the index; PostgreSQL hash-joins faster than it builds one
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {STAGE}_email ON {STAGE} (email)")
    winners, duplicates, replaced = STAGE, 0, 0
    bounds = {}
    if direct_prefix is not None:
        bounds = {"low": direct_prefix + "00000000", "high": direct_prefix + "ffffffff"}
        # A direct line was staged because a later line's email hash matched its: it counts
        # only when the Lead loaded from it has that very email (equal hashes, other emails).
        conn.execute(
            text(
                f"DELETE FROM {STAGE} WHERE direct = 1 AND NOT EXISTS (SELECT 1 FROM leads l "
                f"WHERE l.email = {STAGE}.email AND l.id >= :low AND l.id <= :high)"
            ),
            bounds,
        )
    if not emails_unique:
        # The last line of each email wins; earlier lines are duplicates, reported and taken out
        # of the staging table, which then holds the winners. Only the (few) repeated emails are
        # gathered: copying every staged row (and its cells) into a table of winners cost more
        # than the rest of the merge. Rows without an email (the mapping may not require one)
        # are each their own: no duplicates.
        on_commit = " ON COMMIT DROP" if pg else ""
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {REPEATS}{on_commit} AS SELECT email, MAX(line) AS line FROM {STAGE} "
            "WHERE email IS NOT NULL GROUP BY email HAVING COUNT(*) > 1"
        )
        raw = "s.raw::json" if pg else "s.raw"
        duplicates = conn.execute(
            text(
                "INSERT INTO lead_import_issues (file_id, line_number, kind, reason, email, raw) "
                "SELECT :file_id, s.line, 'duplicate', 'same email as line ' || CAST(r.line AS TEXT) || "
                f"', which is loaded instead (the later row wins)', s.email, {raw} "
                f"FROM {STAGE} s JOIN {REPEATS} r ON r.email = s.email WHERE s.line <> r.line"
            ),
            {"file_id": file_id},
        ).rowcount
        if duplicates and direct_prefix is not None:
            # Directly loaded Leads that a later line replaces: the winner is inserted below.
            replaced = conn.execute(
                text(
                    "DELETE FROM leads WHERE id >= :low AND id <= :high AND email IN ("
                    f"SELECT s.email FROM {STAGE} s JOIN {REPEATS} r ON r.email = s.email "
                    "WHERE s.direct = 1 AND s.line <> r.line)"
                ),
                bounds,
            ).rowcount
        if duplicates:
            # (A staged line is one record's: the repeats' lines are their emails' winners.)
            conn.exec_driver_sql(
                f"DELETE FROM {STAGE} WHERE email IN (SELECT email FROM {REPEATS}) "
                f"AND line NOT IN (SELECT line FROM {REPEATS})"
            )
    if direct_prefix is not None:  # directly loaded lines that won: loaded already
        conn.exec_driver_sql(f"DELETE FROM {STAGE} WHERE direct = 1")
    # Emails that belong to a Contact or a converted Lead are reported, not created (see rules.match_existing).
    raw_w = "w.raw::json" if pg else "w.raw"
    matched = conn.execute(
        text(
            "INSERT INTO lead_import_issues (file_id, line_number, kind, reason, email, raw) "
            "SELECT :file_id, m.line, 'rejected', m.reason, m.email, m.raw FROM ("
            f"SELECT w.line AS line, w.email AS email, {raw_w} AS raw, "
            "'Email belongs to a converted Lead (' || l.id || '); not created: update the converted records in the CRM'"
            " AS reason "
            f"FROM {winners} w JOIN leads l ON l.email = w.email WHERE l.status = 'Converted' "
            "UNION ALL "
            f"SELECT w.line, w.email, {raw_w}, "
            "'Email belongs to Contact ' || min(c.id) || '; not created as a Lead: update the Contact in the CRM' "
            f"FROM {winners} w JOIN contacts c ON lower(c.email) = w.email "
            "WHERE NOT EXISTS (SELECT 1 FROM leads l2 WHERE l2.email = w.email AND l2.status = 'Converted') "
            "GROUP BY w.line, w.email, w.raw"
            ") m"
        ),
        {"file_id": file_id},
    ).rowcount
    if matched:
        conn.exec_driver_sql(
            f"DELETE FROM {winners} WHERE email IN (SELECT email FROM leads WHERE status = 'Converted') "
            "OR email IN (SELECT lower(email) FROM contacts WHERE email IS NOT NULL)"
        )
    now_param = bindparam("now", value=now, type_=DateTime(timezone=True))
    value = "CAST(w.estimated_value AS NUMERIC(18,2))" if pg else "CAST(w.estimated_value AS NUMERIC)"
    sets = ", ".join(f"{c} = COALESCE({value if c == 'estimated_value' else 'w.' + c}, leads.{c})" for c in _UPDATABLE)
    updated = conn.execute(
        text(
            f"UPDATE leads SET {sets}, last_modified_date = :now FROM {winners} w WHERE leads.email = w.email"
        ).bindparams(now_param)
    ).rowcount
    columns = ", ".join(LEAD_COLUMNS)
    selected = ", ".join(
        {
            "lead_source": "COALESCE(w.lead_source, :default_source)",
            "status": "COALESCE(w.status, :default_status)",
            "estimated_value": value,
        }.get(c, f"w.{c}")
        for c in LEAD_COLUMNS
    )
    inserted = conn.execute(
        text(
            f"INSERT INTO leads (id, {columns}, created_date, last_modified_date) "
            f"SELECT {_new_id_sql(pg)}, {selected}, :now, :now FROM {winners} w "
            "WHERE NOT EXISTS (SELECT 1 FROM leads l WHERE l.email = w.email) "
            "ORDER BY w.email"  # index-friendly order for the unique email index (and the Ids)
        ).bindparams(now_param),
        {"id_prefix": id_prefix(now), "default_source": defaults[0], "default_status": defaults[1]},
    ).rowcount
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {REPEATS}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {STAGE}")
    return MergeCounts(
        inserted=inserted, updated=updated, duplicates=duplicates, matched_elsewhere=matched, replaced=replaced
    )
