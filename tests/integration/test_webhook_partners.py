"""Deliveries as partners really send them, over real HTTP on SQLite and PostgreSQL, then
applied by the inbox processor:

- the original partner spec: ``POST /hotcrm/webhooks/payment/notification``, ``X-Payment-Signature``
  = hex HMAC-SHA256 of the body, ``{"event": ..., "data": {"transactionId", "amount", "method"}}``
  with no id and no time, to a source configured with nothing but its secret;
- Stripe's own events (payloads shaped as docs.stripe.com/api/events/object,
  /api/payment_intents/object and /api/charges/object show them), signed by the ``stripe``
  library's ``WebhookSignature.generate_signature_header``;
- bodies that must never get a 500: nested too deep, or trickled one byte a second.
"""

import hashlib
import hmac
import json
import socket
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import stripe
from sqlalchemy import select

from hotcrm.api.standalone import create_standalone_app
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account, Activity, OutboxEvent, Payment
from hotcrm.web.jsonbody import MAX_JSON_DEPTH
from hotcrm.webhooks.config import connection_json, env_var
from hotcrm.webhooks.models import WebhookInbox
from hotcrm.webhooks.processing import process_inbox
from hotcrm.webhooks.samples import partner_notification, stripe_charge, stripe_event, stripe_payment_intent
from tests.support.api_server import ThreadServer

PARTNER_SECRET = "partner-shared-secret"
STRIPE_SECRET = "whsec_test_5f6e1a0c2b"


@pytest.fixture
def server(db_url, monkeypatch):
    """The standalone app over HTTP: ``payment`` is hmac-sha256 with nothing but a secret,
    ``stripe`` is Stripe's scheme with nothing but a secret."""
    monkeypatch.setenv(env_var("payment"), json.dumps({"conn_type": "generic", "password": PARTNER_SECRET}))
    monkeypatch.setenv(env_var("stripe"), connection_json("stripe", [STRIPE_SECRET]))
    app_server = ThreadServer(create_standalone_app(db_url)).start()
    with httpx.Client(base_url=app_server.base_url + "/hotcrm", timeout=10) as client:
        yield client, db_url, app_server
    app_server.stop()


def _seed(db_url, txn, amount="120.50", currency="USD"):
    with session_scope(db_url) as session:
        account = Account(name="Acme", owner_id="owner-1")
        session.add(account)
        session.flush()
        session.add(
            Payment(
                account_id=account.id,
                owner_id="owner-1",
                transaction_id=txn,
                amount=Decimal(amount),
                currency=currency,
            )
        )


def _payment(db_url, txn):
    with session_scope(db_url) as session:
        payment = session.scalars(select(Payment).where(Payment.transaction_id == txn)).one()
        session.expunge(payment)
        return payment


def _subjects(db_url):
    with session_scope(db_url) as session:
        return sorted(session.scalars(select(Activity.subject)))


def _received_events(db_url):
    with session_scope(db_url) as session:
        return [e.payload["data"] for e in session.scalars(select(OutboxEvent)) if e.event_type == "payment.received"]


def _inbox(db_url):
    with session_scope(db_url) as session:
        return [(r.event_id, r.event_type, r.status, r.result) for r in session.scalars(select(WebhookInbox))]


def _partner_post(client, event, path="/webhooks/payment/notification", **headers):
    body = json.dumps(event).encode()
    signature = hmac.new(PARTNER_SECRET.encode(), body, hashlib.sha256).hexdigest()  # by hand, as the spec says
    return client.post(
        path, content=body, headers={"Content-Type": "application/json", "X-Payment-Signature": signature, **headers}
    )


# --- the original partner spec -------------------------------------------------------------------


def test_the_original_partner_payload_is_accepted_and_applied_with_no_settings(server):
    client, db_url, _ = server
    _seed(db_url, "txn_8f3a")
    before = datetime.now(UTC).replace(microsecond=0)
    response = _partner_post(client, partner_notification("payment.succeeded", "txn_8f3a", 120.5))
    assert response.status_code == 202, response.text
    assert response.json()["event_id"].startswith("sha256:")
    result = process_inbox(db_url)
    assert (result.processed, result.dead_lettered) == (1, 0)
    payment = _payment(db_url, "txn_8f3a")
    assert (payment.status, payment.paid_amount, payment.payment_method) == ("Paid", Decimal("120.50"), "card")
    # No time in the payload: the event time is the receipt time.
    assert payment.paid_date.replace(tzinfo=UTC) >= before
    assert _subjects(db_url) == ["Payment Received: $120.50"]
    (received,) = _received_events(db_url)
    assert (received["TransactionId"], received["PaidAmount"], received["PaymentMethod"]) == (
        "txn_8f3a",
        "120.50",
        "card",
    )


