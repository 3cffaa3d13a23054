"""The settings layer: the CRM database URL is read in one place, the ``hotcrm_db`` connection
first, ``HOTCRM_DATABASE_URL`` only as its fallback; the hook and the core agree on every form."""

from __future__ import annotations

import json

import pytest

from hotcrm import settings
from hotcrm.settings import database_connection_json, database_env, database_url

PG_URL = "postgresql+psycopg://us%40er:p%40ss%2Fw@db.internal:5433/hotcrm"
CONNECTIONS = [
    # (AIRFLOW_CONN_HOTCRM_DB, the SQLAlchemy URL it means)
    ('{"conn_type": "sqlite", "host": "/srv/hotcrm/hotcrm.db"}', "sqlite:////srv/hotcrm/hotcrm.db"),
    ("sqlite://%2Fsrv%2Fhotcrm%2Fhotcrm.db", "sqlite:////srv/hotcrm/hotcrm.db"),
    (
        '{"conn_type": "postgres", "host": "db.internal", "port": 5433, "login": "us@er", '
        '"password": "p@ss/w", "schema": "hotcrm"}',
        PG_URL,
    ),
    ("postgres://us%40er:p%40ss%2Fw@db.internal:5433/hotcrm", PG_URL),
    ("postgresql://us%40er:p%40ss%2Fw@db.internal:5433/hotcrm", PG_URL),
    (
        "postgres://u:p@db.internal/hotcrm?sslmode=require&connect_timeout=5",
        "postgresql+psycopg://u:p@db.internal/hotcrm?sslmode=require",
    ),
    # the provider's own type (the UI form): the backend in the extra, prefixed as old forms stored it
    (
        '{"conn_type": "hotcrm_db", "host": "/srv/hotcrm/hotcrm.db", "extra": {"backend": "sqlite"}}',
        "sqlite:////srv/hotcrm/hotcrm.db",
    ),
    (
        '{"conn_type": "hotcrm_db", "host": "h", "schema": "d", '
        '"extra": {"extra__hotcrm_db__backend": "postgresql", "sslmode": "require"}}',
        "postgresql+psycopg://h/d?sslmode=require",
    ),
    (
        '{"conn_type": "postgres", "host": "h", "schema": "d", "extra": "{\\"sslmode\\": \\"verify-full\\"}"}',
        "postgresql+psycopg://h/d?sslmode=verify-full",
    ),
]


@pytest.mark.parametrize(("conn", "expected"), CONNECTIONS)
def test_the_connection_is_the_source_of_truth(conn, expected):
    env = {"AIRFLOW_CONN_HOTCRM_DB": conn, "HOTCRM_DATABASE_URL": "sqlite:////elsewhere.db"}
    assert database_url(env) == expected


@pytest.mark.parametrize(("conn", "expected"), CONNECTIONS)
def test_the_hook_reads_the_same_url_from_the_same_connection(conn, expected):
    # Where Airflow runs, the hook reads hotcrm_db (any secrets backend); both must agree.
    from airflow.models.connection import Connection

    from hotcrm.airflow.hooks import connection_to_url

    connection = Connection.from_json(conn, conn_id="hotcrm_db") if conn.startswith("{") else Connection(uri=conn)
    assert connection_to_url(connection) == expected


