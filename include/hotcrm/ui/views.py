"""What each HotCRM page shows and does. Reads go through the capabilities' own functions
(those the ``python -m hotcrm`` commands print) where they exist; every action calls the very
function its CLI command calls."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hotcrm.crm.db import session_scope

# The DAG whose work each page acts on: an action needs the right to edit that DAG.
DAG_OF_PAGE = {
    "imports": "lead_import",
    "webhooks": "webhook_inbox",
    "deliveries": "webhook_delivery",
    "email": "quote_emails",
    "salesforce": "salesforce_sync",
}
# ``replay --since`` this instant replays every dead letter.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- lead imports ------------------------------------------------------------------------


def import_files(database_url: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest files of the import ledger with their status and counts."""
    from hotcrm.leads.models import ImportFile

    with session_scope(database_url) as session:
        rows = session.scalars(select(ImportFile).order_by(ImportFile.created_at.desc()).limit(limit))
        return [_import_file(f) for f in rows]


def _import_file(f) -> dict[str, Any]:
    return {
        "id": f.id,
        "file_name": f.file_name,
        "status": f.status,
        "encoding": f.encoding,
        "delimiter": f.delimiter,
        **f.counts(),
        "error": f.error,
        "report_path": f.report_path,
        "created_at": f.created_at,
        "finished_at": f.finished_at,
    }


def import_file(database_url: str, file_id: str, limit: int = 500) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ledger file and the rows it did not load (line, kind, reason, email)."""
    from hotcrm.leads.models import ImportFile, ImportIssue

    with session_scope(database_url) as session:
        f = session.get(ImportFile, file_id)
        if f is None:
            raise LookupError(f"no import file with id {file_id!r}")
        issues = session.scalars(
            select(ImportIssue).where(ImportIssue.file_id == file_id).order_by(ImportIssue.line_number).limit(limit)
        )
        return _import_file(f), [
            {"line": i.line_number, "kind": i.kind, "reason": i.reason, "email": i.email} for i in issues
        ]


def report_files(report_path: str | None) -> dict[str, str]:
    """The report files written beside an import (``html``, ``json``, ``rejects``), by kind."""
    if not report_path or not report_path.endswith(".report.html"):
        return {}
    base = report_path[: -len(".report.html")]
    return {"html": report_path, "json": f"{base}.report.json", "rejects": f"{base}.rejects.csv"}


def read_report_file(path: str) -> bytes:
    """A report file's bytes: a local path or ``file://`` URL, else any fsspec URL (``s3://``)."""
    if path.startswith("file://"):
        path = path[len("file://") :]
    if "://" not in path:
        return Path(path).read_bytes()
    import fsspec

    with fsspec.open(path, "rb") as handle:
        return handle.read()


# --- webhook inbox -----------------------------------------------------------------------


def inbox_overview(database_url: str, limit: int = 100) -> dict[str, Any]:
    """Counts by status per source (every status listed) and the dead letters."""
    from hotcrm.webhooks.inbox import dead_letters
    from hotcrm.webhooks.models import STATUSES, WebhookInbox

    with session_scope(database_url) as session:
        rows = session.execute(
            select(WebhookInbox.source, WebhookInbox.status, func.count()).group_by(
                WebhookInbox.source, WebhookInbox.status
            )
        ).all()
    counts: dict[str, dict[str, int]] = {}
    for source, status, n in rows:
        counts.setdefault(source, dict.fromkeys(STATUSES, 0))[status] = int(n)
    return {
        "statuses": STATUSES,
        "counts": dict(sorted(counts.items())),
        "dead": dead_letters(database_url, None, limit),
    }


def requeue_webhooks(database_url: str, *, source: str | None, event_ids: list[str] | None) -> int:
    """``python -m hotcrm webhooks requeue [--source S] [--event-id E | --all]``."""
    from hotcrm.webhooks.inbox import requeue

    return requeue(database_url, source=source or None, event_ids=event_ids or None)


def process_webhooks(database_url: str) -> dict[str, Any]:
    """``python -m hotcrm webhooks process``: apply the due inbox rows now."""
    from hotcrm.webhooks.processing import process_inbox

    return process_inbox(database_url).as_dict()


# --- outbound deliveries -----------------------------------------------------------------


