"""Shared fixtures: a real PostgreSQL server, fresh migrated CRM databases on SQLite and
PostgreSQL, a private Airflow home, moto's S3 server, all on loopback, all started and
stopped by the test session itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

PROJECT_DIR = Path(__file__).resolve().parents[1]
DAGS_FOLDER = PROJECT_DIR / "dags"

# Airflow reads its configuration when first imported: give the session a private home
# (SQLite metadata DB, no examples) before any test module imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="hotcrm-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_DIR / "plugins")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ.setdefault("HOTCRM_DATA_DIR", str(_AIRFLOW_HOME / "data"))
# The database a test uses is the one it names: not the Makefile's embedded default
# (`make test` exports AIRFLOW_CONN_HOTCRM_DB) nor a developer's own.
os.environ.pop("AIRFLOW_CONN_HOTCRM_DB", None)
os.environ.pop("HOTCRM_DATABASE_URL", None)
# One Fernet key for the session and every airflow process it starts (in unit-test mode each
# process makes its own): the lead-file watcher's trigger is stored with encrypted kwargs by
# one (`airflow dags reserialize`) and read by another (`dag.test()` syncing the DAGs).
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(PROJECT_DIR / "include"), str(PROJECT_DIR)]
    + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
)

from hotcrm.crm import migrate  # noqa: E402
from hotcrm.crm.db import dispose_engine  # noqa: E402
from hotcrm.settings import database_connection_json, database_env  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.s3 import S3Server  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


# --- databases ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (started once, stopped at the end)."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _pg_template(postgres_server) -> str:
    name = postgres_server.create_database(name="hotcrm_template")
    url = postgres_server.url(name)
    migrate.upgrade(url)
    dispose_engine(url)  # a template must have no open connections
    return name


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "hotcrm.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    dispose_engine(url)
    return path


@pytest.fixture
def sqlite_url(_sqlite_template, tmp_path) -> str:
    """A fresh, migrated CRM database in a SQLite file."""
    path = tmp_path / "hotcrm.db"
    shutil.copyfile(_sqlite_template, path)
    url = f"sqlite:///{path}"
    yield url
    dispose_engine(url)


def _pg_database(server: PostgresServer, template: str | None = None) -> Iterator[str]:
    """A new database on ``server`` (a copy of ``template`` if given): its URL, dropped afterwards."""
    name = server.create_database(template=template)
    url = server.url(name)
    yield url
    dispose_engine(url)
    server.drop_database(name)


@pytest.fixture
def pg_url(postgres_server, _pg_template) -> str:
    """A fresh, migrated CRM database on the session's PostgreSQL server."""
    yield from _pg_database(postgres_server, _pg_template)


@pytest.fixture
def empty_pg_url(postgres_server) -> str:
    """A CRM database with no table at all (no migration applied) on the session's PostgreSQL."""
    yield from _pg_database(postgres_server)


@pytest.fixture
def empty_sqlite_url(tmp_path) -> str:
    """A CRM database with no table at all (no migration applied) in a SQLite file."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    yield url
    dispose_engine(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request) -> str:
    """An unmigrated CRM database: each test using it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue("empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """A fresh, migrated CRM database: each test using it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def connection_json(url: str) -> str:
    """The ``hotcrm_db`` Airflow connection (JSON form) for a database URL."""
    return database_connection_json(url)


# --- Airflow -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_db():
    """The session's Airflow metadata database, migrated once."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture
def hotcrm_env(db_url, tmp_path, monkeypatch):
    """Point the project at a fresh CRM database (its ``hotcrm_db`` connection) and a
    ``file://`` bucket in the test's folder. Returns the settings as a dict."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    for name, value in database_env(db_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOTCRM_BUCKET_URL", bucket.as_uri())
    monkeypatch.setenv("HOTCRM_DATA_DIR", str(tmp_path / "data"))
    return {"database_url": db_url, "bucket_url": bucket.as_uri(), "bucket_dir": bucket}


# --- object storage ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback for the session."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    """A fresh S3 bucket on the moto server, wired as the project's bucket
    (``HOTCRM_BUCKET_URL`` and the ``hotcrm_bucket`` connection). Returns its URL."""
    url = s3_server.create_bucket(f"hotcrm-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("HOTCRM_BUCKET_URL", url)
    monkeypatch.setenv("AIRFLOW_CONN_HOTCRM_BUCKET", s3_server.airflow_connection_json())
    return url
