"""Close a file's unfinished ledger row when the task importing it failed.

A row is ``processing`` while its import runs. An import that raises (a lost database, a
bucket error, the task killed by a timeout) would leave it so, and the ledger would claim
forever that the file is being imported. The task that failed marks it ``failed`` with the
reason instead; a retry of the same file and content reuses the row (see ``importer._claim``).
"""

from __future__ import annotations

from sqlalchemy import update

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import utcnow
from hotcrm.leads.models import FAILED, PROCESSING, ImportFile

_MAX_ERROR_LENGTH = 2000


def fail_unfinished(database_url: str, path: str, error: str) -> int:
    """Mark the ``processing`` ledger rows of ``path`` as ``failed`` with ``error``; returns how many."""
    statement = (
        update(ImportFile)
        .where(ImportFile.path == path, ImportFile.status == PROCESSING)
        .values(status=FAILED, error=error[:_MAX_ERROR_LENGTH], finished_at=utcnow())
    )
    with session_scope(database_url) as session:
        return session.execute(statement).rowcount or 0
