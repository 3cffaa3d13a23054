"""Read, validate and send a lead file's rows: straight into ``leads`` (a direct load) or
into the staging table (see :mod:`hotcrm.leads.loader`).

Blocks of lines that Arrow can parse (quote-free lines, and lines whose quotes close, a quoted
line break included) go through the column-wise rules in batches (:mod:`hotcrm.leads.columnar`);
other rows through the per-row rules. Every record is counted: loaded, rejected (with its
line), or, for a repeated email, staged for the merge to report as a duplicate.
"""

from __future__ import annotations

import csv
import functools
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotcrm.crm.models import api_to_attr, utcnow
from hotcrm.leads import keys, loader, numbers
from hotcrm.leads.columnar import ColumnarRules, ParsedText, cells_from_rows, cells_json, parse_quoted, parse_text
from hotcrm.leads.keys import EmailKeys
from hotcrm.leads.ledger import ImportOutcome
from hotcrm.leads.models import REJECTED
from hotcrm.leads.quality import MOJIBAKE_RE, shape_flags
from hotcrm.leads.reader import (
    SNIFF_BYTES,
    Block,
    FileRejected,
    HeaderMap,
    Mapping,
    TextBlock,
    cells_at,
    detect_delimiter,
    is_blank,
    iter_blocks,
    iter_records,
    map_header,
    ragged,
    read_header,
)
from hotcrm.leads.rules import row_normalizer

PROGRESS_EVERY = 100_000
# Characters of lines parsed by Arrow and checked together (the columnar rules' batch).
TEXT_BATCH_CHARS = 2 * 1024 * 1024
WAITING_ROWS = 4_096  # rows checked one at a time whose email hashes are checked together


def read_and_stage(
    session: Session,
    spooled,
    outcome: ImportOutcome,
    mapping: Mapping,
    progress: Callable[[str], None],
    *,
    direct: bool = False,
) -> tuple[HeaderMap, tuple[array, array], Staged]:
    """Parse, validate and stage every record; returns the header map, the per-row indicators
    the quality suite checks, and what the merge needs to know.

    ``direct``: load the valid rows straight into ``leads`` (see :mod:`hotcrm.leads.loader`),
    in a savepoint; :class:`loader.DirectLoadAbandoned` (after rolling it back) when that
    cannot give the right result.
    """
    conn = session.connection()
    savepoint = conn.begin_nested() if direct else None
    with spooled.open() as text:
        sample = text.read(SNIFF_BYTES)
        if not sample.strip():
            raise FileRejected("the file is empty: it needs a header row and at least one lead")
        delimiter = detect_delimiter(sample)
        outcome.delimiter = delimiter
        text.seek(0)
        header, lines, reader = read_header(text, delimiter, mapping.limits)
        header_map = map_header(header, mapping)
        outcome.unknown_columns, outcome.unused_columns = header_map.unknown, header_map.unused
        amounts = _amount_format(spooled, delimiter, header_map, mapping)
        if amounts is not None:
            outcome.number_format = f"{amounts.name} ({amounts.why})"
        rows = RowLoader(
            conn, outcome, header_map, mapping, len(header), delimiter, progress, direct=direct, amounts=amounts
        )
        try:
            width = len(header)
            limits = {"max_lines": lines.max_lines, "max_chars": lines.max_chars, "dialect": reader.dialect}
            quoted = functools.partial(parse_quoted, delimiter=delimiter, width=width, **limits)
            parsed: list[ParsedText] = []
            chars = 0
            for item in iter_blocks(lines, reader, width, parse_quoted=quoted):
                if isinstance(item, TextBlock):
                    item = parse_text(item.text, item.first, item.count, delimiter, width)
                if isinstance(item, ParsedText):
                    parsed.append(item)
                    chars += item.chars
                    if chars >= TEXT_BATCH_CHARS:
                        rows.parsed(parsed)
                        parsed, chars = [], 0
                    continue
                if parsed:
                    rows.parsed(parsed)
                    parsed, chars = [], 0
                if isinstance(item, Block):
                    rows.block(item)
                elif item.error is not None:
                    rows.shape_error(item.line, item.cells, item.error)
                else:
                    rows.row(item.line, item.cells)
            if parsed:
                rows.parsed(parsed)
            rows.finish(lambda wanted: _cells_at(spooled, delimiter, wanted))
            if direct:
                rows.stager.check_direct()
        except BaseException as exc:
            rows.stager.close(discard=True)
            if savepoint is not None:
                savepoint.rollback()
            if direct and _refused_by_unique_index(exc):
                raise loader.DirectLoadAbandoned("an email of the file is already a Lead's") from None
            raise
    if savepoint is not None:
        savepoint.commit()
    if rows.read == 0:
        raise FileRejected("the file has a header row but no leads under it")
    outcome.rows_read, outcome.rejected = rows.read, rows.rejected
    stager = rows.stager
    staged = Staged(direct, rows.keys.distinct, stager.rows, stager.now, stager.defaults, stager.staged, stager.prefix)
    return header_map, (rows.shifted, rows.mojibake), staged


