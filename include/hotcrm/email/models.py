"""The email outbox: one row per message, its Message-ID recorded before it is sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hotcrm.crm.models import ID_LENGTH, Base, new_id, utcnow

# Message states. ``sending`` is written (and committed) before the SMTP conversation; a
# row found in ``sending`` after its lease expired means the sender crashed mid-send, and
# is reconciled instead of being sent again blindly.
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"  # permanent rejection (5xx) or retries exhausted
UNCONFIRMED = "unconfirmed"  # crashed mid-send and the provider could not confirm: an operator decides
EMAIL_STATES = (QUEUED, SENDING, SENT, FAILED, UNCONFIRMED)


class EmailOutbox(Base):
    """A message to send: rendered bodies, recipient, Message-ID, state and schedule."""

    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(40))
    # Makes queueing idempotent: the same quote (or notice) is queued once.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(255))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    quote_id: Mapped[str | None] = mapped_column(ForeignKey("quotes.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
