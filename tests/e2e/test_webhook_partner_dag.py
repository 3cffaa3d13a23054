"""The original partner spec end to end, on SQLite and PostgreSQL: a partner posts its payload
to ``/hotcrm/webhooks/payment/notification`` (hex HMAC-SHA256 in ``X-Payment-Signature``, no
event id, camelCase, ``event`` instead of ``type``), the source has nothing but its secret,
and the ``webhook_inbox`` DAG (``dag.test()``) applies it; then a Stripe event, signed by the
``stripe`` library, through the same receiver and DAG with the Airflow connection's
``payment_path``."""

import hashlib
import hmac
import json
from decimal import Decimal

import httpx
import stripe
from sqlalchemy import select

from hotcrm.airflow.runner import run_dag
from hotcrm.api.standalone import create_standalone_app
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account, Activity, OutboxEvent, Payment
from hotcrm.webhooks.config import connection_json, env_var
from hotcrm.webhooks.samples import partner_notification, stripe_event, stripe_payment_intent
from tests.conftest import DAGS_FOLDER
from tests.support.api_server import ThreadServer

SECRET = "partner-spec-secret"


def test_the_original_partner_payload_through_the_receiver_and_the_dag(airflow_db, hotcrm_env, monkeypatch):
    db = hotcrm_env["database_url"]
    monkeypatch.setenv(env_var("payment"), json.dumps({"conn_type": "generic", "password": SECRET}))
    monkeypatch.setenv(
        env_var("stripe"), connection_json("stripe", ["whsec_e2e"], payment_path="data.object.metadata.crm_txn")
    )
    with session_scope(db) as session:
        account = Account(name="Acme")
        session.add(account)
        session.flush()
        for txn in ("txn_8f3a", "txn_9b"):
            session.add(Payment(account_id=account.id, transaction_id=txn, amount=Decimal("120.50")))

    server = ThreadServer(create_standalone_app(db)).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for event in (
                partner_notification("payment.succeeded", "txn_8f3a", 120.5),
                partner_notification("payment.succeeded", "txn_8f3a", 120.5),  # the partner's retry
                partner_notification("payment.refunded", "txn_8f3a", 120.5),
            ):
                body = json.dumps(event).encode()
                signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                response = client.post(
                    "/hotcrm/webhooks/payment/notification",
                    content=body,
                    headers={"Content-Type": "application/json", "X-Payment-Signature": signature},
                )
                assert response.status_code in (200, 202), response.text
            intent = stripe_payment_intent("pi_e2e", 12050, metadata={"crm_txn": "txn_9b"})
            payload = json.dumps(stripe_event("payment_intent.succeeded", intent))
            response = client.post(
                "/hotcrm/webhooks/stripe",
                content=payload.encode(),
                headers={
                    "Content-Type": "application/json",
                    "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(payload, "whsec_e2e"),
                },
            )
            assert response.status_code == 202, response.text
    finally:
        server.stop()

    result = run_dag("webhook_inbox", DAGS_FOLDER, {"workers": 1})
    assert result.succeeded, result
    summary = result.returns["summarize"]
    assert (summary["processed"], summary["dead_lettered"], summary["ignored"]) == (3, 0, 0)
    with session_scope(db) as session:
        payments = {p.transaction_id: p for p in session.scalars(select(Payment))}
        refunded, paid = payments["txn_8f3a"], payments["txn_9b"]
        assert (refunded.status, refunded.paid_amount, refunded.payment_method) == (
            "Refunded",
            Decimal("120.50"),
            "card",
        )
        assert refunded.paid_date is not None
        assert (paid.status, paid.paid_amount) == ("Paid", Decimal("120.50"))
        subjects = sorted(session.scalars(select(Activity.subject)))
        assert subjects == ["Payment Received: $120.50", "Payment Received: $120.50", "Payment Refunded: $120.50"]
        events = [e for e in session.scalars(select(OutboxEvent)) if e.event_type == "payment.received"]
        assert sorted(e.payload["data"]["TransactionId"] for e in events) == ["txn_8f3a", "txn_9b"]
