"""Assets: every one the DAGs schedule on or update is defined once, in
``hotcrm.airflow.assets``, with the ``x-hotcrm://`` scheme; lead files are watched."""

import re
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_DIR / "dags"))


def _leaves(condition):
    """The assets of a schedule's asset condition (``AssetAll``/``AssetAny`` nest them)."""
    from airflow.sdk import Asset

    if condition is None:
        return []
    if isinstance(condition, Asset):
        return [condition]
    return [a for inner in getattr(condition, "objects", ()) for a in _leaves(inner)]


def _used_assets(dag):
    """The assets a DAG schedules on and its tasks' outlets and inlets."""
    from airflow.sdk import Asset

    used = _leaves(getattr(dag.timetable, "asset_condition", None))
    for task in dag.tasks:
        used += [a for a in [*task.outlets, *task.inlets] if isinstance(a, Asset)]
    return used


def test_every_asset_the_dags_use_comes_from_the_assets_module(dagbag):
    from hotcrm.airflow.assets import ALL_ASSETS

    used = [(dag_id, a) for dag_id, dag in dagbag.dags.items() for a in _used_assets(dag)]
    assert used, "the DAGs use assets (lead_import, account_export)"
    for dag_id, asset in used:
        assert asset in ALL_ASSETS, f"{dag_id}: {asset.name} is not defined in hotcrm.airflow.assets"
        assert asset.uri.startswith("x-hotcrm://"), f"{dag_id}: {asset.uri}: use the x-hotcrm:// scheme"
    names = [a.name for a in ALL_ASSETS]
    uris = [a.uri for a in ALL_ASSETS]
    assert len(set(names)) == len(names) and len(set(uris)) == len(uris)


def test_no_other_asset_scheme_or_definition_in_the_code():
    for folder in ("dags", "include", "plugins"):
        for path in (PROJECT_DIR / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"(?<![-\w])hotcrm://", text), f"{path}: one scheme, x-hotcrm://"
            if path.name != "assets.py":
                assert "Asset(" not in text, f"{path}: define assets in hotcrm/airflow/assets.py"


def test_lead_import_is_scheduled_on_the_watched_lead_files(dagbag):
    from hotcrm.airflow.assets import LEAD_FILES
    from hotcrm.airflow.watchers import LeadFilesTrigger

    dag = dagbag.get_dag("lead_import")
    assert _leaves(dag.timetable.asset_condition) == [LEAD_FILES]
    (watcher,) = LEAD_FILES.watchers
    assert isinstance(watcher.trigger, LeadFilesTrigger)
    # No environment read at parse time: the bucket is resolved in the triggerer.
    assert watcher.trigger.bucket_url is None
    assert "file_name" in dag.params