def test_an_exact_retry_is_a_duplicate_and_a_refund_after_the_success_is_a_new_event(server):
    client, db_url, _ = server
    _seed(db_url, "txn_r")
    success = partner_notification("payment.succeeded", "txn_r", 120.5)
    assert _partner_post(client, success).status_code == 202
    retry = _partner_post(client, success)
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    refund = _partner_post(client, partner_notification("payment.refunded", "txn_r", 120.5))
    assert refund.status_code == 202 and refund.json()["duplicate"] is False
    process_inbox(db_url)
    assert _payment(db_url, "txn_r").status == "Refunded"
    assert _subjects(db_url) == ["Payment Received: $120.50", "Payment Refunded: $120.50"]
    assert [status for _, _, status, _ in _inbox(db_url)] == ["done", "done"]


def test_failed_is_applied_and_the_generic_path_serves_the_same_source(server):
    client, db_url, _ = server
    _seed(db_url, "txn_f")
    event = partner_notification("payment.failed", "txn_f", 120.5, failureReason="card_declined")
    assert _partner_post(client, event, path="/webhooks/payment").status_code == 202
    process_inbox(db_url)
    assert _payment(db_url, "txn_f").status == "Failed"
    with session_scope(db_url) as session:
        (activity,) = session.scalars(select(Activity))
        assert activity.subject == "Payment Failed: $120.50" and "card_declined" in activity.description


