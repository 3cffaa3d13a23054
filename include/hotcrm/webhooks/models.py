"""The webhook inbox table: one row per accepted delivery, unique on (source, event id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from hotcrm.crm.models import Base, utcnow

# Row states. pending -> processing (claimed) -> done | ignored | pending (retry) | dead.
# Who holds a claim: the worker's host and the Airflow task instance (see processing.default_worker_name).
CLAIMED_BY_LENGTH = 255

PENDING = "pending"
PROCESSING = "processing"
DONE = "done"
IGNORED = "ignored"
DEAD = "dead"
STATUSES = (PENDING, PROCESSING, DONE, IGNORED, DEAD)


class WebhookInbox(Base):
    """An accepted inbound webhook delivery and where its processing stands."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_webhook_inbox_source_event_id"),
        # The claim query: due rows by state and time.
        Index("ix_webhook_inbox_status_next_attempt_at", "status", "next_attempt_at"),
        # Retention (hotcrm.maintenance): finished rows by age. Partial, so the receiver's
        # inserts (pending rows) never touch it.
        Index(
            "ix_webhook_inbox_finished_processed_at",
            "status",
            "processed_at",
            sqlite_where=text("status IN ('done', 'ignored', 'dead')"),
            postgresql_where=text("status IN ('done', 'ignored', 'dead')"),
        ),
    )

    # An integer key keeps claims in arrival order; INTEGER on SQLite so it is the rowid.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    event_time: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(CLAIMED_BY_LENGTH))
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
