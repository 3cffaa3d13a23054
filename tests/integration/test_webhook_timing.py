"""The same events give the same CRM whatever the timing (SQLite and PostgreSQL): applied in
one drain, or one drain per event in the order they arrived. Compared: the Payment's fields,
its Activities (subject, description, date) and its ``payment.received`` outbox events.

The rule (README, "Webhook inbox" > "Order and timing"): the status is the newest event's;
every failure and refund adds its Activity; a success records the money (paid fields,
Activity, ``payment.received``) once, even when a newer refund already set the status.
"""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from hotcrm.crm.db import get_engine, session_scope
from hotcrm.crm.models import Account, Activity, OutboxEvent, Payment
from hotcrm.webhooks.inbox import parse_event_time, store_delivery
from hotcrm.webhooks.processing import process_inbox
from hotcrm.webhooks.samples import encode, payment_event, stripe_charge, stripe_event, stripe_payment_intent

T0 = int(datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp())


def _seed(db_url, txn):
    with session_scope(db_url) as session:
        account = Account(name="Acme " + txn)
        session.add(account)
        session.flush()
        session.add(Payment(account_id=account.id, transaction_id=txn, amount=Decimal("80.00"), currency="USD"))


def _store(db_url, event, source="payment"):
    store_delivery(
        get_engine(db_url),
        source=source,
        event_id=event["id"],
        event_type=event["type"],
        event_time=parse_event_time(event["created"]),
        body=encode(event).decode(),
        headers={},
        received_at=datetime.now(UTC) - timedelta(minutes=1),
    )


def _outcome(db_url, txn):
    """What the CRM holds for one Payment, without ids that differ between runs."""
    with session_scope(db_url) as session:
        payment = session.scalars(select(Payment).where(Payment.transaction_id == txn)).one()
        activities = sorted(
            (a.subject, a.description.replace(txn, "<txn>"), a.activity_date.replace(tzinfo=UTC))
            for a in session.scalars(select(Activity).where(Activity.account_id == payment.account_id))
        )
        received = sorted(
            (e.payload["data"]["PaidAmount"], e.payload["data"]["PaidDate"], e.payload["data"]["PaymentMethod"])
            for e in session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "payment.received"))
            if e.payload["data"]["TransactionId"] == txn
        )
        paid_date = payment.paid_date.replace(tzinfo=UTC) if payment.paid_date else None
        return (payment.status, paid_date, payment.paid_amount, payment.payment_method), activities, received


def _partner(txn, suffix):
    succeeded = payment_event("payment.succeeded", txn, "80.00", event_id=f"s{suffix}", created=T0)
    refunded = payment_event("payment.refunded", txn, "80.00", event_id=f"r{suffix}", created=T0 + 60)
    failed = payment_event(
        "payment.failed", txn, "80.00", event_id=f"f{suffix}", created=T0 - 60, failure_reason="declined"
    )
    return [succeeded, refunded, failed]


def _stripe(txn, suffix):
    intent = stripe_payment_intent(txn, 8000)
    charge = stripe_charge("ch_" + txn, 8000, payment_intent=txn, amount_refunded=8000)
    return [
        stripe_event("payment_intent.succeeded", intent, event_id=f"pi{suffix}", created=T0),
        stripe_event("charge.succeeded", {**charge, "amount_refunded": 0}, event_id=f"cs{suffix}", created=T0),
        stripe_event("charge.refunded", charge, event_id=f"cr{suffix}", created=T0 + 60),
    ]


def _run(db_url, events, *, one_drain):
    for event in events:
        _store(db_url, event)
        if not one_drain:
            process_inbox(db_url)
    process_inbox(db_url)


@pytest.mark.parametrize("family", [_partner, _stripe], ids=["partner", "stripe"])
def test_every_arrival_order_in_one_drain_or_many_gives_the_same_crm(db_url, family):
    outcomes = {}
    for n, order in enumerate(itertools.permutations(range(3))):
        for one_drain in (True, False):
            txn = f"pi_{n}_{int(one_drain)}"
            _seed(db_url, txn)
            events = family(txn, f"_{n}_{int(one_drain)}")
            _run(db_url, [events[i] for i in order], one_drain=one_drain)
            outcomes[(order, one_drain)] = _outcome(db_url, txn)
    first = next(iter(outcomes.values()))
    for key, outcome in outcomes.items():
        assert outcome == first, key
    fields, activities, received = first
    assert fields[0] == "Refunded" and fields[2] == Decimal("80.00")
    assert len(received) == 1
    subjects = [subject for subject, _, _ in activities]
    assert "Payment Received: $80.00" in subjects and "Payment Refunded: $80.00" in subjects


def test_refund_before_success_in_two_drains_records_the_success(db_url):
    _seed(db_url, "txn_two")
    success, refund, _ = _partner("txn_two", "")
    _run(db_url, [refund, success], one_drain=False)
    (status, paid_date, amount, method), activities, received = _outcome(db_url, "txn_two")
    assert (status, paid_date, amount, method) == (
        "Refunded",
        datetime.fromtimestamp(T0, UTC),
        Decimal("80.00"),
        "card",
    )
    assert [a[0] for a in activities] == ["Payment Received: $80.00", "Payment Refunded: $80.00"]
    assert received == [("80.00", datetime.fromtimestamp(T0, UTC).isoformat(), "card")]
