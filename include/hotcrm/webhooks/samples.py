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
