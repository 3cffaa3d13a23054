"""The webhook_inbox DAG with dag.test() on SQLite and PostgreSQL, and one delivery through the
real Airflow API server with the project's plugin mounted."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from hotcrm.airflow.runner import run_dag
from hotcrm.crm.db import get_engine, session_scope
from hotcrm.crm.models import Account, Activity, Payment
from hotcrm.webhooks.config import connection_json, env_var
from hotcrm.webhooks.inbox import parse_event_time, status_counts, store_delivery
from hotcrm.webhooks.models import WebhookInbox
from hotcrm.webhooks.samples import encode, payment_event, signed_headers
from tests.conftest import DAGS_FOLDER, PROJECT_DIR
from tests.support.postgres import free_port


def _seed(db_url):
    with session_scope(db_url) as session:
        account = Account(name="Acme")
        session.add(account)
        session.flush()
        for txn in ("txn_a", "txn_b"):
            session.add(Payment(account_id=account.id, transaction_id=txn, amount=Decimal("50.00")))


def _store(db_url, event, received_at=None):
    store_delivery(
        get_engine(db_url),
        source="payment",
        event_id=event["id"],
        event_type=event["type"],
        event_time=parse_event_time(event["created"]),
        body=encode(event).decode(),
        headers={},
        received_at=received_at,
    )


def test_dag_applies_the_inbox_and_returns_counts_then_requeues_dead_letters(airflow_db, hotcrm_env):
    db = hotcrm_env["database_url"]
    _seed(db)
    _store(db, payment_event("payment.succeeded", "txn_a", "50", event_id="ok"))
    _store(db, payment_event("payment.failed", "txn_b", event_id="fail"))
    _store(db, payment_event("customer.created", "txn_a", event_id="other"))
    # A dead letter from earlier: its Payment was missing; the data engineer has fixed that now.
    _store(db, payment_event("payment.refunded", "txn_a", event_id="late", created=int(time.time()) + 60))
    with session_scope(db) as session:
        row = session.scalars(select(WebhookInbox).where(WebhookInbox.event_id == "late")).one()
        row.status, row.attempts, row.last_error = "dead", 5, "not ready: no Payment with TransactionId 'txn_a' yet"
    # A poison event: dead-lettered in this run with max_attempts 1.
    _store(db, payment_event("payment.succeeded", "txn_b", "NaN?", event_id="poison"))

    result = run_dag("webhook_inbox", DAGS_FOLDER, {"requeue_dead": True, "max_attempts": 1, "workers": 2})
    assert result.succeeded, result
    summary = result.returns["summarize"]
    assert summary["requeued"] == 1
    assert (summary["processed"], summary["ignored"], summary["retried"], summary["dead_lettered"]) == (3, 1, 0, 1)
    assert [d["event_id"] for d in summary["dead_letters"]] == ["poison"]
    assert "data.amount" in summary["dead_letters"][0]["reason"]
    assert len(result.returns["process_inbox"]) == 2
    assert status_counts(db) == {"pending": 0, "processing": 0, "done": 3, "ignored": 1, "dead": 1}
    with session_scope(db) as session:
        statuses = dict(session.execute(select(Payment.transaction_id, Payment.status)).all())
        assert statuses == {"txn_a": "Refunded", "txn_b": "Failed"}
        assert session.query(Activity).count() == 3


def test_dag_run_with_nothing_due_is_a_quiet_success(airflow_db, hotcrm_env):
    result = run_dag("webhook_inbox", DAGS_FOLDER, {"workers": 1})
    assert result.succeeded
    assert result.returns["summarize"]["processed"] == 0


@pytest.fixture
def api_server(airflow_db, sqlite_url, tmp_path, monkeypatch):
    """``airflow api-server`` with the project's plugin, on a free port; the webhook source and
    the CRM database come from Airflow connections in its environment."""
    from tests.conftest import connection_json as db_connection_json

    port = free_port()
    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW_CONN_HOTCRM_DB": db_connection_json(sqlite_url),
            env_var("payment"): connection_json("stripe", ["whsec_api_server"]),
            "AIRFLOW__API__PORT": str(port),
            "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR)]),
        }
    )
    log = (tmp_path / "api-server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                if httpx.get(f"{base}/hotcrm/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "airflow api-server did not start:\n" + (tmp_path / "api-server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield base, sqlite_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_a_signed_delivery_through_the_airflow_api_server_lands_in_the_inbox(api_server):
    base, db = api_server
    event = payment_event("payment.succeeded", "txn_a", event_id="evt_via_airflow")
    body = encode(event)
    with httpx.Client(base_url=f"{base}/hotcrm", timeout=20) as client:
        assert client.get("/webhooks/health").json() == {"status": "ok"}
        accepted = client.post(
            "/webhooks/payment", content=body, headers=signed_headers("stripe", "whsec_api_server", body, event["id"])
        )
        assert accepted.status_code == 202, accepted.text
        forged = client.post(
            "/webhooks/payment", content=body, headers=signed_headers("stripe", "whsec_wrong", body, event["id"])
        )
        assert forged.status_code == 401
        assert client.post("/webhooks/unknown", content=body).status_code == 404
        # Unmatched paths under /hotcrm, even those Airflow's mount cannot match, answer {error, code}.
        for path in ("/nothing", "/webhooks/a%0Ab"):
            missing = client.get(path)
            assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND"), missing.text
    with session_scope(db) as session:
        (row,) = session.scalars(select(WebhookInbox)).all()
    assert (row.source, row.event_id, row.status) == ("payment", "evt_via_airflow", "pending")
    assert row.received_at.replace(tzinfo=UTC) > datetime.now(UTC) - timedelta(minutes=5)
