"""Connecting a Salesforce org: the authorization-code round trip with state and PKCE S256
against the Salesforce emulator over HTTPS, the refresh token stored encrypted and read back
by ``load_refresh_token`` (what the Salesforce hook calls), on SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from hotcrm.api import auth
from hotcrm.api.config import ApiSettings, RateLimit, SalesforceApp
from hotcrm.api.models import SalesforceCredential, SalesforceOAuthState
from hotcrm.api.salesforce_oauth import load_connection, load_refresh_token
from hotcrm.crm.db import session_scope
from tests.fakes.salesforce.server import salesforce_emulator  # noqa: F401 - fixture
from tests.integration.test_api import Api, assert_error

TOKEN_KEY = Fernet.generate_key().decode()


@pytest.fixture
def connect_api(db_url, salesforce_emulator):  # noqa: F811 - the fixture
    settings = ApiSettings(
        jwt_secret="j" * 32,
        default_rate_limit=RateLimit(1000, 60),
        token_key=TOKEN_KEY,
        salesforce=SalesforceApp(
            login_url=salesforce_emulator.base_url,
            client_id=salesforce_emulator.client_id,
            client_secret=salesforce_emulator.client_secret,
            ca_bundle=str(salesforce_emulator.ca_path),
        ),
    )
    api = Api(db_url, settings)
    api.operator = auth.create_api_key(db_url, "operator", ["salesforce:connect"]).key
    yield api, salesforce_emulator
    api.close()


def _authorize(api: Api) -> httpx.Response:
    return api.client.get("/oauth/salesforce/authorize", headers=api.headers(api.operator), follow_redirects=False)


def _org_redirect(emulator, location: str) -> str:
    """What the browser does at the org: the emulator approves at once and redirects back."""
    answer = httpx.get(location, verify=str(emulator.ca_path), follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def test_authorization_code_round_trip_stores_the_refresh_token_encrypted(connect_api):
    api, emulator = connect_api
    start = _authorize(api)
    assert start.status_code == 302, start.text
    location = start.headers["Location"]
    query = parse_qs(urlparse(location).query)
    assert location.startswith(f"{emulator.base_url}/services/oauth2/authorize?")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [f"{api.server.base_url}/hotcrm/api/v1/oauth/salesforce/callback"]
    state = query["state"][0]

    callback = _org_redirect(emulator, location)
    assert parse_qs(urlparse(callback).query)["state"] == [state]
    done = httpx.get(callback)
    assert done.status_code == 200, done.text
    data = done.json()["data"]
    assert data["instanceUrl"] == emulator.base_url and data["connectedBy"] == "key:operator"

    refresh_token = load_refresh_token(api.db_url, TOKEN_KEY)
    assert refresh_token in emulator.refresh_tokens
    assert refresh_token not in done.text
    with session_scope(api.db_url) as session:
        stored = session.scalars(select(SalesforceCredential)).one()
        assert refresh_token not in stored.refresh_token_encrypted
        assert session.scalars(select(SalesforceOAuthState)).all() == []  # the state was consumed
    # The stored token logs in by the refresh-token flow, as the nightly sync does.
    login = httpx.post(
        emulator.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": emulator.client_id,
              "client_secret": emulator.client_secret},
        verify=str(emulator.ca_path),
    )  # fmt: skip
    assert login.status_code == 200 and login.json()["access_token"]

    assert_error(httpx.get(callback), 400, "INVALID_STATE")  # a replayed callback
    with pytest.raises(ValueError, match="cannot be decrypted with this HOTCRM_TOKEN_KEY"):
        load_connection(api.db_url, Fernet.generate_key().decode())
    # Key rotation: a new key first, the old one still decrypts.
    rotated = f"{Fernet.generate_key().decode()},{TOKEN_KEY}"
    assert load_refresh_token(api.db_url, rotated) == refresh_token


def test_state_and_pkce_are_checked(connect_api):
    api, emulator = connect_api
    first = _authorize(api).headers["Location"]
    second = _authorize(api).headers["Location"]
    code_for_first = parse_qs(urlparse(_org_redirect(emulator, first)).query)["code"][0]
    second_state = parse_qs(urlparse(second).query)["state"][0]
    base = f"{api.server.base_url}/hotcrm/api/v1/oauth/salesforce/callback"
    # The code of one round trip with the state (and so the PKCE verifier) of another: the org refuses it.
    body = assert_error(
        httpx.get(base, params={"code": code_for_first, "state": second_state}), 502,
        "SALESFORCE_TOKEN_EXCHANGE_FAILED",
    )  # fmt: skip
    assert "invalid code verifier" in body["error"]
    assert_error(httpx.get(base, params={"code": "x", "state": "forged"}), 400, "INVALID_STATE")
    assert_error(httpx.get(base, params={"error": "access_denied", "error_description": "end-user denied"}), 400,
                 "SALESFORCE_AUTHORIZATION_DENIED")  # fmt: skip
    assert load_refresh_token(api.db_url, TOKEN_KEY) is None


def test_connecting_needs_an_operator_credential_and_configuration(connect_api, db_url):
    api, _emulator = connect_api
    assert_error(api.client.get("/oauth/salesforce/authorize"), 401, "MISSING_API_KEY")
    assert_error(api.client.get("/oauth/salesforce/authorize", headers=api.headers()), 403, "INSUFFICIENT_SCOPE")
    unconfigured = Api(db_url, ApiSettings(jwt_secret="j" * 32))
    try:
        body = assert_error(
            unconfigured.client.get("/oauth/salesforce/authorize", headers=unconfigured.headers(api.operator)),
            503, "SALESFORCE_NOT_CONFIGURED",
        )  # fmt: skip
        assert "HOTCRM_SALESFORCE_CLIENT_ID" in body["error"]
    finally:
        unconfigured.close()
