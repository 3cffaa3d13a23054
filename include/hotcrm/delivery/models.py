"""Tables of outbound webhook delivery: subscriptions, per-subscription deliveries, attempts.

An outbox event (``outbox_events``) fans out into one :class:`WebhookDelivery` per active
subscription whose event types match; the marker table :class:`FannedOutEvent` records
which events were fanned out, so fan-out is idempotent and never re-reads old events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hotcrm.crm.models import ID_LENGTH, Base, new_id, utcnow
from hotcrm.crypto import EncryptedText

# Delivery states. ``delivering`` carries a lease (``locked_until``): a worker that dies
# mid-batch leaves rows that another run reclaims once the lease has expired.
PENDING = "pending"
DELIVERING = "delivering"
SUCCEEDED = "succeeded"
DEAD = "dead"
DELIVERY_STATES = (PENDING, DELIVERING, SUCCEEDED, DEAD)


class WebhookSubscription(Base):
    """A subscriber URL, the event types it wants, and its signing secret (``whsec_...``)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2048))
    # A list of event types, or ["*"] for all of them.
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # The signing secret, encrypted at rest (hotcrm.crypto). Never logged or printed after
    # creation (repr hides it).
    secret: Mapped[str] = mapped_column(EncryptedText)
    description: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"WebhookSubscription(id={self.id!r}, url={self.url!r}, active={self.active!r})"

    def wants(self, event_type: str) -> bool:
        """True when this subscription receives ``event_type``."""
        return "*" in self.event_types or event_type in self.event_types


class FannedOutEvent(Base):
    """Marks an outbox event as fanned out into deliveries (one row per event)."""

    __tablename__ = "webhook_fanned_out_events"

    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id"), primary_key=True)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    fanned_out_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event to one subscription: its state, schedule and last outcome."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id", name="uq_webhook_deliveries_event_subscription"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # Retention (hotcrm.maintenance): delivered rows by age (dead ones go by dead_at's index).
        Index(
            "ix_webhook_deliveries_succeeded_delivered_at",
            "delivered_at",
            sqlite_where=text("status = 'succeeded'"),
            postgresql_where=text("status = 'succeeded'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    dead_at: Mapped[datetime | None] = mapped_column(index=True)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: when, how long, the status code or the error."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