def test_an_idempotency_header_is_the_event_id_when_the_body_has_none(server):
    client, db_url, _ = server
    event = partner_notification("payment.succeeded", "txn_i")
    first = _partner_post(client, event, **{"Idempotency-Key": "idem-42"})
    assert first.status_code == 202 and first.json()["event_id"] == "idem-42"
    # A retry re-serialized by the sender (other bytes) with the same key is still the same event.
    again = _partner_post(
        client, {**event, "data": {**event["data"], "amount": "120.50"}}, **{"Idempotency-Key": "idem-42"}
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    by_request_id = _partner_post(client, event, **{"X-Request-Id": "req-7"})
    assert by_request_id.json()["event_id"] == "req-7"


def test_snake_case_and_camel_case_payloads_and_the_payloads_time_apply_alike(server):
    client, db_url, _ = server
    _seed(db_url, "txn_s")
    _seed(db_url, "txn_c")
    snake = {
        "event": "payment.succeeded",
        "timestamp": "2026-11-01T12:00:00Z",
        "data": {"transaction_id": "txn_s", "amount": "99.90", "payment_method": "ach"},
    }
    camel = {
        "event": "payment.succeeded",
        "timestamp": 1793534400,  # 2026-11-01T12:00:00Z
        "data": {"transactionId": "txn_c", "amount": 99.9, "paymentMethod": "ach"},
    }
    assert _partner_post(client, snake).status_code == 202
    assert _partner_post(client, camel).status_code == 202
    process_inbox(db_url)
    for txn in ("txn_s", "txn_c"):
        payment = _payment(db_url, txn)
        assert (payment.status, payment.paid_amount, payment.payment_method) == ("Paid", Decimal("99.90"), "ach")
        assert payment.paid_date.replace(tzinfo=UTC) == datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_a_partner_payload_without_the_transaction_id_is_dead_lettered_naming_both_spellings(server):
    client, db_url, _ = server
    assert _partner_post(client, {"event": "payment.succeeded", "data": {"amount": 1}}).status_code == 202
    result = process_inbox(db_url, max_attempts=1)
    assert result.dead_lettered == 1
    assert "data.transactionId" in result.dead_letters[0]["reason"]


# --- Stripe --------------------------------------------------------------------------------------


def _stripe_post(client, event, secret=STRIPE_SECRET, header=None):
    payload = json.dumps(event)
    header = header or stripe.WebhookSignature.generate_signature_header(payload, secret)
    return client.post(
        "/webhooks/stripe",
        content=payload.encode(),
        headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
    )


def test_stripe_payment_intent_succeeded_then_charge_refunded_are_applied(server):
    client, db_url, _ = server
    # The Payment's TransactionId is the PaymentIntent's id: the intent's events name it as their
    # object's id, the charge's events as their payment_intent.
    _seed(db_url, "pi_3MtwBwLkdIwHu7ix28a3tqPa")
    t = int(time.time())
    intent = stripe_payment_intent("pi_3MtwBwLkdIwHu7ix28a3tqPa", 12050)
    succeeded = stripe_event("payment_intent.succeeded", intent, created=t - 10)
    charge = stripe_charge("ch_3MtwBwLkdIwHu7ix2", 12050, payment_intent=intent["id"], amount_refunded=12050)
    charge["refunded"] = True
    refunded = stripe_event("charge.refunded", charge, created=t)
    for event in (succeeded, refunded):
        response = _stripe_post(client, event)
        assert response.status_code == 202 and response.json()["event_id"] == event["id"]
    process_inbox(db_url)
    payment = _payment(db_url, intent["id"])
    assert (payment.status, payment.paid_amount, payment.payment_method) == ("Refunded", Decimal("120.50"), "card")
    assert payment.paid_date.replace(tzinfo=UTC) == datetime.fromtimestamp(t - 10, UTC)
    assert _subjects(db_url) == ["Payment Received: $120.50", "Payment Refunded: $120.50"]
    assert [row[2] for row in _inbox(db_url)] == ["done", "done"]


def test_stripe_metadata_transaction_id_comes_before_the_objects_id(server):
    client, db_url, _ = server
    _seed(db_url, "txn_meta")
    _seed(db_url, "pi_meta")
    intent = stripe_payment_intent("pi_meta", 999, transaction_id="txn_meta")
    assert _stripe_post(client, stripe_event("payment_intent.succeeded", intent)).status_code == 202
    process_inbox(db_url)
    assert (_payment(db_url, "txn_meta").status, _payment(db_url, "pi_meta").status) == ("Paid", "Pending")
    assert _payment(db_url, "txn_meta").paid_amount == Decimal("9.99")


def test_stripe_amounts_use_the_currencys_exponent(server):
    client, db_url, _ = server
    _seed(db_url, "pi_jpy", amount="5000", currency="JPY")
    _seed(db_url, "pi_kwd", amount="12.35", currency="KWD")
    _stripe_post(client, stripe_event("payment_intent.succeeded", stripe_payment_intent("pi_jpy", 5000, "jpy")))
    _stripe_post(client, stripe_event("payment_intent.succeeded", stripe_payment_intent("pi_kwd", 12350, "kwd")))
    process_inbox(db_url)
    # Found by the object's id (no metadata.transaction_id); JPY has no minor unit, KWD three.
    assert _payment(db_url, "pi_jpy").paid_amount == Decimal("5000.00")
    assert _payment(db_url, "pi_kwd").paid_amount == Decimal("12.35")
    assert "Payment Received: 5,000 JPY" in _subjects(db_url)


def test_stripe_failed_and_a_second_notice_of_one_payment(server):
    client, db_url, _ = server
    _seed(db_url, "txn_pf")
    _seed(db_url, "txn_two")
    t = int(time.time())
    error = {"code": "card_declined", "message": "Your card was declined."}
    failed = stripe_payment_intent("pi_f", 12050, transaction_id="txn_pf", status="requires_payment_method")
    failed["last_payment_error"] = error
    failed["amount_received"] = 0
    _stripe_post(client, stripe_event("payment_intent.payment_failed", failed, created=t))
    # Stripe sends both payment_intent.succeeded and charge.succeeded for one payment.
    intent = stripe_payment_intent("pi_two", 12050, transaction_id="txn_two")
    charge = stripe_charge("ch_two", 12050, payment_intent="pi_two")
    _stripe_post(client, stripe_event("payment_intent.succeeded", intent, created=t))
    _stripe_post(client, stripe_event("charge.succeeded", charge, created=t))
    process_inbox(db_url)
    assert _payment(db_url, "txn_pf").status == "Failed"
    assert _payment(db_url, "txn_two").status == "Paid"
    assert _subjects(db_url) == ["Payment Failed: $120.50", "Payment Received: $120.50"]
    assert len(_received_events(db_url)) == 1
    with session_scope(db_url) as session:
        failure = session.scalars(select(Activity).where(Activity.subject.startswith("Payment Failed"))).one()
        assert "Your card was declined." in failure.description


def test_the_payment_path_is_configurable(server, monkeypatch):
    client, db_url, _ = server
    monkeypatch.setenv(
        env_var("stripe"), connection_json("stripe", [STRIPE_SECRET], payment_path="data.object.metadata.order_ref")
    )
    _seed(db_url, "ORD-77")
    intent = stripe_payment_intent("pi_ord", 2500, metadata={"order_ref": "ORD-77"})
    assert _stripe_post(client, stripe_event("payment_intent.succeeded", intent)).status_code == 202
    process_inbox(db_url)
    assert _payment(db_url, "ORD-77").status == "Paid"


def test_an_unknown_stripe_payment_waits_and_a_currency_mismatch_is_refused(server):
    client, db_url, _ = server
    _seed(db_url, "pi_eur", currency="USD")
    _stripe_post(client, stripe_event("payment_intent.succeeded", stripe_payment_intent("pi_missing", 100)))
    _stripe_post(client, stripe_event("payment_intent.succeeded", stripe_payment_intent("pi_eur", 100, "eur")))
    result = process_inbox(db_url, max_attempts=1)
    reasons = sorted(letter["reason"] for letter in result.dead_letters)
    assert "EUR" in reasons[0] and "USD" in reasons[0]
    assert "'pi_missing'" in reasons[1]


def test_our_stripe_signature_is_verified_by_the_stripe_library():
    from hotcrm.webhooks.signatures import sign

    body = json.dumps(stripe_event("charge.succeeded", stripe_charge("ch_1", 100))).encode()
    header = sign("stripe", STRIPE_SECRET, body)["Stripe-Signature"]
    event = stripe.Webhook.construct_event(body.decode(), header, STRIPE_SECRET)
    assert event["type"] == "charge.succeeded"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda h: h.replace(",", ", "), id="space-after-comma"),
        pytest.param(lambda h: h.split(",v1=")[0] + ",v1=" + h.split(",v1=")[1].upper(), id="upper-case-hex"),
        pytest.param(lambda h: "t=1000000000," + h, id="a-first-t-that-is-stale"),
    ],
)
def test_stripe_headers_the_stripe_library_refuses_are_refused(server, mangle):
    client, db_url, _ = server
    event = stripe_event("payment_intent.succeeded", stripe_payment_intent("pi_h", 100))
    payload = json.dumps(event)
    header = mangle(stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET))
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, STRIPE_SECRET, tolerance=300)
    response = _stripe_post(client, event, header=header)
    assert response.status_code == 401, header
    assert _inbox(db_url) == []


