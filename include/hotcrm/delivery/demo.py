"""``make demo`` step: outbound webhooks and quote emails to local servers on loopback.

Starts a subscriber (HTTP, verifies each signature with the independent ``standardwebhooks``
library) and an SMTP server (aiosmtpd), subscribes to every event (loopback allowed for the
demo only), runs ``webhook_delivery`` and ``quote_emails`` and shows what arrived.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import func, select

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import OutboxEvent

DEMO_DESCRIPTION = "make demo subscriber"


class _Subscriber(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        status = 410 if self.path.startswith("/gone") else 200
        self.server.received.append((self.path, dict(self.headers.items()), body))  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Mailbox:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(ctx) -> list[str]:
    """Deliver the demo's outbox events and send the sample quote emails; summarize."""
    from aiosmtpd.controller import Controller
    from standardwebhooks.webhooks import Webhook

    from hotcrm.delivery.models import WebhookSubscription
    from hotcrm.delivery.service import add_subscription, set_active

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Subscriber)
    http.received = []  # type: ignore[attr-defined]
    threading.Thread(target=http.serve_forever, daemon=True).start()
    mailbox = _Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    base = f"http://127.0.0.1:{http.server_address[1]}"
    saved = {k: os.environ.get(k) for k in ("HOTCRM_DELIVERY_ALLOW_PRIVATE", "AIRFLOW_CONN_SMTP_DEFAULT")}
    os.environ["HOTCRM_DELIVERY_ALLOW_PRIVATE"] = "127.0.0.1/32"  # the demo's subscriber is on loopback
    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp.port,
            "extra": {"from_email": "quotes@hotcrm.example", "disable_ssl": True, "disable_tls": True},
        }
    )
    try:
        with session_scope(ctx.database_url) as session:
            for old in session.scalars(
                select(WebhookSubscription).where(
                    WebhookSubscription.description == DEMO_DESCRIPTION, WebhookSubscription.active
                )
            ):
                set_active(session, old.id, False, "an earlier demo's subscriber")
            first = session.scalar(select(func.min(OutboxEvent.created_at)))
            since = first - timedelta(seconds=1) if first else None
            sub = add_subscription(session, f"{base}/hotcrm-events", ["*"], description=DEMO_DESCRIPTION, since=since)
            gone = add_subscription(
                session, f"{base}/gone", ["lead.imported"], description=DEMO_DESCRIPTION, since=since
            )
            secret, sub_id, gone_id = sub.secret, sub.id, gone.id
        delivery = ctx.run_dag("webhook_delivery", {"workers": 1})
        emails = ctx.run_dag("quote_emails")
        lines = [f"webhook_delivery: {delivery.state}; {delivery.returns.get('summarize')}"]
        verifier = Webhook(secret)
        for path, headers, body in http.received:  # type: ignore[attr-defined]
            if not path.startswith("/hotcrm-events"):
                continue
            payload = verifier.verify(body, headers)
            lower = {k.lower(): v for k, v in headers.items()}
            lines.append(
                f"  POST {path} {lower.get('x-event-type')} webhook-id={lower.get('webhook-id')} signature ok, "
                f"data keys: {sorted(payload['data'])[:6]}"
            )
        with session_scope(ctx.database_url) as session:
            gone_sub = session.get(WebhookSubscription, gone_id)
            lines.append(f"  subscription answering 410: active={gone_sub.active} ({gone_sub.disabled_reason})")
            set_active(session, sub_id, False, "demo finished: its subscriber is stopped")
        lines.append(f"quote_emails: {emails.state}; {emails.returns.get('send_emails')}")
        for msg in mailbox.messages:
            amount = next(
                (ln.strip() for ln in msg.get_body(("plain",)).get_content().splitlines() if "Total" in ln), ""
            )
            lines.append(f"  mail to {msg['To']}: {msg['Subject']!r} {amount} Message-ID {msg['Message-ID']}")
        if not delivery.succeeded or not emails.succeeded:
            raise RuntimeError(f"webhook_delivery {delivery.state}, quote_emails {emails.state}")
        return lines
    finally:
        smtp.stop()
        http.shutdown()
        http.server_close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
