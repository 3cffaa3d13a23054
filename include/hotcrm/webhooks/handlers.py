"""Handlers for payment events, applied inside the caller's transaction.

Two payload families are understood.

The partner payload (HotCRM's integration spec; ``type`` or ``event``, snake_case or camelCase
fields, ``created`` or ``timestamp`` as the event time, Unix seconds or ISO 8601)::

    {"id": "evt_...", "type": "payment.succeeded", "created": 1764100000,
     "data": {"transaction_id": "txn_...", "amount": "1000.00", "currency": "USD",
              "payment_method": "card", "failure_reason": "...", "refund_amount": "..."}}
    {"event": "payment.succeeded",
     "data": {"transactionId": "txn_...", "amount": 120.5, "method": "card"}}

Stripe's events (``payment_intent.succeeded``, ``payment_intent.payment_failed``,
``charge.succeeded``, ``charge.refunded``): the Payment is found by the source's
``payment_path`` (default ``data.object.metadata.transaction_id``), else the object's ``id``,
else (a charge) its ``payment_intent``; amounts are in the currency's minor unit.

A handler returns a short result note, or raises :class:`RetryableError` (try again later,
e.g. the Payment is not in the CRM yet) or any other exception (a bad payload; also retried,
then dead-lettered).

The same events give the same result whatever order and batches they are applied in:

- the status is that of the newest event (event time; with equal times the later stage
  wins), so a late ``payment.succeeded`` after a refund does not undo the refund;
- every failure and refund adds its Activity, dated at the event's time, even when it is
  older than the status;
- a success records the money once (PaidDate, PaidAmount, PaymentMethod, the Activity
  ``Payment Received`` and a ``payment.received`` outbox event): when the Payment has no
  PaidDate yet (even if a newer refund already set the status), or when it is newer than
  the status and the Payment is not already ``Paid``. A second notice of the same payment
  (Stripe sends ``payment_intent.succeeded`` and ``charge.succeeded``) records nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotcrm.crm.events import record_event
from hotcrm.crm.models import Activity, Payment
from hotcrm.webhooks.config import DEFAULT_PAYMENT_PATH, extract


class RetryableError(Exception):
    """The event cannot be applied yet (e.g. its Payment does not exist yet): retry later."""


class PayloadError(ValueError):
    """The event's payload lacks a field or has a bad value (names the field)."""


def aware(value: datetime | None) -> datetime | None:
    """A datetime as aware UTC (SQLite hands back naive UTC values)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


_PAID, _FAILED, _REFUNDED = "Paid", "Failed", "Refunded"

# Currencies whose Stripe amounts are not in hundredths (docs.stripe.com/currencies:
# "Zero-decimal currencies" and "Three-decimal currencies"). The page's "special cases"
# (ISK, HUF, TWD) are sent with two decimals in the API for compatibility, so they stay at 2.
ZERO_DECIMAL_CURRENCIES = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)
THREE_DECIMAL_CURRENCIES = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point of a currency's Stripe minor unit (JPY 0, USD 2, KWD 3)."""
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if code in THREE_DECIMAL_CURRENCIES else 2


@dataclass(frozen=True)
class PaymentFacts:
    """What an event says about a Payment, whatever its payload family."""

    outcome: str  # Paid, Failed or Refunded
    refs: tuple[str, ...]  # the Payment's TransactionId candidates, first match wins
    amount: Decimal | None
    currency: str | None = None
    method: str | None = None
    detail: str | None = None


