"""The maintenance DAG end to end with dag.test(), on SQLite and PostgreSQL: finished inbox rows
past their age are removed, pending ones stay, and the task returns what it removed."""

from sqlalchemy import func, select

from hotcrm.airflow.runner import run_dag
from hotcrm.crm.db import session_scope
from hotcrm.webhooks.models import WebhookInbox
from tests.conftest import DAGS_FOLDER
from tests.integration.test_retention import _inbox


def test_the_daily_run_removes_what_is_past_its_age(airflow_db, hotcrm_env):
    db = hotcrm_env["database_url"]
    _inbox(db, "done", 400, 3)
    _inbox(db, "pending", 400, 2)
    _inbox(db, "done", 1, 1)

    dry = run_dag("maintenance", DAGS_FOLDER, {"dry_run": True})
    assert dry.succeeded and dry.returns["purge"]["removed"]["webhook_inbox.done"] == 3
    result = run_dag("maintenance", DAGS_FOLDER)
    assert result.succeeded, result.state
    summary = result.returns["purge"]
    assert summary["removed"]["webhook_inbox.done"] == 3 and summary["finished"] and not summary["dry_run"]
    with session_scope(db) as s:
        left = dict(s.execute(select(WebhookInbox.status, func.count()).group_by(WebhookInbox.status)).all())
    assert left == {"pending": 2, "done": 1}
