"""Every login flow of the ``salesforce_default`` connection against the emulator, the OAuth
endpoints the REST API uses, and no secret in the captured logs."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from hotcrm.airflow.salesforce import HotCrmSalesforceHook, SalesforceLoginError
from hotcrm.crm import seed
from hotcrm.salesforce.sync import SyncOptions, run_sync
from tests.fakes.salesforce import server as emulator_server

# the emulator's fixtures (assigned, not imported: an import would trip F811 on each test)
salesforce_connection = emulator_server.salesforce_connection
salesforce_emulator = emulator_server.salesforce_emulator


def _use(monkeypatch, conn: dict) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(conn))


def _rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _authorization_code_flow(sf) -> dict:
    """What the REST API does to connect an org: authorize (PKCE S256), then exchange the code."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://127.0.0.1:9/callback"
    answer = requests.get(
        f"{sf.base_url}/services/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": sf.client_id,
            "redirect_uri": redirect,
            "state": "st-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        verify=str(sf.ca_path),
    )
    assert answer.status_code == 302
    location = urlparse(answer.headers["Location"])
    query = parse_qs(location.query)
    assert location.geturl().startswith(redirect) and query["state"] == ["st-1"]
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "client_id": sf.client_id,
        "client_secret": sf.client_secret,
        "redirect_uri": redirect,
    }
    wrong = requests.post(sf.token_url, data={**form, "code_verifier": "wrong"}, verify=str(sf.ca_path))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # the code was spent by the failed attempt, as Salesforce does: authorize again
    answer = requests.get(
        f"{sf.base_url}/services/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": sf.client_id,
            "redirect_uri": redirect,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        verify=str(sf.ca_path),
    )
    form["code"] = parse_qs(urlparse(answer.headers["Location"]).query)["code"][0]
    token = requests.post(sf.token_url, data={**form, "code_verifier": verifier}, verify=str(sf.ca_path))
    assert token.status_code == 200, token.text
    return token.json()


@pytest.mark.parametrize("auth_type", ["password", "client_credentials", "jwt_bearer", "session"])
def test_every_login_flow_reaches_the_api(salesforce_emulator, monkeypatch, auth_type):
    sf = salesforce_emulator
    _use(monkeypatch, sf.connection(auth_type))
    hook = HotCrmSalesforceHook()
    client = hook.get_client()
    assert client.instance_url == sf.base_url
    assert client.limits()["DailyApiRequests"]["Max"] == sf.daily_limit
    assert sf.token_requests == (0 if auth_type == "session" else 1)
    # the provider's simple-salesforce client works on the same session
    assert hook.get_conn().query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_jwt_signed_with_another_key_is_refused(salesforce_emulator, monkeypatch):
    conn = salesforce_emulator.connection("jwt_bearer")
    conn["extra"]["private_key"] = _rsa_pem()  # not the connected app's certificate
    _use(monkeypatch, conn)
    with pytest.raises(SalesforceLoginError, match="invalid_grant: invalid assertion"):
        HotCrmSalesforceHook().get_client()


def test_refresh_token_from_the_connection_password(salesforce_emulator, monkeypatch):
    sf = salesforce_emulator
    token = _authorization_code_flow(sf)
    assert {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "refresh_token"} <= set(token)
    conn = sf.connection("refresh_token")
    conn["password"] = token["refresh_token"]
    _use(monkeypatch, conn)
    monkeypatch.delenv("HOTCRM_TOKEN_KEY", raising=False)
    client = HotCrmSalesforceHook().get_client()
    assert client.limits()["DailyApiRequests"]["Max"] == sf.daily_limit


def test_refresh_token_stored_by_the_rest_api(salesforce_emulator, sqlite_url, monkeypatch):
    from cryptography.fernet import Fernet

    from hotcrm.api.config import make_fernet
    from hotcrm.api.models import SalesforceCredential
    from hotcrm.crm.db import session_scope

    sf = salesforce_emulator
    token = _authorization_code_flow(sf)
    key = Fernet.generate_key().decode()
    with session_scope(sqlite_url) as session:
        session.add(
            SalesforceCredential(
                name="salesforce_default",
                instance_url=sf.base_url,
                refresh_token_encrypted=make_fernet(key).encrypt(token["refresh_token"].encode()).decode(),
            )
        )
    monkeypatch.setenv("AIRFLOW_CONN_HOTCRM_DB", json.dumps({"conn_type": "sqlite", "host": sqlite_url[10:]}))
    monkeypatch.setenv("HOTCRM_TOKEN_KEY", key)
    _use(monkeypatch, sf.connection("refresh_token"))  # no password: the token comes from the database
    client = HotCrmSalesforceHook().get_client()
    assert client.limits()["DailyApiRequests"]["Max"] == sf.daily_limit


