"""The lead import's ``make demo`` step: drops both samples and reports on each."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotcrm.airflow.demo import DemoContext

# Not imported from tests.conftest: importing it again would run its set-up a second time
# (a new Airflow home in the environment, out of step with the Airflow already configured).
DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_step_imports_both_samples_and_shows_their_reports(airflow_db, hotcrm_env, tmp_path):
    from hotcrm.leads import demo

    ctx = DemoContext(hotcrm_env["database_url"], hotcrm_env["bucket_url"], tmp_path / "data", DAGS_FOLDER)
    lines = demo.run(ctx)
    text = "\n".join(lines)
    assert "tradeshow_clean.csv: imported (utf-8, ',') read 8, inserted 8" in text
    assert "crm_export_messy.csv: imported (cp1252, ';')" in text
    assert "line 3 (rejected): Email: 'not-an-email' is not a valid email address" in text
    reports = [line.split("report: ", 1)[1] for line in lines if "report: " in line]
    from airflow.sdk import ObjectStoragePath

    assert len(reports) == 2 and all(ObjectStoragePath(r).exists() for r in reports)
