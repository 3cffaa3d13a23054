"""The receiver over real HTTP on loopback (uvicorn in a thread), on SQLite and PostgreSQL:
forged, stale, future, oversized, malformed, duplicate, rotated secrets, database down."""

import base64
import json
import time

import httpx
import pytest
from sqlalchemy import select

from hotcrm.api.standalone import create_standalone_app
from hotcrm.crm.db import session_scope
from hotcrm.webhooks.config import connection_json, env_var
from hotcrm.webhooks.models import WebhookInbox
from hotcrm.webhooks.samples import encode, payment_event, signed_headers
from tests.support.api_server import ThreadServer
from tests.support.postgres import free_port

SW_SECRET = "whsec_" + base64.b64encode(b"receiver-test-key-receiver-test!").decode()
SW_NEW = "whsec_" + base64.b64encode(b"rotated-key-rotated-key-rotated!").decode()


@pytest.fixture
def receiver(db_url, monkeypatch):
    """The standalone app on the test's database, served over HTTP; sources by scheme."""
    monkeypatch.setenv(env_var("payment"), connection_json("standard-webhooks", [SW_SECRET]))
    monkeypatch.setenv(env_var("stripe"), connection_json("stripe", ["whsec_stripe_old", "whsec_stripe_new"]))
    monkeypatch.setenv(
        env_var("legacy"), connection_json("hmac-sha256", ["legacy-secret"], header="X-Signature", max_body_bytes=2048)
    )
    server = ThreadServer(create_standalone_app(db_url)).start()
    with httpx.Client(base_url=server.base_url + "/hotcrm", timeout=10) as client:
        yield client, db_url
    server.stop()


def _rows(db_url):
    with session_scope(db_url) as session:
        return list(session.scalars(select(WebhookInbox).order_by(WebhookInbox.id)))


def _post(client, source, scheme, secrets, event, **kwargs):
    body = encode(event)
    headers = signed_headers(scheme, secrets, body, event["id"], **kwargs)
    return client.post(f"/webhooks/{source}", content=body, headers=headers)


def test_valid_delivery_is_stored_with_its_headers_and_a_repeat_is_a_duplicate(receiver):
    client, db_url = receiver
    event = payment_event("payment.succeeded", "txn_1", event_id="evt_valid")
    first = _post(client, "payment", "standard-webhooks", SW_SECRET, event)
    assert first.status_code == 202
    assert first.json() == {"received": True, "duplicate": False, "event_id": "evt_valid"}
    again = _post(client, "payment", "standard-webhooks", SW_SECRET, event)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    (row,) = _rows(db_url)
    assert (row.source, row.event_id, row.event_type, row.status, row.attempts) == (
        "payment",
        "evt_valid",
        "payment.succeeded",
        "pending",
        0,
    )
    assert json.loads(row.body) == event
    assert row.event_time is not None and row.received_at is not None
    assert set(row.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}


