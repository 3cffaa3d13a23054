"""Export Accounts to the bucket: validate, stream to a temporary object, check, publish.

Reading: one database snapshot per export (PostgreSQL ``REPEATABLE READ``, read only; a
SQLite read transaction), in which the count for the filters is taken first and then the
rows stream through a server-side cursor (a psycopg named cursor on PostgreSQL; SQLite's
cursor already steps row by row) in batches. Only the needed columns are selected, with a
SQLAlchemy Core query, never ORM objects. On PostgreSQL a thread fetches the next batch
while this one is serialized (:func:`prefetch`), so the server and the writer work at once.

Writing: under ``exports/accounts/_tmp/`` (consumers ignore that folder), hashed (sha256)
and counted as it goes. Publishing moves it to ``exports/accounts/<name>``: on ``file://``
an ``os.rename`` in the same folder tree (atomic); on ``s3://`` a server-side copy of the
finished temporary object (the published key appears only when the copy completes; the
temporary key is never visible under the published name, even if the writer is killed
mid-upload, because an unfinished multipart upload is no object at all). The manifest is
written the same way, after the file, so a manifest always describes a complete file.

Checking: a file of any size cannot go into a DataFrame, so the writer gathers per-segment
statistics (rows, null Ids, repeated Ids, empty required values; at most
:data:`MAX_SEGMENTS` segments) and Great Expectations validates that small DataFrame
against the database's count for the same filters. Ids are read ``ORDER BY Id``, so a
repeated Id is always next to its twin: comparing each Id with the previous one proves
uniqueness in constant memory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, create_engine, event, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from hotcrm import files
from hotcrm.crm import services
from hotcrm.crm.db import get_engine, is_postgresql, normalize_url, session_scope
from hotcrm.crm.events import record_event
from hotcrm.crm.models import Account, api_to_attr
from hotcrm.exports.options import DEFAULT_FIELDS, DEFAULT_FORMAT, EXPORT_PREFIX, FORMATS, TEMP_FOLDER
from hotcrm.exports.writers import make_writer
from hotcrm.quality import QualityResult, load_suite, validate_dataframe

log = logging.getLogger(__name__)

SUITE_NAME = "account_export"
BATCH_SIZE = 5_000
MAX_SEGMENTS = 500
PROGRESS_EVERY_SECONDS = 5.0
# s3fs buffers one part in memory before uploading it: 8 MiB parts keep the writer's memory flat.
UPLOAD_BLOCK_SIZE = 8 * 2**20
_EVENT_NAMESPACE = uuid.UUID("6f1c3f0e-2b7a-4c47-9a55-0c3e3b7f6a01")

FilterError = services.FilterError


class ExportCheckError(RuntimeError):
    """An export failed its quality checks; it stays unpublished under ``_tmp/``."""


# --- what to export ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSpec:
    """A validated export request: fields (Id first), filters, format, changed_since."""

    fields: tuple[str, ...]
    filters: tuple[tuple[Any, ...], ...]
    format: str
    changed_since: str | None = None

    @property
    def query_filters(self) -> list[list[Any]]:
        """The filters the query applies: the caller's, plus ``LastModifiedDate > changed_since``."""
        filters = [list(f) for f in self.filters]
        if self.changed_since:
            filters.append(["LastModifiedDate", ">", self.changed_since])
        return filters

    @property
    def is_default(self) -> bool:
        """True for the scheduled full export (default fields, no filters; any format)."""
        return list(self.fields) == ["Id", *DEFAULT_FIELDS] and not self.filters and not self.changed_since

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (for XCom and the manifest)."""
        return {
            "fields": list(self.fields),
            "filters": [list(f) for f in self.filters],
            "format": self.format,
            "changed_since": self.changed_since,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportSpec:
        """Inverse of :meth:`to_dict` (validates again)."""
        return build_spec(data["fields"], data["filters"], data["format"], data.get("changed_since"))


def build_spec(
    fields: Sequence[str] | str | None = None,
    filters: Any = None,
    fmt: str | None = DEFAULT_FORMAT,
    changed_since: Any = None,
) -> ExportSpec:
    """Validate export parameters without touching the database; FilterError names the bad entry.

    ``fields`` may be a list or a comma-separated string; ``filters`` a list of
    ``[field, operator, value]`` or the same as a JSON string; ``changed_since`` an ISO 8601
    timestamp (naive means UTC).
    """
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    names = services.parse_fields(Account, list(fields) if fields else DEFAULT_FIELDS)
    names = ["Id", *[n for n in names if n != "Id"]]  # Id always, first
    if isinstance(filters, str):
        text = filters.strip()
        try:
            filters = json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            raise FilterError(
                f"filters is not valid JSON ({exc.msg} at character {exc.pos}); "
                'expected e.g. [["Industry", "=", "Retail"], ["AnnualRevenue", ">=", 1000000]]'
            ) from exc
    services.parse_filters(Account, filters)  # raises FilterError naming the entry and allowed values
    fmt = (fmt or DEFAULT_FORMAT).lower() if isinstance(fmt, str) else fmt
    if fmt not in FORMATS:
        raise FilterError(f"format {fmt!r} is not supported; allowed formats: {', '.join(FORMATS)}")
    return ExportSpec(
        fields=tuple(names),
        filters=tuple(tuple(f) for f in (filters or [])),
        format=fmt,
        changed_since=_parse_changed_since(changed_since),
    )


def _parse_changed_since(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise FilterError(
                f"changed_since {value!r} is not an ISO 8601 timestamp; e.g. 2026-01-31T00:00:00Z"
            ) from exc
    else:
        raise FilterError(f"changed_since must be an ISO 8601 timestamp string; got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat()


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def export_name(spec: ExportSpec, interval_start: dt.datetime | None, interval_end: dt.datetime) -> str:
    """The published file name: the data interval, plus a short hash of the parameters when
    they are not the scheduled defaults (so an on-demand export never replaces the daily file)."""
    stamp = f"{_stamp(interval_start)}_{_stamp(interval_end)}" if interval_start else _stamp(interval_end)
    suffix = ""
    if not spec.is_default:
        digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
        suffix = f"_{digest[:8]}"
    return f"accounts_{stamp}{suffix}.{spec.format}"


# --- storage helpers ---------------------------------------------------------------------------


def _join(root: Any, *parts: str) -> str:
    return "/".join([str(root.path).rstrip("/"), *parts])


def _url(root: Any, path: str) -> str:
    return root.fs.unstrip_protocol(path)


def published_path(root: Any, name: str) -> str:
    """Filesystem path of a published export (``<root>/exports/accounts/<name>``)."""
    return _join(root, EXPORT_PREFIX, name)


def temp_path(root: Any, name: str, token: str) -> str:
    """Filesystem path of an export being written (under ``exports/accounts/_tmp/``)."""
    return _join(root, EXPORT_PREFIX, TEMP_FOLDER, f"{name}.{token}.part")


def _remove_stale_temps(root: Any, name: str) -> None:
    """A killed earlier attempt may have left its temporary file: remove it before writing again."""
    fs = root.fs
    for path in fs.glob(_join(root, EXPORT_PREFIX, TEMP_FOLDER, f"{name}.*.part")):
        with suppress(FileNotFoundError):
            fs.rm(path)
            log.info("removed the stale temporary file %s of an earlier attempt", _url(root, path))


# --- reading -----------------------------------------------------------------------------------


@contextmanager
def _snapshot(database_url: str) -> Iterator[Connection]:
    """A read-only transaction in which the count and the rows see the same data."""
    if is_postgresql(database_url):
        with get_engine(database_url).connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn
        return
    # The shared SQLite engine begins every transaction IMMEDIATE (it takes the write lock);
    # a long export must not block writers, so it reads through a deferred BEGIN (in WAL
    # mode a reader keeps its snapshot while writers commit).
    engine = create_engine(normalize_url(database_url), poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - trivial
        conn.exec_driver_sql("BEGIN")

    try:
        with engine.connect() as conn, conn.begin():
            yield conn
    finally:
        engine.dispose()


def account_query(spec: ExportSpec):
    """The Core SELECT of the export: only the asked-for columns, labelled by API name, by Id."""
    table = Account.__table__
    columns = [table.c[api_to_attr(name)].label(name) for name in spec.fields]
    return select(*columns).where(*services.parse_filters(Account, spec.query_filters)).order_by(table.c.id)


def _json_number_loader():
    from psycopg.adapt import Loader

    class JsonNumberLoader(Loader):
        """numeric -> ``orjson.Fragment`` of its text (NaN and infinities, not JSON numbers, as strings)."""

        def load(self, data):
            text = bytes(data)
            if text[-1:].isdigit():
                return orjson.Fragment(text)
            return text.decode()

    return JsonNumberLoader


def stream_batches(conn: Connection, spec: ExportSpec, batch_size: int) -> Iterator[Sequence[Sequence[Any]]]:
    """The export's rows in batches of tuples, through a server-side cursor.

    On PostgreSQL the Core query is compiled (values stay bound parameters) and run on a
    psycopg named cursor of the snapshot's connection: plain tuples, with none of the
    per-row work of SQLAlchemy's result rows, which measured as twice the cursor's own CPU
    time. On SQLite, SQLAlchemy's result does the type conversions SQLite lacks (Decimal,
    datetime), and its cursor steps through the table row by row anyway.
    """
    query = account_query(spec)
    if conn.dialect.name == "postgresql":
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        driver_connection = conn.connection.driver_connection
        with driver_connection.cursor(name=f"hotcrm_export_{uuid.uuid4().hex[:12]}") as cursor:
            if spec.format in ("json", "ndjson"):
                # PostgreSQL's text for a numeric is already its exact JSON number: pass it through
                # (this cursor only) instead of parsing a Decimal and printing it again.
                cursor.adapters.register_loader("numeric", _json_number_loader())
            cursor.execute(str(compiled), compiled.params)
            while rows := cursor.fetchmany(batch_size):
                yield rows
        return
    yield from conn.execute(query.execution_options(yield_per=batch_size)).partitions()


def prefetch(batches: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Fetch the next batches in a thread while the caller serializes this one.

    The database works on the next batch while this process serializes the current one
    (psycopg releases the GIL while it waits for the server). At most ``depth`` batches
    wait in the queue, so memory stays flat. When the consumer stops early (an error), the
    thread is stopped and joined before the connection is used again.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, which raises it
            buffer.put(exc)
            return
        finally:
            close = getattr(batches, "close", None)
            if close is not None and stop.is_set():
                close()  # closes the server-side cursor in this thread, which owns it
        buffer.put(end)

    thread = threading.Thread(target=produce, name="export-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            with suppress(queue.Empty):
                buffer.get(timeout=0.05)
        thread.join()


# --- writing -----------------------------------------------------------------------------------


@dataclass
class _Segment:
    rows: int = 0
    null_ids: int = 0
    duplicate_ids: int = 0
    missing_required: int = 0


@dataclass
class WrittenExport:
    """An export written to its temporary path, with what the checks need."""

    name: str
    spec: dict[str, Any]
    temp_path: str
    published_path: str
    export_date: str
    record_count: int
    database_count: int
    sha256: str
    size_bytes: int
    required_fields: list[str]
    segments: list[dict[str, int]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (an XCom between the DAG's tasks)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WrittenExport:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def write_export(
    database_url: str,
    root: Any,
    spec: ExportSpec,
    name: str,
    *,
    token: str | None = None,
    batch_size: int = BATCH_SIZE,
    export_date: dt.datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> WrittenExport:
    """Stream the Accounts matching ``spec`` into ``exports/accounts/_tmp/`` under ``root``.

    ``root`` is the bucket root (an ``ObjectStoragePath`` or any ``UPath``). On any error the
    temporary file is removed (on S3 the multipart upload is aborted). ``on_batch`` is called
    with the rows written so far after each batch (tests use it to interrupt an export).
    """
    suite = load_suite(SUITE_NAME)
    required = [f for f in ["Id", *suite.get("required_fields", [])] if f in spec.fields]
    required_idx = [spec.fields.index(f) for f in dict.fromkeys(required)]
    fs = root.fs
    token = token or uuid.uuid4().hex[:12]
    tmp = temp_path(root, name, token)
    started = time.monotonic()
    export_date = export_date or dt.datetime.now(dt.UTC)  # the time of the snapshot, not a data date
    export_date_text = export_date.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    _remove_stale_temps(root, name)
    fs.makedirs(_join(root, EXPORT_PREFIX, TEMP_FOLDER), exist_ok=True)

    with _snapshot(database_url) as conn:
        with Session(bind=conn) as session:
            database_count = services.count(session, Account, spec.query_filters)
        segment_rows = max(batch_size, math.ceil(database_count / MAX_SEGMENTS))
        writer = make_writer(spec.format, spec.fields, export_date=export_date_text, record_count=database_count)
        digest = hashlib.sha256()
        size = 0
        segments: list[dict[str, int]] = []
        segment = _Segment()
        written = 0
        previous_id = None
        next_log = started + PROGRESS_EVERY_SECONDS
        files.create_private(tmp, fs)  # 0640 on a local disk (hotcrm.files); renamed into place as is
        handle = fs.open(tmp, "wb", block_size=UPLOAD_BLOCK_SIZE)
        try:

            def emit(chunk: bytes) -> None:
                nonlocal size
                if chunk:
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)

            emit(writer.header())
            batches = stream_batches(conn, spec, batch_size)
            if conn.dialect.name == "postgresql":
                batches = prefetch(batches)  # (a SQLite connection must stay in its own thread)
            for rows in batches:
                if rows:
                    previous_id = _count_problems(rows, required_idx, previous_id, segment)
                emit(writer.batch(rows))
                segment.rows += len(rows)
                written += len(rows)
                if segment.rows >= segment_rows:
                    segments.append(asdict(segment))
                    segment = _Segment()
                if on_batch is not None:
                    on_batch(written)
                now = time.monotonic()
                if now >= next_log:
                    next_log = now + PROGRESS_EVERY_SECONDS
                    _log_progress(name, written, database_count, now - started)
            emit(writer.footer())
            if segment.rows or not segments:
                segments.append(asdict(segment))
            handle.close()  # on S3 this completes the upload of the temporary object
        except BaseException:
            _abandon(fs, handle, tmp)
            raise
    seconds = time.monotonic() - started
    _log_progress(name, written, database_count, seconds, done=True)
    return WrittenExport(
        name=name,
        spec=spec.to_dict(),
        temp_path=tmp,
        published_path=published_path(root, name),
        export_date=export_date_text,
        record_count=written,
        database_count=database_count,
        sha256=digest.hexdigest(),
        size_bytes=size,
        required_fields=required,
        segments=segments,
        seconds=round(seconds, 3),
    )


def _count_problems(rows: Sequence[Any], required_idx: list[int], previous_id: Any, segment: _Segment) -> Any:
    """Add a batch's null Ids, repeated Ids and empty required values to ``segment``; returns its last Id.

    Rows come ``ORDER BY Id``, so repeats are neighbours: within the batch a set finds them,
    across batches the first Id is compared with the previous batch's last. Column-wise with
    C-level builtins (``map``, ``count``, ``set``), not a Python loop per row.
    """
    ids = list(map(itemgetter(0), rows))
    nulls = ids.count(None)
    distinct = set(ids)
    distinct.discard(None)
    segment.null_ids += nulls
    segment.duplicate_ids += len(ids) - nulls - len(distinct)
    if previous_id is not None and ids[0] == previous_id:
        segment.duplicate_ids += 1
    for i in required_idx[1:] if required_idx[:1] == [0] else required_idx:  # Id is counted above
        values = list(map(itemgetter(i), rows))
        segment.missing_required += values.count(None) + values.count("")
    return ids[-1]


def _log_progress(name: str, rows: int, total: int, seconds: float, *, done: bool = False) -> None:
    rate = rows / seconds if seconds > 0 else 0.0
    share = f" ({100 * rows / total:.0f}%)" if total else ""
    log.info("%s %s: %d/%d rows%s, %.0f rows/s", "wrote" if done else "writing", name, rows, total, share, rate)


def _abandon(fs: Any, handle: Any, path: str) -> None:
    """Drop a half-written temporary file: S3 aborts its multipart upload, a local file is removed."""
    with suppress(Exception):
        discard = getattr(handle, "discard", None)
        if discard is not None and hasattr(handle, "buffer"):
            discard()
            handle.closed = True  # close() would otherwise try to finish the upload
        else:
            handle.close()
    with suppress(Exception):
        if fs.exists(path):
            fs.rm(path)


# --- checking ----------------------------------------------------------------------------------


def _substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str) and value in variables:
        return variables[value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    return value


def check_export(written: WrittenExport) -> QualityResult:
    """Run the ``account_export`` suite on the export's per-segment statistics.

    ``$database_count`` in the suite is the count the database reported for the same filters.
    """
    import pandas as pd

    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines drown the task log
    suite = load_suite(SUITE_NAME)
    expectations = _substitute(suite["expectations"], {"$database_count": written.database_count})
    frame = pd.DataFrame(written.segments, columns=["rows", "null_ids", "duplicate_ids", "missing_required"])
    return validate_dataframe(frame, suite.get("name", SUITE_NAME), expectations)


def reject_unless_passed(written: WrittenExport, quality: QualityResult, root: Any) -> None:
    """Raise ExportCheckError with the reason when the checks failed (the file stays unpublished)."""
    if not quality.success:
        raise ExportCheckError(
            f"export {written.name} failed its checks and was not published "
            f"(kept for inspection at {_url(root, written.temp_path)}): {quality.summary()}"
        )


# --- publishing --------------------------------------------------------------------------------


def publish_export(
    database_url: str,
    root: Any,
    written: WrittenExport,
    quality: QualityResult | dict[str, Any],
    *,
    data_interval: dict[str, str | None] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Move a checked export to its published name, write its manifest beside it and record an
    ``export.completed`` outbox event. Returns the manifest. Safe to re-run after a failure."""
    quality_dict = quality.to_dict() if isinstance(quality, QualityResult) else dict(quality)
    if not quality_dict.get("success"):
        raise ExportCheckError(f"export {written.name} has not passed its checks; it will not be published")
    fs = root.fs
    final = written.published_path
    if fs.exists(written.temp_path):
        fs.mv(written.temp_path, final)  # file://: rename; s3://: server-side copy, then delete
    elif not (fs.exists(final) and fs.size(final) == written.size_bytes):
        raise FileNotFoundError(
            f"{_url(root, written.temp_path)} is gone and {_url(root, final)} is not the export it should be: "
            "clear the task run from the export task to write it again"
        )
    spec = written.spec
    manifest = {
        "file": written.name,
        "url": _url(root, final),
        "format": spec["format"],
        "record_count": written.record_count,
        "database_count": written.database_count,
        "sha256": written.sha256,
        "size_bytes": written.size_bytes,
        "export_date": written.export_date,
        "fields": spec["fields"],
        "filters": spec["filters"],
        "changed_since": spec.get("changed_since"),
        "data_interval": data_interval or {},
        "run_id": run_id,
        "quality": quality_dict,
    }
    manifest_name = f"{written.name}.manifest.json"
    manifest_tmp = _join(root, EXPORT_PREFIX, TEMP_FOLDER, f"{manifest_name}.{uuid.uuid4().hex[:12]}.part")
    files.create_private(manifest_tmp, fs)
    with fs.open(manifest_tmp, "wb") as handle:
        handle.write(json.dumps(manifest, indent=2, default=str).encode("utf-8"))
    fs.mv(manifest_tmp, _join(root, EXPORT_PREFIX, manifest_name))
    manifest["manifest_url"] = _url(root, _join(root, EXPORT_PREFIX, manifest_name))
    event_id = str(uuid.uuid5(_EVENT_NAMESPACE, f"{manifest['url']}#{written.sha256}"))
    with session_scope(database_url) as session:
        record_event(
            session,
            "export.completed",
            {
                "object": "Account",
                "file": written.name,
                "url": manifest["url"],
                "manifest_url": manifest["manifest_url"],
                "format": spec["format"],
                "record_count": written.record_count,
                "sha256": written.sha256,
                "data_interval": data_interval or {},
            },
            event_id=event_id,
        )
    log.info("published %s (%d records, sha256 %s)", manifest["url"], written.record_count, written.sha256)
    return manifest


def run_export(
    database_url: str,
    root: Any,
    spec: ExportSpec,
    name: str,
    *,
    data_interval: dict[str, str | None] | None = None,
    run_id: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Write, check and publish one export in this process (the CLI and the demo); returns the manifest."""
    written = write_export(database_url, root, spec, name, batch_size=batch_size)
    quality = check_export(written)
    reject_unless_passed(written, quality, root)
    return publish_export(database_url, root, written, quality, data_interval=data_interval, run_id=run_id)
