"""SQLAlchemy 2 models of the CRM objects and the shared outbox.

Attributes and columns are snake_case; the CRM's API names (``FirstName``, ``AnnualRevenue``)
map to them one to one through :func:`api_to_attr` / :func:`attr_to_api`. Ids are UUID
strings made in Python so a caller knows a record's Id before it is flushed. All timestamps
are UTC.

Capability packages add their own bookkeeping tables on the same :class:`Base` (and their
own Alembic migration under ``hotcrm/crm/migrations/versions``).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 36
MONEY = Numeric(18, 2)


def new_id() -> str:
    """A new record Id (a UUID4 string)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def api_to_attr(api_name: str) -> str:
    """``AnnualRevenue`` -> ``annual_revenue``; ``Id`` -> ``id``."""
    return _CAMEL_BOUNDARY.sub("_", api_name).lower()


def attr_to_api(attr: str) -> str:
    """``annual_revenue`` -> ``AnnualRevenue``; ``id`` -> ``Id``."""
    return "".join(part.capitalize() for part in attr.split("_"))


class Base(DeclarativeBase):
    """Declarative base of every HotCRM table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        Decimal: MONEY,
        dict[str, Any]: JSON,
    }

    @classmethod
    def api_fields(cls) -> list[str]:
        """The API names of this object's fields, in column order."""
        return [attr_to_api(c.key) for c in cls.__table__.columns]

    def to_api(self, fields: list[str] | None = None) -> dict[str, Any]:
        """This record as a dict keyed by API names (all fields, or the ones asked for)."""
        names = fields or self.api_fields()
        return {name: getattr(self, api_to_attr(name)) for name in names}


class TimestampedMixin:
    """CreatedDate and LastModifiedDate, maintained by the ORM."""

    created_date: Mapped[datetime] = mapped_column(default=utcnow)
    last_modified_date: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class Lead(TimestampedMixin, Base):
    """A prospect not yet qualified; converted into an Account, a Contact and an Opportunity."""

    __tablename__ = "leads"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    first_name: Mapped[str | None] = mapped_column(String(40))
    last_name: Mapped[str] = mapped_column(String(80))
    company: Mapped[str] = mapped_column(String(255))
    # Stored lower-cased; unique so imports and the API can upsert on it.
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str | None] = mapped_column(String(128))
    industry: Mapped[str | None] = mapped_column(String(100))
    website: Mapped[str | None] = mapped_column(String(255))
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(100))
    lead_source: Mapped[str] = mapped_column(String(100), default="Web")
    status: Mapped[str] = mapped_column(String(40), default="New", index=True)
    estimated_value: Mapped[Decimal | None]
    owner_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    converted_account_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    converted_contact_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    converted_opportunity_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    converted_date: Mapped[datetime | None]


class Account(TimestampedMixin, Base):
    """A customer organisation."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str | None] = mapped_column(String(40))
    industry: Mapped[str | None] = mapped_column(String(100), index=True)
    annual_revenue: Mapped[Decimal | None]
    phone: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(255))
    website: Mapped[str | None] = mapped_column(String(255))
    billing_street: Mapped[str | None] = mapped_column(String(255))
    billing_city: Mapped[str | None] = mapped_column(String(100))
    billing_state: Mapped[str | None] = mapped_column(String(100))
    billing_postal_code: Mapped[str | None] = mapped_column(String(20))
    billing_country: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    salesforce_id: Mapped[str | None] = mapped_column(String(18))
    last_sync_date: Mapped[datetime | None]


class Contact(TimestampedMixin, Base):
    """A person at an Account."""

    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    first_name: Mapped[str | None] = mapped_column(String(40))
    last_name: Mapped[str] = mapped_column(String(80))
    email: Mapped[str | None] = mapped_column(String(255), index=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str | None] = mapped_column(String(128))
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    owner_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    salesforce_id: Mapped[str | None] = mapped_column(String(18))
    last_sync_date: Mapped[datetime | None]


class Opportunity(TimestampedMixin, Base):
    """A deal in progress with an Account."""

    __tablename__ = "opportunities"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    contact_id: Mapped[str | None] = mapped_column(ForeignKey("contacts.id"))
    stage: Mapped[str] = mapped_column(String(40), default="Prospecting")
    amount: Mapped[Decimal | None]
    probability: Mapped[int | None]
    close_date: Mapped[date | None] = mapped_column(Date)
    owner_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class Payment(TimestampedMixin, Base):
    """A payment by an Account, reported by the payment provider."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    quote_id: Mapped[str | None] = mapped_column(ForeignKey("quotes.id"))
    owner_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    transaction_id: Mapped[str] = mapped_column(String(100), unique=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(40), default="Pending")
    paid_date: Mapped[datetime | None]
    paid_amount: Mapped[Decimal | None]
    payment_method: Mapped[str | None] = mapped_column(String(40))
    # Event time of the last provider event applied, so out-of-order events never go backwards.
    last_event_at: Mapped[datetime | None]


class Activity(Base):
    """Something that happened with an Account: a call, an email, a payment."""

    __tablename__ = "activities"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    contact_id: Mapped[str | None] = mapped_column(ForeignKey("contacts.id"))
    activity_date: Mapped[datetime] = mapped_column(default=utcnow)
    owner_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_date: Mapped[datetime] = mapped_column(default=utcnow)


class Quote(TimestampedMixin, Base):
    """A priced offer sent to a Contact of an Account."""

    __tablename__ = "quotes"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    quote_number: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    contact_id: Mapped[str | None] = mapped_column(ForeignKey("contacts.id"))
    opportunity_id: Mapped[str | None] = mapped_column(ForeignKey("opportunities.id"))
    total_amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(40), default="Draft", index=True)
    expiration_date: Mapped[date | None] = mapped_column(Date)
    sent_date: Mapped[datetime | None]
    owner_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class OutboxEvent(Base):
    """A CRM event that other systems may subscribe to, written in the same transaction as
    the change it reports (see :func:`hotcrm.crm.events.record_event`)."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    event_type: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


CRM_OBJECTS: dict[str, type[Base]] = {
    "Lead": Lead,
    "Account": Account,
    "Contact": Contact,
    "Opportunity": Opportunity,
    "Payment": Payment,
    "Activity": Activity,
    "Quote": Quote,
}