def _amount_format(spooled, delimiter: str, header_map: HeaderMap, mapping: Mapping) -> numbers.AmountFormat | None:
    """How the file writes its amounts (None when it has no amount column): the mapping's
    ``number_format``, or in ``auto`` what the amount column's values show (a pass over it)."""
    column = header_map.columns.get("EstimatedValue")
    if column is None:
        return None
    fixed = numbers.from_setting(mapping.number_format)
    if fixed is not None:
        return fixed
    with spooled.open() as text:  # (the copy, UTF-8 for a UTF-16 file)
        _, lines, reader = read_header(text, delimiter, mapping.limits)
        records = iter_records(lines, reader, len(header_map.header))
        return numbers.infer_format(((r.line, r.cells[column].strip()) for r in records if r.error is None), delimiter)


def _refused_by_unique_index(exc: BaseException) -> bool:
    """True for a unique violation (PostgreSQL's COPY raises psycopg's, SQLite SQLAlchemy's)."""
    error = exc.orig if isinstance(exc, IntegrityError) else exc
    unique_codes = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")
    return getattr(error, "sqlstate", None) == "23505" or getattr(error, "sqlite_errorname", None) in unique_codes


@dataclass(frozen=True)
class Staged:
    """How the valid rows went in, and what :func:`loader.merge` needs to know."""

    direct: bool  # straight into leads: nothing to merge
    emails_unique: bool  # no two valid rows have the same email
    rows: int  # valid rows sent
    now: datetime  # the import's timestamp for created / modified dates
    defaults: tuple[str, str]  # LeadSource and Status for a new Lead without them
    staged: int = 0  # of a direct load's rows, those staged (they repeat an earlier row's email)
    prefix: str = ""  # the Id prefix of a direct load's Leads


def _cells_at(spooled, delimiter: str, wanted: set[int]) -> dict[int, list[str]]:
    with spooled.open() as text:
        return cells_at(text, delimiter, wanted)


