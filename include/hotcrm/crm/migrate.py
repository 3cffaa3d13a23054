"""Create and migrate the CRM database with Alembic, from code or ``python -m hotcrm db upgrade``.

Each capability adds its tables in its own migration file under ``migrations/versions`` as
a branch off the core revision, so the schema is at ``heads`` (all branches applied).

Several components may start at once and each run the upgrade (a compose stack, a Helm
release). One upgrade runs at a time: on PostgreSQL the others wait on an advisory lock held
for the upgrade's transaction, then read the version table afresh and find nothing to do; on
SQLite the engine's ``BEGIN IMMEDIATE`` takes the database's write lock the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from hotcrm.crm.db import get_engine, is_postgresql, normalize_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The advisory lock key every ``hotcrm db upgrade`` takes (a fixed 64-bit number: "hotcrmdb").
MIGRATION_LOCK_ID = 0x686F7463726D6462
# How long an upgrade waits for another one before giving up (a migration is seconds long).
LOCK_TIMEOUT_SECONDS = 600.0


class MigrationLockTimeout(RuntimeError):
    """Another upgrade held the migration lock for longer than the timeout."""


def alembic_config(url: str) -> Config:
    """An Alembic config for the CRM migrations against ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; URL-encoded passwords contain it.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads", lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
    """Bring the database at ``url`` to ``revision`` (default: every branch's head), one upgrade at a time."""
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        if is_postgresql(connection.engine):
            _take_migration_lock(connection, lock_timeout)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _take_migration_lock(connection: Connection, timeout: float) -> None:
    """Hold the migration lock until ``connection``'s transaction ends (commit or rollback)."""
    if connection.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID}):
        return
    holder = _lock_holder(connection)
    log.info("another `hotcrm db upgrade` (%s) is migrating the CRM database; waiting up to %g s", holder, timeout)
    # lock_timeout bounds the wait; SET LOCAL ends with this transaction. Milliseconds, at least 1.
    connection.execute(text(f"SET LOCAL lock_timeout = {max(1, int(timeout * 1000))}"))
    try:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
    except OperationalError as exc:
        raise MigrationLockTimeout(
            f"another `hotcrm db upgrade` ({holder}) held the CRM database's migration lock for more than "
            f"{timeout:g} s: let it finish, or end that session if it is stuck "
            f"(SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'), then run it again"
        ) from exc
    connection.execute(text("SET LOCAL lock_timeout = 0"))


def _lock_holder(connection: Connection) -> str:
    """Who holds the migration lock, for the log line and the error (its server process id)."""
    pid = connection.scalar(
        text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = :key LIMIT 1"
        ),
        {"key": MIGRATION_LOCK_ID},
    )
    return f"PostgreSQL backend pid {pid}" if pid else "a session that just ended"


def current_heads(url: str) -> set[str]:
    """Revisions the database at ``url`` is at."""
    with get_engine(url).connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def expected_heads() -> set[str]:
    """Every head revision in the migration scripts."""
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def is_up_to_date(url: str) -> bool:
    """True when the database has every migration applied."""
    return current_heads(url) == expected_heads()
