"""The lead-import file ledger (``lead_import_files``) and a file's outcome.

One ledger row per attempt at a file: claimed before reading (reused by a re-run of the same
path and content), finished with the counts in the import's transaction. The content's
sha256 makes a second drop of an imported file a duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import utcnow
from hotcrm.leads.models import (
    COUNT_FIELDS,
    DUPLICATE,
    FAILED,
    IMPORTED,
    PROCESSING,
    ImportFile,
)

log = logging.getLogger(__name__)

CHECKED = "checked"  # check_lead_file's status for a file that would be imported


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


def repeat_error(previous: ImportFile) -> str:
    return (
        f"this content was already imported from {previous.file_name!r} on {previous.finished_at:%Y-%m-%d %H:%M} UTC "
        f"(file_id {previous.id}); it is not imported again"
    )


def claim(database_url: str, source: Any, spooled) -> tuple[ImportFile, ImportFile | None]:
    """The ledger row for this attempt (reusing an unfinished one for the same path and content),
    and the earlier import of the same content, if any."""
    path = str(source)
    with session_scope(database_url) as session:
        previous = imported_with(session, spooled.sha256)
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


def awaits_archiving(previous: ImportFile, processed_dir: Any) -> bool:
    """True when an imported file's run ended before it reached ``processed/`` (finish it then)."""
    if processed_dir is None or not previous.report_path:
        return False
    name = str(previous.report_path).rsplit("/", 1)[-1][: -len(".report.html")]
    return not (processed_dir / name).exists()


def ledger_row(source: Any, spooled, status: str) -> ImportFile:
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


def imported_with(session, sha256: str) -> ImportFile | None:
    """The ledger row of an earlier import of the same content, if any."""
    return session.scalar(select(ImportFile).where(ImportFile.sha256 == sha256, ImportFile.status == IMPORTED))


def new_outcome(ledger: ImportFile, name: str, spooled) -> ImportOutcome:
    """The outcome of a file just claimed in the ledger, before it is read."""
    return ImportOutcome(
        file_id=ledger.id,
        file_name=name,
        status=PROCESSING,
        encoding=spooled.encoding,
        sha256=spooled.sha256,
        size=spooled.size,
    )


def new_ledger(database_url: str, source: Any, spooled, status: str) -> ImportFile:
    with session_scope(database_url) as session:
        ledger = ledger_row(source, spooled, status)
        session.add(ledger)
        session.flush()
        return ledger


def finish_ledger(session: Session, outcome: ImportOutcome) -> None:
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


_MAX_ERROR_LENGTH = 2000


def fail_unfinished(database_url: str, path: str, error: str) -> int:
    """Mark the ``processing`` ledger rows of ``path`` as ``failed`` with ``error``; returns how many.

    A row is ``processing`` while its import runs. An import that raises (a lost database, a
    bucket error, the task killed by a timeout or with its worker) would leave it so, and the
    ledger would claim forever that the file is being imported. A retry of the same file and
    content reuses the row (see ``importer._claim``)."""
    statement = (
        update(ImportFile)
        .where(ImportFile.path == path, ImportFile.status == PROCESSING)
        .values(status=FAILED, error=error[:_MAX_ERROR_LENGTH], finished_at=utcnow())
    )
    with session_scope(database_url) as session:
        return session.execute(statement).rowcount or 0


def close_unfinished(database_url: str, path: str, cause: str) -> None:
    """:func:`fail_unfinished` for an import that failed with ``cause``, never raising: the
    database may be what failed, and the original error is the one to report."""
    reason = f"the import failed ({cause}); the file stays in incoming/ for a retry"
    try:
        if fail_unfinished(database_url, path, reason):
            log.warning("%s: ledger row marked failed (%s)", path, cause)
    except Exception as close_error:
        log.warning("%s: could not close its ledger row (%s)", path, type(close_error).__name__)
