"""Import one lead file: ledger, read, validate, check the file as a whole, load, report, archive.

:func:`import_lead_file` is the whole job for one file, without Airflow. The source is any
path-like with ``.open('rb')`` (``pathlib.Path`` or an ``ObjectStoragePath``); the file
ends up in ``processed_dir`` or ``failed_dir`` with its reports beside it:

- ``<name>.report.html``: counts, encoding, delimiter, columns, the quality suite's result;
- ``<name>.report.json``: the same, for machines;
- ``<name>.rejects.csv``: every row not loaded as itself (line, kind, reason, original cells),
  safe to open in a spreadsheet.

A file is all-or-nothing: the leads, the rejected rows, the ledger's final state and the
``lead.imported`` outbox event commit in one transaction. Reports are written before that
commit and the file is moved after it, so a run killed anywhere is finished by the next.

Row-level problems (a bad email, a missing name, a ragged line, a repeated email) never fail
a file: each such row is rejected or reported as a duplicate, and the rest loads. The
file-level quality suite looks only for shape problems (a shifted column, text decoded
wrongly) in the rows that passed the row checks, and only from the suite's ``min_rows``.

:func:`check_lead_file` runs the same reading, checks and merge in a transaction that is
rolled back: the reports of an import, nothing loaded, nothing recorded.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
import re
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotcrm import files
from hotcrm.crm.db import session_scope
from hotcrm.crm.events import record_event
from hotcrm.crm.models import api_to_attr, utcnow
from hotcrm.leads import loader, numbers
from hotcrm.leads.columnar import ColumnarRules, cells_from_rows, cells_json, parse_text
from hotcrm.leads.models import (
    COUNT_FIELDS,
    DUPLICATE,
    FAILED,
    IMPORTED,
    PROCESSING,
    REJECTED,
    ImportFile,
    ImportIssue,
)
from hotcrm.leads.reader import (
    DELIMITER_NAMES,
    SNIFF_BYTES,
    Block,
    FileRejected,
    HeaderMap,
    Mapping,
    TextBlock,
    cells_at,
    copy_to,
    detect_delimiter,
    is_blank,
    iter_blocks,
    iter_records,
    map_header,
    ragged,
    read_header,
    spool,
)
from hotcrm.leads.rules import row_normalizer

log = logging.getLogger(__name__)

SUITE_NAME = "lead_file"
PROGRESS_EVERY = 100_000
# Characters of quote-free lines parsed and checked together (the columnar rules' batch).
TEXT_BATCH_CHARS = 2 * 1024 * 1024
_KEY_MASK = 0xFFFFFFFFFFFFF  # email hashes, as keys of _EmailKeys
WAITING_ROWS = 4_096  # rows checked one at a time whose email hashes are checked together
# The suite's default: it applies from this many rows that passed the row checks.
MIN_ROWS = 50
# Signs of text decoded with the wrong encoding somewhere upstream: a replacement character,
# or UTF-8 read as Windows-1252 ("Ã©" for "é", "â€™" for "’", "Â " for a no-break space).
_MOJIBAKE = (
    "\ufffd|\u00e2\u20ac|\u00c2[\u00a0-\u00bf]"
    "|\u00c3[\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]"
)

_MOJIBAKE_RE = re.compile(_MOJIBAKE)
# Columns whose values hold no "@" unless the columns are shifted (an email in a name).
_NAME_ATTRS = ("first_name", "last_name", "company")
_TEXT_ATTRS = ("first_name", "last_name", "company", "title", "city")
CHECKED = "checked"  # check_lead_file's status for a file that would be imported
# Try loading a file straight into leads first (see hotcrm.leads.loader).
DIRECT_LOAD = True
_EVENT_NAMESPACE = uuid.UUID("9a4f2a52-6f0e-4b59-9a43-6c1f3d0b8e11")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class AccountingError(RuntimeError):
    """Rows read did not equal inserted + updated + duplicates + rejected: a bug, never ignored."""


@dataclass
class ImportOutcome:
    """What became of one file (also the task's return value, via :meth:`to_dict`)."""

    file_id: str
    file_name: str
    status: str
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    not_loaded: int = 0  # a failed file's rows, other than those rejected: none of it loaded
    encoding: str | None = None
    delimiter: str | None = None
    sha256: str | None = None
    size: int | None = None
    unknown_columns: list[str] = field(default_factory=list)
    unused_columns: list[str] = field(default_factory=list)
    number_format: str | None = None  # how the file's amounts were read, and why (None: no amount column)
    error: str | None = None
    quality: dict[str, Any] | None = None
    archived_path: str | None = None
    report_path: str | None = None
    rejects_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form (no quality details: those are in the report)."""
        data = asdict(self)
        data.pop("quality")
        data["quality_passed"] = None if self.quality is None else bool(self.quality.get("success"))
        return data


def load_suite(path: Path | None = None) -> dict[str, Any]:
    """The file-level quality suite (``include/config/quality/lead_file.json`` by default)."""
    from hotcrm.quality import QUALITY_CONFIG_DIR

    path = path or QUALITY_CONFIG_DIR / f"{SUITE_NAME}.json"
    suite = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(suite.get("expectations"), list):
        raise ValueError(f"{path}: a suite needs an 'expectations' list")
    return suite


def neutralize(cell: Any) -> str:
    """A cell a spreadsheet will show as text: one starting with ``= + - @``, tab or CR gets a
    leading apostrophe, so it is never run as a formula."""
    value = "" if cell is None else str(cell)
    return "'" + value if value.startswith(_FORMULA_START) else value


def event_id_for(sha256: str) -> str:
    """The ``lead.imported`` event id of a file's content: a re-run writes the event once."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"lead.imported:{sha256}"))


def _destination(directory: Any, name: str, file_id: str) -> Any:
    dest = directory / name
    if dest.exists():  # another file of that name was archived before: keep both
        stem, dot, suffix = name.rpartition(".")
        dest = directory / (f"{stem}.{file_id[:8]}.{suffix}" if dot and stem else f"{name}.{file_id[:8]}")
    return dest


def import_lead_file(
    source: Any,
    database_url: str,
    *,
    processed_dir: Any = None,
    failed_dir: Any = None,
    mapping: Mapping | None = None,
    suite: dict[str, Any] | None = None,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportOutcome:
    """Import one lead file end to end and return its outcome (see the module docstring).

    ``processed_dir`` / ``failed_dir`` are where the file and its reports go (any path-like
    with ``/`` and ``.open``); when ``None`` the file stays where it is and no report files
    are written (the ledger and the returned outcome still hold the counts). Raises
    :class:`AccountingError` (after recording it in the ledger) if the counts do not add up;
    database errors propagate and leave the file in place for a retry.
    """
    mapping = mapping or Mapping.load()
    suite = suite or load_suite()
    progress = progress or log.info
    name = source.name
    # A spool folder a killed run left behind is removed here (hotcrm.files.work_dir).
    with files.work_dir("hotcrm-lead-import-", work_dir) as tmp:
        tmp_path = Path(tmp)
        try:
            spooled = spool(source, tmp_path / "source", mapping.limits)
        except FileRejected as exc:
            return _fail_before_reading(source, database_url, name, str(exc), failed_dir)
        ledger, previous = _claim(database_url, source, spooled)
        if previous is not None and ledger.id == previous.id and not _awaits_archiving(previous, processed_dir):
            # The same file dropped again after its import was archived: a duplicate like any other.
            ledger = _new_ledger(database_url, source, spooled, DUPLICATE)
        if previous is not None:
            return _already_imported(source, database_url, ledger, previous, processed_dir, failed_dir)
        outcome = _new_outcome(ledger, name, spooled)
        from hotcrm.quality import warm_up

        warm_up()  # the quality suite runs after the reading: its imports load meanwhile
        try:
            return _import(source, database_url, spooled, outcome, mapping, suite, processed_dir, failed_dir, progress)
        except IntegrityError:
            # Another run imported the same content first (the ledger's unique index on sha256).
            with session_scope(database_url) as session:
                previous = _imported_with(session, spooled.sha256)
                ledger = session.get(ImportFile, outcome.file_id)
            if previous is None:
                raise
            return _already_imported(source, database_url, ledger, previous, processed_dir, failed_dir)


def check_lead_file(
    source: Any,
    database_url: str,
    *,
    report_dir: Any = None,
    mapping: Mapping | None = None,
    suite: dict[str, Any] | None = None,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportOutcome:
    """Everything :func:`import_lead_file` does to a file but load it: encoding, delimiter,
    header mapping, every reject and duplicate (against the CRM as it is), the quality suite.

    The work runs in one transaction that is rolled back, ledger row included; the file stays
    where it is. With ``report_dir`` the same ``<name>.report.html``, ``.report.json`` and
    ``.rejects.csv`` are written there. The outcome's status is ``checked`` when the file would
    be imported, else ``failed`` or ``duplicate`` with the reason.
    """
    mapping = mapping or Mapping.load()
    suite = suite or load_suite()
    progress = progress or log.info
    name = source.name
    with files.work_dir("hotcrm-lead-check-", work_dir) as tmp:
        try:
            spooled = spool(source, Path(tmp) / "source", mapping.limits)
        except FileRejected as exc:
            outcome = ImportOutcome(file_id="-", file_name=name, status=FAILED, error=str(exc))
            if report_dir is not None:
                outcome.report_path = _write_reports(report_dir / name, outcome, None, None)
            return outcome
        try:
            with session_scope(database_url) as session:
                ledger = _ledger_row(source, spooled, PROCESSING)
                session.add(ledger)
                session.flush()
                outcome = _new_outcome(ledger, name, spooled)
                previous = _imported_with(session, spooled.sha256)
                if previous is not None:
                    outcome.status, outcome.error = DUPLICATE, _repeat_error(previous)
                    if report_dir is not None:
                        outcome.report_path = _write_reports(report_dir / name, outcome, None, None)
                    raise _Discard
                from hotcrm.quality import warm_up

                warm_up()
                _load(
                    session,
                    source,
                    spooled,
                    outcome,
                    mapping,
                    suite,
                    None,
                    None,
                    progress,
                    check=True,
                    check_dir=report_dir,
                )
        except _Discard:
            pass
    return outcome


def _repeat_error(previous: ImportFile) -> str:
    return (
        f"this content was already imported from {previous.file_name!r} on {previous.finished_at:%Y-%m-%d %H:%M} UTC "
        f"(file_id {previous.id}); it is not imported again"
    )


def _claim(database_url: str, source: Any, spooled) -> tuple[ImportFile, ImportFile | None]:
    """The ledger row for this attempt (reusing an unfinished one for the same path and content),
    and the earlier import of the same content, if any."""
    path = str(source)
    with session_scope(database_url) as session:
        previous = _imported_with(session, spooled.sha256)
        if previous is not None and previous.path == path:
            return previous, previous
        ledger = session.scalar(
            select(ImportFile)
            .where(
                ImportFile.path == path,
                ImportFile.sha256 == spooled.sha256,
                ImportFile.status.in_((PROCESSING, FAILED, "received")),
            )
            .order_by(ImportFile.created_at.desc())
        )
        if ledger is None:
            ledger = ImportFile(path=path, file_name=source.name)
            session.add(ledger)
        ledger.size, ledger.sha256, ledger.encoding = spooled.size, spooled.sha256, spooled.encoding
        ledger.status = DUPLICATE if previous is not None else PROCESSING
        ledger.started_at, ledger.finished_at, ledger.error = utcnow(), None, None
        for counter in COUNT_FIELDS:
            setattr(ledger, counter, 0)
        session.flush()
        return ledger, previous


def _awaits_archiving(previous: ImportFile, processed_dir: Any) -> bool:
    """True when an imported file's run ended before it reached ``processed/`` (finish it then)."""
    if processed_dir is None or not previous.report_path:
        return False
    name = str(previous.report_path).rsplit("/", 1)[-1][: -len(".report.html")]
    return not (processed_dir / name).exists()


def _ledger_row(source: Any, spooled, status: str) -> ImportFile:
    """A new ledger row for ``source`` as spooled (not yet added to a session)."""
    return ImportFile(
        path=str(source),
        file_name=source.name,
        size=spooled.size,
        sha256=spooled.sha256,
        encoding=spooled.encoding,
        status=status,
        started_at=utcnow(),
    )


def _imported_with(session, sha256: str) -> ImportFile | None:
    """The ledger row of an earlier import of the same content, if any."""
    return session.scalar(select(ImportFile).where(ImportFile.sha256 == sha256, ImportFile.status == IMPORTED))


def _new_outcome(ledger: ImportFile, name: str, spooled) -> ImportOutcome:
    """The outcome of a file just claimed in the ledger, before it is read."""
    return ImportOutcome(
        file_id=ledger.id,
        file_name=name,
        status=PROCESSING,
        encoding=spooled.encoding,
        sha256=spooled.sha256,
        size=spooled.size,
    )


def _new_ledger(database_url: str, source: Any, spooled, status: str) -> ImportFile:
    with session_scope(database_url) as session:
        ledger = _ledger_row(source, spooled, status)
        session.add(ledger)
        session.flush()
        return ledger


def _fail_before_reading(source: Any, database_url: str, name: str, error: str, failed_dir: Any) -> ImportOutcome:
    with session_scope(database_url) as session:
        ledger = ImportFile(path=str(source), file_name=name, status=FAILED, error=error, started_at=utcnow())
        ledger.finished_at = utcnow()
        session.add(ledger)
        session.flush()
        file_id = ledger.id
    outcome = ImportOutcome(file_id=file_id, file_name=name, status=FAILED, error=error)
    _archive_failed(source, database_url, outcome, failed_dir)
    return outcome


def _already_imported(
    source: Any, database_url: str, ledger: ImportFile, previous: ImportFile, processed_dir: Any, failed_dir: Any
) -> ImportOutcome:
    if ledger.id == previous.id:
        # This very file was imported, but the run ended before it was moved: finish the move.
        outcome = ImportOutcome(
            file_id=previous.id,
            file_name=previous.file_name,
            status=IMPORTED,
            encoding=previous.encoding,
            delimiter=previous.delimiter,
            sha256=previous.sha256,
            size=previous.size,
            report_path=previous.report_path,
            **previous.counts(),
        )
        if processed_dir is not None and previous.report_path:
            _move(source, _report_base(outcome, processed_dir), outcome)
        log.info("%s was imported already (file_id %s); archived it", source.name, previous.id)
        return outcome
    error = _repeat_error(previous)
    with session_scope(database_url) as session:
        session.execute(
            update(ImportFile)
            .where(ImportFile.id == ledger.id)
            .values(status=DUPLICATE, error=error, finished_at=utcnow())
        )
    outcome = ImportOutcome(
        file_id=ledger.id,
        file_name=ledger.file_name,
        status=DUPLICATE,
        sha256=ledger.sha256,
        size=ledger.size,
        encoding=ledger.encoding,
        error=error,
    )
    log.warning("%s: %s", ledger.file_name, error)
    _archive_failed(source, database_url, outcome, failed_dir)
    return outcome


def _archive_failed(source: Any, database_url: str, outcome: ImportOutcome, failed_dir: Any) -> None:
    """Move a file that was not imported to ``failed/`` with its report, and note the report."""
    if failed_dir is None:
        return
    dest = _destination(failed_dir, source.name, outcome.file_id)
    outcome.report_path = _write_reports(dest, outcome, None, None)
    _move(source, dest, outcome)
    with session_scope(database_url) as session:
        session.execute(
            update(ImportFile).where(ImportFile.id == outcome.file_id).values(report_path=outcome.report_path)
        )


class _Discard(Exception):
    """Raised inside the load transaction to roll it back after the failure report is written."""


def _import(
    source: Any,
    database_url: str,
    spooled,
    outcome: ImportOutcome,
    mapping: Mapping,
    suite: dict[str, Any],
    processed_dir: Any,
    failed_dir: Any,
    progress: Callable[[str], None],
) -> ImportOutcome:
    try:
        with session_scope(database_url) as session:
            _load(session, source, spooled, outcome, mapping, suite, processed_dir, failed_dir, progress)
    except _Discard:
        pass
    except AccountingError as exc:
        outcome.status, outcome.error = FAILED, str(exc)
        with session_scope(database_url) as session:
            _finish_ledger(session, outcome)
        raise
    if outcome.status == FAILED:
        with session_scope(database_url) as session:
            _finish_ledger(session, outcome)
        if failed_dir is not None:
            _move(source, _report_base(outcome, failed_dir), outcome)
        log.warning("%s was not imported: %s", source.name, outcome.error)
        return outcome
    if processed_dir is not None:
        _move(source, _report_base(outcome, processed_dir), outcome)
    progress(
        f"{source.name}: imported {outcome.rows_read:,} rows: {outcome.inserted:,} inserted, "
        f"{outcome.updated:,} updated, {outcome.duplicates:,} duplicates, {outcome.rejected:,} rejected"
    )
    return outcome


def _move(source: Any, dest: Any, outcome: ImportOutcome) -> None:
    """Move ``source`` to ``dest`` and note where it went: renamed on a local disk, else copied
    then deleted (the bucket may be S3)."""
    outcome.archived_path = str(dest)
    local_source, local_dest = _local_path(source), _local_path(dest)
    if local_source is not None and local_dest is not None:
        try:
            os.replace(local_source, local_dest)
            return
        except OSError:  # another filesystem: copy, then delete
            pass
    copy_to(source, dest)
    source.unlink()


def _local_path(path: Any) -> Path | None:
    """The local file behind ``path`` (a ``Path`` or a ``file://`` ObjectStoragePath), else None."""
    if isinstance(path, Path):
        return path
    if getattr(path, "protocol", None) in ("file", "local"):
        return Path(path.path)
    return None


def _load(
    session: Session,
    source: Any,
    spooled,
    outcome: ImportOutcome,
    mapping: Mapping,
    suite: dict[str, Any],
    processed_dir: Any,
    failed_dir: Any,
    progress: Callable[[str], None],
    *,
    check: bool = False,
    check_dir: Any = None,
) -> None:
    """Everything that must commit together: staged rows, issues, leads, ledger, event.

    ``check`` (from :func:`check_lead_file`): everything but the commit: the reports go to
    ``check_dir`` (if any), then the transaction is thrown away."""
    failure = header_map = quality = counts = None
    try:
        try:
            header_map, indicators, staged = _read_and_stage(
                session, spooled, outcome, mapping, progress, direct=DIRECT_LOAD
            )
        except loader.DirectLoadAbandoned as exc:
            progress(f"{outcome.file_name}: {exc}; reading it again to load it through the staging table")
            header_map, indicators, staged = _read_and_stage(session, spooled, outcome, mapping, progress)
    except FileRejected as exc:
        failure = str(exc)
    if failure is None:
        if staged.direct and not staged.staged:  # loaded already: nothing to merge beside the quality suite
            loader.drop_stage(session.connection())
            quality, counts = _check_quality(suite, *indicators), loader.MergeCounts(staged.rows, 0, 0, 0)
        else:
            quality, counts = _merge_beside_quality_check(session, outcome, suite, indicators, staged)
            if counts is not None and staged.direct:  # the rows loaded directly, less those a later line replaced
                counts.inserted += staged.rows - staged.staged - counts.replaced
        if not quality["success"]:
            failure = (
                "the file failed its file-level quality checks (a sign of a shifted column or of text decoded "
                "wrongly), so none of its rows was loaded: " + _quality_summary(quality)
            )
    outcome.quality = quality
    if failure is not None:
        outcome.status, outcome.error = FAILED, failure
        # Every row is accounted for: those rejected one by one, and the others, not loaded.
        outcome.not_loaded = outcome.rows_read - outcome.rejected
        target = check_dir if check else failed_dir
        if target is not None:
            # The reports (rejects included) come from this transaction, which is then thrown away.
            dest = target / source.name if check else _destination(target, source.name, outcome.file_id)
            outcome.report_path = _write_reports(dest, outcome, header_map, session)
        raise _Discard
    outcome.inserted, outcome.updated = counts.inserted, counts.updated
    outcome.duplicates = counts.duplicates
    outcome.rejected += counts.matched_elsewhere
    total = outcome.inserted + outcome.updated + outcome.duplicates + outcome.rejected + outcome.not_loaded
    if total != outcome.rows_read:
        raise AccountingError(
            f"{source.name}: rows read {outcome.rows_read} != inserted {outcome.inserted} + updated "
            f"{outcome.updated} + duplicates {outcome.duplicates} + rejected {outcome.rejected} + not loaded "
            f"{outcome.not_loaded} (= {total}); "
            "nothing of the file was loaded"
        )
    if check:
        outcome.status = CHECKED
        if check_dir is not None:
            outcome.report_path = _write_reports(check_dir / source.name, outcome, header_map, session)
        raise _Discard
    outcome.status = IMPORTED
    if processed_dir is not None:
        dest = _destination(processed_dir, source.name, outcome.file_id)
        outcome.report_path = _write_reports(dest, outcome, header_map, session)
    _finish_ledger(session, outcome)
    data = outcome.to_dict()
    record_event(
        session,
        "lead.imported",
        {k: data[k] for k in ("file_id", "file_name", *COUNT_FIELDS)},
        event_id=event_id_for(outcome.sha256 or outcome.file_id),
    )


def _merge_beside_quality_check(
    session: Session, outcome: ImportOutcome, suite: dict[str, Any], indicators: tuple, staged: _Staged
) -> tuple[dict[str, Any], loader.MergeCounts | None]:
    """Run the quality suite (Python) while the merge (database work, the other core) runs in
    a thread on this transaction's connection; the main thread does not touch the connection
    until the merge is done. The merge sits in a savepoint: when the file fails its quality
    checks the merge is rolled back, so the failure report sees the transaction as it was
    before the merge. Returns the suite's result and the merge's counts (``None`` when the
    suite failed)."""
    conn = session.connection()
    savepoint = conn.begin_nested()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-merge") as pool:
        merging = pool.submit(
            loader.merge,
            conn,
            outcome.file_id,
            staged.now,
            emails_unique=staged.emails_unique,
            defaults=staged.defaults,
            direct_prefix=staged.prefix if staged.direct else None,
        )
        try:
            quality = _check_quality(suite, *indicators)
        except BaseException:
            wait([merging])
            savepoint.rollback()
            raise
        try:
            counts = merging.result()
        except BaseException:
            savepoint.rollback()
            raise
    if not quality["success"]:
        savepoint.rollback()
        return quality, None
    savepoint.commit()
    return quality, counts


def _report_base(outcome: ImportOutcome, directory: Any) -> Any:
    """The archived file's path, from its report's (they sit side by side)."""
    name = str(outcome.report_path).rsplit("/", 1)[-1][: -len(".report.html")]
    return directory / name


def _finish_ledger(session: Session, outcome: ImportOutcome) -> None:
    session.execute(
        update(ImportFile)
        .where(ImportFile.id == outcome.file_id)
        .values(
            status=outcome.status,
            delimiter=outcome.delimiter,
            rows_read=outcome.rows_read,
            inserted=outcome.inserted,
            updated=outcome.updated,
            duplicates=outcome.duplicates,
            rejected=outcome.rejected,
            not_loaded=outcome.not_loaded,
            error=outcome.error,
            report_path=outcome.report_path,
            finished_at=utcnow(),
        )
    )


def _quality_summary(quality: dict[str, Any]) -> str:
    parts = []
    for o in quality["outcomes"]:
        if not o["success"]:
            target = f" on {o['kwargs'].get('column')}" if o["kwargs"].get("column") else ""
            limits = {k: v for k, v in o["kwargs"].items() if k != "column"}
            parts.append(f"{o['type']}{target} expected {limits}, observed {o['observed'].get('observed_value')}")
    return "; ".join(parts)


def _read_and_stage(
    session: Session,
    spooled,
    outcome: ImportOutcome,
    mapping: Mapping,
    progress: Callable[[str], None],
    *,
    direct: bool = False,
) -> tuple[HeaderMap, tuple[array, array], _Staged]:
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
        rows = _RowLoader(
            conn, outcome, header_map, mapping, len(header), delimiter, progress, direct=direct, amounts=amounts
        )
        try:
            texts: list[TextBlock] = []
            chars = 0
            for item in iter_blocks(lines, reader, len(header)):
                if isinstance(item, TextBlock):
                    texts.append(item)
                    chars += len(item.text)
                    if chars >= TEXT_BATCH_CHARS:
                        rows.text(texts)
                        texts, chars = [], 0
                    continue
                if texts:
                    rows.text(texts)
                    texts, chars = [], 0
                if isinstance(item, Block):
                    rows.block(item)
                elif item.error is not None:
                    rows.shape_error(item.line, item.cells, item.error)
                else:
                    rows.row(item.line, item.cells)
            if texts:
                rows.text(texts)
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
    staged = _Staged(direct, rows.keys.distinct, stager.rows, stager.now, stager.defaults, stager.staged, stager.prefix)
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
class _Staged:
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


class _EmailKeys:
    """The email hashes of the rows sent so far, each with the line it came from: which new
    ones repeat an earlier row's?

    Sorted arrays (16 bytes a row), new hashes inserted in batches: those of a column-wise
    batch, and those of rows that come one at a time, gathered first (a per-row look-up cost a
    numpy call, and a GIL hand-over to the loader's thread, per row). Equal hashes of different
    emails count as a repeat: the merge then finds the truth. The line noted with a hash is its
    first row's (loaded directly in a direct load).
    """

    def __init__(self) -> None:
        self.sorted = np.empty(0, dtype=np.int64)
        self.lines = np.empty(0, dtype=np.int64)
        self.distinct = True

    def repeats(self, keys: np.ndarray, lines: np.ndarray) -> np.ndarray:
        """Note a batch of hashes and their rows' lines; True for each hash seen before (in an
        earlier batch, or earlier in this one)."""
        unique, first = np.unique(keys, return_index=True)  # (the first occurrence of each)
        repeat = np.ones(len(keys), dtype=bool)
        repeat[first] = False
        position = np.searchsorted(self.sorted, unique)
        if len(self.sorted):
            seen = self.sorted[np.minimum(position, len(self.sorted) - 1)] == unique
            repeat[first[seen]] = True
            unique, first, position = unique[~seen], first[~seen], position[~seen]
        # (np.insert puts each new hash before the position found: one copy, the arrays stay sorted.)
        self.sorted = np.insert(self.sorted, position, unique)
        self.lines = np.insert(self.lines, position, lines[first])
        self.distinct &= not repeat.any()
        return repeat

    def line_of(self, keys: np.ndarray) -> np.ndarray:
        """The line noted with each hash (each one noted before)."""
        return self.lines[np.searchsorted(self.sorted, keys)]


class _RowLoader:
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
        self.keys = _EmailKeys()
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
        self.plan = _stage_plan(header_map)

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
        key = hash(clean["Email"]) & _KEY_MASK if is_valid_email else None
        if errors:
            reason = "; ".join(str(e) for e in errors)
            email = clean.get("Email") or (cells[self.email_col].strip()[:255] if self.email_col is not None else None)
            self._reject(_issue(self.outcome.file_id, line, reason, cells, email))
            return
        self.shifted.append(any("@" in (clean.get(f) or "") for f in ("FirstName", "LastName", "Company")))
        self.mojibake.append(
            any(_MOJIBAKE_RE.search(clean.get(f) or "") for f in ("FirstName", "LastName", "Company", "Title", "City"))
        )
        row = _stage_row(line, clean, self.plan, cells)
        # (A row may be valid without an email when the mapping does not require one: no duplicate of any.)
        if key is None:
            self.stager.add(row)
            return
        self.waiting.append((key, line, row, clean["Email"]))
        if len(self.waiting) >= WAITING_ROWS:
            self._send_waiting()

    def text(self, blocks: list[TextBlock]) -> None:
        """Consecutive blocks of lines without quotes: parsed by Arrow, checked column-wise."""
        text = "".join([block.text for block in blocks])
        parsed = parse_text(text, sum(block.count for block in blocks), self.delimiter, self.width)
        first = blocks[0].first
        for offset, line_text in parsed.others:
            cells = next(csv.reader([line_text], delimiter=self.delimiter), [])
            if not is_blank(cells):
                self.shape_error(first + offset, cells, ragged(len(cells), self.width))
        self.rows(parsed.cells, parsed.offsets + first, plain_text=not parsed.unusual, padded=parsed.padded)

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

    def rows(self, cells: list, lines, *, plain_text: bool = False, padded: bool = True) -> None:
        """Rows of the header's width given column-wise, with their line numbers."""
        # A direct load keeps no original cells (no row of it can become a duplicate to report).
        result = self.columnar.apply(cells, plain_text=plain_text, padded=padded, raw=not self.direct)
        plain = result.plain
        count = len(result.emails)
        if count:
            self._count(count)
            shifted, mojibake = _shape_flags(result.values, count)
            self.shifted.frombytes(shifted.tobytes())
            self.mojibake.frombytes(mojibake.tobytes())
            keys = np.fromiter(map(hash, result.emails), dtype=np.int64, count=count) & _KEY_MASK
            repeat = self.keys.repeats(keys, lines[plain])
            line = pa.array(lines[plain], pa.int32())
            columns = [line, *(result.values[c] for c in loader.LEAD_COLUMNS), result.raw]
            if self.direct and repeat.any():
                self._stage_repeats(columns, cells, plain, repeat, keys, result.emails, plain_text)
            else:
                self.stager.add_columns(columns, backslash_free=plain_text)
        if count < len(plain):
            others = np.flatnonzero(~plain)
            take = pa.array(others)
            columns = [c.take(take).to_pylist() for c in cells]
            for number, row_cells in zip(lines[others].tolist(), zip(*columns, strict=True), strict=True):
                self.row(number, list(row_cells))
        self._send_waiting()

    def _stage_repeats(
        self, columns: list, cells: list, plain: np.ndarray, repeat: np.ndarray, keys: np.ndarray, emails, plain_text
    ) -> None:
        """A direct load's batch of plain rows, some repeating an earlier row's email: those
        are staged with their original cells (the merge weighs them), the others loaded."""
        once, again = pa.array(np.flatnonzero(~repeat)), np.flatnonzero(repeat)
        self.stager.add_columns([c.take(once) for c in columns], backslash_free=plain_text)
        take, mask = pa.array(again), pa.array(plain)
        raw = ColumnarRules.raw_cells([c.filter(mask).take(take) for c in cells], len(again), escape_free=plain_text)
        staged = [*(c.take(take) for c in columns[:-1]), raw]
        self.stager.add_columns(staged, backslash_free=plain_text, staged=True)
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
class _StagePlan:
    """Where each staged lead column comes from, worked out once per file."""

    fields: tuple[str | None, ...]  # the API field of each lead column (None: not in the file)
    # LeadSource / Status: (position, file column) — an empty cell stages NULL, so the insert
    # applies the default and an update keeps the CRM's value.
    defaulted: tuple[tuple[int, int], ...]
    decimal_positions: tuple[int, ...]  # values to stage as text


def _stage_plan(header_map: HeaderMap) -> _StagePlan:
    by_attr = {api_to_attr(f): f for f in header_map.columns}
    fields = tuple(by_attr.get(attr) for attr in loader.LEAD_COLUMNS)
    defaulted = tuple(
        (pos, header_map.columns[f])
        for pos, (attr, f) in enumerate(zip(loader.LEAD_COLUMNS, fields, strict=True))
        if attr in ("lead_source", "status") and f is not None
    )
    decimals = tuple(pos for pos, attr in enumerate(loader.LEAD_COLUMNS) if attr == "estimated_value")
    return _StagePlan(fields, defaulted, decimals)


def _stage_row(line: int, clean: dict[str, Any], plan: _StagePlan, cells: list[str]) -> list:
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


def _shape_flags(values: dict[str, pa.Array], count: int) -> tuple[np.ndarray, np.ndarray]:
    """The suite's indicators for a batch of plain rows (int8 arrays): an "@" in a name or
    company (a shifted column), mojibake in a text column. Each column's UTF-8 bytes are
    searched at once first (memchr speed); only a column where a sign occurs is checked row by
    row, with Arrow kernels."""
    import pyarrow.compute as pc

    shifted = np.zeros(count, dtype=bool)
    mojibake = np.zeros(count, dtype=bool)
    for attr in _TEXT_ATTRS:
        column = values.get(attr)
        if column is None or column.null_count == count:
            continue
        data = column.buffers()[2]
        octets = data.to_pybytes() if data is not None else b""
        if attr in _NAME_ATTRS and b"@" in octets:
            shifted |= pc.fill_null(pc.match_substring(column, "@"), False).to_numpy(zero_copy_only=False)
        if not octets.isascii() and _may_be_mojibake(octets):
            found = pc.fill_null(pc.match_substring_regex(column, _MOJIBAKE), False)
            mojibake |= found.to_numpy(zero_copy_only=False)
    return shifted.astype(np.int8), mojibake.astype(np.int8)


def _may_be_mojibake(octets: bytes) -> bool:
    """True when UTF-8 bytes hold U+FFFD, or "Ã", "Â" or "â" (C3 83, C3 82, C3 A2): the lead
    characters of UTF-8 read as Windows-1252. A memchr, then element-wise numpy (accented
    names have many other C3 pairs; Python's search for a 2-byte needle is slower)."""
    if b"\xef" in octets and b"\xef\xbf\xbd" in octets:
        return True
    codes = np.frombuffer(octets, dtype=np.uint8)
    lead, after = codes[:-1] == 0xC3, codes[1:]
    return bool((lead & ((after == 0x83) | (after == 0x82) | (after == 0xA2))).any())


def _check_quality(suite: dict[str, Any], shifted: array, mojibake: array) -> dict[str, Any]:
    """Run the file-level suite on per-row indicators of the rows that passed the row checks
    (compact arrays, not the file's text); skipped, and passed, below the suite's ``min_rows``."""
    import numpy as np
    import pandas as pd

    from hotcrm.quality import validate_dataframe

    rows, min_rows = len(shifted), int(suite.get("min_rows", MIN_ROWS))
    if rows < min_rows:
        note = (
            f"not run: {rows} row(s) passed the row checks, and the file-level checks apply from {min_rows} "
            "(min_rows in the suite); the rows were judged one by one"
        )
        statistics = {"evaluated_expectations": 0, "successful_expectations": 0, "skipped": note}
        return {"suite": suite.get("name", SUITE_NAME), "success": True, "outcomes": [], "statistics": statistics}
    # GX logs its set-up at INFO; the task log should show the import's progress, not that.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    frame = pd.DataFrame(
        {
            "ShiftedColumn": np.frombuffer(shifted, dtype=np.int8),
            "Mojibake": np.frombuffer(mojibake, dtype=np.int8),
        }
    )
    result = validate_dataframe(frame, suite.get("name", SUITE_NAME), suite["expectations"])
    return result.to_dict()


def _write_reports(dest: Any, outcome: ImportOutcome, header_map: HeaderMap | None, session: Session | None) -> str:
    """Write ``<dest>.report.json``, ``<dest>.report.html`` and (with a session) ``<dest>.rejects.csv``;
    returns the HTML report's path."""
    parent, name = dest.parent, dest.name
    if session is not None:
        rejects = parent / f"{name}.rejects.csv"
        _write_rejects(rejects, outcome, header_map, session)
        outcome.rejects_path = str(rejects)
    report = dict(outcome.to_dict())
    report["delimiter_name"] = DELIMITER_NAMES.get(outcome.delimiter or "", None)
    report["columns"] = dict(header_map.columns) if header_map else None
    report["header"] = list(header_map.header) if header_map else None
    report["quality"] = outcome.quality
    report_path = parent / f"{name}.report.html"
    report["report_path"] = str(report_path)
    files.create_private(parent / f"{name}.report.json")  # 0640, see hotcrm.files
    with (parent / f"{name}.report.json").open("wb") as f:
        f.write(json.dumps(report, indent=2, default=str).encode("utf-8"))
    files.create_private(report_path)
    with report_path.open("wb") as f:
        f.write(_render_report(report, outcome).encode("utf-8"))
    return str(report_path)


def _write_rejects(path: Any, outcome: ImportOutcome, header_map: HeaderMap | None, session: Session) -> None:
    header = header_map.header if header_map else []
    # A local file first: the rejects are streamed from the database, then copied to the bucket.
    tmp = tempfile.NamedTemporaryFile("w", encoding="utf-8-sig", newline="", suffix=".csv", delete=False)  # noqa: SIM115
    try:
        with tmp:
            writer = csv.writer(tmp)
            writer.writerow(["line", "kind", "reason", *[neutralize(h) for h in header], "extra fields"])
            rows = session.execute(
                select(ImportIssue.line_number, ImportIssue.kind, ImportIssue.reason, ImportIssue.raw)
                .where(ImportIssue.file_id == outcome.file_id)
                .order_by(ImportIssue.line_number, ImportIssue.id)
                .execution_options(yield_per=5_000)
            )
            for line, kind, reason, raw in rows:
                cells = list(raw or [])
                main, extra = cells[: len(header)], cells[len(header) :]
                main += [""] * (len(header) - len(main))
                writer.writerow(
                    [line, kind, neutralize(reason), *[neutralize(c) for c in main], neutralize(" | ".join(extra))]
                )
        files.create_private(path)
        copy_to(Path(tmp.name), path)
    finally:
        Path(tmp.name).unlink(missing_ok=True)


def _render_report(report: dict[str, Any], outcome: ImportOutcome) -> str:
    esc = html.escape
    verdict = {
        IMPORTED: "imported",
        FAILED: "NOT imported (failed)",
        DUPLICATE: "NOT imported (duplicate)",
        CHECKED: "checked: would be imported (nothing was loaded)",
    }.get(outcome.status, outcome.status)
    facts = [
        ("status", verdict),
        ("file_id", outcome.file_id),
        ("error", outcome.error or ""),
        ("rows read", outcome.rows_read),
        ("inserted", outcome.inserted),
        ("updated", outcome.updated),
        ("duplicates (earlier rows with the same email)", outcome.duplicates),
        ("rejected", outcome.rejected),
        ("not loaded (the file failed as a whole)", outcome.not_loaded),
        ("encoding", outcome.encoding or ""),
        ("delimiter", report.get("delimiter_name") or ""),
        (
            "columns used",
            ", ".join(f"{k} ← {report['columns'] and _col(report, k)}" for k in (report["columns"] or {})),
        ),
        ("number format of amounts", outcome.number_format or ""),
        ("unknown columns (ignored)", ", ".join(outcome.unknown_columns)),
        ("columns not used (another column maps to the same field)", ", ".join(outcome.unused_columns)),
        ("rejects file", outcome.rejects_path or ""),
        ("sha256", outcome.sha256 or ""),
    ]
    rows = "\n".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    from hotcrm.quality import html_page, render_section

    quality = ""
    if outcome.quality is not None:
        quality = render_section(_result_from_dict(outcome.quality), "Quality checks")
        skipped = outcome.quality["statistics"].get("skipped")
        if skipped:
            quality += f"\n<p>File-level checks {esc(skipped)}.</p>"
    title = f"Lead import: {outcome.file_name}"
    return html_page(title, f"<h1>{esc(title)}</h1>\n<table>{rows}</table>\n{quality}")


def _col(report: dict[str, Any], field_name: str) -> str:
    index = report["columns"][field_name]
    return f"column {index + 1} {report['header'][index]!r}"


def _result_from_dict(data: dict[str, Any]):
    from hotcrm.quality import ExpectationOutcome, QualityResult

    return QualityResult(
        data["suite"], data["success"], [ExpectationOutcome(**o) for o in data["outcomes"]], data["statistics"]
    )


def outcome_from_ledger(database_url: str, path: str) -> ImportOutcome | None:
    """The latest finished ledger record for a file path, as an outcome (``None`` if there is none)."""
    with session_scope(database_url) as session:
        row = session.scalar(
            select(ImportFile)
            .where(ImportFile.path == path, ImportFile.status.in_((IMPORTED, FAILED, DUPLICATE)))
            .order_by(ImportFile.created_at.desc())
        )
        if row is None:
            return None
        return ImportOutcome(
            file_id=row.id,
            file_name=row.file_name,
            status=row.status,
            encoding=row.encoding,
            delimiter=row.delimiter,
            sha256=row.sha256,
            size=row.size,
            error=row.error,
            report_path=row.report_path,
            **row.counts(),
        )
