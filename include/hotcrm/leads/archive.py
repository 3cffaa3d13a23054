"""Where a lead file goes after its import: ``processed/`` or ``failed/``, beside its reports."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import update

from hotcrm.crm.db import session_scope
from hotcrm.leads.ledger import ImportOutcome
from hotcrm.leads.models import ImportFile
from hotcrm.leads.reader import copy_to, local_file
from hotcrm.leads.reports import write_reports


def destination(directory: Any, name: str, file_id: str) -> Any:
    """Where a file called ``name`` goes in ``directory`` (beside, not over, an earlier one)."""
    dest = directory / name
    if dest.exists():  # another file of that name was archived before: keep both
        stem, dot, suffix = name.rpartition(".")
        dest = directory / (f"{stem}.{file_id[:8]}.{suffix}" if dot and stem else f"{name}.{file_id[:8]}")
    return dest


def move(source: Any, dest: Any, outcome: ImportOutcome) -> None:
    """Move ``source`` to ``dest`` and note where it went: renamed on a local disk, else copied
    then deleted (the bucket may be S3)."""
    outcome.archived_path = str(dest)
    local_source, local_dest = local_file(source), local_file(dest)
    if local_source is not None and local_dest is not None:
        try:
            os.replace(local_source, local_dest)
            return
        except OSError:  # another filesystem: copy, then delete
            pass
    copy_to(source, dest)
    source.unlink()


def report_base(outcome: ImportOutcome, directory: Any) -> Any:
    """The archived file's path, from its report's (they sit side by side)."""
    name = str(outcome.report_path).rsplit("/", 1)[-1][: -len(".report.html")]
    return directory / name


def archive_failed(source: Any, database_url: str, outcome: ImportOutcome, failed_dir: Any) -> None:
    """Move a file that was not imported to ``failed/`` with its report, and note the report."""
    if failed_dir is None:
        return
    dest = destination(failed_dir, source.name, outcome.file_id)
    outcome.report_path = write_reports(dest, outcome, None, None)
    move(source, dest, outcome)
    with session_scope(database_url) as session:
        session.execute(
            update(ImportFile).where(ImportFile.id == outcome.file_id).values(report_path=outcome.report_path)
        )