def test_forged_and_unsigned_deliveries_get_401_and_store_nothing(receiver):
    client, db_url = receiver
    event = payment_event("payment.succeeded", "txn_1")
    forged = _post(client, "payment", "standard-webhooks", SW_NEW, event)
    assert forged.status_code == 401 and forged.json()["code"] == "INVALID_SIGNATURE"
    unsigned = client.post("/webhooks/payment", content=encode(event), headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "MISSING_SIGNATURE"
    # A valid signature on another body: the attacker changed the amount.
    body = encode(event)
    headers = signed_headers("standard-webhooks", SW_SECRET, body, event["id"])
    tampered = client.post("/webhooks/payment", content=body.replace(b"1000.00", b"1.00"), headers=headers)
    assert tampered.status_code == 401
    assert set(tampered.json()) == {"error", "code"}
    assert _rows(db_url) == []


@pytest.mark.parametrize("offset", [-3600, 3600])
def test_stale_and_future_timestamps_get_401_with_their_code(receiver, offset):
    client, db_url = receiver
    event = payment_event("payment.succeeded", "txn_1")
    sw = _post(client, "payment", "standard-webhooks", SW_SECRET, event, timestamp=int(time.time()) + offset)
    stripe = _post(client, "stripe", "stripe", "whsec_stripe_new", event, timestamp=int(time.time()) + offset)
    for response in (sw, stripe):
        assert response.status_code == 401 and response.json()["code"] == "STALE_TIMESTAMP"
    assert _rows(db_url) == []


def test_rotated_secrets_are_all_accepted_per_scheme(receiver, monkeypatch):
    client, db_url = receiver
    for secret in ("whsec_stripe_old", "whsec_stripe_new"):
        assert _post(client, "stripe", "stripe", secret, payment_event("payment.failed", "txn_1")).status_code == 202
    # The operator adds the new standard-webhooks secret beside the old one, then drops the old.
    monkeypatch.setenv(env_var("payment"), connection_json("standard-webhooks", [SW_NEW, SW_SECRET]))
    assert _post(client, "payment", "standard-webhooks", SW_NEW, payment_event("x.y", "t")).status_code == 202
    assert _post(client, "payment", "standard-webhooks", SW_SECRET, payment_event("x.y", "t")).status_code == 202
    monkeypatch.setenv(env_var("payment"), connection_json("standard-webhooks", [SW_NEW]))
    assert _post(client, "payment", "standard-webhooks", SW_SECRET, payment_event("x.y", "t")).status_code == 401
    assert len(_rows(db_url)) == 4


def test_hmac_source_with_custom_header(receiver):
    client, db_url = receiver
    ok = _post(
        client, "legacy", "hmac-sha256", "legacy-secret", payment_event("payment.failed", "t"), header="X-Signature"
    )
    assert ok.status_code == 202
    wrong_header = _post(client, "legacy", "hmac-sha256", "legacy-secret", payment_event("payment.failed", "t"))
    assert wrong_header.status_code == 401 and wrong_header.json()["code"] == "MISSING_SIGNATURE"
    assert len(_rows(db_url)) == 1


def test_oversized_body_gets_413_even_without_content_length(receiver):
    client, db_url = receiver
    event = payment_event("payment.failed", "t", padding="x" * 4000)
    too_big = _post(client, "legacy", "hmac-sha256", "legacy-secret", event, header="X-Signature")
    assert too_big.status_code == 413 and too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
    body = encode(event)
    headers = signed_headers("hmac-sha256", "legacy-secret", body, event["id"], header="X-Signature")

    def chunks():  # chunked transfer encoding: no Content-Length to trust
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    chunked = client.post("/webhooks/legacy", content=chunks(), headers=headers)
    assert chunked.status_code == 413
    assert _rows(db_url) == []


def test_default_limit_is_256_kib(receiver):
    client, _ = receiver
    big = payment_event("payment.failed", "t", padding="x" * (256 * 1024))
    assert _post(client, "payment", "standard-webhooks", SW_SECRET, big).status_code == 413


def test_malformed_bodies_get_400_or_415(receiver):
    client, db_url = receiver
    cases = [
        (b"not json at all", "application/json", 400, "INVALID_JSON"),
        (b"[1, 2]", "application/json", 400, "INVALID_JSON"),
        (b"\xff\xfe{}", "application/json", 400, "INVALID_JSON"),
        (b'{"id": "e1", "type": "payment.failed"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"id": "e2"}', "application/json", 400, "MISSING_EVENT_TYPE"),
    ]
    for body, content_type, status, code in cases:
        headers = signed_headers("hmac-sha256", "legacy-secret", body, "x", header="X-Signature")
        headers["Content-Type"] = content_type
        response = client.post("/webhooks/legacy", content=body, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code), body
        assert "Traceback" not in response.text
    assert _rows(db_url) == []


def test_a_source_that_names_its_event_id_path_refuses_an_event_without_one(receiver, monkeypatch):
    client, db_url = receiver
    monkeypatch.setenv(env_var("strict"), connection_json("hmac-sha256", ["strict-secret"], event_id_path="id"))
    body = b'{"type": "payment.failed"}'
    headers = signed_headers("hmac-sha256", "strict-secret", body, "x") | {"Content-Type": "application/json"}
    response = client.post("/webhooks/strict", content=body, headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, "MISSING_EVENT_ID")
    assert "'id'" in response.json()["error"]
    assert _rows(db_url) == []


def test_unknown_source_is_404_and_health_is_ok(receiver):
    client, _ = receiver
    response = client.post("/webhooks/nobody", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 404 and response.json()["code"] == "UNKNOWN_SOURCE"
    assert client.post("/webhooks/Bad..Name", content=b"{}").status_code == 404
    assert client.get("/webhooks/health").json() == {"status": "ok"}


def test_misconfigured_source_is_a_500_that_leaks_no_secret(receiver, monkeypatch):
    client, db_url = receiver
    monkeypatch.setenv(env_var("broken"), json.dumps({"password": "sekrit-value", "extra": {"scheme": "md5"}}))
    response = client.post("/webhooks/broken", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 500 and response.json()["code"] == "SOURCE_MISCONFIGURED"
    assert "sekrit" not in response.text


def test_database_down_is_503_with_retry_after_and_nothing_is_lost(monkeypatch):
    # A PostgreSQL URL on a port nothing listens on: the server is down.
    down = f"postgresql+psycopg://hotcrm@127.0.0.1:{free_port()}/hotcrm?connect_timeout=2"
    monkeypatch.setenv(env_var("payment"), connection_json("standard-webhooks", [SW_SECRET]))
    server = ThreadServer(create_standalone_app(down)).start()
    try:
        with httpx.Client(base_url=server.base_url + "/hotcrm", timeout=20) as client:
            response = _post(client, "payment", "standard-webhooks", SW_SECRET, payment_event("payment.failed", "t"))
            assert response.status_code == 503
            assert response.headers["Retry-After"].isdigit()
            assert response.json()["code"] == "DATABASE_UNAVAILABLE"
            assert "psycopg" not in response.text and "127.0.0.1" not in response.text
            health = client.get("/webhooks/health")
            assert health.status_code == 503 and "Retry-After" in health.headers
    finally:
        server.stop()


def test_airflow_connection_registry_reads_the_connection_and_caches_it(monkeypatch):
    from hotcrm.airflow.webhooks import AirflowSourceRegistry

    monkeypatch.setenv(env_var("partner"), connection_json("stripe", ["whsec_one"], tolerance_seconds=60))
    registry = AirflowSourceRegistry(ttl_seconds=3600)
    config = registry("partner")
    assert (config.scheme, config.secrets, config.tolerance_seconds) == ("stripe", ("whsec_one",), 60)
    assert registry("nobody") is None
    assert registry("../etc") is None
    # Within the TTL the cached config answers; a fresh registry sees the rotated secret.
    monkeypatch.setenv(env_var("partner"), connection_json("stripe", ["whsec_two", "whsec_one"]))
    assert registry("partner").secrets == ("whsec_one",)
    assert AirflowSourceRegistry(ttl_seconds=0)("partner").secrets == ("whsec_two", "whsec_one")
