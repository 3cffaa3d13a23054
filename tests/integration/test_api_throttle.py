"""Failed authentications are throttled per source address, and per existing OAuth client for
failures only: nobody can lock a client out by failing in its name, junk client ids write no
counter rows, and a blocked address is refused without a key look-up (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from hotcrm.api import auth, ratelimit
from hotcrm.api.config import ApiSettings, RateLimit
from hotcrm.api.models import RateLimitCounter
from hotcrm.crm.db import session_scope
from tests.integration.test_api import ALL, Api, assert_error, wait_for_fresh_window


@pytest.fixture(autouse=True)
def _fresh_gate():
    ratelimit.failure_gate.clear()
    yield
    ratelimit.failure_gate.clear()


def _api(db_url, **limits) -> Api:
    settings = ApiSettings(
        jwt_secret="t" * 40,
        default_rate_limit=RateLimit(1000, 3600),
        route_rate_limits={name.replace("_", "."): limit for name, limit in limits.items()},
    )
    return Api(db_url, settings)


def _buckets(db_url) -> list[str]:
    with session_scope(db_url) as session:
        return sorted(session.scalars(select(RateLimitCounter.bucket)))


def _token(api: Api, client_id: str, secret: str):
    return api.client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )


def test_wrong_secrets_never_lock_out_the_right_one(db_url):
    # The review's probe: 100 wrong secrets for a victim's client_id, then the victim itself.
    # oauth.token at 100 per window, as in the probe: wrong secrets used to fill the victim's count.
    api = _api(
        db_url,
        oauth_token=RateLimit(100, 3600),
        auth_failures=RateLimit(1000, 3600),
        oauth_client_failures=RateLimit(10, 3600),
    )
    try:
        wait_for_fresh_window(3600)
        victim = auth.create_oauth_client(db_url, "victim", ALL)
        statuses = [_token(api, victim.client_id, "wrong-" + secrets.token_hex(8)).status_code for _ in range(100)]
        assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
        refused = _token(api, victim.client_id, "wrong")
        assert_error(refused, 429, "RATE_LIMITED")
        assert 1 <= int(refused.headers["Retry-After"]) <= 3600 and refused.headers["RateLimit-Limit"] == "10"

        right = _token(api, victim.client_id, victim.client_secret)
        assert right.status_code == 200, right.text
        assert right.json()["access_token"]
    finally:
        api.close()


def test_junk_client_ids_write_no_counter_rows_and_the_address_is_throttled(db_url):
    api = _api(db_url, auth_failures=RateLimit(20, 3600))
    try:
        wait_for_fresh_window(3600)
        answers = [_token(api, "hcc_" + secrets.token_hex(12), "x" * 20) for _ in range(30)]
        assert [a.status_code for a in answers] == [401] * 20 + [429] * 10
        assert answers[0].headers["RateLimit-Limit"] == "20" and answers[0].headers["RateLimit-Remaining"] == "19"
        assert "Retry-After" in answers[-1].headers
        # One counter for the address; none per junk id.
        assert _buckets(db_url) == ["addr:127.0.0.1:auth.failures:3600"]

        # A real client from another address is not affected: its right secret works here too.
        client = auth.create_oauth_client(db_url, "front end", ALL)
        assert _token(api, client.client_id, client.client_secret).status_code == 200
    finally:
        api.close()


def test_failed_authentications_are_throttled_per_address(db_url, monkeypatch):
    api = _api(db_url, auth_failures=RateLimit(6, 3600))
    try:
        wait_for_fresh_window(3600)
        client = auth.create_oauth_client(db_url, "front end", ALL)
        bearer = {
            "Authorization": "Bearer " + _token(api, client.client_id, client.client_secret).json()["access_token"]
        }
        failures = [
            ({"X-API-Key": "hck_" + secrets.token_urlsafe(32)}, 403, "INVALID_API_KEY"),
            ({}, 401, "MISSING_API_KEY"),
            ({"Authorization": "Bearer not-a-token"}, 401, "INVALID_TOKEN"),
        ] * 2
        for remaining, (headers, status, code) in zip(range(5, -1, -1), failures, strict=True):
            answer = api.client.get("/crm/leads/x", headers=headers)
            assert_error(answer, status, code)
            assert answer.headers["RateLimit-Remaining"] == str(remaining)
            assert answer.headers["RateLimit-Policy"] == "6;w=3600"

        lookups = []
        real_sync, real_async = auth.authenticate_api_key, auth.authenticate_api_key_async

        def counted(*args):
            lookups.append(args)
            return real_sync(*args)

        async def counted_async(*args):
            lookups.append(args)
            return await real_async(*args)

        monkeypatch.setattr(auth, "authenticate_api_key", counted)
        monkeypatch.setattr(auth, "authenticate_api_key_async", counted_async)
        for headers in ({"X-API-Key": "hck_" + secrets.token_urlsafe(32)}, {}, {"Authorization": "Bearer x"}):
            refused = api.client.get("/crm/leads/x", headers=headers)
            assert_error(refused, 429, "RATE_LIMITED")
            assert 1 <= int(refused.headers["Retry-After"]) <= 3600
            assert refused.headers["RateLimit-Remaining"] == "0"
        assert lookups == []  # a blocked address costs no key look-up

        # A valid bearer token needs no look-up and still works from the blocked address.
        assert api.client.get("/crm/leads/x", headers=bearer).status_code == 404
        # Another process (a fresh gate) learns the block from the shared counter.
        ratelimit.failure_gate.clear()
        assert_error(api.client.get("/crm/leads/x"), 429, "RATE_LIMITED")
    finally:
        api.close()


def test_the_failure_limits_are_settings():
    settings = ApiSettings.from_env({"HOTCRM_API_RATE_LIMITS": "auth.failures=5/60,oauth.client_failures=3/600"})
    from hotcrm.api import throttle

    assert throttle.address_limit(settings) == RateLimit(5, 60)
    assert throttle.client_limit(settings) == RateLimit(3, 600)
    assert throttle.address_limit(ApiSettings()) == RateLimit(30, 60)