def _field(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value is not None:
            return value
    return None


def _data(payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PayloadError("field 'data' must be an object with the payment's fields")
    return data


def _decimal(raw: Any, name: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise PayloadError(f"field '{name}' must be a decimal amount, got {raw!r}")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise PayloadError(f"field '{name}' must be a decimal amount, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise PayloadError(f"field '{name}' must be a non-negative amount, got {raw!r}")
    return value.quantize(Decimal("0.01"))


def _partner_amount(data: dict[str, Any], names: tuple[str, ...], *, required: bool) -> Decimal | None:
    raw = _field(data, *names)
    if raw is None:
        if required:
            raise PayloadError(f"field 'data.{names[0]}' is required (the amount paid)")
        return None
    return _decimal(raw, "data." + next(n for n in names if data.get(n) is not None))


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) else None


def partner_facts(outcome: str) -> Callable[[dict[str, Any], str], PaymentFacts]:
    """The reader of the partner payload's ``payment.succeeded|failed|refunded``."""

    def read(payload: dict[str, Any], _payment_path: str) -> PaymentFacts:
        data = _data(payload)
        txn = _field(data, "transaction_id", "transactionId")
        if not isinstance(txn, str) or not txn:
            raise PayloadError(
                "field 'data.transaction_id' (or 'data.transactionId') is required: the Payment's TransactionId"
            )
        if outcome == _PAID:
            amount = _partner_amount(data, ("amount",), required=True)
        elif outcome == _REFUNDED:
            amount = _partner_amount(data, ("refund_amount", "refundAmount", "amount"), required=False)
        else:
            amount = _partner_amount(data, ("amount",), required=False)
        detail_names = ("failure_reason", "failureReason") if outcome == _FAILED else ("reason",)
        return PaymentFacts(
            outcome=outcome,
            refs=(txn,),
            amount=amount,
            currency=_text(data.get("currency")),
            method=_text(_field(data, "payment_method", "paymentMethod", "method")),
            detail=_text(_field(data, *detail_names)),
        )

    return read


def _stripe_amount(obj: dict[str, Any], names: tuple[str, ...]) -> tuple[Decimal, str]:
    currency = obj.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise PayloadError(f"field 'data.object.currency' must be a three-letter currency code, got {currency!r}")
    raw = _field(obj, *names)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise PayloadError(f"field 'data.object.{names[0]}' must be a non-negative integer (minor units), got {raw!r}")
    value = Decimal(raw).scaleb(-currency_exponent(currency))
    return value.quantize(Decimal("0.01")) if currency_exponent(currency) <= 2 else value, currency.upper()


def stripe_facts(outcome: str, amount_fields: tuple[str, ...]) -> Callable[[dict[str, Any], str], PaymentFacts]:
    """The reader of a Stripe event about a PaymentIntent or a Charge."""

    def read(payload: dict[str, Any], payment_path: str) -> PaymentFacts:
        obj = _data(payload).get("object")
        if not isinstance(obj, dict):
            raise PayloadError("field 'data.object' must be the Stripe object the event is about")
        refs = [extract(payload, payment_path, {}), obj.get("id")]
        if obj.get("object") == "charge":
            refs.append(obj.get("payment_intent"))
        refs = tuple(dict.fromkeys(r for r in refs if isinstance(r, str) and r))
        if not refs:
            raise PayloadError(f"no TransactionId at {payment_path!r} and no 'data.object.id'")
        amount, currency = _stripe_amount(obj, amount_fields)
        details = obj.get("payment_method_details")
        method = details.get("type") if isinstance(details, dict) else None
        if method is None and isinstance(obj.get("payment_method_types"), list) and obj["payment_method_types"]:
            method = obj["payment_method_types"][0]
        error = obj.get("last_payment_error")
        detail = _text(error.get("message") or error.get("code")) if isinstance(error, dict) else None
        if detail is None:
            detail = _text(obj.get("failure_message"))
        return PaymentFacts(outcome, refs, amount, currency, _text(method), detail)

    return read


class EventContext:
    """What a handler knows besides the payload: the inbox row's identity and event time, the
    Payments the processor already loaded (and locked) for its batch, how to emit an outbox
    event (at once, or gathered for the end of the batch: same transaction either way), and
    where the source's Stripe events name their Payment."""

    def __init__(
        self,
        source: str,
        event_id: str,
        event_type: str,
        event_time: datetime,
        payments: dict[str, Payment] | None = None,
        emit: Callable[[Session, str, dict[str, Any]], None] | None = None,
        payment_path: str = DEFAULT_PAYMENT_PATH,
    ) -> None:
        self.source = source
        self.event_id = event_id
        self.event_type = event_type
        self.event_time = event_time
        self.payments = payments if payments is not None else {}
        self.emit = emit or (lambda session, event_type, data: record_event(session, event_type, data))
        self.payment_path = payment_path


def _payment(session: Session, facts: PaymentFacts, ctx: EventContext) -> Payment:
    for ref in facts.refs:
        payment = ctx.payments.get(ref)
        if payment is not None:
            return payment
    # FOR UPDATE on PostgreSQL: two workers with events for one Payment apply them one at a time.
    found = {
        p.transaction_id: p
        for p in session.scalars(
            select(Payment).where(Payment.transaction_id.in_(facts.refs)).order_by(Payment.id).with_for_update()
        )
    }
    for ref in facts.refs:
        if ref in found:
            return found[ref]
    raise RetryableError(f"no Payment with TransactionId {' or '.join(map(repr, facts.refs))} yet")


def _money(value: Decimal, currency: str | None = "USD") -> str:
    code = (currency or "USD").upper()
    if code == "USD":
        return f"${value:,.2f}"
    return f"{value:,.{min(currency_exponent(code), 2)}f} {code}"


def _long_money(value: Decimal, currency: str | None) -> str:
    text = _money(value, currency)
    return text + " USD" if text.startswith("$") else text


# Where a Payment's life can end up; with equal event times (providers often stamp whole
# seconds) the later stage wins, so a refund and its payment in the same second end Refunded.
_STAGE = {"Pending": 0, _FAILED: 1, _PAID: 2, _REFUNDED: 3}


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


def _check_currency(payment: Payment, facts: PaymentFacts) -> None:
    if facts.currency and payment.currency and facts.currency.upper() != payment.currency.upper():
        raise PayloadError(
            f"the event is in {facts.currency.upper()} but Payment {payment.transaction_id!r} is in {payment.currency}"
        )


def apply_facts(session: Session, facts: PaymentFacts, ctx: EventContext) -> str:
    """Apply what an event says to its Payment, by the rules in the module's docstring."""
    payment = _payment(session, facts, ctx)
    _check_currency(payment, facts)
    stale = _is_stale(payment, ctx.event_time, facts.outcome)
    if facts.outcome == _PAID:
        return _succeeded(session, payment, facts, ctx, stale)
    amount = facts.amount if facts.amount is not None else payment.amount
    if not stale:
        payment.status = facts.outcome
        payment.last_event_at = ctx.event_time
    verb = "failed" if facts.outcome == _FAILED else "refunded"
    description = f"Payment of {_long_money(amount, payment.currency)} {verb} (transaction {payment.transaction_id})"
    _activity(
        session,
        payment,
        f"Payment {facts.outcome}: {_money(amount, payment.currency)}",
        description + (f": {facts.detail}." if facts.detail else "."),
        ctx.event_time,
    )
    if stale:
        return f"stale: older than the last applied event; Activity recorded, status stays {payment.status}"
    return f"applied: {facts.outcome}"


def _succeeded(session: Session, payment: Payment, facts: PaymentFacts, ctx: EventContext, stale: bool) -> str:
    first = payment.paid_date is None
    records = first or (not stale and payment.status != _PAID)
    if not stale:
        payment.status = _PAID
        payment.last_event_at = ctx.event_time
    if not records:
        if stale:
            return f"stale: older than the last applied event; status stays {payment.status}"
        return "already Paid: nothing new recorded"
    amount = facts.amount
    method = facts.method or "unknown method"
    payment.paid_date = ctx.event_time
    payment.paid_amount = amount
    payment.payment_method = method[:40]
    _activity(
        session,
        payment,
        f"Payment Received: {_money(amount, payment.currency)}",
        f"Payment of {_long_money(amount, payment.currency)} received by {method}"
        f" (transaction {payment.transaction_id}).",
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
    if stale:
        return f"stale: older than the last applied event; payment recorded, status stays {payment.status}"
    return "applied: Paid"


Reader = Callable[[dict[str, Any], str], PaymentFacts]
Handler = Callable[[Session, dict[str, Any], "EventContext"], str]

# Stripe objects: docs.stripe.com/api/payment_intents/object (amount, amount_received,
# currency, metadata, payment_method_types, last_payment_error) and
# docs.stripe.com/api/charges/object (amount, amount_captured, amount_refunded, currency,
# metadata, payment_intent, payment_method_details.type, failure_message).
READERS: dict[str, Reader] = {
    "payment.succeeded": partner_facts(_PAID),
    "payment.failed": partner_facts(_FAILED),
    "payment.refunded": partner_facts(_REFUNDED),
    "payment_intent.succeeded": stripe_facts(_PAID, ("amount_received", "amount")),
    "payment_intent.payment_failed": stripe_facts(_FAILED, ("amount",)),
    "charge.succeeded": stripe_facts(_PAID, ("amount_captured", "amount")),
    "charge.refunded": stripe_facts(_REFUNDED, ("amount_refunded",)),
}
"""Event type -> how to read its payload; other types are marked ``ignored`` and kept."""


def _handler(reader: Reader) -> Handler:
    def handler(session: Session, payload: dict[str, Any], ctx: EventContext) -> str:
        return apply_facts(session, reader(payload, ctx.payment_path), ctx)

    return handler


HANDLERS: dict[str, Handler] = {event_type: _handler(reader) for event_type, reader in READERS.items()}
"""Event type -> handler; other types are marked ``ignored`` and kept."""


def payment_refs(event_type: str, payload: Any, payment_path: str = DEFAULT_PAYMENT_PATH) -> tuple[str, ...]:
    """The TransactionIds an event may name (for loading its Payment ahead); none if unreadable."""
    reader = READERS.get(event_type)
    if reader is None or not isinstance(payload, dict):
        return ()
    try:
        return reader(payload, payment_path).refs
    except PayloadError:
        return ()