class RowLoader:
    """Validates and stages one file's records, keeping the counts and the quality indicators.

    Batches of rows go through :class:`~hotcrm.leads.columnar.ColumnarRules` first; the rows
    it does not pass as plain (errors, blank lines, unusual values) come to :meth:`row`, the
    rules one row at a time.
    """

    def __init__(
        self,
        conn,
        outcome: ImportOutcome,
        header_map: HeaderMap,
        mapping: Mapping,
        width: int,
        delimiter: str,
        progress: Callable[[str], None],
        *,
        direct: bool = False,
        amounts: numbers.AmountFormat | None = None,
    ) -> None:
        self.conn, self.outcome, self.width, self.delimiter, self.progress = conn, outcome, width, delimiter, progress
        defaults = (
            mapping.defaults.get("LeadSource", loader.DEFAULTS[0]),
            mapping.defaults.get("Status", loader.DEFAULTS[1]),
        )
        self.stager = loader.open_stage(conn, direct=direct, now=utcnow(), defaults=defaults)
        self.direct = direct
        self.keys = EmailKeys()
        # Rows checked one at a time, waiting for their email hashes to be checked together:
        # (hash, line, staging row, email).
        self.waiting: list[tuple[int, int, list, str]] = []
        # A direct load's lines whose email a later line repeats: email -> the directly loaded line.
        self.direct_lines: dict[str, int] = {}
        self.issues: list[dict[str, Any]] = []
        # The file-level suite's indicators, one per row that passed the row checks.
        self.shifted, self.mojibake = array("b"), array("b")
        self.max_columns = mapping.limits.max_columns
        self.read = self.rejected = 0
        self.started = time.monotonic()
        self.normalize = row_normalizer(
            header_map.columns.items(),
            default_source=defaults[0],
            phone_region=mapping.phone_region,
            required=mapping.required,
            amounts=amounts or numbers.DEFAULT,
        )
        self.columnar = ColumnarRules(
            header_map.columns,
            loader.LEAD_COLUMNS,
            phone_region=mapping.phone_region,
            required=mapping.required,
            amounts=amounts or numbers.DEFAULT,
        )
        self.email_col = header_map.columns.get("Email")
        self.plan = stage_plan(header_map)

    def _note_repeats(self, emails: list[str], keys: np.ndarray) -> None:
        """Note the directly loaded line of each repeated email (staged lines come later)."""
        for email, line in zip(emails, self.keys.line_of(keys).tolist(), strict=True):
            self.direct_lines.setdefault(email, line)

    def _send_waiting(self) -> None:
        """Check the waiting rows' hashes and send them: a repeat of an earlier email is staged."""
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        keys = np.fromiter((w[0] for w in waiting), dtype=np.int64, count=len(waiting))
        lines = np.fromiter((w[1] for w in waiting), dtype=np.int64, count=len(waiting))
        repeat = self.keys.repeats(keys, lines)
        for (_, _, row, _), again in zip(waiting, repeat.tolist(), strict=True):
            self.stager.add(row, staged=again)
        if self.direct and repeat.any():
            again = np.flatnonzero(repeat)
            self._note_repeats([waiting[i][3] for i in again.tolist()], keys[again])

    def _count(self, rows: int = 1) -> None:
        before, self.read = self.read, self.read + rows
        if self.read // PROGRESS_EVERY > before // PROGRESS_EVERY:
            rate = self.read / max(time.monotonic() - self.started, 1e-9)
            self.progress(f"{self.outcome.file_name}: {self.read:,} rows read ({rate:,.0f} rows/s)")

    def _reject(self, issue: dict[str, Any]) -> None:
        self.rejected += 1
        self.issues.append(issue)
        if len(self.issues) >= 5_000:
            self.stager.add_issues(self.issues)
            self.issues = []

    def shape_error(self, line: int, cells: list[str], error: str) -> None:
        """A record whose shape is wrong (ragged, unbalanced quote): rejected as it is (past the
        column limit, only its first cells are kept)."""
        self._count()
        if len(cells) > self.max_columns:
            error += f" (more than the {self.max_columns:,} columns allowed: only the first {self.width} are kept)"
            cells = cells[: self.width]
        self._reject(_issue(self.outcome.file_id, line, f"line {line} {error}", cells))

    def row(self, line: int, cells: list[str]) -> None:
        """One record of the header's width, through the per-row rules (a blank one is skipped)."""
        if is_blank(cells):
            return
        self._count()
        clean, errors = self.normalize(cells)
        is_valid_email = "Email" in clean
        key = hash(clean["Email"]) & keys.KEY_MASK if is_valid_email else None
        if errors:
            reason = "; ".join(str(e) for e in errors)
            email = clean.get("Email") or (cells[self.email_col].strip()[:255] if self.email_col is not None else None)
            self._reject(_issue(self.outcome.file_id, line, reason, cells, email))
            return
        self.shifted.append(any("@" in (clean.get(f) or "") for f in ("FirstName", "LastName", "Company")))
        self.mojibake.append(
            any(MOJIBAKE_RE.search(clean.get(f) or "") for f in ("FirstName", "LastName", "Company", "Title", "City"))
        )
        row = stage_row(line, clean, self.plan, cells)
        # (A row may be valid without an email when the mapping does not require one: no duplicate of any.)
        if key is None:
            self.stager.add(row)
            return
        self.waiting.append((key, line, row, clean["Email"]))
        if len(self.waiting) >= WAITING_ROWS:
            self._send_waiting()

    def parsed(self, parts: list[ParsedText]) -> None:
        """Consecutive blocks of lines parsed by Arrow, checked column-wise as one batch."""
        batch = ParsedText.concat(parts)
        for line, line_text in batch.others:
            cells = next(csv.reader([line_text], delimiter=self.delimiter), [])
            if not is_blank(cells):
                self.shape_error(line, cells, ragged(len(cells), self.width))
        flags = {"unusual": batch.unusual, "escape_free": not batch.escapes, "backslash_free": not batch.backslash}
        self.rows(batch.cells, batch.lines, padded=batch.padded, **flags)

    def block(self, block: Block) -> None:
        """Records parsed by the csv module (a quoted line break may make one span lines)."""
        numbers, good = [], []
        for number, cells in zip(block.numbers(), block.rows, strict=True):
            if len(cells) == self.width:
                numbers.append(number)
                good.append(cells)
            elif not is_blank(cells):
                self.shape_error(number, cells, ragged(len(cells), self.width))
        self.rows(cells_from_rows(good, self.width), np.array(numbers, dtype=np.int64))

    def rows(
        self,
        cells: list,
        lines,
        *,
        unusual: bool = True,
        escape_free: bool = False,
        backslash_free: bool = False,
        padded: bool = True,
    ) -> None:
        """Rows of the header's width given column-wise, with their line numbers (the flags:
        see :meth:`ColumnarRules.apply`; ``backslash_free``: no cell holds a backslash)."""
        # A direct load keeps no original cells (no row of it can become a duplicate to report).
        result = self.columnar.apply(
            cells, unusual=unusual, escape_free=escape_free, padded=padded, raw=not self.direct
        )
        plain = result.plain
        count = len(result.emails)
        if count:
            self._count(count)
            shifted, mojibake = shape_flags(result.values, count)
            self.shifted.frombytes(shifted.tobytes())
            self.mojibake.frombytes(mojibake.tobytes())
            hashes = np.fromiter(map(hash, result.emails), dtype=np.int64, count=count) & keys.KEY_MASK
            repeat = self.keys.repeats(hashes, lines[plain])
            line = pa.array(lines[plain], pa.int32())
            columns = [line, *(result.values[c] for c in loader.LEAD_COLUMNS), result.raw]
            if self.direct and repeat.any():
                self._stage_repeats(columns, cells, plain, repeat, hashes, result.emails, escape_free, backslash_free)
            else:
                self.stager.add_columns(columns, backslash_free=backslash_free)
        if count < len(plain):
            others = np.flatnonzero(~plain)
            take = pa.array(others)
            columns = [c.take(take).to_pylist() for c in cells]
            for number, row_cells in zip(lines[others].tolist(), zip(*columns, strict=True), strict=True):
                self.row(number, list(row_cells))
        self._send_waiting()

    def _stage_repeats(
        self,
        columns: list,
        cells: list,
        plain: np.ndarray,
        repeat: np.ndarray,
        keys: np.ndarray,
        emails: list[str],
        escape_free: bool,
        backslash_free: bool,
    ) -> None:
        """A direct load's batch of plain rows, some repeating an earlier row's email: those
        are staged with their original cells (the merge weighs them), the others loaded."""
        again = np.flatnonzero(repeat)
        self.stager.add_columns(columns, backslash_free=backslash_free, rows=np.flatnonzero(~repeat))
        take = pa.array(again)
        original = pa.array(np.flatnonzero(plain)[again])  # the repeats' rows among all the batch's cells
        raw = ColumnarRules.raw_cells([c.take(original) for c in cells], len(again), escape_free=escape_free)
        staged = [*(c.take(take) for c in columns[:-1]), raw]
        self.stager.add_columns(staged, backslash_free=backslash_free, staged=True)
        self._note_repeats([emails[i] for i in again.tolist()], keys[again])

    def finish(self, reread: Callable[[set[int]], dict[int, list[str]]] | None = None) -> None:
        """Send what is still buffered and wait until the database has it all. In a direct
        load, the directly loaded lines of repeated emails are staged too, their original cells
        read again with ``reread`` (line numbers -> cells)."""
        self._send_waiting()
        self.stager.add_issues(self.issues)
        self.issues = []
        if self.direct_lines and reread is not None:
            cells = reread(set(self.direct_lines.values()))
            rows = [(line, email, cells_json(cells[line])) for email, line in self.direct_lines.items()]
            self.stager.add_direct_lines(rows)
        self.stager.close()


