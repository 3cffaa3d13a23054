"""The webhook_delivery DAG end to end with dag.test(), on SQLite and PostgreSQL: outbox
events reach a loopback subscriber signed (verified with standardwebhooks), failures are
retried, dead letters are replayed through the DAG's params."""

from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from hotcrm.airflow.runner import run_dag
from hotcrm.crm.db import session_scope
from hotcrm.crm.events import record_event
from hotcrm.delivery.models import DEAD, SUCCEEDED, WebhookDelivery
from hotcrm.delivery.service import add_subscription
from tests.conftest import DAGS_FOLDER
from tests.support import subscriber as subscriber_support

# the loopback subscriber fixture (assigned, not imported: an import would trip F811 on each test)
subscriber = subscriber_support.subscriber


def test_outbox_events_are_delivered_signed_and_dead_letters_replayed(airflow_db, hotcrm_env, subscriber, monkeypatch):
    db = hotcrm_env["database_url"]
    with session_scope(db) as s:
        ok = add_subscription(s, subscriber.url("/ok/crm"), ["*"])
        flaky = add_subscription(s, subscriber.url("/flaky/crm?n=100"), ["payment.received"])
        secrets = {ok.id: ok.secret, flaky.id: flaky.secret}
    with session_scope(db) as s:
        converted = record_event(s, "lead.converted", {"LeadId": "L-1", "AccountId": "A-1"}).id
        paid = record_event(s, "payment.received", {"PaymentId": "P-1", "Amount": "99.00", "Currency": "EUR"}).id

    result = run_dag("webhook_delivery", DAGS_FOLDER, {"workers": 2})
    assert result.succeeded, result
    summary = result.returns["summarize"]
    assert summary["deliveries_created"] == 3
    assert summary["claimed"] == 3 and summary["succeeded"] == 2 and summary["retrying"] == 1
    received = subscriber.received("/ok/crm")
    assert sorted(r.headers["webhook-id"] for r in received) == sorted([converted, paid])
    for req in received:
        payload = Webhook(secrets[ok.id]).verify(req.body, req.headers)
        assert payload["event"] == req.headers["x-event-type"]
    [first_try] = subscriber.received("/flaky/crm")
    assert Webhook(secrets[flaky.id]).verify(first_try.body, first_try.headers)["data"]["PaymentId"] == "P-1"

    # The flaky subscriber keeps failing: exhaust its attempts, then replay it by id once it recovers.
    with session_scope(db) as s:
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status != SUCCEEDED)
            .values(status=DEAD, dead_at=s.scalar(select(WebhookDelivery.created_at).limit(1)))
        )
        [dead_id] = s.scalars(select(WebhookDelivery.id).where(WebhookDelivery.status == DEAD))
    subscriber.counters.clear()
    monkeypatch.setitem(subscriber.counters, "/flaky/crm", 100)  # the next request succeeds
    result = run_dag("webhook_delivery", DAGS_FOLDER, {"workers": 1, "replay_ids": [dead_id]})
    assert result.succeeded, result
    assert result.returns["summarize"]["replayed"] == 1 and result.returns["summarize"]["succeeded"] == 1
    assert len(subscriber.received("/flaky/crm")) == 2
    with session_scope(db) as s:
        assert set(s.scalars(select(WebhookDelivery.status))) == {SUCCEEDED}
