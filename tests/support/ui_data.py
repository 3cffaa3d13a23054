"""One of everything the HotCRM pages show: an imported lead file with refused rows and its
reports, a webhook dead letter whose cause is fixed, a subscription with a dead delivery, a
failed email, a Salesforce sync run with a failed record."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from hotcrm.crm.db import get_engine, session_scope
from hotcrm.crm.models import Account, OutboxEvent, Payment
from hotcrm.delivery.models import DEAD, WebhookAttempt, WebhookDelivery, WebhookSubscription
from hotcrm.email.models import FAILED as EMAIL_FAILED
from hotcrm.email.outbox import queue_notice
from hotcrm.leads.importer import import_lead_file
from hotcrm.salesforce import models as sf
from hotcrm.webhooks.inbox import parse_event_time, store_delivery
from hotcrm.webhooks.models import WebhookInbox
from hotcrm.webhooks.samples import encode, payment_event

SAMPLES = Path(__file__).resolve().parents[2] / "include" / "sample_data" / "leads"
MESSY = "crm_export_messy.csv"
DEAD_EVENT = "evt_dead_fixed"


def seed_ui_data(database_url: str, work: Path) -> dict[str, str]:
    """Seed ``database_url``; files go under ``work``. Returns the ids the tests look for."""
    incoming, processed, failed = work / "incoming", work / "processed", work / "failed"
    for folder in (incoming, processed, failed):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / MESSY, incoming / MESSY)
    outcome = import_lead_file(incoming / MESSY, database_url, processed_dir=processed, failed_dir=failed)

    with session_scope(database_url) as session:
        account = Account(name="Acme")
        session.add(account)
        session.flush()
        session.add(Payment(account_id=account.id, transaction_id="txn_ui", amount=Decimal("50.00")))
    event = payment_event("payment.succeeded", "txn_ui", "50", event_id=DEAD_EVENT, created=int(time.time()))
    store_delivery(
        get_engine(database_url),
        source="payment",
        event_id=event["id"],
        event_type=event["type"],
        event_time=parse_event_time(event["created"]),
        body=encode(event).decode(),
        headers={},
    )
    now = datetime.now(UTC)
    with session_scope(database_url) as session:
        row = session.scalars(select(WebhookInbox).where(WebhookInbox.event_id == DEAD_EVENT)).one()
        row.status, row.attempts = "dead", 5
        row.last_error = "not ready: no Payment with TransactionId 'txn_ui' yet"

        sub = WebhookSubscription(url="http://127.0.0.1:9/hooks", event_types=["*"], secret="whsec_x" * 4)
        outbox = OutboxEvent(event_type="lead.created", payload={"Id": "00Q1"})
        session.add_all([sub, outbox])
        session.flush()
        delivery = WebhookDelivery(
            event_id=outbox.id, subscription_id=sub.id, event_type="lead.created", status=DEAD, attempts=8,
            last_status_code=503, last_error="HTTP 503 from subscriber", dead_at=now,
        )  # fmt: skip
        session.add(delivery)
        session.flush()
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id, attempt=8, duration_ms=12, status_code=503, error="HTTP 503", outcome="retry"
            )
        )
        email = queue_notice(session, "ops@example.com", "Import summary <b>", "text", dedupe_key="ui-test")
        email.status, email.last_error = EMAIL_FAILED, "550 mailbox unavailable"

        session.add(
            sf.SyncRun(
                run_id="manual__ui_run", object="Account", outcome="partial", selected=3, created=1, updated=1,
                failed=1, api_calls=2, message="1 record refused",
            )
        )  # fmt: skip
        session.add(
            sf.SyncState(
                object="Account", hotcrm_id="001UI", status=sf.FAILED, last_error_code="REQUIRED_FIELD_MISSING",
                last_error_message="Required fields are missing: [Name]", attempts=1, last_attempt_at=now,
            )
        )  # fmt: skip
        session.flush()
        ids = {"subscription": sub.id, "delivery": delivery.id, "email": email.id}
    return {"file_id": outcome.file_id, "file_name": MESSY, **ids}
