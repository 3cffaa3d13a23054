"""Demo step: the receiver under uvicorn on loopback, signed sample deliveries (valid,
duplicate, forged, stale), then one ``webhook_inbox`` run and what it changed in the CRM."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid

import httpx
import uvicorn
from sqlalchemy import select

from hotcrm.api.standalone import create_standalone_app
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Payment
from hotcrm.webhooks.config import SourceConfig, connection_json, env_source_registry, env_var
from hotcrm.webhooks.samples import encode, payment_event, signed_headers

SOURCE = "payment"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _source_config() -> SourceConfig:
    # Use the operator's hotcrm_webhook_payment connection when there is one; otherwise make a
    # throwaway standard-webhooks secret for this process (never printed).
    config = env_source_registry(SOURCE)
    if config is None:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        os.environ[env_var(SOURCE)] = connection_json("standard-webhooks", [secret])
        config = env_source_registry(SOURCE)
    return config


def run(ctx) -> list[str]:
    """Post the sample deliveries to a live receiver, run the DAG, summarize."""
    config = _source_config()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_standalone_app(ctx.database_url), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.05)
    lines = [f"receiver on http://127.0.0.1:{port}/hotcrm/webhooks/{SOURCE} (scheme {config.scheme})"]
    run_tag = uuid.uuid4().hex[:8]
    now = int(time.time())
    events = [
        (
            "valid",
            payment_event("payment.succeeded", "txn_demo_0001", "1000", event_id=f"evt_{run_tag}_1", created=now - 30),
        ),
        (
            "valid",
            payment_event(
                "payment.failed",
                "txn_demo_0002",
                "1250",
                event_id=f"evt_{run_tag}_2",
                created=now - 20,
                failure_reason="card declined",
            ),
        ),
        (
            "valid",
            payment_event("payment.succeeded", "txn_demo_0003", "1500", event_id=f"evt_{run_tag}_3", created=now - 20),
        ),
        (
            "valid",
            payment_event("payment.refunded", "txn_demo_0003", "1500", event_id=f"evt_{run_tag}_4", created=now - 10),
        ),
        ("valid", payment_event("payout.created", "txn_demo_0003", "1500", event_id=f"evt_{run_tag}_5", created=now)),
    ]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/hotcrm", timeout=10) as client:

            def post(label, event, secret=None, timestamp=None):
                body = encode(event)
                headers = signed_headers(
                    config.scheme,
                    secret or list(config.secrets[:1]),
                    body,
                    event["id"],
                    timestamp=timestamp,
                    header=config.header,
                )
                answer = client.post(f"/webhooks/{SOURCE}", content=body, headers=headers)
                lines.append(f"{label:<10} {event['type']:<18} {event['id']:<18} -> {answer.status_code} {answer.text}")

            for label, event in events:
                post(label, event)
            post("duplicate", events[0][1])
            forged_secret = "whsec_" + base64.b64encode(b"not-the-partner-secret-000000000").decode()
            post("forged", events[1][1], secret=[forged_secret] if config.scheme == "standard-webhooks" else ["forged"])
            if config.scheme != "hmac-sha256":
                post(
                    "stale",
                    payment_event("payment.succeeded", "txn_demo_0001", event_id=f"evt_{run_tag}_old"),
                    timestamp=now - 3600,
                )
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    result = ctx.run_dag("webhook_inbox", {"workers": 1})
    summary = result.returns.get("summarize", {})
    lines.append(
        f"webhook_inbox run {result.state}: "
        + ", ".join(f"{k} {summary.get(k)}" for k in ("processed", "ignored", "retried", "dead_lettered", "stale"))
    )
    with session_scope(ctx.database_url) as session:
        payments = session.execute(
            select(Payment.transaction_id, Payment.status).where(
                Payment.transaction_id.in_(["txn_demo_0001", "txn_demo_0002", "txn_demo_0003"])
            )
        ).all()
    lines.append("payments now: " + ", ".join(f"{txn} {status}" for txn, status in sorted(payments)))
    if not result.succeeded:
        raise RuntimeError(f"webhook_inbox run ended {result.state}")
    return lines
