"""The production login path, tested: the connection has no ``token_url``, so the hook logs in
through the Airflow Salesforce provider's ``SalesforceHook`` and simple-salesforce exactly as in
production, at ``https://login.salesforce.com`` (``test`` for a sandbox, the org's My Domain for
client credentials). A ``requests`` transport adapter mounted on the hook's session routes those
hosts to the emulator on loopback (tests/fakes/salesforce/routing.py); the emulator checks what
Salesforce checks: the security token appended to the password, the JWT audience of the org's
kind, the connected app's certificate, the JWT's expiry, client credentials only at My Domain.
"""

from __future__ import annotations

import json

import pytest
import requests

from hotcrm.airflow.salesforce import HotCrmSalesforceHook, SalesforceLoginError
from hotcrm.crm import seed
from hotcrm.salesforce.sync import SyncOptions, run_sync
from tests.fakes.salesforce import server as emulator_server
from tests.fakes.salesforce.routing import route
from tests.integration.test_salesforce_hook import _rsa_pem

salesforce_emulator = emulator_server.salesforce_emulator
MY_DOMAIN = "https://hotcrm-dev.my.salesforce.com"


@pytest.fixture
def routed(salesforce_emulator, monkeypatch):
    """Every session the hook builds (as production builds it) gets the routing adapter."""
    sf = salesforce_emulator
    production_session = HotCrmSalesforceHook.new_session
    adapters = []

    def new_session(self):
        session = production_session(self)
        adapters.append(route(session, sf.base_url, str(sf.ca_path)))
        return session

    monkeypatch.setattr(HotCrmSalesforceHook, "new_session", new_session)
    sf.routed = lambda: [r for a in adapters for r in a.routed]
    return sf


def _use(monkeypatch, login=None, password=None, **extra) -> None:
    conn = {"conn_type": "salesforce", "extra": extra}
    if login:
        conn["login"] = login
    if password:
        conn["password"] = password
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(conn))


def _secrets(sf):
    return (sf.password, sf.security_token, sf.client_secret, *sf.tokens)


def test_password_and_security_token_through_the_provider(routed, monkeypatch, sqlite_url):
    sf = routed
    _use(monkeypatch, sf.username, sf.password, security_token=sf.security_token)
    client = HotCrmSalesforceHook().get_client()
    assert client.instance_url == MY_DOMAIN  # the instance the login answered, reached through the adapter
    assert sf.routed()[0].startswith("POST login.salesforce.com/services/Soap/u/")
    seed.load_seed(sqlite_url)
    result = run_sync(sqlite_url, client, SyncOptions(run_id="night-1"))
    assert result["outcome"] == "success" and result["totals"]["created"] == 24
    assert any(r.startswith("PATCH hotcrm-dev.my.salesforce.com/services/data/") for r in sf.routed())


@pytest.mark.parametrize("case", ["no_token", "wrong_token", "sandbox_host"])
def test_password_login_refused_reports_salesforce_error_not_secret(routed, monkeypatch, case):
    sf = routed
    extra = {"security_token": sf.security_token}
    if case == "no_token":
        extra = {}  # simple-salesforce needs the token (or a connected app) for a password login
    elif case == "wrong_token":
        extra = {"security_token": "WRONGTOKEN123"}
    else:
        extra["domain"] = "test"  # a production user at the sandbox login host
    _use(monkeypatch, sf.username, sf.password, **extra)
    with pytest.raises(SalesforceLoginError) as info:
        HotCrmSalesforceHook().get_client()
    message = str(info.value)
    if case == "no_token":
        assert "needs login, password and security_token" in message
    else:  # what Salesforce's SOAP fault says
        assert "INVALID_LOGIN: Invalid username, password, security token; or user locked out." in message
    assert "'salesforce_default'" in message
    for secret in (*_secrets(sf), "WRONGTOKEN123"):
        assert secret not in message


def test_jwt_bearer_production_and_sandbox_audiences(routed, monkeypatch):
    sf = routed
    key = sf.make_jwt_key()
    _use(monkeypatch, sf.username, auth_type="jwt_bearer", consumer_key=sf.client_id, private_key=key)  # at login
    client = HotCrmSalesforceHook().get_client()
    assert client.instance_url == MY_DOMAIN and client.limits()["DailyApiRequests"]["Max"] == sf.daily_limit
    assert sf.routed()[0] == "POST login.salesforce.com/services/oauth2/token"

    sf.is_sandbox = True  # the same connection against a sandbox: aud must be test.salesforce.com
    _use(
        monkeypatch,
        sf.username,
        auth_type="jwt_bearer",
        consumer_key=sf.client_id,
        private_key=key,
        instance_url="hotcrm-dev.my",
    )
    with pytest.raises(SalesforceLoginError, match="invalid_grant: audience is invalid"):
        HotCrmSalesforceHook().get_client()
    _use(monkeypatch, sf.username, auth_type="jwt_bearer", consumer_key=sf.client_id, private_key=key, domain="test")
    assert HotCrmSalesforceHook().get_client().instance_url == MY_DOMAIN


def test_jwt_bearer_wrong_key_or_expired(routed, monkeypatch):
    sf = routed
    key = sf.make_jwt_key()
    _use(monkeypatch, sf.username, auth_type="jwt_bearer", consumer_key=sf.client_id, private_key=_rsa_pem())
    with pytest.raises(SalesforceLoginError, match="invalid_grant: invalid assertion"):
        HotCrmSalesforceHook().get_client()
    sf.clock_offset = 600  # the assertion simple-salesforce signs lives 3 minutes
    _use(monkeypatch, sf.username, auth_type="jwt_bearer", consumer_key=sf.client_id, private_key=key)
    with pytest.raises(SalesforceLoginError, match="invalid_grant") as info:
        HotCrmSalesforceHook().get_client()
    assert "BEGIN PRIVATE KEY" not in str(info.value)


def test_client_credentials_at_my_domain_only(routed, monkeypatch):
    sf = routed
    _use(
        monkeypatch,
        auth_type="client_credentials",
        consumer_key=sf.client_id,
        consumer_secret=sf.client_secret,
        domain="hotcrm-dev.my",
    )
    client = HotCrmSalesforceHook().get_client()
    assert client.instance_url == MY_DOMAIN and client.query("SELECT Id FROM Account") == []
    assert sf.routed()[0] == "POST hotcrm-dev.my.salesforce.com/services/oauth2/token"
    _use(
        monkeypatch,
        auth_type="client_credentials",
        consumer_key=sf.client_id,
        consumer_secret="not-the-secret",
        domain="hotcrm-dev.my",
    )
    with pytest.raises(SalesforceLoginError) as info:
        HotCrmSalesforceHook().get_client()
    assert "invalid_client: invalid client credentials" in str(info.value)
    assert "not-the-secret" not in str(info.value)


def test_the_adapter_reaches_no_other_host(routed, monkeypatch):
    sf = routed
    _use(monkeypatch, sf.username, sf.password, security_token=sf.security_token)
    session = HotCrmSalesforceHook().new_session()

    with pytest.raises(requests.ConnectionError, match="tests reach no network"):
        session.get("https://example.com/")
    assert sf.routed() == []
