"""Fixtures of the integration tests."""

import pytest

from hotcrm.crm.db import dispose_engine
from tests.support.lead_files import make_bucket


@pytest.fixture
def bucket(tmp_path):
    """A local lead-import bucket: its ``incoming``, ``processed`` and ``failed`` folders."""
    return make_bucket(tmp_path)


@pytest.fixture
def empty_sqlite_url(tmp_path):
    """A CRM database with no table at all (no migration applied) in a SQLite file."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    yield url
    dispose_engine(url)


@pytest.fixture
def empty_pg_url(postgres_server):
    """A CRM database with no table at all (no migration applied) on the session's PostgreSQL."""
    name = postgres_server.create_database()
    url = postgres_server.url(name)
    yield url
    dispose_engine(url)
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request) -> str:
    """An unmigrated CRM database: each test using it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue("empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url")
