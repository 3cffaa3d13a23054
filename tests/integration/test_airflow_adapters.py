"""The Airflow adapters: hotcrm_db connection -> URL, the bucket root on file:// and s3://,
and the plugin's HTTP app."""

import json
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from hotcrm.airflow.hooks import HotCrmDatabaseHook, connection_to_url
from hotcrm.airflow.storage import bucket_root
from hotcrm.api.standalone import create_standalone_app
from hotcrm.crm import services
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account


def _conn(**kwargs):
    base = {
        "conn_id": "hotcrm_db",
        "conn_type": None,
        "host": None,
        "schema": None,
        "login": None,
        "password": None,
        "port": None,
        "extra_dejson": {},
    }
    return SimpleNamespace(**{**base, **kwargs})


def test_postgres_connection_becomes_a_psycopg_url_with_its_password_escaped():
    url = connection_to_url(
        _conn(
            conn_type="postgres",
            host="db",
            port=5432,
            login="crm",
            password="p@ss/w:rd",
            schema="hotcrm",
            extra_dejson={"sslmode": "require", "other": "x"},
        )
    )
    assert url == "postgresql+psycopg://crm:p%40ss%2Fw%3Ard@db:5432/hotcrm?sslmode=require"


def test_sqlite_connection_uses_the_host_as_path():
    assert connection_to_url(_conn(conn_type="sqlite", host="/srv/crm.db")) == "sqlite:////srv/crm.db"


def test_unsupported_connection_type_says_what_to_use():
    with pytest.raises(ValueError, match="use 'postgres' or 'sqlite'"):
        connection_to_url(_conn(conn_type="mysql"))


def test_hook_reads_the_environment_connection_and_reaches_the_database(db_url, monkeypatch):
    from tests.conftest import connection_json

    monkeypatch.setenv("AIRFLOW_CONN_HOTCRM_DB", connection_json(db_url))
    url = HotCrmDatabaseHook().get_database_url()
    with session_scope(url) as session:
        services.create(session, Account, {"Name": "Through the hook"})
    with session_scope(db_url) as session:
        assert services.count(session, Account, [["Name", "=", "Through the hook"]]) == 1


def test_hook_falls_back_to_the_embedded_default(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_HOTCRM_DB", raising=False)
    monkeypatch.setenv("HOTCRM_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert HotCrmDatabaseHook().get_database_url() == f"sqlite:///{tmp_path}/x.db"


def test_file_bucket_root_is_created(tmp_path):
    root = bucket_root((tmp_path / "bucket").as_uri())
    (root / "exports" / "a.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "exports" / "a.txt").write_text("hello")
    assert (tmp_path / "bucket" / "exports" / "a.txt").read_text() == "hello"


def test_s3_bucket_root_uses_the_hotcrm_bucket_connection(s3_bucket, s3_server):
    root = bucket_root()
    target = root / "imports" / "leads" / "incoming" / "leads.csv"
    with target.open("wb") as handle:
        handle.write(b"Email\na@example.com\n")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket[5:])["Contents"]]
    assert keys == ["imports/leads/incoming/leads.csv"]
    assert json.loads(s3_server.airflow_connection_json())["extra"]["endpoint_url"].startswith("http://127.0.0.1:")


def test_standalone_app_serves_under_the_hotcrm_prefix_and_errors_have_one_shape(sqlite_url):
    client = TestClient(create_standalone_app(sqlite_url))
    assert client.get("/hotcrm/health").json() == {"status": "ok"}
    missing = client.get("/hotcrm/no-such-route")
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "code"}
