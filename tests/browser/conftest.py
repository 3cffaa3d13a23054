"""One ``airflow api-server`` with the plugin per test session (worker), on a seeded SQLite CRM
database; it starts in some 30 s, so the access and browser tests share it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hotcrm.settings import database_env
from tests.support.airflow_server import AirflowApiServer
from tests.support.ui_data import seed_ui_data


@pytest.fixture(scope="session")
def airflow_ui(airflow_db, _sqlite_template, tmp_path_factory):
    """(server, seeded ids, CRM database URL)."""
    import shutil

    work = tmp_path_factory.mktemp("airflow-ui")
    db_file = work / "hotcrm.db"
    shutil.copy(_sqlite_template, db_file)
    url = f"sqlite:///{db_file}"
    ids = seed_ui_data(url, work)
    # The DAGs in the metadata database, as the DAG processor puts them (the dry-run trigger needs them).
    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], check=True, capture_output=True)
    server = AirflowApiServer(database_env(url), work)
    server.start()
    try:
        yield server, ids, url
    finally:
        server.stop()
