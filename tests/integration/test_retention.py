"""Retention (issue 19, point 7) on SQLite and PostgreSQL: finished rows past their age go, dead
letters stay longer, nothing pending ever goes, deletes run in small batches that leave the
receiver free to insert between them, and a run reports what it removed."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, insert, select, text

from hotcrm.api.models import RateLimitCounter
from hotcrm.cli import main
from hotcrm.crm.db import is_postgresql, session_scope
from hotcrm.crm.models import OutboxEvent, new_id, utcnow
from hotcrm.delivery.models import FannedOutEvent, WebhookAttempt, WebhookDelivery, WebhookSubscription
from hotcrm.email.models import EmailOutbox
from hotcrm.leads.models import ImportFile, ImportIssue
from hotcrm.maintenance.retention import RULES, RetentionConfig, load_config, purge
from hotcrm.salesforce.models import SyncRun
from hotcrm.webhooks.models import WebhookInbox

NOW = utcnow()
_seq = itertools.count()


def ago(days: float):
    return NOW - timedelta(days=days)


def _inbox(db_url: str, status: str, days: float, count: int = 1) -> None:
    rows = []
    for _ in range(count):
        n = next(_seq)
        rows.append(
            {
                "source": "stripe",
                "event_id": f"evt_{n}",
                "event_type": "payment.received",
                "received_at": ago(days),
                "body": "{}",
                "headers": {},
                "status": status,
                "attempts": 1,
                "next_attempt_at": ago(days),
                "processed_at": ago(days) if status in ("done", "ignored", "dead") else None,
            }  # fmt: skip
        )
    with session_scope(db_url) as s:
        s.execute(insert(WebhookInbox), rows)


def _count(db_url: str, model, *where) -> int:
    with session_scope(db_url) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _delivery(s, sub_id: str, status: str, days: float) -> str:
    event = OutboxEvent(id=new_id(), event_type="lead.converted", payload={"n": 1}, created_at=ago(days + 1))
    s.add(event)
    s.flush()
    s.add(FannedOutEvent(event_id=event.id, deliveries=1, fanned_out_at=ago(days)))
    delivery = WebhookDelivery(
        id=new_id(), event_id=event.id, subscription_id=sub_id, event_type="lead.converted", status=status,
        attempts=1, next_attempt_at=ago(days), created_at=ago(days),
        delivered_at=ago(days) if status == "succeeded" else None, dead_at=ago(days) if status == "dead" else None,
    )  # fmt: skip
    s.add(delivery)
    s.flush()
    s.add(WebhookAttempt(delivery_id=delivery.id, attempt=1, started_at=ago(days), duration_ms=5, outcome=status))
    return delivery.id


def _email(s, status: str, days: float) -> None:
    n = next(_seq)
    s.add(
        EmailOutbox(
            kind="notice",
            dedupe_key=f"k{n}",
            message_id=f"<m{n}@x>",
            to_addr="a@example.com",
            subject="s",
            text_body="t",
            status=status,
            created_at=ago(days),
            next_attempt_at=ago(days),
            sent_at=ago(days) if status == "sent" else None,
        )  # fmt: skip
    )


def _import_file(s, status: str, days: float | None, issues: int) -> str:
    record = ImportFile(path=f"p{next(_seq)}", file_name="leads.csv", status=status, created_at=ago(days or 1),
                        finished_at=ago(days) if days is not None else None)  # fmt: skip
    s.add(record)
    s.flush()
    for line in range(issues):
        s.add(ImportIssue(file_id=record.id, line_number=line + 2, kind="rejected", reason="bad email"))
    return record.id


def _fill(db_url: str) -> dict:
    _inbox(db_url, "done", 40, 3)
    _inbox(db_url, "ignored", 40)
    _inbox(db_url, "done", 10, 2)  # too young
    _inbox(db_url, "dead", 40)  # a dead letter of the same age as removed done rows: kept
    _inbox(db_url, "dead", 100)
    _inbox(db_url, "pending", 400)  # never removed, however old
    _inbox(db_url, "processing", 400)
    with session_scope(db_url) as s:
        sub = WebhookSubscription(url="https://h.example/x", event_types=["*"], secret="whsec_" + "A" * 43 + "=")
        s.add(sub)
        s.flush()
        ids = {
            "old_ok": _delivery(s, sub.id, "succeeded", 40),
            "young_ok": _delivery(s, sub.id, "succeeded", 5),
            "dead_40": _delivery(s, sub.id, "dead", 40),
            "dead_100": _delivery(s, sub.id, "dead", 100),
            "pending": _delivery(s, sub.id, "pending", 400),
            "delivering": _delivery(s, sub.id, "delivering", 400),
        }
        for status, days in [("sent", 40), ("sent", 5), ("failed", 40), ("failed", 100), ("queued", 400),
                             ("sending", 400), ("unconfirmed", 400)]:  # fmt: skip
            _email(s, status, days)
        window = int(NOW.timestamp()) // 60 * 60
        s.add_all(
            [
                RateLimitCounter(bucket="key:a:leads.read:60", window_start=window - 3 * 86400, hits=5),
                RateLimitCounter(bucket="key:a:leads.read:60", window_start=window, hits=1),
            ]
        )
        files = {
            "old": _import_file(s, "imported", 100, 3),
            "young": _import_file(s, "imported", 10, 2),
            "processing": _import_file(s, "processing", None, 2),
        }
        s.add_all(
            [
                SyncRun(run_id="old", object="Account", started_at=ago(200), finished_at=ago(200), outcome="success"),
                SyncRun(run_id="new", object="Account", started_at=ago(1), finished_at=ago(1), outcome="success"),
                SyncRun(run_id="running", object="Account", started_at=ago(300), outcome="partial"),
            ]
        )
    return {"deliveries": ids, "files": files}


def test_finished_rows_past_their_age_go_and_nothing_pending_ever_does(db_url):
    made = _fill(db_url)
    preview = purge(db_url, RetentionConfig(), now=NOW, dry_run=True)
    assert _count(db_url, WebhookInbox) == 10  # a dry run removes nothing

    summary = purge(db_url, RetentionConfig(), now=NOW)
    # A dry run counts each rule on its own: events that the run's own deletes free are not in it.
    assert {**summary["removed"], "outbox_events": 0} == preview["removed"]
    assert summary["removed"] == {
        "webhook_inbox.done": 4,
        "webhook_inbox.dead": 1,
        "webhook_deliveries.succeeded": 1,
        "webhook_deliveries.dead": 1,
        "outbox_events": 1,  # the event of the 100-day dead letter (the 40-day one's is younger than 90 days)
        "email_outbox.sent": 1,
        "email_outbox.failed": 1,
        "api_rate_limits": 1,
        "lead_import_issues": 3,
        "salesforce_sync_runs": 1,
    }
    assert summary["total_removed"] == 15 and summary["finished"] and not summary["dry_run"]

    with session_scope(db_url) as s:
        inbox = sorted(s.execute(select(WebhookInbox.status, func.count()).group_by(WebhookInbox.status)).all())
        deliveries = set(s.scalars(select(WebhookDelivery.id)))
        emails = sorted(s.scalars(select(EmailOutbox.status)))
        issues_by_file = dict(s.execute(select(ImportIssue.file_id, func.count()).group_by(ImportIssue.file_id)).all())
        runs = sorted(s.scalars(select(SyncRun.run_id)))
        attempts = set(s.scalars(select(WebhookAttempt.delivery_id)))
    assert inbox == [("dead", 1), ("done", 2), ("pending", 1), ("processing", 1)]
    ids = made["deliveries"]
    assert deliveries == {ids["young_ok"], ids["dead_40"], ids["pending"], ids["delivering"]} == attempts
    assert emails == ["failed", "queued", "sending", "sent", "unconfirmed"]
    assert issues_by_file == {made["files"]["young"]: 2, made["files"]["processing"]: 2}
    assert _count(db_url, ImportFile) == 3  # the ledger stays
    assert runs == ["new", "running"]
    assert _count(db_url, RateLimitCounter) == 1
    # Nothing left to do: a second run removes nothing.
    assert purge(db_url, RetentionConfig(), now=NOW)["total_removed"] == 0


def _writer_that_must_not_wait(db_url: str):
    """A separate connection that gives up at once if the purge holds a lock the receiver needs."""
    if is_postgresql(db_url):
        engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))

        def write(n: int) -> None:
            with engine.begin() as connection:
                connection.execute(text("SET LOCAL lock_timeout = '100ms'"))
                connection.execute(insert(WebhookInbox).values(
                    source="stripe", event_id=f"live_{n}", event_type="x", body="{}", headers={}, status="pending",
                    attempts=0, received_at=NOW, next_attempt_at=NOW))  # fmt: skip
    else:
        engine = create_engine(db_url, connect_args={"timeout": 0})

        def write(n: int) -> None:
            with engine.begin() as connection:
                connection.exec_driver_sql("PRAGMA busy_timeout=0")
                connection.execute(insert(WebhookInbox).values(
                    source="stripe", event_id=f"live_{n}", event_type="x", body="{}", headers={}, status="pending",
                    attempts=0, received_at=NOW, next_attempt_at=NOW))  # fmt: skip

    return engine, write


def test_deletes_go_in_small_batches_that_leave_the_receiver_free(db_url):
    _inbox(db_url, "done", 40, 230)
    engine, write = _writer_that_must_not_wait(db_url)
    batches = []

    def on_batch(rule: str, removed: int) -> None:
        batches.append((rule, removed))
        write(len(batches))  # the receiver inserts between two batches without waiting

    try:
        summary = purge(db_url, RetentionConfig(batch_size=50, pause_seconds=0), now=NOW,
                        only=["webhook_inbox.done"], on_batch=on_batch)  # fmt: skip
    finally:
        engine.dispose()
    assert batches == [("webhook_inbox.done", 50)] * 4 + [("webhook_inbox.done", 30)]
    assert summary["batches"] == 5 and summary["removed"] == {"webhook_inbox.done": 230}
    assert _count(db_url, WebhookInbox, WebhookInbox.status == "pending") == 5


def test_a_run_out_of_time_reports_it_and_the_next_goes_on(db_url):
    _inbox(db_url, "done", 40, 120)
    config = RetentionConfig(batch_size=50, pause_seconds=0, time_budget_seconds=0.3)
    first = purge(db_url, config, now=NOW, on_batch=lambda rule, n: time.sleep(0.2))
    assert not first["finished"] and 0 < first["removed"]["webhook_inbox.done"] < 120
    second = purge(db_url, RetentionConfig(batch_size=50, pause_seconds=0), now=NOW)
    assert (
        second["finished"] and first["removed"]["webhook_inbox.done"] + second["removed"]["webhook_inbox.done"] == 120
    )


def test_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="dead letters are kept longer"):
        RetentionConfig(webhook_inbox_dead_days=10)
    with pytest.raises(ValueError, match="above 0, or null"):
        RetentionConfig(email_outbox_sent_days=0)
    path = tmp_path / "retention.json"
    path.write_text('{"webhook_inbox_done_days": null, "webhook_inbox_dead_days": null, "batch_sise": 5}')
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(path)
    path.write_text('{"webhook_inbox_done_days": null, "webhook_inbox_dead_days": null}')
    assert load_config(path).webhook_inbox_done_days is None
    assert load_config().webhook_inbox_done_days == 30  # the project's file: the documented defaults
    assert {r.name for r in RULES} >= {"webhook_inbox.done", "api_rate_limits", "salesforce_sync_runs"}


def test_keep_forever_and_the_command_line(db_url, tmp_path, capsys):
    _inbox(db_url, "done", 400, 2)
    path = tmp_path / "retention.json"
    path.write_text('{"webhook_inbox_done_days": null, "webhook_inbox_dead_days": null}')
    assert main(["--database-url", db_url, "maintenance", "purge", "--config", str(path)]) == 0
    assert '"webhook_inbox.done"' not in capsys.readouterr().out
    assert _count(db_url, WebhookInbox) == 2
    assert main(["--database-url", db_url, "maintenance", "purge", "--rule", "webhook_inbox.done"]) == 0
    assert '"webhook_inbox.done": 2' in capsys.readouterr().out
    assert main(["--database-url", db_url, "maintenance", "purge", "--rule", "nope"]) == 2
