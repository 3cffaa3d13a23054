"""Webhook delivery against real loopback subscribers, on SQLite and PostgreSQL: fan-out,
signatures (checked with the standardwebhooks library), retries, Retry-After, redirects,
timeouts, 410, dead letters, replay, the destination guard, concurrent claims and a crash."""

import subprocess
import sys
import textwrap
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook

from hotcrm.crm.db import session_scope
from hotcrm.crm.events import record_event
from hotcrm.crm.models import utcnow
from hotcrm.delivery.config import DeliveryConfig
from hotcrm.delivery.models import DEAD, DELIVERING, PENDING, SUCCEEDED, WebhookAttempt, WebhookDelivery
from hotcrm.delivery.service import add_subscription, claim_batch, deliver_due, fan_out, replay
from hotcrm.email.models import EmailOutbox
from tests.support import subscriber as subscriber_support

ALLOW = ("127.0.0.1/32",)


# the loopback subscriber fixture (assigned, not imported: an import would trip F811 on each test)
subscriber = subscriber_support.subscriber


def _config(**kw):
    base = {
        "timeout_seconds": 1.0,
        "retry_schedule_seconds": (5, 300),
        "allow_private_destinations": ALLOW,
        "operator_emails": ("ops@hotcrm.example",),
        "batch_size": 50,
    }
    base.update(kw)
    return DeliveryConfig(**base)


def _subscribe(url, target, events=("*",)):
    with session_scope(url) as s:
        sub = add_subscription(s, target, list(events))
        return sub.id, sub.secret


def _event(url, event_type="lead.converted", **data):
    with session_scope(url) as s:
        return record_event(s, event_type, data or {"LeadId": "L1"}).id


def _deliveries(url):
    with session_scope(url) as s:
        return {d.id: d for d in s.scalars(select(WebhookDelivery))}


def _make_due(url):
    # Time travel for the retry schedule: everything pending is due now.
    with session_scope(url) as s:
        s.execute(update(WebhookDelivery).where(WebhookDelivery.status == PENDING).values(next_attempt_at=utcnow()))


def test_events_are_fanned_out_signed_and_delivered(db_url, subscriber):
    sub_all, secret_all = _subscribe(db_url, subscriber.url("/ok/all"))
    sub_pay, secret_pay = _subscribe(db_url, subscriber.url("/ok/payments"), ["payment.received"])
    e1 = _event(db_url, "lead.converted", LeadId="L1", Company="<Acme & Co>")
    e2 = _event(db_url, "payment.received", PaymentId="P1", Amount="10.00")
    with session_scope(db_url) as s:
        assert fan_out(s) == 3
    with session_scope(db_url) as s:
        assert fan_out(s) == 0, "a second fan-out must not duplicate deliveries"
    summary = deliver_due(db_url, _config())
    assert summary["succeeded"] == 3 and summary["claimed"] == 3
    all_requests = subscriber.received("/ok/all")
    assert sorted(r.headers["webhook-id"] for r in all_requests) == sorted([e1, e2])
    for req in all_requests:
        payload = Webhook(secret_all).verify(req.body, req.headers)
        assert payload["event"] == req.headers["x-event-type"]
        assert set(payload) == {"event", "timestamp", "data"}
    [pay] = subscriber.received("/ok/payments")
    assert Webhook(secret_pay).verify(pay.body, pay.headers)["data"] == {"PaymentId": "P1", "Amount": "10.00"}
    assert pay.headers["webhook-id"] == e2
    assert {d.status for d in _deliveries(db_url).values()} == {SUCCEEDED}
    with session_scope(db_url) as s:
        attempts = list(s.scalars(select(WebhookAttempt)))
        assert len(attempts) == 3 and {a.status_code for a in attempts} == {200}
    assert deliver_due(db_url, _config())["claimed"] == 0


