"""The example DAG a user would write (docs/examples/retail_accounts_report.py): export with
filters -> HotCrmDataQualityOperator on the published file -> notify, through dag.test(), on
SQLite and PostgreSQL."""

import csv
import io
import json

import pytest
from sqlalchemy import select

from hotcrm.airflow.runner import run_dag
from hotcrm.crm import services
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account
from hotcrm.email.models import EmailOutbox
from tests.conftest import DAGS_FOLDER, PROJECT_DIR

EXAMPLES = PROJECT_DIR / "docs" / "examples"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


@pytest.fixture(autouse=True)
def _examples_are_a_dag_bundle(monkeypatch):
    # dag.test() runs a DAG that a configured bundle holds (it serializes the bundle first):
    # the examples become one beside the project's dags folder, as a user's folder would be.
    bundles = [
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(DAGS_FOLDER)}},
        {"name": "hotcrm-examples", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(EXAMPLES)}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))


def _seed(database_url):
    rows = [
        {"Name": "Big Retail", "Industry": "Retail", "AnnualRevenue": "2500000", "BillingCity": "Lyon"},
        {"Name": "Mid Retail", "Industry": "Retail", "AnnualRevenue": "1200000"},
        {"Name": "Small Retail", "Industry": "Retail", "AnnualRevenue": "10"},
        {"Name": "Big Tech", "Industry": "Technology", "AnnualRevenue": "9000000"},
    ]
    with session_scope(database_url) as session:
        for row in rows:
            services.create(session, Account, row)


def _notices(database_url):
    with session_scope(database_url) as session:
        return [
            (r.to_addr, r.subject, r.text_body)
            for r in session.scalars(select(EmailOutbox).where(EmailOutbox.kind == "retail_report"))
        ]


def test_export_check_notify(airflow_db, hotcrm_env):
    db = hotcrm_env["database_url"]
    _seed(db)
    result = run_dag("retail_accounts_report", EXAMPLES, {"notify": "ops@example.com"})
    assert result.succeeded, result
    manifest = result.returns["export_retail"]
    assert manifest["record_count"] == 2 and manifest["format"] == "csv"
    quality = result.returns["check_file"]
    assert quality["success"] is True and quality["rows"] == 2 and quality["suite"] == "account_file"
    assert quality["source"] == manifest["url"]
    assert [o["type"] for o in quality["outcomes"]][0] == "expect_table_row_count_to_be_between"
    assert quality["outcomes"][0]["kwargs"]["min_value"] == 1  # $min_rows from suite_params
    published = hotcrm_env["bucket_dir"] / "exports" / "accounts" / manifest["file"]
    names = sorted(r["Name"] for r in csv.DictReader(io.StringIO(published.read_text(encoding="utf-8"))))
    assert names == ["Big Retail", "Mid Retail"]
    [(to, subject, text)] = _notices(db)
    assert to == "ops@example.com" and subject == "Retail Accounts: 2 exported"
    assert manifest["url"] in text and "passed" in text
    assert result.returns["notify"] == {"notified": "ops@example.com", "file": manifest["url"], "records": 2}


def test_a_failed_quality_check_stops_the_notice(airflow_db, hotcrm_env):
    db = hotcrm_env["database_url"]
    _seed(db)
    # No Account that big: the export publishes an empty file (a valid export), the suite's
    # min_rows refuses it, the run fails and nobody is told about an empty report.
    result = run_dag("retail_accounts_report", EXAMPLES, {"min_revenue": 99_000_000})
    assert result.state == "failed"
    assert result.returns["export_retail"]["record_count"] == 0
    quality = result.returns["check_file"]  # pushed before the task failed: the UI shows why
    assert quality["success"] is False and quality["rows"] == 0 and quality["policy"] == "fail"
    assert "expect_table_row_count_to_be_between" in quality["summary"]
    assert "notify" not in result.returns
    assert _notices(db) == []
