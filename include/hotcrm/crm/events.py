"""The outbox: CRM events written in the same transaction as the change they report."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hotcrm.crm.models import OutboxEvent, new_id, utcnow

EVENT_TYPES = (
    "lead.imported",
    "lead.converted",
    "payment.received",
    "account.synced",
    "export.completed",
)


def record_event(
    session: Session, event_type: str, data: dict[str, Any], *, event_id: str | None = None
) -> OutboxEvent:
    """Add an outbox event to ``session``'s transaction; it commits (or not) with the change.

    The payload is ``{"event": ..., "timestamp": ..., "data": {...}}``; ``data`` must be
    JSON-serializable. Pass ``event_id`` to make a retried task write the same event once.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
    if event_id is not None:
        existing = session.get(OutboxEvent, event_id)
        if existing is not None:
            return existing
    now = utcnow()
    event = OutboxEvent(
        id=event_id or new_id(),
        event_type=event_type,
        payload={"event": event_type, "timestamp": now.isoformat(), "data": data},
        created_at=now,
    )
    session.add(event)
    session.flush()
    return event
