"""The demo step: a live receiver answers valid, duplicate, forged and stale deliveries, and
one webhook_inbox run applies the valid ones."""

from pathlib import Path

from hotcrm.airflow.demo import DemoContext
from hotcrm.crm import seed
from hotcrm.webhooks import demo
from hotcrm.webhooks.config import env_var
from tests.conftest import DAGS_FOLDER


def test_demo_step_posts_signed_deliveries_and_processes_them(airflow_db, sqlite_url, tmp_path, monkeypatch):
    from tests.conftest import connection_json

    monkeypatch.setenv("AIRFLOW_CONN_HOTCRM_DB", connection_json(sqlite_url))
    monkeypatch.delenv(env_var("payment"), raising=False)
    seed.load_seed(sqlite_url)
    ctx = DemoContext(sqlite_url, (tmp_path / "bucket").as_uri(), Path(tmp_path), DAGS_FOLDER)
    try:
        lines = demo.run(ctx)
    finally:
        monkeypatch.delenv(env_var("payment"), raising=False)  # the demo set a throwaway secret
    answers = [line.split()[0] + " " + line.split("->")[1].split()[0] for line in lines if "->" in line]
    assert answers == ["valid 202"] * 5 + ["duplicate 200", "forged 401", "stale 401"]
    assert "processed 4, ignored 1, retried 0, dead_lettered 0" in lines[-2]
    assert lines[-1] == "payments now: txn_demo_0001 Paid, txn_demo_0002 Failed, txn_demo_0003 Refunded"
    assert not any("whsec_" in line for line in lines)