def deliveries_overview(database_url: str, attempts_per_subscription: int = 10, limit: int = 100) -> dict[str, Any]:
    """Subscriptions (no secrets) with their counts by status and recent attempts; dead letters."""
    from hotcrm.delivery.models import DEAD, WebhookAttempt, WebhookDelivery
    from hotcrm.delivery.service import list_subscriptions

    with session_scope(database_url) as session:
        counts: dict[str, dict[str, int]] = {}
        for sub_id, status, n in session.execute(
            select(WebhookDelivery.subscription_id, WebhookDelivery.status, func.count()).group_by(
                WebhookDelivery.subscription_id, WebhookDelivery.status
            )
        ):
            counts.setdefault(sub_id, {})[status] = int(n)
        subscriptions = []
        for sub in list_subscriptions(session):
            attempts = session.execute(
                select(WebhookAttempt, WebhookDelivery.event_type)
                .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
                .where(WebhookDelivery.subscription_id == sub.id)
                .order_by(WebhookAttempt.started_at.desc())
                .limit(attempts_per_subscription)
            ).all()
            subscriptions.append(
                {
                    "id": sub.id,
                    "url": sub.url,
                    "events": ", ".join(sub.event_types),
                    "active": sub.active,
                    "disabled_reason": sub.disabled_reason,
                    "counts": counts.get(sub.id, {}),
                    "attempts": [
                        {
                            "delivery_id": a.delivery_id,
                            "event_type": event_type,
                            "attempt": a.attempt,
                            "started_at": a.started_at,
                            "status_code": a.status_code,
                            "outcome": a.outcome,
                            "error": a.error,
                            "duration_ms": a.duration_ms,
                        }
                        for a, event_type in attempts
                    ],
                }
            )
        dead = [
            {
                "id": d.id,
                "subscription_id": d.subscription_id,
                "event_type": d.event_type,
                "attempts": d.attempts,
                "dead_at": d.dead_at,
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
            }
            for d in session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.status == DEAD)
                .order_by(WebhookDelivery.dead_at.desc())
                .limit(limit)
            )
        ]
    return {"subscriptions": subscriptions, "dead": dead}


def replay_deliveries(database_url: str, ids: list[str] | None) -> int:
    """``python -m hotcrm subscriptions replay --id ID`` (or ``--since 1970-01-01`` for all)."""
    from hotcrm.delivery.service import replay

    with session_scope(database_url) as session:
        return replay(session, ids=ids or None, since=None if ids else EPOCH)


def set_subscription_active(database_url: str, subscription_id: str, active: bool, reason: str | None) -> None:
    """``python -m hotcrm subscriptions enable ID`` / ``disable ID --reason R``."""
    from hotcrm.delivery.service import set_active

    with session_scope(database_url) as session:
        set_active(session, subscription_id, active, reason if not active else None)


# --- email outbox ------------------------------------------------------------------------


def email_overview(database_url: str, status: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Messages per status and the newest messages (optionally of one status)."""
    from hotcrm.email.models import EMAIL_STATES, EmailOutbox
    from hotcrm.email.outbox import status_counts

    with session_scope(database_url) as session:
        counts = status_counts(session)
        query = select(EmailOutbox).order_by(EmailOutbox.created_at.desc()).limit(limit)
        if status:
            query = query.where(EmailOutbox.status == status)
        messages = [
            {
                "id": r.id,
                "status": r.status,
                "kind": r.kind,
                "to": r.to_addr,
                "subject": r.subject,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "created_at": r.created_at,
                "sent_at": r.sent_at,
            }
            for r in session.scalars(query)
        ]
    return {"statuses": EMAIL_STATES, "counts": {s: int(counts.get(s, 0)) for s in EMAIL_STATES}, "messages": messages}


def requeue_email(database_url: str, message_id: str) -> str:
    """``python -m hotcrm email requeue ID``; returns the message's new status."""
    from hotcrm.email.outbox import set_status
    from hotcrm.email.settings import load_settings

    with session_scope(database_url) as session:
        return set_status(session, message_id, "requeue", load_settings()).status


# --- Salesforce sync ---------------------------------------------------------------------


def salesforce_overview(database_url: str, run_id: str | None = None, limit: int = 50) -> dict[str, Any]:
    """The sync history (one row per run and object; one run's rows with ``run_id``) and the
    records whose last sync failed."""
    from hotcrm.salesforce.sync import failed_records, sync_history

    history = sync_history(database_url, limit if run_id is None else 10_000)
    if run_id is not None:
        history = [h for h in history if h["run_id"] == run_id]
    return {"history": history, "failed": failed_records(database_url)}
