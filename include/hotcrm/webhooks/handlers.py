"""Handlers for the payment provider's events, applied inside the caller's transaction.

Payload (the provider's format; ``created`` is the event time, Unix seconds or ISO 8601)::

    {"id": "evt_...", "type": "payment.succeeded", "created": 1764100000,
     "data": {"transaction_id": "txn_...", "amount": "1000.00", "currency": "USD",
              "payment_method": "card", "failure_reason": "...", "refund_amount": "..."}}

A handler returns a short result note, or raises :class:`RetryableError` (try again later,
e.g. the Payment is not in the CRM yet) or any other exception (a bad payload; also retried,
then dead-lettered). Events carry their time; a Payment remembers the time of the last event
applied (``last_event_at``), and an older event never changes its status: a late
``payment.succeeded`` after a refund does not undo the refund.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotcrm.crm.events import record_event
from hotcrm.crm.models import Activity, Payment


class RetryableError(Exception):
    """The event cannot be applied yet (e.g. its Payment does not exist yet): retry later."""


class PayloadError(ValueError):
    """The event's payload lacks a field or has a bad value (names the field)."""


def aware(value: datetime | None) -> datetime | None:
    """A datetime as aware UTC (SQLite hands back naive UTC values)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _data(payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PayloadError("field 'data' must be an object with the payment's fields")
    return data


def _amount(data: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    raw = data.get(name)
    if raw is None and not required:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise PayloadError(f"field 'data.{name}' must be a decimal amount, got {raw!r}")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise PayloadError(f"field 'data.{name}' must be a decimal amount, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise PayloadError(f"field 'data.{name}' must be a non-negative amount, got {raw!r}")
    return value.quantize(Decimal("0.01"))


class EventContext:
    """What a handler knows besides the payload: the inbox row's identity and event time, the
    Payments the processor already loaded (and locked) for its batch, and how to emit an
    outbox event (at once, or gathered for the end of the batch: same transaction either way)."""

    def __init__(
        self,
        source: str,
        event_id: str,
        event_type: str,
        event_time: datetime,
        payments: dict[str, Payment] | None = None,
        emit: Callable[[Session, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.source = source
        self.event_id = event_id
        self.event_type = event_type
        self.event_time = event_time
        self.payments = payments if payments is not None else {}
        self.emit = emit or (lambda session, event_type, data: record_event(session, event_type, data))


def _payment(session: Session, data: dict[str, Any], ctx: EventContext) -> Payment:
    txn = data.get("transaction_id")
    if not isinstance(txn, str) or not txn:
        raise PayloadError("field 'data.transaction_id' is required (the Payment's TransactionId)")
    payment = ctx.payments.get(txn)
    if payment is None:
        # FOR UPDATE on PostgreSQL: two workers with events for one Payment apply them one at a time.
        payment = session.scalars(select(Payment).where(Payment.transaction_id == txn).with_for_update()).first()
    if payment is None:
        raise RetryableError(f"no Payment with TransactionId {txn!r} yet")
    return payment


def _money(value: Decimal) -> str:
    return f"${value:,.2f}"


# Where a Payment's life can end up; with equal event times (providers often stamp whole
# seconds) the later stage wins, so a refund and its payment in the same second end Refunded.
_STAGE = {"Pending": 0, "Failed": 1, "Paid": 2, "Refunded": 3}


def _is_stale(payment: Payment, event_time: datetime, new_status: str) -> bool:
    last = aware(payment.last_event_at)
    if last is None:
        return False
    if event_time == last:
        return _STAGE.get(new_status, 0) < _STAGE.get(payment.status, 0)
    return event_time < last


def _activity(session: Session, payment: Payment, subject: str, description: str, when: datetime) -> None:
    session.add(
        Activity(
            type="Payment",
            subject=subject,
            description=description,
            account_id=payment.account_id,
            owner_id=payment.owner_id,
            activity_date=when,
        )
    )


def payment_succeeded(session: Session, payload: dict[str, Any], ctx: EventContext) -> str:
    """Status Paid, PaidDate, PaidAmount, PaymentMethod; an Activity; a ``payment.received`` event."""
    data = _data(payload)
    amount = _amount(data, "amount")
    method = str(data.get("payment_method") or "unknown method")
    payment = _payment(session, data, ctx)
    stale = _is_stale(payment, ctx.event_time, "Paid")
    # The money did arrive: fill in the paid fields even when a newer status (a refund) stays.
    if not stale or payment.paid_date is None:
        payment.paid_date = ctx.event_time
        payment.paid_amount = amount
        payment.payment_method = method[:40]
    if stale:
        return f"stale: older than the last applied event; status stays {payment.status}"
    payment.status = "Paid"
    payment.last_event_at = ctx.event_time
    _activity(
        session,
        payment,
        f"Payment Received: {_money(amount)}",
        f"Payment of {_money(amount)} {payment.currency} received by {method} (transaction {payment.transaction_id}).",
        ctx.event_time,
    )
    ctx.emit(
        session,
        "payment.received",
        {
            "PaymentId": payment.id,
            "AccountId": payment.account_id,
            "TransactionId": payment.transaction_id,
            "PaidAmount": str(amount),
            "Currency": payment.currency,
            "PaymentMethod": method,
            "PaidDate": ctx.event_time.isoformat(),
            "InboxEventId": ctx.event_id,
        },
    )
    return "applied: Paid"


def _status_change(status: str, verb: str, detail_field: str) -> Handler:
    def handler(session: Session, payload: dict[str, Any], ctx: EventContext) -> str:
        data = _data(payload)
        amount = _amount(data, "refund_amount" if status == "Refunded" else "amount", required=False)
        payment = _payment(session, data, ctx)
        if _is_stale(payment, ctx.event_time, status):
            return f"stale: older than the last applied event; status stays {payment.status}"
        amount = amount if amount is not None else payment.amount
        payment.status = status
        payment.last_event_at = ctx.event_time
        detail = data.get(detail_field)
        description = f"Payment of {_money(amount)} {payment.currency} {verb} (transaction {payment.transaction_id})"
        _activity(
            session,
            payment,
            f"Payment {status}: {_money(amount)}",
            description + (f": {detail}." if detail else "."),
            ctx.event_time,
        )
        return f"applied: {status}"

    handler.__doc__ = f"Status {status} and an Activity."
    return handler


Handler = Callable[[Session, dict[str, Any], EventContext], str]

HANDLERS: dict[str, Handler] = {
    "payment.succeeded": payment_succeeded,
    "payment.failed": _status_change("Failed", "failed", "failure_reason"),
    "payment.refunded": _status_change("Refunded", "refunded", "reason"),
}
"""Event type -> handler; other types are marked ``ignored`` and kept."""
