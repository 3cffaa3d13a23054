"""Pure logic of the partner payloads: event identity without an id, the defaults of a source
with nothing but a secret, both payload spellings, Stripe's minor units by currency
(docs.stripe.com/currencies), and the Stripe-Signature parsing of Stripe's SDK."""

import hashlib
import json
from decimal import Decimal

import pytest
import stripe

from hotcrm.webhooks.config import config_from_connection, derive_event_id, event_identity
from hotcrm.webhooks.handlers import READERS, PayloadError, currency_exponent, payment_refs
from hotcrm.webhooks.samples import partner_notification, stripe_charge, stripe_event, stripe_payment_intent
from hotcrm.webhooks.signatures import SignatureError, verify


def test_a_source_with_only_a_secret_is_hmac_sha256_with_derived_identity():
    config = config_from_connection("payment", "s3cret", None)
    assert (config.scheme, config.header, config.event_id_path, config.payment_path) == (
        "hmac-sha256",
        "X-Payment-Signature",
        None,
        "data.object.metadata.transaction_id",
    )
    assert config.read_timeout_seconds == 10


def test_event_identity_prefers_the_body_id_then_an_idempotency_header_then_the_body_hash():
    body = b'{"event": "payment.succeeded"}'
    assert derive_event_id({"id": "evt_1"}, {"Idempotency-Key": "k"}, body) == "evt_1"
    assert derive_event_id({}, {"X-Request-Id": "r", "Idempotency-Key": "k"}, body) == "k"
    assert derive_event_id({}, {"Webhook-Id": "w", "X-Request-Id": "r"}, body) == "w"
    assert derive_event_id({}, {"x-request-id": "r"}, body) == "r"
    assert derive_event_id({}, {}, body) == "sha256:" + hashlib.sha256(body).hexdigest()
    assert derive_event_id({}, {}, body + b" ") != derive_event_id({}, {}, body)


def test_type_and_time_fall_back_only_when_the_source_names_no_path():
    config = config_from_connection("payment", "s", None)
    payload = {"event": "payment.failed", "timestamp": 1700000000}
    _, event_type, when = event_identity(config, payload, {}, b"{}")
    assert (event_type, when) == ("payment.failed", 1700000000)
    strict = config_from_connection("payment", "s", {"event_type_path": "type", "event_time_path": "created"})
    _, event_type, when = event_identity(strict, payload, {}, b"{}")
    assert (event_type, when) == (None, None)


@pytest.mark.parametrize(
    "data",
    [
        {"transactionId": "t", "amount": 120.5, "method": "card"},
        {"transaction_id": "t", "amount": "120.50", "payment_method": "card"},
        {"transactionId": "t", "amount": 120.5, "paymentMethod": "card"},
    ],
)
def test_both_spellings_of_the_partner_payload_read_alike(data):
    facts = READERS["payment.succeeded"]({"event": "payment.succeeded", "data": data}, "unused")
    assert (facts.refs, facts.amount, facts.method) == (("t",), Decimal("120.50"), "card")


def test_a_partner_refund_reads_its_refund_amount_in_either_spelling():
    read = READERS["payment.refunded"]
    assert read(partner_notification("payment.refunded", "t", refundAmount="20"), "").amount == Decimal("20.00")
    assert read(partner_notification("payment.refunded", "t", 120.5), "").amount == Decimal("120.50")
    with pytest.raises(PayloadError, match="transactionId"):
        read({"event": "payment.refunded", "data": {"amount": 1}}, "")


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("usd", 2), ("JPY", 0), ("krw", 0), ("vnd", 0), ("xof", 0), ("kwd", 3), ("bhd", 3), ("isk", 2), ("huf", 2)],
)
def test_currency_exponents_follow_stripes_list(currency, exponent):
    assert currency_exponent(currency) == exponent


def test_stripe_amounts_and_payment_references():
    read = READERS["payment_intent.succeeded"]
    intent = stripe_payment_intent("pi_1", 1999, transaction_id="txn_9")
    facts = read(stripe_event("payment_intent.succeeded", intent), "data.object.metadata.transaction_id")
    assert (facts.refs, facts.amount, facts.currency, facts.method) == (
        ("txn_9", "pi_1"),
        Decimal("19.99"),
        "USD",
        "card",
    )
    charge = stripe_charge("ch_1", 500, "jpy", payment_intent="pi_1", amount_refunded=500)
    event = stripe_event("charge.refunded", charge)
    refunded = READERS["charge.refunded"](event, "data.object.metadata.transaction_id")
    assert (refunded.refs, refunded.amount) == (("ch_1", "pi_1"), Decimal("500.00"))
    assert payment_refs("charge.refunded", event) == ("ch_1", "pi_1")
    assert payment_refs("invoice.paid", event) == ()
    with pytest.raises(PayloadError, match="minor units"):
        read(stripe_event("payment_intent.succeeded", {**intent, "amount_received": "19.99"}), "x")


def test_stripe_signature_parsing_matches_the_sdk():
    secret, body = "whsec_unit", json.dumps({"id": "evt_1"})
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=1_800_000_000)
    assert verify("stripe", [secret], {"Stripe-Signature": header}, body.encode(), now=1_800_000_000) == 1_800_000_000
    t, v1 = header.split(",")
    for bad in (f"{t}, {v1}", f"{t},{v1.upper().replace('V1=', 'v1=')}", f"t=1,{t},{v1}", f" {t},{v1}"):
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(body, bad, secret, tolerance=None)
        with pytest.raises(SignatureError):
            verify("stripe", [secret], {"Stripe-Signature": bad}, body.encode(), now=1_800_000_000)
    # A later t= changes nothing; an extra scheme entry is ignored, as the SDK does.
    assert verify("stripe", [secret], {"Stripe-Signature": f"{header},t=5,v0=ab"}, body.encode(), now=1_800_000_000)


def test_a_source_that_cannot_be_read_uses_the_default_payment_path(caplog):
    from hotcrm.webhooks.processing import PaymentPaths

    def broken(_source):
        raise RuntimeError("secrets backend timed out: token=abc")

    paths = PaymentPaths(broken)
    assert paths("stripe") == "data.object.metadata.transaction_id"
    assert "connection not readable" in caplog.text and "token=abc" not in caplog.text
    custom = PaymentPaths(lambda source: config_from_connection(source, "s", {"payment_path": "data.object.id"}))
    assert custom("stripe") == "data.object.id"
