"""Signature schemes, checked both ways against independent implementations: the
``standardwebhooks`` library, and Stripe's published algorithm written out here
(HMAC-SHA256 of ``"{t}.{body}"`` keyed by the endpoint secret, hex, in ``t=...,v1=...``)."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from hotcrm.webhooks import signatures
from hotcrm.webhooks.config import SourceConfigError, config_from_connection, extract, parse_connection_value
from hotcrm.webhooks.signatures import SignatureError, sign, verify

BODY = json.dumps({"id": "evt_1", "type": "payment.succeeded", "data": {"amount": "1.00", "note": "café"}}).encode()
SW_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
SW_OTHER = "whsec_" + base64.b64encode(b"another-key-another-key-another!!").decode()
STRIPE_SECRET = "whsec_stripe_test_secret_123"
NOW = int(time.time())


def _stripe_reference_header(secret: str, body: bytes, t: int) -> str:
    # Stripe's documented scheme, independent of our code.
    digest = hmac.new(secret.encode(), f"{t}.{body.decode()}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


# --- standard-webhooks -------------------------------------------------------------------


def test_standard_webhooks_accepts_what_the_reference_library_signs():
    lib = standardwebhooks.Webhook(SW_SECRET)
    header = lib.sign("msg_1", datetime.fromtimestamp(NOW, UTC), BODY.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": header}
    assert verify("standard-webhooks", [SW_SECRET], headers, BODY, now=NOW) == NOW


def test_the_reference_library_accepts_what_we_sign():
    headers = sign("standard-webhooks", SW_SECRET, BODY, msg_id="msg_2")
    assert standardwebhooks.Webhook(SW_SECRET).verify(BODY, headers) == json.loads(BODY)


def test_the_reference_library_accepts_our_rotation_header_with_either_secret():
    headers = sign("standard-webhooks", [SW_OTHER, SW_SECRET], BODY, msg_id="msg_3")
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (SW_SECRET, SW_OTHER):
        standardwebhooks.Webhook(secret).verify(BODY, headers)


def test_standard_webhooks_refuses_a_tampered_body_and_a_wrong_secret():
    headers = sign("standard-webhooks", SW_SECRET, BODY, msg_id="m", timestamp=NOW)
    with pytest.raises(SignatureError) as err:
        verify("standard-webhooks", [SW_SECRET], headers, BODY + b" ", now=NOW)
    assert err.value.code == "INVALID_SIGNATURE"
    with pytest.raises(SignatureError):
        verify("standard-webhooks", [SW_OTHER], headers, BODY, now=NOW)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SW_OTHER).verify(BODY, headers)


def test_standard_webhooks_id_is_part_of_the_signed_string():
    headers = sign("standard-webhooks", SW_SECRET, BODY, msg_id="m1", timestamp=NOW)
    headers["webhook-id"] = "m2"
    with pytest.raises(SignatureError):
        verify("standard-webhooks", [SW_SECRET], headers, BODY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301])
def test_standard_webhooks_stale_or_future_timestamp_has_its_own_code(offset):
    headers = sign("standard-webhooks", SW_SECRET, BODY, msg_id="m", timestamp=NOW + offset)
    with pytest.raises(SignatureError) as err:
        verify("standard-webhooks", [SW_SECRET], headers, BODY, now=NOW)
    assert err.value.code == "STALE_TIMESTAMP"
    # The reference library (on the real clock) refuses the same kind of delivery.
    late = sign("standard-webhooks", SW_SECRET, BODY, msg_id="m", timestamp=int(time.time()) + 2 * offset)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SW_SECRET).verify(BODY, late)


def test_standard_webhooks_inside_the_tolerance_is_fine():
    headers = sign("standard-webhooks", SW_SECRET, BODY, msg_id="m", timestamp=NOW - 299)
    assert verify("standard-webhooks", [SW_SECRET], headers, BODY, now=NOW) == NOW - 299


def test_standard_webhooks_missing_headers():
    with pytest.raises(SignatureError) as err:
        verify("standard-webhooks", [SW_SECRET], {"webhook-id": "x"}, BODY, now=NOW)
    assert err.value.code == "MISSING_SIGNATURE"


def test_standard_webhooks_garbage_signature_entries_are_skipped_not_crashing():
    good = sign("standard-webhooks", SW_SECRET, BODY, msg_id="m", timestamp=NOW)["webhook-signature"]
    headers = {"webhook-id": "m", "webhook-timestamp": str(NOW), "webhook-signature": f"v1,@@@ v1a,xyz junk {good}"}
    assert verify("standard-webhooks", [SW_SECRET], headers, BODY, now=NOW) == NOW


# --- stripe ------------------------------------------------------------------------------


def test_stripe_accepts_the_published_algorithm():
    headers = {"Stripe-Signature": _stripe_reference_header(STRIPE_SECRET, BODY, NOW)}
    assert verify("stripe", [STRIPE_SECRET], headers, BODY, now=NOW) == NOW


def test_stripe_our_signature_equals_the_published_algorithm():
    assert sign("stripe", STRIPE_SECRET, BODY, timestamp=NOW) == {
        "Stripe-Signature": _stripe_reference_header(STRIPE_SECRET, BODY, NOW)
    }


def test_stripe_several_v1_and_a_v0_entry():
    good = _stripe_reference_header(STRIPE_SECRET, BODY, NOW).split(",")[1]
    header = f"t={NOW},v0=deadbeef,v1={'0' * 64},{good}"
    assert verify("stripe", [STRIPE_SECRET], {"stripe-signature": header}, BODY, now=NOW) == NOW


def test_stripe_refuses_wrong_secret_tampered_body_and_changed_timestamp():
    header = _stripe_reference_header(STRIPE_SECRET, BODY, NOW)
    for secrets, body, hdr in (
        (["whsec_other"], BODY, header),
        ([STRIPE_SECRET], BODY.replace(b"1.00", b"9.00"), header),
        ([STRIPE_SECRET], BODY, header.replace(f"t={NOW}", f"t={NOW - 1}")),
    ):
        with pytest.raises(SignatureError) as err:
            verify("stripe", secrets, {"Stripe-Signature": hdr}, body, now=NOW)
        assert err.value.code == "INVALID_SIGNATURE"


@pytest.mark.parametrize("offset", [-301, 400])
def test_stripe_timestamp_outside_tolerance(offset):
    header = _stripe_reference_header(STRIPE_SECRET, BODY, NOW + offset)
    with pytest.raises(SignatureError) as err:
        verify("stripe", [STRIPE_SECRET], {"Stripe-Signature": header}, BODY, now=NOW)
    assert err.value.code == "STALE_TIMESTAMP"


def test_stripe_custom_tolerance():
    header = _stripe_reference_header(STRIPE_SECRET, BODY, NOW - 100)
    with pytest.raises(SignatureError):
        verify("stripe", [STRIPE_SECRET], {"Stripe-Signature": header}, BODY, now=NOW, tolerance_seconds=60)


# --- hmac-sha256 -------------------------------------------------------------------------


def test_hmac_sha256_with_and_without_prefix_and_any_case():
    digest = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    for value in (digest, f"sha256={digest}", digest.upper(), f"SHA256={digest}"):
        assert verify("hmac-sha256", ["s3cret"], {"X-Payment-Signature": value}, BODY) is None


def test_hmac_sha256_custom_header_and_failures():
    digest = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert verify("hmac-sha256", ["s3cret"], {"X-Sig": digest}, BODY, header="X-Sig") is None
    with pytest.raises(SignatureError) as err:
        verify("hmac-sha256", ["s3cret"], {"X-Sig": digest}, BODY)
    assert err.value.code == "MISSING_SIGNATURE"
    with pytest.raises(SignatureError) as err:
        verify("hmac-sha256", ["other"], {"X-Payment-Signature": digest}, BODY)
    assert err.value.code == "INVALID_SIGNATURE"
    with pytest.raises(SignatureError):
        verify("hmac-sha256", ["s3cret"], {"X-Payment-Signature": "sha256=é" + digest}, BODY)


def test_rotation_any_active_secret_verifies_each_scheme():
    for scheme, old, new in (
        ("hmac-sha256", "old-secret", "new-secret"),
        ("stripe", "whsec_old", "whsec_new"),
        ("standard-webhooks", SW_SECRET, SW_OTHER),
    ):
        for signer in (old, new):
            headers = sign(scheme, signer, BODY, msg_id="m", timestamp=NOW)
            verify(scheme, [old, new], headers, BODY, now=NOW)
        with pytest.raises(SignatureError):
            verify(scheme, [new], sign(scheme, old, BODY, msg_id="m", timestamp=NOW), BODY, now=NOW)


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(signatures.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for scheme, secret in (("hmac-sha256", "k"), ("stripe", "whsec_k"), ("standard-webhooks", SW_SECRET)):
        calls.clear()
        with pytest.raises(SignatureError):
            verify(scheme, [secret], sign(scheme, secret, BODY, msg_id="m", timestamp=NOW), BODY + b"x", now=NOW)
        assert calls, f"{scheme} must compare with hmac.compare_digest"


# --- source configuration ----------------------------------------------------------------


def test_config_from_json_connection_merges_password_and_extra_secrets_and_hides_them():
    value = json.dumps(
        {
            "conn_type": "generic",
            "password": "sekrit-1 sekrit-2",
            "extra": {"scheme": "stripe", "secrets": ["sekrit-3"], "tolerance_seconds": 60},
        }
    )
    config = parse_connection_value("payment", value)
    assert config.secrets == ("sekrit-1", "sekrit-2", "sekrit-3")
    assert config.scheme == "stripe" and config.tolerance_seconds == 60
    assert "sekrit" not in repr(config) and "sekrit" not in str(config)


def test_config_from_uri_connection():
    config = parse_connection_value("payment", "generic://:s%2F1@/?scheme=hmac-sha256&header=X-Sig&max_body_bytes=10")
    assert config.secrets == ("s/1",) and config.header == "X-Sig" and config.max_body_bytes == 10


def test_standard_webhooks_defaults_to_the_webhook_id_header_as_event_id():
    config = config_from_connection("p", SW_SECRET, {"scheme": "standard-webhooks"})
    assert config.event_id_path == "header:webhook-id"
    assert extract({}, config.event_id_path, {"Webhook-Id": "abc"}) == "abc"
    assert extract({"data": {"id": 3}}, "data.id", {}) == 3


@pytest.mark.parametrize(
    ("password", "extra", "message"),
    [
        (None, {"scheme": "stripe"}, "no secret"),
        ("pw-sekrit", {"scheme": "md5"}, "extra.scheme 'md5' is not supported"),
        ("pw-sekrit", {"tolerance_seconds": "soon"}, "extra.tolerance_seconds must be an integer"),
        ("whsec_!!!", {"scheme": "standard-webhooks"}, "secret #1"),
    ],
)
def test_bad_connections_name_the_connection_and_the_field(password, extra, message):
    with pytest.raises(SourceConfigError) as err:
        config_from_connection("payment", password, extra)
    assert "hotcrm_webhook_payment" in str(err.value) and message in str(err.value)
    if password:
        assert password not in str(err.value)
