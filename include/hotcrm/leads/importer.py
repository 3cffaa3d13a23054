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

This module is the orchestration; the parts live beside it: :mod:`~hotcrm.leads.ledger`
(the file ledger, the outcome), :mod:`~hotcrm.leads.staging` (reading, validating and sending
the rows), :mod:`~hotcrm.leads.keys` (repeated emails), :mod:`~hotcrm.leads.loader` (direct
load, staging table, merge), :mod:`~hotcrm.leads.quality` (the file-level suite),
:mod:`~hotcrm.leads.reports` and :mod:`~hotcrm.leads.archive`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotcrm import files
from hotcrm.crm.db import session_scope
from hotcrm.crm.events import record_event
from hotcrm.crm.models import utcnow
from hotcrm.leads import archive, loader
from hotcrm.leads.ledger import (
    CHECKED,
    AccountingError,
    ImportOutcome,
    awaits_archiving,
    claim,
    finish_ledger,
    imported_with,
    ledger_row,
    new_ledger,
    new_outcome,
    outcome_from_ledger,
    repeat_error,
)
from hotcrm.leads.models import (
    COUNT_FIELDS,
    DUPLICATE,
    FAILED,
    IMPORTED,
    PROCESSING,
    ImportFile,
)
from hotcrm.leads.quality import check_quality, load_suite, quality_summary
from hotcrm.leads.reader import FileRejected, Mapping, spool
from hotcrm.leads.reports import write_reports
from hotcrm.leads.staging import Staged, read_and_stage
from hotcrm.quality.worker import QualityWorker

log = logging.getLogger(__name__)

# Names other modules import from here.
__all__ = [
    "CHECKED",
    "AccountingError",
    "ImportOutcome",
    "check_lead_file",
    "event_id_for",
    "import_lead_file",
    "load_suite",
    "outcome_from_ledger",
]

# Try loading a file straight into leads first (see hotcrm.leads.loader).
DIRECT_LOAD = True
# From this size a file takes longer to read than Great Expectations to import (~3 s of CPU;
# a realistic file reads at ~13 MB/s): its quality worker imports at a lower priority, on the
# CPU the import and the database leave. Below it, starving the imports would make the import
# wait for them at its end (a 30 MB file: 3.8 -> 5.1 s).
BACKGROUND_QUALITY_BYTES = 64 * 1024 * 1024
_EVENT_NAMESPACE = uuid.UUID("9a4f2a52-6f0e-4b59-9a43-6c1f3d0b8e11")


