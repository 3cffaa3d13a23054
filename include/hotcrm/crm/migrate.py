"""Create and migrate the CRM database with Alembic, from code or ``python -m hotcrm db upgrade``.

Each capability adds its tables in its own migration file under ``migrations/versions`` as
a branch off the core revision, so the schema is at ``heads`` (all branches applied).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hotcrm.crm.db import get_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config for the CRM migrations against ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; URL-encoded passwords contain it.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to ``revision`` (default: every branch's head)."""
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


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
