"""The REST API over real HTTP on loopback (uvicorn in a thread), on SQLite and PostgreSQL:
lead creation, reading, conversion, import status, API keys, OAuth bearer tokens, scopes,
rate limits, body checks and the one error shape."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from hotcrm.api import auth
from hotcrm.api.app import create_app
from hotcrm.api.config import ApiSettings, RateLimit
from hotcrm.crm import conversion
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account, Contact, Lead, Opportunity, OutboxEvent, utcnow
from hotcrm.leads.models import ImportFile
from tests.support.api_server import ThreadServer

ALL = ["leads:read", "leads:write", "leads:convert"]
SETTINGS = ApiSettings(jwt_secret="test-signing-secret-" + "x" * 20, default_rate_limit=RateLimit(1000, 60))


class Api:
    """A running app on a fresh database, with an httpx client and a full-scope key."""

    def __init__(self, db_url: str, settings: ApiSettings) -> None:
        self.db_url = db_url
        self.settings = settings
        inner = create_app(db_url)
        inner.state.api_settings = settings
        outer = FastAPI()
        outer.mount("/hotcrm", inner)
        self.server = ThreadServer(outer).start()
        self.client = httpx.Client(base_url=self.server.base_url + "/hotcrm/api/v1", timeout=30)
        self.key = auth.create_api_key(db_url, "test partner", ALL).key

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}

    def create(self, body: dict, key: str | None = None) -> httpx.Response:
        return self.client.post("/crm/leads", json=body, headers=self.headers(key))

    def convert(self, lead_id: str, create_opportunity: bool = True, key: str | None = None) -> httpx.Response:
        return self.client.post(
            f"/crm/leads/{lead_id}/convert", json={"createOpportunity": create_opportunity}, headers=self.headers(key)
        )

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture
def api(db_url):
    instance = Api(db_url, SETTINGS)
    yield instance
    instance.close()


LEAD = {
    "firstName": "  Ada ",
    "lastName": "Lovelace",
    "company": "Analytical Engines Ltd",
    "email": "Ada.Lovelace@Example.COM",
    "phone": "(415) 555-0123",
    "industry": "Technology",
    "website": "https://engines.example.com",
    "estimatedValue": 12500.5,
}


def wait_for_fresh_window(seconds: int, margin: float = 15) -> None:
    """Counters live in fixed windows aligned on the clock: do not start a count just before one ends."""
    left = seconds - time.time() % seconds
    if left < margin:
        time.sleep(left + 0.1)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert set(body) <= {"error", "code", "details"} and isinstance(body["error"], str)
    assert "Traceback" not in response.text
    return body


def test_create_read_and_convert_a_lead(api):
    created = api.create(LEAD)
    assert created.status_code == 201, created.text
    body = created.json()
    lead = body["data"]
    assert body["success"] is True and body["action"] == "created"
    # The file import's normalization: trimmed, email lower-cased, phone in E.164, source API.
    assert (lead["FirstName"], lead["Email"], lead["Phone"]) == ("Ada", "ada.lovelace@example.com", "+14155550123")
    assert (lead["LeadSource"], lead["Status"], lead["EstimatedValue"]) == ("API", "New", 12500.5)
    assert created.headers["Location"].endswith(f"/crm/leads/{lead['Id']}")

    read = api.client.get(f"/crm/leads/{lead['Id']}", headers=api.headers())
    assert read.status_code == 200 and read.json()["data"]["Email"] == "ada.lovelace@example.com"

    converted = api.convert(lead["Id"])
    assert converted.status_code == 200, converted.text
    data = converted.json()["data"]
    assert data["account"]["Name"] == "Analytical Engines Ltd" and data["account"]["Industry"] == "Technology"
    assert data["contact"]["AccountId"] == data["account"]["Id"] and data["contact"]["Email"] == lead["Email"]
    opportunity = data["opportunity"]
    assert opportunity["Name"] == "Analytical Engines Ltd - Opportunity" and opportunity["Stage"] == "Prospecting"
    assert opportunity["Amount"] == 12500.5 and opportunity["ContactId"] == data["contact"]["Id"]

    with session_scope(api.db_url) as session:
        stored = session.get(Lead, lead["Id"])
        assert stored.status == "Converted" and stored.converted_date is not None
        assert (stored.converted_account_id, stored.converted_contact_id, stored.converted_opportunity_id) == (
            data["account"]["Id"], data["contact"]["Id"], opportunity["Id"],
        )  # fmt: skip
        assert session.get(Account, data["account"]["Id"]).website == "https://engines.example.com"
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "lead.converted")).all()
        assert [e.payload["data"]["leadId"] for e in events] == [lead["Id"]]

    again = assert_error(api.convert(lead["Id"]), 400, "ALREADY_CONVERTED")
    assert again["details"]["accountId"] == data["account"]["Id"]


def test_convert_without_opportunity_and_unknown_lead(api):
    lead = api.create({"firstName": "Bo", "lastName": "Yang", "company": "Yang & Co"}).json()["data"]
    data = api.convert(lead["Id"], create_opportunity=False).json()["data"]
    assert data["opportunity"] is None and data["contact"]["Email"] is None
    with session_scope(api.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Opportunity)) == 0
    assert_error(api.convert("no-such-lead"), 404, "LEAD_NOT_FOUND")
    assert_error(api.client.get("/crm/leads/no-such-lead", headers=api.headers()), 404, "LEAD_NOT_FOUND")


def test_a_company_that_fills_its_column_still_converts(api):
    company = "C" * 255
    lead = api.create({"firstName": "Lo", "lastName": "Ng", "company": company}).json()["data"]
    converted = api.convert(lead["Id"])
    assert converted.status_code == 200, converted.text
    name = converted.json()["data"]["opportunity"]["Name"]
    assert len(name) == 255 and name == "C" * 241 + " - Opportunity"
    assert converted.json()["data"]["account"]["Name"] == company


def test_invalid_lead_lists_every_failing_field(api):
    response = api.create(
        {"firstName": "", "company": 42, "email": "not-an-email", "phone": "12", "shoeSize": 44, "estimatedValue": -5}
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    fields = {d["field"]: d["message"] for d in body["details"]}
    assert set(fields) == {"firstName", "lastName", "company", "email", "phone", "shoeSize", "estimatedValue"}
    assert "unknown field" in fields["shoeSize"] and fields["lastName"] == "is required"
    assert "not a valid email" in fields["email"]
    with session_scope(api.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0


def test_duplicate_rules_match_the_file_import(api):
    first = api.create(LEAD).json()["data"]
    updated = api.create({**LEAD, "email": "ada.lovelace@example.com", "title": "Countess"})
    assert updated.status_code == 200 and updated.json()["action"] == "updated"
    assert updated.json()["data"]["Id"] == first["Id"] and updated.json()["data"]["Title"] == "Countess"

    api.convert(first["Id"])
    body = assert_error(api.create(LEAD), 409, "LEAD_ALREADY_CONVERTED")
    assert body["details"]["leadId"] == first["Id"]

    with session_scope(api.db_url) as session:
        session.add(Contact(last_name="Known", email="known@example.com"))
    assert_error(api.create({**LEAD, "email": "KNOWN@example.com"}), 409, "CONTACT_EXISTS")


def test_credentials_scopes_and_key_lifecycle(api):
    assert_error(api.client.get("/crm/leads/x"), 401, "MISSING_API_KEY")
    assert_error(api.client.get("/crm/leads/x", headers={"X-API-Key": "hck_wrong"}), 403, "INVALID_API_KEY")
    expired = auth.create_api_key(api.db_url, "old", ALL, expires_at=utcnow() - timedelta(minutes=1))
    assert_error(api.client.get("/crm/leads/x", headers=api.headers(expired.key)), 403, "INVALID_API_KEY")
    reader = auth.create_api_key(api.db_url, "reader", ["leads:read"])
    assert api.client.get("/crm/leads/x", headers=api.headers(reader.key)).status_code == 404
    body = assert_error(api.create(LEAD, key=reader.key), 403, "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == "leads:write"
    assert_error(api.convert("x", key=reader.key), 403, "INSUFFICIENT_SCOPE")
    # Authentication comes before the body: an anonymous client learns nothing from a bad body.
    assert_error(api.client.post("/crm/leads", content=b"{nope", headers={"Content-Type": "application/json"}),
                 401, "MISSING_API_KEY")  # fmt: skip
    auth.revoke_api_key(api.db_url, reader.id)
    assert_error(api.client.get("/crm/leads/x", headers=api.headers(reader.key)), 403, "INVALID_API_KEY")
    with session_scope(api.db_url) as session:
        from hotcrm.api.models import ApiKey

        hashes = session.scalars(select(ApiKey.key_hash)).all()
    assert api.key not in hashes and auth.hash_secret(api.key) in hashes


def _token(api: Api, client: auth.CreatedClient, **form) -> httpx.Response:
    return api.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": client.client_secret,
              **form},
    )  # fmt: skip


def test_oauth_client_credentials_bearer_tokens(api):
    client = auth.create_oauth_client(api.db_url, "front end", ALL)
    issued = _token(api, client)
    assert issued.status_code == 200, issued.text
    token = issued.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 900 and token["scope"] == " ".join(ALL)
    assert issued.headers["Cache-Control"] == "no-store"
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    created = api.client.post("/crm/leads", json=LEAD, headers=bearer)
    assert created.status_code == 201

    # HTTP Basic client authentication, and a narrower scope than the client's.
    basic = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
    narrow = api.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "leads:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert narrow.status_code == 200 and narrow.json()["scope"] == "leads:read"
    read_only = {"Authorization": f"Bearer {narrow.json()['access_token']}"}
    assert api.client.get(f"/crm/leads/{created.json()['data']['Id']}", headers=read_only).status_code == 200
    assert_error(api.client.post("/crm/leads", json=LEAD, headers=read_only), 403, "INSUFFICIENT_SCOPE")

    assert_error(_token(api, client, client_secret="wrong"), 401, "INVALID_CLIENT")
    assert_error(_token(api, client, grant_type="password"), 400, "UNSUPPORTED_GRANT_TYPE")
    assert_error(_token(api, client, scope="salesforce:connect"), 400, "INVALID_SCOPE")
    assert_error(api.client.post("/oauth/token", json={"grant_type": "client_credentials"}), 415,
                 "UNSUPPORTED_MEDIA_TYPE")  # fmt: skip
    auth.revoke_oauth_client(api.db_url, client.client_id)
    assert_error(_token(api, client), 401, "INVALID_CLIENT")


def test_expired_tampered_and_foreign_tokens_are_refused(api):
    client = auth.create_oauth_client(api.db_url, "front end", ALL)
    secret = api.settings.jwt_secret
    expired, _ = auth.issue_token(secret, api.settings, client.client_id, ALL, now=utcnow() - timedelta(hours=1))
    good = _token(api, client).json()["access_token"]
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "leads:read leads:write leads:convert salesforce:connect"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{forged_payload}.{signature}"
    wrong_audience, _ = auth.issue_token(
        secret, ApiSettings(jwt_secret=secret, audience="another-api"), client.client_id, ALL
    )
    other_key = jwt.encode({**claims, "exp": claims["exp"]}, "some-other-secret-" + "y" * 20, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token, fragment in [
        (expired, "expired"),
        (tampered, "not valid"),
        (wrong_audience, "audience"),
        (other_key, "not valid"),
        (unsigned, "not valid"),
        ("garbage", "not valid"),
    ]:
        body = assert_error(
            api.client.get("/crm/leads/x", headers={"Authorization": f"Bearer {token}"}), 401, "INVALID_TOKEN"
        )
        assert fragment in body["error"]
    assert_error(api.client.get("/crm/leads/x", headers={"Authorization": "Basic abc"}), 401, "INVALID_TOKEN")
    ok = api.client.get("/crm/leads/x", headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 404  # the token is fine; the lead does not exist


def test_rate_limit_per_credential_with_headers(db_url):
    settings = ApiSettings(
        jwt_secret="s" * 32, default_rate_limit=RateLimit(100, 60), route_rate_limits={"leads.read": RateLimit(3, 3600)}
    )
    api = Api(db_url, settings)
    try:
        wait_for_fresh_window(3600)
        statuses = []
        for _ in range(4):
            response = api.client.get("/crm/leads/x", headers=api.headers())
            statuses.append(response.status_code)
        assert statuses == [404, 404, 404, 429]
        assert response.headers["RateLimit-Limit"] == "3" and response.headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(response.headers["Retry-After"]) <= 3600
        assert response.headers["RateLimit-Policy"] == "3;w=3600"
        assert_error(response, 429, "RATE_LIMITED")
        # Another credential has its own counter; another route its own limit.
        other = auth.create_api_key(db_url, "other", ALL).key
        fresh = api.client.get("/crm/leads/x", headers=api.headers(other))
        assert fresh.status_code == 404 and fresh.headers["RateLimit-Remaining"] == "2"
        created = api.create(LEAD)
        assert created.status_code == 201 and created.headers["RateLimit-Limit"] == "100"
    finally:
        api.close()


def test_body_size_content_type_and_unknown_fields(api):
    lead = api.create(LEAD).json()["data"]
    big = {**LEAD, "title": "x" * (api.settings.max_body_bytes + 1)}
    assert_error(api.create(big), 413, "PAYLOAD_TOO_LARGE")
    text = {**api.headers(), "Content-Type": "text/plain"}
    assert_error(api.client.post("/crm/leads", content=b"firstName=Ada", headers=text), 415, "UNSUPPORTED_MEDIA_TYPE")
    body = assert_error(
        api.client.post(f"/crm/leads/{lead['Id']}/convert", json={"createOpportunity": True, "force": 1},
                        headers=api.headers()),
        400, "VALIDATION_ERROR",
    )  # fmt: skip
    assert any(d["field"] == "force" for d in body["details"])
    assert (
        "RateLimit-Remaining"
        in api.client.post(
            f"/crm/leads/{lead['Id']}/convert", json={"createOpportunity": "yes"}, headers=api.headers()
        ).headers
    )
    as_json = {**api.headers(), "Content-Type": "application/json"}
    assert_error(api.client.post("/crm/leads", content=b"{broken", headers=as_json), 400, "INVALID_JSON")
    assert_error(api.client.post("/crm/leads", json=[1, 2], headers=api.headers()), 400, "VALIDATION_ERROR")
    assert_error(api.create({**LEAD, "company": "Nul\x00Corp"}), 400, "VALIDATION_ERROR")
    # A lone surrogate in a key or value is refused, and named in an answer that is still valid UTF-8.
    odd = b'{"firstName": "A", "lastName": "\\ud800", "company": "C", "\\udc00x": 1}'
    body = assert_error(api.client.post("/crm/leads", content=odd, headers=as_json), 400, "VALIDATION_ERROR")
    assert {d["field"] for d in body["details"]} == {"lastName", "'\\udc00x'"}
    convert_odd = b'{"createOpportunity": true, "\\ud800": 1}'
    assert_error(
        api.client.post(f"/crm/leads/{lead['Id']}/convert", content=convert_odd, headers=as_json),
        400,
        "VALIDATION_ERROR",
    )


def test_concurrent_conversions_convert_once(api):
    lead = api.create(LEAD).json()["data"]
    barrier = threading.Barrier(6)
    results: list[httpx.Response] = []

    def convert():
        with httpx.Client(base_url=str(api.client.base_url), timeout=60) as client:
            barrier.wait()
            results.append(
                client.post(f"/crm/leads/{lead['Id']}/convert", json={"createOpportunity": True},
                            headers=api.headers())
            )  # fmt: skip

    threads = [threading.Thread(target=convert) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 400, 400, 400, 400, 400], [r.text for r in results]
    assert all(r.json()["code"] == "ALREADY_CONVERTED" for r in results if r.status_code == 400)
    with session_scope(api.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 1
        assert session.scalar(select(func.count()).select_from(Contact)) == 1
        assert session.scalar(select(func.count()).select_from(Opportunity)) == 1
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1


def test_a_failure_halfway_through_a_conversion_leaves_nothing(api, monkeypatch):
    lead = api.create(LEAD).json()["data"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("outbox unavailable: secret internal detail")

    monkeypatch.setattr(conversion, "record_event", broken)
    # PostgreSQL converts in one statement without record_event: its outbox INSERT fails inside
    # the database instead (an event type longer than the column), after the lead's UPDATE.
    monkeypatch.setattr(conversion, "CONVERSION_EVENT", "lead.converted" + "x" * 100)
    response = api.convert(lead["Id"])
    assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret internal detail" not in response.text
    with session_scope(api.db_url) as session:
        assert session.get(Lead, lead["Id"]).status == "New"
        for model in (Account, Contact, Opportunity, OutboxEvent):
            assert session.scalar(select(func.count()).select_from(model)) == 0
    monkeypatch.undo()
    # uvicorn closes a connection after an unhandled error: a new client for the retry.
    api.client.close()
    api.client = httpx.Client(base_url=str(api.client.base_url), timeout=30)
    assert api.convert(lead["Id"]).status_code == 200


def test_import_file_status(api):
    with session_scope(api.db_url) as session:
        record = ImportFile(
            path="imports/leads/processed/leads.csv", file_name="leads.csv", status="imported", rows_read=10,
            inserted=6, updated=2, duplicates=1, rejected=1, created_at=utcnow(), finished_at=utcnow(),
        )  # fmt: skip
        session.add(record)
        session.flush()
        file_id = record.id
    response = api.client.get(f"/imports/{file_id}", headers=api.headers())
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["fileName"], data["status"], data["rowsRead"], data["inserted"], data["rejected"]) == (
        "leads.csv", "imported", 10, 6, 1,
    )  # fmt: skip
    assert "path" not in data and data["notLoaded"] == 0
    with session_scope(api.db_url) as session:  # a failed file counts the rows it did not load
        failed = ImportFile(
            path="imports/leads/failed/x.csv", file_name="x.csv", status="failed", rows_read=70, rejected=10,
            not_loaded=60, created_at=utcnow(), finished_at=utcnow(),
        )  # fmt: skip
        session.add(failed)
        session.flush()
        failed_id = failed.id
    data = api.client.get(f"/imports/{failed_id}", headers=api.headers()).json()["data"]
    assert (data["status"], data["rowsRead"], data["rejected"], data["notLoaded"]) == ("failed", 70, 10, 60)
    assert_error(api.client.get("/imports/nope", headers=api.headers()), 404, "IMPORT_NOT_FOUND")


def test_openapi_document_and_docs_are_served(api):
    doc = api.client.get("/openapi.json")
    assert doc.status_code == 200
    paths = doc.json()["paths"]
    assert {"/api/v1/crm/leads", "/api/v1/crm/leads/{lead_id}/convert", "/api/v1/oauth/token"} <= set(paths)
    assert doc.json()["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert api.client.get("/docs").status_code == 200


def test_a_token_stops_working_when_its_lifetime_ends(db_url):
    api = Api(db_url, ApiSettings(jwt_secret="t" * 32, token_ttl_seconds=1, default_rate_limit=RateLimit(1000, 60)))
    try:
        client = auth.create_oauth_client(db_url, "short-lived", ["leads:read"])
        token = _token(api, client).json()
        assert token["expires_in"] == 1
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        assert api.client.get("/crm/leads/x", headers=bearer).status_code == 404
        time.sleep(2.1)  # exp has whole-second resolution
        assert "expired" in assert_error(api.client.get("/crm/leads/x", headers=bearer), 401, "INVALID_TOKEN")["error"]
    finally:
        api.close()