@dataclass(frozen=True)
class StagePlan:
    """Where each staged lead column comes from, worked out once per file."""

    fields: tuple[str | None, ...]  # the API field of each lead column (None: not in the file)
    # LeadSource / Status: (position, file column) — an empty cell stages NULL, so the insert
    # applies the default and an update keeps the CRM's value.
    defaulted: tuple[tuple[int, int], ...]
    decimal_positions: tuple[int, ...]  # values to stage as text


def stage_plan(header_map: HeaderMap) -> StagePlan:
    by_attr = {api_to_attr(f): f for f in header_map.columns}
    fields = tuple(by_attr.get(attr) for attr in loader.LEAD_COLUMNS)
    defaulted = tuple(
        (pos, header_map.columns[f])
        for pos, (attr, f) in enumerate(zip(loader.LEAD_COLUMNS, fields, strict=True))
        if attr in ("lead_source", "status") and f is not None
    )
    decimals = tuple(pos for pos, attr in enumerate(loader.LEAD_COLUMNS) if attr == "estimated_value")
    return StagePlan(fields, defaulted, decimals)


def stage_row(line: int, clean: dict[str, Any], plan: StagePlan, cells: list[str]) -> list:
    """One staging row (:data:`loader.STAGE_COLUMNS` order) for a valid lead."""
    row = [line, *map(clean.get, plan.fields), cells_json(cells)]  # clean.get(None) is None
    for pos, column in plan.defaulted:
        if not cells[column].strip():
            row[pos + 1] = None
    for pos in plan.decimal_positions:
        if row[pos + 1] is not None:
            row[pos + 1] = str(row[pos + 1])
    return row


def _issue(file_id: str, line: int, reason: str, cells: list[str], email: str | None = None) -> dict[str, Any]:
    return {"file_id": file_id, "line_number": line, "kind": REJECTED, "reason": reason, "email": email, "raw": cells}
