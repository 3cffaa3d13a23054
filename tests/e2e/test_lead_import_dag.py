"""The lead_import DAG end to end with dag.test(): file:// and s3:// buckets, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Lead, OutboxEvent
from hotcrm.leads.models import ImportFile
from hotcrm.settings import SAMPLE_DATA_DIR

# Not imported from tests.conftest: importing it again would run its set-up a second time
# (a new Airflow home in the environment, out of step with the Airflow already configured).
DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

SAMPLES = SAMPLE_DATA_DIR / "leads"
CLEAN = "tradeshow_clean.csv"
MESSY = "crm_export_messy.csv"


def _run(conf=None):
    from hotcrm.airflow.runner import run_dag

    return run_dag("lead_import", DAGS_FOLDER, conf or {})


def _lead_count(url: str) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(Lead))


def test_drop_two_files_imports_both_as_mapped_tasks(airflow_db, hotcrm_env):
    incoming = hotcrm_env["bucket_dir"] / "imports" / "leads" / "incoming"
    incoming.mkdir(parents=True)
    shutil.copy(SAMPLES / CLEAN, incoming / CLEAN)
    shutil.copy(SAMPLES / MESSY, incoming / MESSY)

    result = _run()

    assert result.succeeded, result
    outcomes = {o["file_name"]: o for o in result.returns["import_file"]}
    assert set(outcomes) == {CLEAN, MESSY}
    clean, messy = outcomes[CLEAN], outcomes[MESSY]
    assert (clean["status"], clean["rows_read"], clean["inserted"], clean["rejected"]) == ("imported", 8, 8, 0)
    assert messy["status"] == "imported" and messy["encoding"] == "cp1252" and messy["delimiter"] == ";"
    assert messy["rows_read"] == messy["inserted"] + messy["updated"] + messy["duplicates"] + messy["rejected"]
    assert messy["duplicates"] == 1 and messy["rejected"] >= 4
    assert _lead_count(hotcrm_env["database_url"]) == clean["inserted"] + messy["inserted"]
    processed = hotcrm_env["bucket_dir"] / "imports" / "leads" / "processed"
    for name in (CLEAN, MESSY):
        assert (processed / name).exists() and not (incoming / name).exists()
        assert (processed / f"{name}.report.html").read_text().count("Quality checks") == 1
        report = json.loads((processed / f"{name}.report.json").read_text())
        assert report["file_id"] == outcomes[name]["file_id"]
    assert "line 6 has 4 fields" in (processed / f"{MESSY}.rejects.csv").read_text(encoding="utf-8-sig")
    assert result.returns["summarize"]["files"] == 2
    with session_scope(hotcrm_env["database_url"]) as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 2
        ledger = session.get(ImportFile, clean["file_id"])
        assert (ledger.status, ledger.inserted, ledger.report_path) == ("imported", 8, clean["report_path"])

    # The same content again, under another name: not imported, and the run says why.
    shutil.copy(SAMPLES / CLEAN, incoming / "copy_of_clean.csv")
    again = _run({"file_name": "copy_of_clean.csv"})
    assert again.succeeded
    [dup] = again.returns["import_file"]
    assert dup["status"] == "duplicate" and "already imported from 'tradeshow_clean.csv'" in dup["error"]
    assert (hotcrm_env["bucket_dir"] / "imports" / "leads" / "failed" / "copy_of_clean.csv.report.html").exists()
    assert _lead_count(hotcrm_env["database_url"]) == clean["inserted"] + messy["inserted"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # no database work to compare
def test_nothing_to_do_is_a_quiet_success(airflow_db, hotcrm_env):
    result = _run()
    assert result.succeeded
    assert result.returns["find_files"] == []


def test_s3_bucket(airflow_db, hotcrm_env, s3_bucket, s3_server):
    client = s3_server.client()
    bucket = s3_bucket.removeprefix("s3://")
    client.put_object(Bucket=bucket, Key=f"imports/leads/incoming/{MESSY}", Body=(SAMPLES / MESSY).read_bytes())

    result = _run({"file_name": MESSY})

    assert result.succeeded, result
    [outcome] = result.returns["import_file"]
    assert outcome["status"] == "imported" and outcome["inserted"] == 4
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert f"imports/leads/processed/{MESSY}" in keys
    assert f"imports/leads/processed/{MESSY}.rejects.csv" in keys
    assert f"imports/leads/incoming/{MESSY}" not in keys
    body = client.get_object(Bucket=bucket, Key=f"imports/leads/processed/{MESSY}.rejects.csv")["Body"].read()
    assert "'+44 7700 900123" in body.decode("utf-8-sig")


def test_a_failed_file_fails_its_task_and_the_run_and_is_still_summarized(airflow_db, hotcrm_env):
    incoming = hotcrm_env["bucket_dir"] / "imports" / "leads" / "incoming"
    incoming.mkdir(parents=True)
    shutil.copy(SAMPLES / CLEAN, incoming / CLEAN)
    # Columns shifted by the export: first names hold emails (the suite's ShiftedColumn check).
    shifted = "".join(f"x{i}@example.com,Last{i},Co{i},p{i}@example.com\n" for i in range(60))
    (incoming / "shifted.csv").write_text("First Name,Last Name,Company,Email\n" + shifted)

    result = _run()

    assert result.state == "failed", result
    outcomes = {o["file_name"]: o for o in result.returns["import_file"]}
    assert outcomes[CLEAN]["status"] == "imported"
    failed = outcomes["shifted.csv"]
    assert (failed["status"], failed["rows_read"], failed["not_loaded"], failed["inserted"]) == ("failed", 60, 60, 0)
    assert result.returns["summarize"]["by_status"] == {"imported": 1, "failed": 1}
    assert result.returns["summarize"]["not_loaded"] == 60
    assert (hotcrm_env["bucket_dir"] / "imports" / "leads" / "failed" / "shifted.csv.report.html").exists()
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(run_id=result.run_id, task_id="import_file").all()
        states = {ti.map_index: ti.state for ti in tis}
        labels = {str(ti.state): ti.rendered_map_index for ti in tis}
    assert sorted(str(s) for s in states.values()) == ["failed", "success"]
    assert labels["success"] == CLEAN  # the mapped task is labelled with its file (map_index_template)
