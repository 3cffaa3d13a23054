"""Processing the inbox on SQLite and PostgreSQL: handlers, event-time order, exactly once
(two workers at once, a delivery sent ten times), retries, dead letters and requeue."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import func, select

from hotcrm.api.standalone import create_standalone_app
from hotcrm.crm.db import get_engine, session_scope
from hotcrm.crm.models import Account, Activity, OutboxEvent, Payment
from hotcrm.webhooks.config import connection_json, env_var
from hotcrm.webhooks.inbox import DEFAULT_LEASE, claim_batch, parse_event_time, requeue, status_counts, store_delivery
from hotcrm.webhooks.models import WebhookInbox
from hotcrm.webhooks.processing import backoff_delay, process_inbox
from hotcrm.webhooks.samples import encode, payment_event, signed_headers
from tests.support.api_server import ThreadServer

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _seed(db_url, count=1, prefix="txn"):
    with session_scope(db_url) as session:
        account = Account(name="Acme", owner_id="owner-1")
        session.add(account)
        session.flush()
        for i in range(count):
            session.add(
                Payment(
                    account_id=account.id,
                    owner_id="owner-1",
                    transaction_id=f"{prefix}_{i}",
                    amount=Decimal("1000.00"),
                    currency="USD",
                )
            )
        return account.id


def _store(db_url, event, source="payment"):
    return store_delivery(
        get_engine(db_url),
        source=source,
        event_id=event["id"],
        event_type=event["type"],
        event_time=parse_event_time(event["created"]),
        body=encode(event).decode(),
        headers={},
        received_at=T0 - timedelta(minutes=1),
    )


def _payment(db_url, txn):
    with session_scope(db_url) as session:
        return session.scalars(select(Payment).where(Payment.transaction_id == txn)).one()


def _activities(db_url):
    with session_scope(db_url) as session:
        return list(session.scalars(select(Activity).order_by(Activity.activity_date)))


def _row(db_url, event_id):
    with session_scope(db_url) as session:
        return session.scalars(select(WebhookInbox).where(WebhookInbox.event_id == event_id)).one()


def test_payment_succeeded_marks_paid_adds_activity_and_outbox_event(db_url):
    account_id = _seed(db_url)
    created = int(T0.timestamp())
    _store(db_url, payment_event("payment.succeeded", "txn_0", "1234.5", event_id="e1", created=created))
    result = process_inbox(db_url, now=T0 + timedelta(minutes=1))
    assert (result.processed, result.ignored, result.retried, result.dead_lettered) == (1, 0, 0, 0)
    payment = _payment(db_url, "txn_0")
    assert payment.status == "Paid"
    assert payment.paid_amount == Decimal("1234.50")
    assert payment.payment_method == "card"
    assert payment.paid_date.replace(tzinfo=UTC) == T0
    (activity,) = _activities(db_url)
    assert activity.type == "Payment"
    assert activity.subject == "Payment Received: $1,234.50"
    assert "card" in activity.description
    assert (activity.account_id, activity.owner_id) == (account_id, "owner-1")
    with session_scope(db_url) as session:
        (event,) = session.scalars(select(OutboxEvent)).all()
    assert event.event_type == "payment.received"
    assert event.payload["data"]["TransactionId"] == "txn_0"
    row = _row(db_url, "e1")
    assert (row.status, row.result, row.claimed_by) == ("done", "applied: Paid", None)


def test_failed_and_refunded_set_status_and_add_an_activity(db_url):
    _seed(db_url, 2)
    t = int(T0.timestamp())
    _store(db_url, payment_event("payment.failed", "txn_0", event_id="f", created=t, failure_reason="card declined"))
    _store(db_url, payment_event("payment.succeeded", "txn_1", event_id="s", created=t))
    _store(db_url, payment_event("payment.refunded", "txn_1", event_id="r", created=t + 60, refund_amount="1000"))
    _store(db_url, payment_event("invoice.created", "txn_1", event_id="u", created=t))
    result = process_inbox(db_url)
    assert (result.processed, result.ignored) == (3, 1)
    assert _payment(db_url, "txn_0").status == "Failed"
    assert _payment(db_url, "txn_1").status == "Refunded"
    subjects = sorted(a.subject for a in _activities(db_url))
    assert subjects == ["Payment Failed: $1,000.00", "Payment Received: $1,000.00", "Payment Refunded: $1,000.00"]
    assert any("card declined" in a.description for a in _activities(db_url))
    unknown = _row(db_url, "u")
    assert unknown.status == "ignored" and "invoice.created" in unknown.result


def test_a_late_succeeded_after_a_refund_does_not_undo_it(db_url):
    _seed(db_url)
    t = int(T0.timestamp())
    _store(db_url, payment_event("payment.succeeded", "txn_0", event_id="s1", created=t))
    _store(db_url, payment_event("payment.refunded", "txn_0", event_id="r1", created=t + 120))
    process_inbox(db_url)
    assert _payment(db_url, "txn_0").status == "Refunded"
    # The provider retries an old succeeded event (new delivery id, old event time).
    _store(db_url, payment_event("payment.succeeded", "txn_0", event_id="s1-retry", created=t + 10))
    result = process_inbox(db_url)
    assert result.stale == 1
    payment = _payment(db_url, "txn_0")
    assert payment.status == "Refunded"
    assert _row(db_url, "s1-retry").result.startswith("stale")
    assert len(_activities(db_url)) == 2


def test_events_arriving_out_of_order_in_one_batch_apply_in_event_time_order(db_url):
    _seed(db_url, 2)
    t = int(T0.timestamp())
    # Refund arrives first, the succeeded it follows arrives second.
    _store(db_url, payment_event("payment.refunded", "txn_0", event_id="r", created=t + 60))
    _store(db_url, payment_event("payment.succeeded", "txn_0", event_id="s", created=t))
    # Failed then a later succeeded (a retry that went through), also reversed.
    _store(db_url, payment_event("payment.succeeded", "txn_1", event_id="s2", created=t + 60))
    _store(db_url, payment_event("payment.failed", "txn_1", event_id="f2", created=t))
    process_inbox(db_url)
    assert _payment(db_url, "txn_0").status == "Refunded"
    assert _payment(db_url, "txn_0").paid_amount == Decimal("1000.00")
    assert _payment(db_url, "txn_1").status == "Paid"


def test_same_second_events_end_at_the_later_stage_whatever_the_order(db_url):
    _seed(db_url, 2)
    t = int(T0.timestamp())
    _store(db_url, payment_event("payment.refunded", "txn_0", event_id="r", created=t))
    process_inbox(db_url)
    _store(db_url, payment_event("payment.succeeded", "txn_0", event_id="s", created=t))
    _store(db_url, payment_event("payment.succeeded", "txn_1", event_id="s1", created=t))
    process_inbox(db_url)
    _store(db_url, payment_event("payment.refunded", "txn_1", event_id="r1", created=t))
    process_inbox(db_url)
    assert _payment(db_url, "txn_0").status == "Refunded"
    assert _payment(db_url, "txn_1").status == "Refunded"
    assert _row(db_url, "s").result.startswith("stale")


def test_refund_before_its_succeeded_in_separate_runs_keeps_the_refund_and_fills_paid_fields(db_url):
    _seed(db_url)
    t = int(T0.timestamp())
    _store(db_url, payment_event("payment.refunded", "txn_0", event_id="r", created=t + 60))
    process_inbox(db_url)
    _store(db_url, payment_event("payment.succeeded", "txn_0", "1000", event_id="s", created=t, payment_method="ach"))
    process_inbox(db_url)
    payment = _payment(db_url, "txn_0")
    assert (payment.status, payment.payment_method, payment.paid_amount) == ("Refunded", "ach", Decimal("1000.00"))


def test_two_workers_claiming_at_once_never_take_the_same_row(db_url):
    for i in range(300):
        _store(db_url, payment_event("unknown.type", "t", event_id=f"e{i}"))
    barrier = threading.Barrier(2)
    claims: dict[str, list[int]] = {"a": [], "b": []}

    def worker(name):
        barrier.wait()
        while ids := claim_batch(db_url, name, 7):
            claims[name].extend(ids)

    threads = [threading.Thread(target=worker, args=(n,)) for n in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(claims["a"]) & set(claims["b"])
    assert len(claims["a"]) + len(claims["b"]) == 300
    assert claims["a"] and claims["b"], "both workers should have got work"


def test_two_workers_processing_at_once_apply_each_event_once(db_url):
    _seed(db_url, 120)
    t = int(T0.timestamp())
    for i in range(120):
        _store(db_url, payment_event("payment.succeeded", f"txn_{i}", event_id=f"s{i}", created=t))
    results = []
    barrier = threading.Barrier(2)

    def worker(name):
        barrier.wait()
        results.append(process_inbox(db_url, worker=name, batch_size=10))

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.processed for r in results) == 120
    assert len(_activities(db_url)) == 120
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 120
        assert session.scalar(select(func.count()).where(Payment.status == "Paid")) == 120
    assert status_counts(db_url)["done"] == 120


def test_a_delivery_sent_ten_times_at_once_applies_once(db_url, monkeypatch):
    _seed(db_url)
    monkeypatch.setenv(env_var("payment"), connection_json("stripe", ["whsec_ten"]))
    server = ThreadServer(create_standalone_app(db_url)).start()
    event = payment_event("payment.succeeded", "txn_0", event_id="evt_ten_times")
    body = encode(event)
    headers = signed_headers("stripe", "whsec_ten", body, event["id"])
    answers = []
    barrier = threading.Barrier(10)

    def send():
        with httpx.Client(timeout=20) as client:
            barrier.wait()
            answers.append(client.post(f"{server.base_url}/hotcrm/webhooks/payment", content=body, headers=headers))

    try:
        threads = [threading.Thread(target=send) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    assert sorted(a.status_code for a in answers) == [200] * 9 + [202]
    assert sum(a.json()["duplicate"] for a in answers) == 9
    result = process_inbox(db_url)
    assert result.processed == 1
    assert process_inbox(db_url).processed == 0
    assert len(_activities(db_url)) == 1
    assert _payment(db_url, "txn_0").status == "Paid"


def test_poison_events_are_dead_lettered_while_the_rest_flow_on_then_requeued(db_url, caplog):
    _seed(db_url, 5)
    t = int(T0.timestamp())
    for i in range(5):
        _store(db_url, payment_event("payment.succeeded", f"txn_{i}", event_id=f"good{i}", created=t))
    _store(db_url, payment_event("payment.succeeded", "txn_0", "lots", event_id="poison-amount", created=t))
    _store(db_url, payment_event("payment.failed", "txn_late", event_id="not-yet", created=t))
    clock = T0
    first = process_inbox(db_url, now=clock, max_attempts=3, backoff_seconds=10)
    assert (first.processed, first.retried, first.dead_lettered) == (5, 2, 0)
    poison = _row(db_url, "poison-amount")
    assert poison.status == "pending" and poison.attempts == 1
    assert "data.amount" in poison.last_error
    assert poison.next_attempt_at.replace(tzinfo=UTC) == clock + backoff_delay(1, 10)
    # Nothing is due before the backoff ends.
    assert process_inbox(db_url, now=clock + timedelta(seconds=5)).retried == 0
    for _ in (1, 2):
        clock += timedelta(hours=1)
        result = process_inbox(db_url, now=clock, max_attempts=3, backoff_seconds=10)
    assert result.dead_lettered == 2
    assert {d["event_id"] for d in result.dead_letters} == {"poison-amount", "not-yet"}
    assert "TransactionId 'txn_late'" in _row(db_url, "not-yet").last_error
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dead letter")]
    assert any("poison-amount" in m and "data.amount" in m for m in logged), logged
    assert status_counts(db_url) == {"pending": 0, "processing": 0, "done": 5, "ignored": 0, "dead": 2}
    # The operator fixes the cause (the Payment now exists) and requeues that one.
    _seed(db_url, 1, prefix="txn_late")
    with session_scope(db_url) as session:
        session.scalars(select(Payment).where(Payment.transaction_id == "txn_late_0")).one().transaction_id = "txn_late"
    assert requeue(db_url, event_ids=["not-yet"]) == 1
    again = process_inbox(db_url)
    assert (again.processed, again.dead_lettered) == (1, 0)
    assert _payment(db_url, "txn_late").status == "Failed"
    assert _row(db_url, "poison-amount").status == "dead"
    assert requeue(db_url, source="payment") == 1  # the remaining dead letter


def test_rows_of_a_worker_that_died_are_taken_over_after_the_lease(db_url):
    for i in range(3):
        _store(db_url, payment_event("unknown.type", "t", event_id=f"e{i}"))
    assert len(claim_batch(db_url, "dead-worker", 10, now=T0)) == 3
    assert claim_batch(db_url, "other", 10, now=T0 + DEFAULT_LEASE - timedelta(seconds=1)) == []  # still leased
    result = process_inbox(db_url, worker="other", now=datetime.now(UTC) + timedelta(minutes=10))
    assert result.ignored == 3


def test_outbox_events_have_the_record_event_shape_on_both_paths(db_url):
    from hotcrm.crm.events import record_event

    _seed(db_url, 2)
    t = int(T0.timestamp())
    _store(db_url, payment_event("payment.succeeded", "txn_0", event_id="fast", created=t))
    process_inbox(db_url)  # a clean batch: the fast path
    _store(db_url, payment_event("payment.succeeded", "txn_1", event_id="isolated", created=t))
    _store(db_url, payment_event("payment.succeeded", "txn_1", "bad", event_id="poison", created=t))
    process_inbox(db_url)  # a batch with a failure: one savepoint per event, record_event itself
    with session_scope(db_url) as session:
        reference = record_event(session, "payment.received", {"x": 1})
        session.flush()
        reference_keys = set(reference.payload)
        columns = {c: getattr(reference, c) is not None for c in ("id", "event_type", "created_at")}
        events = list(session.scalars(select(OutboxEvent).where(OutboxEvent.id != reference.id)))
    assert len(events) == 2
    for event in events:
        assert set(event.payload) == reference_keys
        assert event.payload["event"] == event.event_type == "payment.received"
        assert {c: getattr(event, c) is not None for c in columns} == columns
    assert {e.payload["data"]["InboxEventId"] for e in events} == {"fast", "isolated"}


def test_operator_cli_lists_and_requeues_dead_letters(db_url, capsys):
    from hotcrm.cli import main

    _store(db_url, payment_event("payment.failed", "txn_missing", event_id="lost"))
    process_inbox(db_url, max_attempts=1)
    assert main(["--database-url", db_url, "webhooks", "status"]) == 0
    assert "dead 1" in capsys.readouterr().out
    assert main(["--database-url", db_url, "webhooks", "dead"]) == 0
    expected = "lost payment.failed attempts=1: not ready: no Payment with TransactionId 'txn_missing'"
    assert expected in capsys.readouterr().out
    assert main(["--database-url", db_url, "webhooks", "requeue"]) == 2
    assert "--event-id ID" in capsys.readouterr().err
    assert main(["--database-url", db_url, "webhooks", "requeue", "--event-id", "lost"]) == 0
    assert "requeued 1 dead letters" in capsys.readouterr().out
    assert status_counts(db_url)["pending"] == 1
    assert main(["--database-url", db_url, "webhooks", "process", "--max-attempts", "1"]) == 0
    assert '"dead_lettered": 1' in capsys.readouterr().out
    assert main(["--database-url", db_url, "webhooks", "requeue", "--all", "--source", "other"]) == 0
    assert "requeued 0" in capsys.readouterr().out


WORKER_SCRIPT = """
import json, os, sys, time
from hotcrm.webhooks.processing import process_inbox
url, me, other = sys.argv[1:4]
open(me, "w").close()
while not os.path.exists(other):  # start together, so the two claim side by side
    time.sleep(0.005)
print(json.dumps(process_inbox(url, worker=os.path.basename(me), batch_size=5).as_dict()))
"""


def test_two_worker_processes_apply_each_event_once(db_url, tmp_path):
    import json
    import os
    import subprocess
    import sys

    _seed(db_url, 150)
    t = int(T0.timestamp())
    for i in range(150):
        _store(db_url, payment_event("payment.succeeded", f"txn_{i}", event_id=f"s{i}", created=t))
    ready = [str(tmp_path / "w1"), str(tmp_path / "w2")]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, db_url, ready[i], ready[1 - i]],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for i in range(2)
    ]
    outputs = [json.loads(worker.communicate(timeout=120)[0].strip().splitlines()[-1]) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert sum(o["processed"] for o in outputs) == 150
    assert len(_activities(db_url)) == 150
    assert status_counts(db_url)["done"] == 150