def test_the_fallback_then_the_embedded_default(tmp_path, monkeypatch):
    assert database_url({"HOTCRM_DATABASE_URL": "sqlite:////x.db"}) == "sqlite:////x.db"
    monkeypatch.setenv("HOTCRM_DATA_DIR", str(tmp_path))
    assert database_url({}) == f"sqlite:///{tmp_path / 'hotcrm.db'}"
    monkeypatch.delenv("AIRFLOW_CONN_HOTCRM_DB", raising=False)
    monkeypatch.setenv("HOTCRM_DATABASE_URL", "sqlite:////from-env.db")
    assert database_url() == settings.default_database_url() == "sqlite:////from-env.db"


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ('{"conn_type": "mysql", "host": "h"}', "connection 'hotcrm_db' has type 'mysql'; use 'postgres' or 'sqlite'"),
        ('{"conn_type": "sqlite"}', "a sqlite connection needs the file path as host"),
        (
            '{"conn_type": "hotcrm_db", "extra": {"backend": "mysql"}}',
            "connection 'hotcrm_db': backend 'mysql' is not supported; use 'postgresql' or 'sqlite'",
        ),
        ('{"conn_type": "postgres",\n "host": }', "AIRFLOW_CONN_HOTCRM_DB: invalid JSON at line 2"),
        ("db.internal:5432", "AIRFLOW_CONN_HOTCRM_DB: not a connection"),
    ],
)
def test_a_bad_connection_names_the_setting_and_the_fix(conn, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        database_url({"AIRFLOW_CONN_HOTCRM_DB": conn})
    assert "secret" not in str(caught.value)


def test_a_url_round_trips_through_its_connection():
    for url in (PG_URL, "sqlite:////srv/hotcrm/hotcrm.db", "postgresql+psycopg://u:p@h:5432/d?sslmode=require"):
        assert database_url(database_env(url)) == url
    assert json.loads(database_connection_json("sqlite:////a/b.db")) == {"conn_type": "sqlite", "host": "/a/b.db"}


def test_numbers_from_the_environment_name_the_setting():
    from hotcrm.settings import env_number

    assert env_number("N", 5, env={}) == 5 and env_number("N", 5, env={"N": "7"}) == 7
    assert env_number("F", 1.0, kind=float, env={"F": "0.25"}) == 0.25
    with pytest.raises(ValueError, match=r"N: 'seven' is not a whole number"):
        env_number("N", 5, env={"N": "seven"})
    with pytest.raises(ValueError, match=r"F: 'x' is not a number"):
        env_number("F", 1.0, kind=float, env={"F": "x"})
    with pytest.raises(ValueError, match=r"N: must be at least 1, got 0"):
        env_number("N", 5, minimum=1, env={"N": "0"})


def test_salesforce_bulk_settings_are_typed_and_checked():
    from hotcrm.salesforce.settings import BulkSettings

    assert BulkSettings.from_env({}) == BulkSettings()
    env = {"HOTCRM_SALESFORCE_BULK_THRESHOLD": "10", "HOTCRM_SALESFORCE_BULK_POLL_SECONDS": "0.1",
           "HOTCRM_SALESFORCE_BULK_WAIT_BEFORE_DEFER_SECONDS": "0"}  # fmt: skip
    bulk = BulkSettings.from_env(env)
    assert (bulk.threshold, bulk.poll_seconds, bulk.wait_before_defer_seconds) == (10, 0.1, 0.0)
    with pytest.raises(ValueError, match="HOTCRM_SALESFORCE_BULK_MAX_BYTES: '100MB' is not a whole number"):
        BulkSettings.from_env({"HOTCRM_SALESFORCE_BULK_MAX_BYTES": "100MB"})


def test_webhook_sources_read_their_connection_with_the_same_parser():
    from hotcrm.webhooks.config import SourceConfigError, connection_json, parse_connection_value

    config = parse_connection_value("shop", connection_json("hmac-sha256", ["s3cr3t-value"], tolerance_seconds=60))
    assert (config.scheme, config.secrets, config.tolerance_seconds) == ("hmac-sha256", ("s3cr3t-value",), 60)
    with pytest.raises(SourceConfigError, match=r"AIRFLOW_CONN_HOTCRM_WEBHOOK_SHOP: invalid JSON at line 1"):
        parse_connection_value("shop", '{"password": ')
    with pytest.raises(SourceConfigError, match=r"AIRFLOW_CONN_HOTCRM_WEBHOOK_SHOP: extra must be a JSON object"):
        parse_connection_value("shop", '{"password": "x", "extra": "[1"}')