def test_refresh_token_missing_is_explained(salesforce_emulator, monkeypatch):
    monkeypatch.delenv("HOTCRM_TOKEN_KEY", raising=False)
    _use(monkeypatch, salesforce_emulator.connection("refresh_token"))
    with pytest.raises(SalesforceLoginError, match="no refresh token: connect the org"):
        HotCrmSalesforceHook().get_client()


def test_a_wrong_password_names_the_connection_not_the_secret(salesforce_emulator, monkeypatch):
    conn = salesforce_emulator.connection("password")
    conn["password"] = "Wrong-Pa55word-xyz"
    _use(monkeypatch, conn)
    with pytest.raises(SalesforceLoginError) as info:
        HotCrmSalesforceHook().get_client()
    message = str(info.value)
    assert "'salesforce_default'" in message and "invalid_grant" in message
    assert "Wrong-Pa55word-xyz" not in message and salesforce_emulator.security_token not in message


def test_unknown_auth_type(salesforce_emulator, monkeypatch):
    conn = salesforce_emulator.connection("password")
    conn["extra"]["auth_type"] = "magic"
    _use(monkeypatch, conn)
    with pytest.raises(SalesforceLoginError, match="auth_type 'magic' is not supported"):
        HotCrmSalesforceHook().get_client()


def test_an_expired_session_logs_in_again_through_the_hook(salesforce_connection):
    sf = salesforce_connection
    client = HotCrmSalesforceHook().get_client()
    client.limits()
    sf.expire_sessions()
    assert client.query("SELECT Id FROM Account") == []
    assert client.relogins == 1 and sf.token_requests == 2


def test_no_secret_in_the_logs(salesforce_connection, sqlite_url, caplog):
    sf = salesforce_connection
    seed.load_seed(sqlite_url)
    caplog.set_level(logging.DEBUG)
    client = HotCrmSalesforceHook().get_client()
    sf.expire_sessions()  # a re-login, a retry and a lock error: the paths that log
    sf.faults.server_errors = 1
    sf.faults.lock_share = 0.5
    result = run_sync(sqlite_url, client, SyncOptions(run_id="night-1"))
    assert result["outcome"] == "success"
    text = caplog.text + repr(result) + repr(client)
    assert caplog.records, "the run should have logged something"
    for secret in (sf.password, sf.security_token, sf.client_secret, *sf.tokens):
        assert secret not in text


def test_soql_paging_goes_through_simple_salesforce_and_the_clients_retries(salesforce_connection, monkeypatch):
    # simple-salesforce's query_all_iter follows nextRecordsUrl; every page is one
    # SalesforceClient.request (retries, re-login, budget, call count, Sforce-Limit-Info).
    from simple_salesforce import Salesforce

    sf = salesforce_connection
    monkeypatch.setattr(type(sf.emulator), "PAGE", 5)  # three pages for twelve Accounts
    client = HotCrmSalesforceHook().get_client()
    records = [{"Name": f"Acme {i:02d}"} for i in range(12)]
    client.upsert_collection(
        "Account", "HotCRM_Id__c", [{"HotCRM_Id__c": f"A-{i}", **r} for i, r in enumerate(records)]
    )
    paging = []
    monkeypatch.setattr(Salesforce, "query_more", _spy(Salesforce.query_more, paging))
    calls = client.api_calls

    rows = client.query_iter("SELECT Id, Name FROM Account ORDER BY Name")
    first = next(rows)
    sf.expire_sessions()  # the session expires between two pages
    sf.faults.server_errors = 1  # and the next page first answers 503
    names = [first["Name"], *(r["Name"] for r in rows)]

    assert names == sorted(r["Name"] for r in records)
    assert len(paging) == 2, "two more pages, asked by simple-salesforce"
    assert client.relogins == 1 and client.retries == 1
    assert client.api_calls - calls == 3 + 2  # three pages, the refused one and the 503
    assert client.usage is not None and client.usage[1] == sf.daily_limit  # Sforce-Limit-Info, parsed


def _spy(method, calls):
    def spy(self, *args, **kwargs):
        calls.append(args)
        return method(self, *args, **kwargs)

    return spy
