"""Webhook signature schemes: verify a delivery on its raw body, or sign one (partners, demo, tests).

Schemes:

- ``hmac-sha256``: hex HMAC-SHA256 of the body, keyed with the secret's UTF-8 bytes, in one
  header (default ``X-Payment-Signature``), optionally prefixed ``sha256=``. No timestamp.
- ``standard-webhooks`` (standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp``
  and ``webhook-signature`` (``v1,<base64>``, several space-separated); the secret is
  ``whsec_<base64 key>``; the signed string is ``<id>.<timestamp>.<body>``.
- ``stripe``: ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``; the signed string
  is ``<t>.<body>``, keyed with the endpoint secret's UTF-8 bytes (``whsec_...`` as is).

Every comparison is :func:`hmac.compare_digest`, and every active secret is tried, so a
partner can switch to a new secret while the old one is still accepted (rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

HMAC_SHA256 = "hmac-sha256"
STANDARD_WEBHOOKS = "standard-webhooks"
STRIPE = "stripe"
SCHEMES = (HMAC_SHA256, STANDARD_WEBHOOKS, STRIPE)

DEFAULT_HMAC_HEADER = "X-Payment-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """A delivery whose signature does not verify; ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>`` (the prefix is optional)."""
    encoded = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a standard-webhooks secret must be 'whsec_' followed by base64") from exc
    if not key:
        raise ValueError("a standard-webhooks secret must not be empty")
    return key


def _check_timestamp(raw: str | None, now: float, tolerance: int) -> int:
    try:
        timestamp = int(raw or "")
    except ValueError:
        raise SignatureError("INVALID_SIGNATURE", "the signature timestamp is missing or not a Unix time") from None
    if abs(now - timestamp) > tolerance:
        direction = "old" if timestamp < now else "far in the future"
        raise SignatureError(
            "STALE_TIMESTAMP",
            f"the signature timestamp is too {direction}: deliveries must be signed within "
            f"{tolerance} seconds of the receiver's clock",
        )
    return timestamp


def _ascii(value: str) -> bytes | None:
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        return None


def verify(
    scheme: str,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    header: str = DEFAULT_HMAC_HEADER,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int | None:
    """Verify ``body`` against ``headers`` (names case-insensitive) with any of ``secrets``.

    Returns the signed Unix timestamp for schemes that carry one (else ``None``); raises
    :class:`SignatureError` with code ``MISSING_SIGNATURE``, ``INVALID_SIGNATURE`` or
    ``STALE_TIMESTAMP``.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    now = time.time() if now is None else now
    if scheme == HMAC_SHA256:
        return _verify_hmac(secrets, lowered, body, header.lower())
    if scheme == STANDARD_WEBHOOKS:
        return _verify_standard(secrets, lowered, body, now, tolerance_seconds)
    if scheme == STRIPE:
        return _verify_stripe(secrets, lowered, body, now, tolerance_seconds)
    raise ValueError(f"unknown signature scheme {scheme!r}; use one of {', '.join(SCHEMES)}")


def _verify_hmac(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, header: str) -> None:
    value = headers.get(header)
    if not value:
        raise SignatureError("MISSING_SIGNATURE", f"the {header} header is missing")
    value = value.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:]
    given = _ascii(value.lower())
    if given is not None:
        for secret in secrets:
            expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")
            if hmac.compare_digest(expected, given):
                return None
    raise SignatureError("INVALID_SIGNATURE", "the signature does not match the body")


