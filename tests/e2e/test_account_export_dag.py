"""The account_export DAG end to end with dag.test(): SQLite and PostgreSQL, file:// and s3://."""

import csv
import io
import json
from decimal import Decimal

from sqlalchemy import select

from hotcrm.airflow.runner import run_dag
from hotcrm.crm import services
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account, OutboxEvent
from tests.conftest import DAGS_FOLDER

RETAIL_RICH = [["Industry", "=", "Retail"], ["AnnualRevenue", ">=", 1000000]]


def _seed(database_url):
    rows = [
        {"Name": "Big Retail", "Industry": "Retail", "AnnualRevenue": "2500000.50", "Phone": "+15551234"},
        {"Name": 'Shop "Ünïcode" =SUM(A1)', "Industry": "Retail", "AnnualRevenue": "1000000"},
        {"Name": "Small Retail", "Industry": "Retail", "AnnualRevenue": "999999.99"},
        {"Name": "Big Tech", "Industry": "Technology", "AnnualRevenue": "9000000"},
        {"Name": "No revenue", "Industry": "Retail"},
    ]
    with session_scope(database_url) as session:
        for row in rows:
            services.create(session, Account, row)


def _expected(database_url, filters, fields):
    with session_scope(database_url) as session:
        return [r.to_api(["Id", *fields]) for r in services.find(session, Account, filters)]


def test_on_demand_csv_export_with_filters(airflow_db, hotcrm_env):
    db = hotcrm_env["database_url"]
    _seed(db)
    fields = ["Name", "Industry", "AnnualRevenue", "Phone"]
    result = run_dag("account_export", DAGS_FOLDER, {"fields": fields, "filters": RETAIL_RICH, "format": "csv"})
    assert result.succeeded, result
    manifest = result.returns["export"]
    assert manifest["record_count"] == 2
    assert manifest["quality"]["success"] is True
    assert manifest["filters"] == RETAIL_RICH
    folder = hotcrm_env["bucket_dir"] / "exports" / "accounts"
    published = folder / manifest["file"]
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        manifest["file"],
        manifest["file"] + ".manifest.json",
    ]
    assert list((folder / "_tmp").iterdir()) == []
    assert json.loads((folder / (manifest["file"] + ".manifest.json")).read_text())["sha256"] == manifest["sha256"]

    rows = list(csv.DictReader(io.StringIO(published.read_text(encoding="utf-8"))))
    expected = _expected(db, RETAIL_RICH, fields)
    assert [r["Id"] for r in rows] == [e["Id"] for e in expected]
    assert [r["Name"] for r in rows] == [
        ("'" + e["Name"]) if e["Name"].startswith("=") else e["Name"] for e in expected
    ]
    assert [Decimal(r["AnnualRevenue"]) for r in rows] == [e["AnnualRevenue"] for e in expected]
    assert {r["Phone"] for r in rows} == {"'+15551234", ""}

    with session_scope(db) as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "export.completed")).all()
        assert [e.payload["data"]["sha256"] for e in events] == [manifest["sha256"]]


def test_bad_filter_fails_the_run_and_publishes_nothing(airflow_db, hotcrm_env):
    _seed(hotcrm_env["database_url"])
    result = run_dag("account_export", DAGS_FOLDER, {"filters": [["Revenue", ">", 1]]})
    assert result.state == "failed"
    assert "export" not in result.returns
    folder = hotcrm_env["bucket_dir"] / "exports" / "accounts"
    assert not folder.exists() or [p for p in folder.rglob("*") if p.is_file()] == []


def _asset_events(run_id):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            e.extra
            for e in session.scalars(
                select(AssetEvent)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.name == "hotcrm_account_export", AssetEvent.source_run_id == run_id)
            )
        ]


def test_scheduled_json_export_to_s3(airflow_db, hotcrm_env, s3_bucket, s3_server):
    db = hotcrm_env["database_url"]
    _seed(db)
    result = run_dag("account_export", DAGS_FOLDER, {})
    assert result.succeeded, result
    manifest = result.returns["export"]
    assert manifest["url"].startswith(s3_bucket + "/exports/accounts/accounts_")
    client = s3_server.client()
    bucket = s3_bucket[len("s3://") :]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"exports/accounts/{manifest['file']}", f"exports/accounts/{manifest['file']}.manifest.json"]
    body = client.get_object(Bucket=bucket, Key=f"exports/accounts/{manifest['file']}")["Body"].read()
    document = json.loads(body, parse_float=Decimal)
    assert document["recordCount"] == len(document["data"]) == 5 == manifest["record_count"]
    assert [r["Id"] for r in document["data"]] == [e["Id"] for e in _expected(db, None, [])]
    assert [e["sha256"] for e in _asset_events(result.run_id)] == [manifest["sha256"]]


def test_a_failed_check_fails_the_run_and_keeps_the_file_unpublished(airflow_db, hotcrm_env, monkeypatch):
    from hotcrm.exports import accounts

    _seed(hotcrm_env["database_url"])
    real_query = accounts.account_query
    # dag.test() runs the tasks in this process: a silent row limit slips into the query.
    monkeypatch.setattr(accounts, "account_query", lambda spec: real_query(spec).limit(3))
    result = run_dag("account_export", DAGS_FOLDER, {"format": "ndjson"})
    assert result.state == "failed"
    assert "export" not in result.returns
    folder = hotcrm_env["bucket_dir"] / "exports" / "accounts"
    assert [p.name for p in folder.iterdir() if p.is_file()] == []
    (kept,) = (folder / "_tmp").iterdir()
    assert kept.name.startswith("accounts_") and ".ndjson" in kept.name
    assert len(kept.read_text().splitlines()) == 3  # the 3 rows written, kept for inspection
    with session_scope(hotcrm_env["database_url"]) as session:
        assert services.count(session, OutboxEvent) == 0