@contextlib.contextmanager
def _system_allocator():
    """Arrow allocates from the C library's malloc while a file is read: its default (mimalloc)
    keeps the freed pages of earlier batches, ~50 MB more peak RSS at 300,000 rows, for no
    speed measured (``ARROW_DEFAULT_MEMORY_POOL=system`` does the same, but must be set before
    pyarrow is imported, which a task cannot promise). Buffers return to the pool that gave them."""
    import pyarrow as pa

    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def event_id_for(sha256: str) -> str:
    """The ``lead.imported`` event id of a file's content: a re-run writes the event once."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"lead.imported:{sha256}"))


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
    with _system_allocator(), files.work_dir("hotcrm-lead-import-", work_dir) as tmp:
        tmp_path = Path(tmp)
        try:
            spooled = spool(source, tmp_path / "source", mapping.limits)
        except FileRejected as exc:
            return _fail_before_reading(source, database_url, name, str(exc), failed_dir)
        ledger, previous = claim(database_url, source, spooled)
        if previous is not None and ledger.id == previous.id and not awaits_archiving(previous, processed_dir):
            # The same file dropped again after its import was archived: a duplicate like any other.
            ledger = new_ledger(database_url, source, spooled, DUPLICATE)
        if previous is not None:
            return _already_imported(source, database_url, ledger, previous, processed_dir, failed_dir)
        outcome = new_outcome(ledger, name, spooled)
        # The quality suite runs after the reading, in a child that imports GX meanwhile.
        with QualityWorker(background=spooled.size >= BACKGROUND_QUALITY_BYTES) as worker:
            try:
                return _import(
                    source, database_url, spooled, outcome, mapping, suite, processed_dir, failed_dir, progress, worker
                )
            except IntegrityError:
                # Another run imported the same content first (the ledger's unique index on sha256).
                with session_scope(database_url) as session:
                    previous = imported_with(session, spooled.sha256)
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
    with _system_allocator(), files.work_dir("hotcrm-lead-check-", work_dir) as tmp:
        try:
            spooled = spool(source, Path(tmp) / "source", mapping.limits)
        except FileRejected as exc:
            outcome = ImportOutcome(file_id="-", file_name=name, status=FAILED, error=str(exc))
            if report_dir is not None:
                outcome.report_path = write_reports(report_dir / name, outcome, None, None)
            return outcome
        try:
            with session_scope(database_url) as session:
                ledger = ledger_row(source, spooled, PROCESSING)
                session.add(ledger)
                session.flush()
                outcome = new_outcome(ledger, name, spooled)
                previous = imported_with(session, spooled.sha256)
                if previous is not None:
                    outcome.status, outcome.error = DUPLICATE, repeat_error(previous)
                    if report_dir is not None:
                        outcome.report_path = write_reports(report_dir / name, outcome, None, None)
                    raise _Discard
                with QualityWorker() as worker:
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
                        worker,
                        check=True,
                        check_dir=report_dir,
                    )
        except _Discard:
            pass
    return outcome


def _fail_before_reading(source: Any, database_url: str, name: str, error: str, failed_dir: Any) -> ImportOutcome:
    with session_scope(database_url) as session:
        ledger = ImportFile(path=str(source), file_name=name, status=FAILED, error=error, started_at=utcnow())
        ledger.finished_at = utcnow()
        session.add(ledger)
        session.flush()
        file_id = ledger.id
    outcome = ImportOutcome(file_id=file_id, file_name=name, status=FAILED, error=error)
    archive.archive_failed(source, database_url, outcome, failed_dir)
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
            archive.move(source, archive.report_base(outcome, processed_dir), outcome)
        log.info("%s was imported already (file_id %s); archived it", source.name, previous.id)
        return outcome
    error = repeat_error(previous)
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
    archive.archive_failed(source, database_url, outcome, failed_dir)
    return outcome


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
    worker: QualityWorker,
) -> ImportOutcome:
    try:
        with session_scope(database_url) as session:
            _load(session, source, spooled, outcome, mapping, suite, processed_dir, failed_dir, progress, worker)
    except _Discard:
        pass
    except AccountingError as exc:
        outcome.status, outcome.error = FAILED, str(exc)
        with session_scope(database_url) as session:
            finish_ledger(session, outcome)
        raise
    if outcome.status == FAILED:
        with session_scope(database_url) as session:
            finish_ledger(session, outcome)
        if failed_dir is not None:
            archive.move(source, archive.report_base(outcome, failed_dir), outcome)
        log.warning("%s was not imported: %s", source.name, outcome.error)
        return outcome
    if processed_dir is not None:
        archive.move(source, archive.report_base(outcome, processed_dir), outcome)
    progress(
        f"{source.name}: imported {outcome.rows_read:,} rows: {outcome.inserted:,} inserted, "
        f"{outcome.updated:,} updated, {outcome.duplicates:,} duplicates, {outcome.rejected:,} rejected"
    )
    return outcome


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
    worker: QualityWorker,
    *,
    check: bool = False,
    check_dir: Any = None,
) -> None:
    """Everything that must commit together: staged rows, issues, leads, ledger, event.
    ``worker`` runs the quality suite (see :func:`check_quality`).

    ``check`` (from :func:`check_lead_file`): everything but the commit: the reports go to
    ``check_dir`` (if any), then the transaction is thrown away."""
    failure = header_map = quality = counts = None
    try:
        try:
            header_map, indicators, staged = read_and_stage(
                session, spooled, outcome, mapping, progress, direct=DIRECT_LOAD
            )
        except loader.DirectLoadAbandoned as exc:
            progress(f"{outcome.file_name}: {exc}; reading it again to load it through the staging table")
            header_map, indicators, staged = read_and_stage(session, spooled, outcome, mapping, progress)
    except FileRejected as exc:
        failure = str(exc)
    if failure is None:
        if staged.direct and not staged.staged:  # loaded already: nothing to merge beside the quality suite
            loader.drop_stage(session.connection())
            quality, counts = check_quality(suite, *indicators, worker), loader.MergeCounts(staged.rows, 0, 0, 0)
        else:
            quality, counts = _merge_beside_quality_check(session, outcome, suite, indicators, staged, worker)
            if counts is not None and staged.direct:  # the rows loaded directly, less those a later line replaced
                counts.inserted += staged.rows - staged.staged - counts.replaced
        if not quality["success"]:
            failure = (
                "the file failed its file-level quality checks (a sign of a shifted column or of text decoded "
                "wrongly), so none of its rows was loaded: " + quality_summary(quality)
            )
    outcome.quality = quality
    if failure is not None:
        outcome.status, outcome.error = FAILED, failure
        # Every row is accounted for: those rejected one by one, and the others, not loaded.
        outcome.not_loaded = outcome.rows_read - outcome.rejected
        target = check_dir if check else failed_dir
        if target is not None:
            # The reports (rejects included) come from this transaction, which is then thrown away.
            dest = target / source.name if check else archive.destination(target, source.name, outcome.file_id)
            outcome.report_path = write_reports(dest, outcome, header_map, session)
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
            outcome.report_path = write_reports(check_dir / source.name, outcome, header_map, session)
        raise _Discard
    outcome.status = IMPORTED
    if processed_dir is not None:
        dest = archive.destination(processed_dir, source.name, outcome.file_id)
        outcome.report_path = write_reports(dest, outcome, header_map, session)
    finish_ledger(session, outcome)
    data = outcome.to_dict()
    record_event(
        session,
        "lead.imported",
        {k: data[k] for k in ("file_id", "file_name", *COUNT_FIELDS)},
        event_id=event_id_for(outcome.sha256 or outcome.file_id),
    )


def _merge_beside_quality_check(
    session: Session,
    outcome: ImportOutcome,
    suite: dict[str, Any],
    indicators: tuple,
    staged: Staged,
    worker: QualityWorker,
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
            quality = check_quality(suite, *indicators, worker)
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