def _verify_standard(
    secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, tolerance: int
) -> int:
    msg_id, raw_ts, raw_sigs = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    )
    if not (msg_id and raw_ts and raw_sigs):
        raise SignatureError(
            "MISSING_SIGNATURE", "the webhook-id, webhook-timestamp and webhook-signature headers are required"
        )
    timestamp = _check_timestamp(raw_ts, now, tolerance)
    given = []
    for part in raw_sigs.split():
        version, _, encoded = part.partition(",")
        if version != "v1":
            continue  # v1a (asymmetric) and future versions are not ours to check
        try:
            given.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    signed = f"{msg_id}.{raw_ts}.".encode() + body
    for secret in secrets:
        expected = _hmac(standard_webhooks_key(secret), signed)
        for candidate in given:
            if hmac.compare_digest(expected, candidate):
                return timestamp
    raise SignatureError("INVALID_SIGNATURE", "no webhook-signature entry matches the body")


def _verify_stripe(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: float, tolerance: int) -> int:
    value = headers.get("stripe-signature")
    if not value:
        raise SignatureError("MISSING_SIGNATURE", "the Stripe-Signature header is missing")
    # Parsed as Stripe's own SDK does (stripe.WebhookSignature): entries split on "," with no
    # trimming (" v1=..." is not a v1 entry), the first "t=" wins, and a signature is compared
    # as given, so only Stripe's lower-case hex can match.
    entries = [item.split("=", 2) for item in value.split(",")]
    raw_ts = next((entry[1] for entry in entries if entry[0] == "t" and len(entry) > 1), None)
    given = [encoded for entry in entries if entry[0] == "v1" and len(entry) > 1 if (encoded := _ascii(entry[1]))]
    if raw_ts is None or not given:
        raise SignatureError("INVALID_SIGNATURE", "the Stripe-Signature header needs t= and at least one v1=")
    timestamp = _check_timestamp(raw_ts, now, tolerance)
    signed = f"{timestamp}.".encode() + body
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest().encode("ascii")
        for candidate in given:
            if hmac.compare_digest(expected, candidate):
                return timestamp
    raise SignatureError("INVALID_SIGNATURE", "no v1 signature in Stripe-Signature matches the body")


def sign(
    scheme: str,
    secret: str | Sequence[str],
    body: bytes,
    *,
    header: str = DEFAULT_HMAC_HEADER,
    timestamp: int | None = None,
    msg_id: str | None = None,
) -> dict[str, str]:
    """The headers a sender adds to ``body`` for ``scheme``; several secrets give several
    signatures (standard-webhooks and stripe), as a sender does while rotating."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    if scheme == HMAC_SHA256:
        digest = hmac.new(secrets[0].encode("utf-8"), body, hashlib.sha256).hexdigest()
        return {header: f"sha256={digest}"}
    if scheme == STANDARD_WEBHOOKS:
        if not msg_id:
            raise ValueError("standard-webhooks signing needs msg_id (the event id)")
        signed = f"{msg_id}.{timestamp}.".encode() + body
        signatures = " ".join(
            "v1," + base64.b64encode(_hmac(standard_webhooks_key(s), signed)).decode("ascii") for s in secrets
        )
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}
    if scheme == STRIPE:
        signed = f"{timestamp}.".encode() + body
        parts = [f"t={timestamp}"] + [
            "v1=" + hmac.new(s.encode("utf-8"), signed, hashlib.sha256).hexdigest() for s in secrets
        ]
        return {"Stripe-Signature": ",".join(parts)}
    raise ValueError(f"unknown signature scheme {scheme!r}; use one of {', '.join(SCHEMES)}")


def relevant_headers(scheme: str, headers: Mapping[str, str], header: str = DEFAULT_HMAC_HEADER) -> dict[str, str]:
    """The headers worth keeping with a stored delivery (signature, ids, content type, agent)."""
    names = {"content-type", "user-agent", "x-request-id", "idempotency-key", "webhook-id"}
    if scheme == HMAC_SHA256:
        names.add(header.lower())
    elif scheme == STANDARD_WEBHOOKS:
        names.update(("webhook-id", "webhook-timestamp", "webhook-signature"))
    elif scheme == STRIPE:
        names.add("stripe-signature")
    return {k.lower(): v for k, v in headers.items() if k.lower() in names}