def test_failures_retry_on_the_schedule_then_dead_letter_with_an_operator_email(db_url, subscriber):
    _subscribe(db_url, subscriber.url("/fail"))
    event_id = _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    before = utcnow()
    assert deliver_due(db_url, _config())["retrying"] == 1
    [d] = _deliveries(db_url).values()
    assert d.status == PENDING and d.attempts == 1 and d.last_status_code == 500
    wait = (d.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 5 * 0.8 - 1 <= wait <= 5 * 1.2 + 1
    assert deliver_due(db_url, _config())["claimed"] == 0, "not due yet"
    _make_due(db_url)
    deliver_due(db_url, _config())
    _make_due(db_url)
    summary = deliver_due(db_url, _config())
    assert summary["dead"] == 1
    [d] = _deliveries(db_url).values()
    assert d.status == DEAD and d.attempts == 3 and d.dead_at is not None
    assert len(subscriber.received("/fail")) == 3
    with session_scope(db_url) as s:
        assert [a.attempt for a in s.scalars(select(WebhookAttempt).order_by(WebhookAttempt.attempt))] == [1, 2, 3]
        [notice] = s.scalars(select(EmailOutbox).where(EmailOutbox.kind == "dead_letter_alert"))
        assert notice.to_addr == "ops@hotcrm.example"
        assert d.id in notice.text_body and event_id in notice.text_body
        assert "whsec_" not in notice.text_body


def test_redirects_are_not_followed_and_count_as_failures(db_url, subscriber):
    _subscribe(db_url, subscriber.url("/redirect"))
    _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    assert deliver_due(db_url, _config())["retrying"] == 1
    assert subscriber.received("/ok") == [], "the redirect target must never be called"
    [d] = _deliveries(db_url).values()
    assert d.last_status_code == 302 and "not followed" in d.last_error


def test_timeouts_are_failures(db_url, subscriber):
    _subscribe(db_url, subscriber.url("/slow?s=3"))
    _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    assert deliver_due(db_url, _config(timeout_seconds=0.5))["retrying"] == 1
    [d] = _deliveries(db_url).values()
    assert d.last_status_code is None and d.last_error.startswith("timeout after 0.5s")


@pytest.mark.parametrize(("path", "low", "high"), [("/ratelimit?after=90", 89, 91), ("/unavailable", 100, 121)])
def test_retry_after_is_honoured(db_url, subscriber, path, low, high):
    _subscribe(db_url, subscriber.url(path))
    _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    before = utcnow()
    deliver_due(db_url, _config())
    [d] = _deliveries(db_url).values()
    wait = (d.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert low <= wait <= high, wait
    with session_scope(db_url) as s:
        [attempt] = s.scalars(select(WebhookAttempt))
        assert attempt.detail["retry_after"] is not None


def test_410_disables_the_subscription(db_url, subscriber):
    sub_id, _ = _subscribe(db_url, subscriber.url("/gone"))
    _event(db_url)
    _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    summary = deliver_due(db_url, _config(batch_size=1), max_batches=1)
    assert summary["gone"] == 1 and summary["claimed"] == 1
    assert deliver_due(db_url, _config())["claimed"] == 0, "nothing more is sent to a gone subscriber"
    assert len(subscriber.received("/gone")) == 1
    from hotcrm.delivery.models import WebhookSubscription

    with session_scope(db_url) as s:
        sub = s.get(WebhookSubscription, sub_id)
        assert sub.active is False and "410" in sub.disabled_reason
    _event(db_url)
    with session_scope(db_url) as s:
        assert fan_out(s) == 0, "a disabled subscription gets no new deliveries"


def test_guard_refuses_loopback_unless_allowed(db_url, subscriber):
    _subscribe(db_url, subscriber.url("/ok/guarded"))
    _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    summary = deliver_due(db_url, _config(allow_private_destinations=()))
    assert summary["dead"] == 1
    assert subscriber.received("/ok/guarded") == []
    [d] = _deliveries(db_url).values()
    assert "destination refused" in d.last_error and "allow_private_destinations" in d.last_error
    with session_scope(db_url) as s:
        assert replay(s, ids=[d.id]) == 1
    assert deliver_due(db_url, _config())["succeeded"] == 1
    assert len(subscriber.received("/ok/guarded")) == 1


def test_replay_by_time_range(db_url, subscriber):
    _subscribe(db_url, subscriber.url("/flaky/range?n=2"))
    for _ in range(3):
        _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    deliver_due(db_url, _config(retry_schedule_seconds=()))
    dead = [d for d in _deliveries(db_url).values() if d.status == DEAD]
    assert len(dead) == 2
    with session_scope(db_url) as s:
        assert replay(s, since=utcnow() + timedelta(minutes=1)) == 0
        assert replay(s, since=utcnow() - timedelta(minutes=5), until=utcnow() + timedelta(minutes=1)) == 2
        with pytest.raises(LookupError, match="no delivery"):
            replay(s, ids=["nope"])
        with pytest.raises(ValueError, match="time range"):
            replay(s)
    assert deliver_due(db_url, _config())["succeeded"] == 2
    assert {d.status for d in _deliveries(db_url).values()} == {SUCCEEDED}


def test_concurrent_workers_claim_disjoint_batches(db_url, subscriber):
    _subscribe(db_url, subscriber.url("/ok"))
    with session_scope(db_url) as s:
        for i in range(60):
            record_event(s, "lead.imported", {"n": i})
    with session_scope(db_url) as s:
        fan_out(s)
    config = _config(batch_size=7)
    claimed: list[list[str]] = []
    lock = threading.Lock()

    def worker(name):
        while True:
            jobs = claim_batch(db_url, config, name)
            if not jobs:
                return
            with lock:
                claimed.append([j.delivery_id for j in jobs])

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for batch in claimed for i in batch]
    assert len(ids) == 60 and len(set(ids)) == 60, "every delivery claimed exactly once"


def test_a_crashed_worker_leaves_a_lease_that_expires(db_url, subscriber, tmp_path):
    _subscribe(db_url, subscriber.url("/ok/crash"))
    _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    # A real process claims the batch and dies before sending (os._exit: no cleanup at all).
    code = textwrap.dedent(f"""
        import os
        from hotcrm.delivery.config import DeliveryConfig
        from hotcrm.delivery.service import claim_batch
        jobs = claim_batch({db_url!r}, DeliveryConfig(lease_seconds=60), "doomed")
        assert len(jobs) == 1
        os._exit(9)
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    [d] = _deliveries(db_url).values()
    assert d.status == DELIVERING and d.locked_by == "doomed"
    assert deliver_due(db_url, _config())["claimed"] == 0, "the lease still holds"
    with session_scope(db_url) as s:
        s.execute(update(WebhookDelivery).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert deliver_due(db_url, _config())["succeeded"] == 1
    [d] = _deliveries(db_url).values()
    assert d.status == SUCCEEDED and d.attempts == 2
    assert len(subscriber.received("/ok/crash")) == 1


def test_secrets_stay_out_of_logs(db_url, subscriber, caplog):
    caplog.set_level("DEBUG")
    _, secret = _subscribe(db_url, subscriber.url("/gone"))
    _event(db_url)
    with session_scope(db_url) as s:
        fan_out(s)
    deliver_due(db_url, _config())
    assert secret not in caplog.text and secret[6:] not in caplog.text
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_fan_out_drains_a_backlog_in_chunks(db_url):
    from hotcrm.delivery.service import fan_out_pending

    _subscribe(db_url, "https://hooks.partner.example/a", ["lead.imported"])
    _subscribe(db_url, "https://hooks.partner.example/b")
    with session_scope(db_url) as s:
        for i in range(25):
            record_event(s, "lead.imported" if i % 2 else "export.completed", {"n": i})
    assert fan_out_pending(db_url, chunk=10) == {"events_fanned_out": 25, "deliveries_created": 25 + 12}
    assert fan_out_pending(db_url, chunk=10) == {"events_fanned_out": 0, "deliveries_created": 0}


def test_connections_go_only_to_the_addresses_the_guard_checked(subscriber):
    # "subscriber.invalid" never resolves (RFC 2606): the request can only arrive if the client
    # connects to the address the guard checked instead of resolving the name again.
    import asyncio
    import base64

    import httpcore

    from hotcrm.delivery.guard import PinnedResolutionBackend
    from hotcrm.delivery.service import SUCCESS, ClientPool, Job, send_jobs

    config = _config()
    url = subscriber.url("/ok/pinned").replace("127.0.0.1", "subscriber.invalid")
    job = Job("d1", "e1", "lead.converted", 1, "s1", url, "whsec_" + base64.b64encode(b"k" * 24).decode(), b"{}")

    async def send():
        pool = ClientPool(config)
        pool.checked["subscriber.invalid"] = ["127.0.0.1"]  # what the guard resolved
        try:
            return await send_jobs([job], config, pool)
        finally:
            await pool.aclose()

    [outcome] = asyncio.run(send())
    assert outcome.kind == SUCCESS, outcome.error
    assert len(subscriber.received("/ok/pinned")) == 1

    with pytest.raises(httpcore.ConnectError, match="not checked by the destination guard"):
        asyncio.run(PinnedResolutionBackend({}).connect_tcp("example.com", 443))
