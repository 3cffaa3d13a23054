"""The salesforce_sync DAG run whole with dag.test(): first night creates, second sends nothing."""

from __future__ import annotations

from hotcrm.airflow.runner import run_dag
from hotcrm.crm import seed
from hotcrm.salesforce.sync import sync_history
from tests.conftest import DAGS_FOLDER
from tests.fakes.salesforce import server as emulator_server

# the emulator's fixtures (assigned, not imported: an import would trip F811 on each test)
salesforce_connection = emulator_server.salesforce_connection
salesforce_emulator = emulator_server.salesforce_emulator


def test_nightly_sync_then_resync_then_dry_run(airflow_db, hotcrm_env, salesforce_connection):
    sf = salesforce_connection
    db_url = hotcrm_env["database_url"]
    seed.load_seed(db_url)

    first = run_dag("salesforce_sync", DAGS_FOLDER)
    assert first.succeeded, first
    summary = first.returns["sync"]
    assert summary["outcome"] == "success"
    assert summary["totals"]["created"] == 24 and summary["run_id"] == first.run_id
    assert len(sf.find("Account")) == 12 and len(sf.find("Contact")) == 12

    calls = sf.api_calls
    second = run_dag("salesforce_sync", DAGS_FOLDER)
    assert second.succeeded
    assert second.returns["sync"]["totals"]["unchanged"] == 24
    assert second.returns["sync"]["totals"]["api_calls"] == 0 and sf.api_calls == calls

    dry = run_dag("salesforce_sync", DAGS_FOLDER, conf={"dry_run": True, "full": True, "objects": ["Account"]})
    assert dry.succeeded
    assert dry.returns["sync"]["outcome"] == "dry_run"
    assert dry.returns["sync"]["objects"]["Account"]["updated"] == 12
    assert sf.api_calls == calls
    assert {h["run_id"] for h in sync_history(db_url)} == {first.run_id, second.run_id, dry.run_id}


def test_the_demo_step(airflow_db, hotcrm_env, monkeypatch):
    from pathlib import Path

    from hotcrm.airflow.demo import DemoContext
    from hotcrm.salesforce import demo

    monkeypatch.delenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", raising=False)
    seed.load_seed(hotcrm_env["database_url"])
    ctx = DemoContext(hotcrm_env["database_url"], hotcrm_env["bucket_url"], Path("."), DAGS_FOLDER)
    lines = demo.run(ctx)
    text = "\n".join(lines)
    assert "sync: success, created 24" in text
    assert "re-sync: success, created 0, updated 0, unchanged 24, failed 0, 0 API calls" in text
    assert "12 Accounts and 12 Contacts" in text
    assert sum(" success " in line for line in lines) == 4  # the history: two runs, two objects each


def test_a_partial_sync_fails_the_run_with_the_reason_and_the_next_run_resumes(
    airflow_db, hotcrm_env, salesforce_connection, capfd
):
    sf = salesforce_connection
    seed.load_seed(hotcrm_env["database_url"])
    sf.daily_limit, sf.api_usage = 20, 19  # other integrations used the day's budget

    partial = run_dag("salesforce_sync", DAGS_FOLDER)
    assert partial.state == "failed"
    assert partial.returns["sync"]["outcome"] == "partial"
    assert "outcome" not in partial.returns
    assert "Salesforce sync ended partial: Account: API budget reached" in capfd.readouterr().out
    assert sf.find("Account") == []

    sf.api_usage = 0  # the next day
    resumed = run_dag("salesforce_sync", DAGS_FOLDER)
    assert resumed.succeeded, resumed
    assert resumed.returns["outcome"] == "success"
    assert resumed.returns["sync"]["totals"]["created"] == 24


def test_a_long_bulk_job_defers_to_the_triggerer_and_resumes(
    airflow_db, hotcrm_env, salesforce_connection, monkeypatch
):
    sf = salesforce_connection
    seed.load_seed(hotcrm_env["database_url"])
    sf.faults.bulk_rows_per_poll = 4  # each job takes three polls: longer than the worker's wait
    monkeypatch.setenv("HOTCRM_SALESFORCE_BULK_WAIT_BEFORE_DEFER_SECONDS", "0")
    monkeypatch.setenv("HOTCRM_SALESFORCE_BULK_POLL_SECONDS", "0.1")

    run = run_dag("salesforce_sync", DAGS_FOLDER, conf={"transport": "bulk"})
    assert run.succeeded, run
    summary = run.returns["sync"]
    assert summary["outcome"] == "success", summary["message"]
    assert summary["totals"]["created"] == 24 and summary["totals"]["pending"] == 0
    assert "resumed after its bulk jobs ended" in summary["message"]
    assert len(sf.find("Account")) == 12 and len(sf.find("Contact")) == 12