def test_a_second_t_does_not_replace_the_first(server):
    client, _, _ = server
    event = stripe_event("payment_intent.succeeded", stripe_payment_intent("pi_t", 100))
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET, timestamp=1000000000)
    # A replayed old delivery with a fresh t= appended: the first t (stale) is the one checked.
    replay = header + f",t={int(time.time())}"
    response = _stripe_post(client, event, header=replay)
    assert response.status_code == 401 and response.json()["code"] == "STALE_TIMESTAMP"


# --- never a 500 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 956, 5000])
def test_a_signed_body_nested_too_deep_is_400_and_the_connection_lives(server, depth):
    client, db_url, _ = server
    body = ('{"event": "payment.succeeded", "data": ' + "[" * depth + "]" * depth + "}").encode()
    signature = hmac.new(PARTNER_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Payment-Signature": signature}
    response = client.post("/webhooks/payment", content=body, headers=headers)
    assert response.status_code == 400 and response.json()["code"] == "INVALID_JSON"
    assert str(MAX_JSON_DEPTH) in response.json()["error"]
    # The same kept-alive connection still serves the next request.
    assert client.get("/webhooks/health").status_code == 200
    assert _inbox(db_url) == []


def test_brackets_inside_strings_do_not_count_towards_the_depth(server):
    client, db_url, _ = server
    _seed(db_url, "txn_b")
    event = partner_notification("payment.succeeded", "txn_b", note="[" * 5000 + "{" * 100)
    assert _partner_post(client, event).status_code == 202


def test_a_body_trickled_one_byte_a_second_gets_408_within_the_read_deadline(server, monkeypatch):
    client, db_url, app_server = server
    monkeypatch.setenv(
        env_var("payment"),
        json.dumps({"conn_type": "generic", "password": PARTNER_SECRET, "extra": {"read_timeout_seconds": 2}}),
    )
    body = json.dumps(partner_notification("payment.succeeded", "txn_slow")).encode()
    signature = hmac.new(PARTNER_SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        "POST /hotcrm/webhooks/payment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Payment-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        sock.setblocking(False)
        for byte in body[:8]:  # at most 8 s of trickling: the deadline is 2 s
            try:
                sock.send(bytes([byte]))
            except OSError:
                break  # the server closed the connection
            time.sleep(1)
            try:
                answer += sock.recv(4096)
            except BlockingIOError:
                continue
            if answer:
                break
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"REQUEST_TIMEOUT"' in answer
    assert elapsed < 6
    assert _inbox(db_url) == []
