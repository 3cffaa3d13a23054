"""Sample payment-provider events, signed like a partner would (demo, benchmark, tests)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from hotcrm.webhooks.signatures import DEFAULT_HMAC_HEADER, sign


def payment_event(
    event_type: str,
    transaction_id: str,
    amount: str = "1000.00",
    *,
    event_id: str | None = None,
    created: int | str | None = None,
    payment_method: str = "card",
    **data: Any,
) -> dict[str, Any]:
    """A provider event: ``{"id", "type", "created", "data": {...}}``."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "data": {"transaction_id": transaction_id, "amount": amount, "payment_method": payment_method, **data},
    }


def encode(event: dict[str, Any]) -> bytes:
    """The event as the compact JSON body a provider sends."""
    return json.dumps(event, separators=(",", ":")).encode("utf-8")


def signed_headers(
    scheme: str,
    secrets: str | list[str],
    body: bytes,
    event_id: str,
    *,
    timestamp: int | None = None,
    header: str = DEFAULT_HMAC_HEADER,
) -> dict[str, str]:
    """Content-Type plus the signature headers of ``scheme`` for ``body``."""
    return {
        "Content-Type": "application/json",
        **sign(scheme, secrets, body, header=header, timestamp=timestamp, msg_id=event_id),
    }


def partner_notification(event: str, transaction_id: str, amount: float | str = 120.5, **data: Any) -> dict[str, Any]:
    """The original partner spec's body: ``{"event", "data": {"transactionId", "amount", "method"}}``
    (no id, no time, camelCase)."""
    return {"event": event, "data": {"transactionId": transaction_id, "amount": amount, "method": "card", **data}}


def stripe_payment_intent(
    intent_id: str, amount: int, currency: str = "usd", *, transaction_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A PaymentIntent as docs.stripe.com/api/payment_intents/object shows it (the fields HotCRM reads)."""
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount,
        "currency": currency,
        "customer": None,
        "last_payment_error": None,
        "latest_charge": "ch_" + intent_id[3:],
        "livemode": False,
        "metadata": {"transaction_id": transaction_id} if transaction_id else {},
        "payment_method": "pm_1NG8Du2eZvKYlo2CYzzldNr7",
        "payment_method_types": ["card"],
        "status": "succeeded",
        **fields,
    }


def stripe_charge(
    charge_id: str, amount: int, currency: str = "usd", *, payment_intent: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A Charge as docs.stripe.com/api/charges/object shows it (the fields HotCRM reads)."""
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "captured": True,
        "currency": currency,
        "failure_message": None,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
        "refunded": False,
        "status": "succeeded",
        **fields,
    }


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None):
    """An Event as docs.stripe.com/api/events/object shows it, wrapping ``obj``."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
