"""A file dropped in the bucket is imported through a real triggerer: Airflow's api-server,
scheduler, dag-processor and triggerer run ``lead_import`` on loopback; the
``hotcrm_lead_files`` watcher sees the file, the asset event starts the run, the file ends in
``processed/`` and its Leads in the CRM. On moto's S3 (the triggerer reads the
``hotcrm_bucket`` connection from a thread). Asserts the pickup, not its speed:
``benchmarks/file_pickup.py`` measures that."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid

import pytest

from tests.support.airflow_stack import LEAD_CSV, AirflowStack

pytestmark = pytest.mark.slow


def test_a_dropped_file_is_imported_once_through_the_watcher(s3_server, _sqlite_template, tmp_path):
    crm = tmp_path / "hotcrm.db"
    shutil.copy(_sqlite_template, crm)
    env = {
        "AIRFLOW_CONN_HOTCRM_DB": json.dumps({"conn_type": "sqlite", "host": str(crm)}),
        "HOTCRM_DATABASE_URL": f"sqlite:///{crm}",
        "HOTCRM_DATA_DIR": str(tmp_path / "data"),
        "HOTCRM_BUCKET_URL": s3_server.create_bucket(f"hotcrm-{uuid.uuid4().hex[:10]}"),
        "AIRFLOW_CONN_HOTCRM_BUCKET": s3_server.airflow_connection_json(),
    }
    with AirflowStack(tmp_path / "airflow", env, s3_server.client()) as stack:
        dropped = stack.drop("leads.csv", LEAD_CSV.format(n="e2e"))
        times = stack.pickup("leads.csv", dropped, timeout=150)
        runs = stack.finished_runs(1)
        time.sleep(6)  # more listings after the import: they must not fire again
        events = stack.query(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = 'hotcrm_lead_files'"
        )
        runs = stack.query("SELECT run_type, state FROM dag_run WHERE dag_id = 'lead_import'")
        # The watcher kept what it fired for in the asset's state store (and forgot the file
        # once it left incoming/).
        state = stack.query(
            "SELECT s.value FROM asset_state_store s JOIN asset a ON a.id = s.asset_id "
            "WHERE a.name = 'hotcrm_lead_files' AND s.key = 'fired'"
        )
    assert times["task_started"] > 0, times
    assert len(events) == 1, events
    payload = json.loads(events[0][0])["payload"]
    assert payload["files"] == [{"name": "leads.csv", "size": len(LEAD_CSV.format(n="e2e").encode())}]
    assert runs == [("asset_triggered", "success")]
    assert state and json.loads(state[0][0]) == {}, state
    with sqlite3.connect(crm) as db:
        emails = sorted(r[0] for r in db.execute("SELECT email FROM leads"))
    assert emails == ["ada.e2e@example.com", "grace.e2e@example.com"]
