"""Pure parts of the REST API: scopes, bearer tokens, settings, PKCE, rate-limit headers and
lead body validation (no server, no database)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest

from hotcrm.api import auth
from hotcrm.api.config import ApiSettings, RateLimit, make_fernet
from hotcrm.api.errors import ApiError
from hotcrm.api.leads import validate_lead_body
from hotcrm.api.ratelimit import RateDecision
from hotcrm.api.salesforce_oauth import pkce_pair
from hotcrm.crm.models import utcnow

SETTINGS = ApiSettings(jwt_secret="unit-secret-" + "z" * 24, token_ttl_seconds=60)


def test_scopes_are_checked_and_ordered():
    assert auth.parse_scopes("leads:convert, leads:read") == ["leads:read", "leads:convert"]
    with pytest.raises(ValueError, match=r"unknown scope\(s\) admin; allowed: leads:read"):
        auth.parse_scopes(["admin"])
    with pytest.raises(ValueError, match="at least one scope"):
        auth.parse_scopes("")


def test_token_round_trip_and_refusals():
    token, ttl = auth.issue_token(SETTINGS.jwt_secret, SETTINGS, "hcc_1", ["leads:read"])
    principal = auth.verify_token(SETTINGS.jwt_secret, SETTINGS, token)
    assert (principal.id, principal.scopes, ttl) == ("hcc_1", frozenset({"leads:read"}), 60)
    old, _ = auth.issue_token(SETTINGS.jwt_secret, SETTINGS, "hcc_1", [], now=utcnow() - timedelta(seconds=61))
    with pytest.raises(ApiError, match="expired") as expired:
        auth.verify_token(SETTINGS.jwt_secret, SETTINGS, old)
    assert (expired.value.status, expired.value.code) == (401, "INVALID_TOKEN")
    with pytest.raises(ApiError, match="not valid"):
        auth.verify_token("another-secret-" + "q" * 24, SETTINGS, token)
    elsewhere = ApiSettings(jwt_secret=SETTINGS.jwt_secret, audience="billing-api")
    with pytest.raises(ApiError, match="audience"):
        auth.verify_token(SETTINGS.jwt_secret, elsewhere, token)


def test_rate_limit_settings_and_headers():
    settings = ApiSettings.from_env(
        {"HOTCRM_API_RATE_LIMIT": "50/10", "HOTCRM_API_RATE_LIMITS": "leads.create=5/60, leads.convert=2/1"}
    )
    assert settings.rate_limit("leads.create") == RateLimit(5, 60)
    assert settings.rate_limit("leads.read") == RateLimit(50, 10)
    with pytest.raises(ValueError, match="HOTCRM_API_RATE_LIMITS: unknown route 'leads.delete'"):
        ApiSettings.from_env({"HOTCRM_API_RATE_LIMITS": "leads.delete=1/1"})
    with pytest.raises(ValueError, match=r"HOTCRM_API_RATE_LIMIT: 'fast' is not a rate limit; write requests/seconds"):
        ApiSettings.from_env({"HOTCRM_API_RATE_LIMIT": "fast"})
    with pytest.raises(ValueError, match="HOTCRM_API_TOKEN_TTL: 'soon' is not a whole number"):
        ApiSettings.from_env({"HOTCRM_API_TOKEN_TTL": "soon"})
    refused = RateDecision(False, RateLimit(5, 60), 6, 17).headers()
    assert refused == {
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "17",
        "RateLimit-Policy": "5;w=60",
        "Retry-After": "17",
    }
    assert "Retry-After" not in RateDecision(True, RateLimit(5, 60), 2, 17).headers()


def test_token_key_errors_never_show_the_key():
    with pytest.raises(ValueError, match="HOTCRM_TOKEN_KEY is not set"):
        make_fernet(None)
    with pytest.raises(ValueError, match="key #1 is not a Fernet key") as bad:
        make_fernet("my-precious-secret")
    assert "my-precious-secret" not in str(bad.value)


def test_pkce_challenge_is_s256_of_the_verifier():
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected


def test_lead_body_maps_camel_case_and_normalizes():
    clean, source_given = validate_lead_body(
        b'{"firstName": "Ada", "lastName": "Lovelace", "company": "Engines", "phone": "+44 20 7946 0000",'
        b' "leadSource": "Partner", "estimatedValue": 10}'
    )
    assert clean["Phone"] == "+442079460000" and clean["LeadSource"] == "Partner" and source_given
    assert str(clean["EstimatedValue"]) == "10.00" and clean["Status"] == "New"


def test_lead_body_errors_name_every_field_once():
    with pytest.raises(ApiError) as error:
        validate_lead_body(b'{"firstName": "A", "lastName": true, "email": "x@", "extra": 1}')
    details = {d["field"]: d["message"] for d in error.value.details}
    assert set(details) == {"lastName", "company", "email", "extra"}
    assert details["company"] == "is required" and "unknown field" in details["extra"]


def test_short_signing_secrets_are_refused():
    with pytest.raises(ValueError, match="HOTCRM_API_JWT_SECRET: use at least 32 bytes"):
        ApiSettings.from_env({"HOTCRM_API_JWT_SECRET": "short"})
    assert ApiSettings.from_env({"HOTCRM_API_JWT_SECRET": "k" * 32}).jwt_secret == "k" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_key_cache_lives_its_ttl_and_forgets_revoked_keys():
    clock = FakeClock()
    cache = auth.KeyCache(clock=clock)
    alice = auth.Principal("key", "id-a", "alice", frozenset({"leads:read"}))
    bob = auth.Principal("key", "id-b", "bob", frozenset({"leads:read"}))
    cache.put("db", "hash-a", alice, ttl=5)
    cache.put("db", "hash-b", bob, ttl=5)
    assert cache.get("db", "hash-a", ttl=5) is alice
    assert cache.get("other-db", "hash-a", ttl=5) is None  # one cache per database
    clock.now += 4.9
    assert cache.get("db", "hash-a", ttl=5) is alice
    clock.now += 0.1  # verified TTL seconds ago: look it up again (a revocation elsewhere shows now)
    assert cache.get("db", "hash-a", ttl=5) is None
    cache.forget("id-b")  # revoked in this process: refused at once
    assert cache.get("db", "hash-b", ttl=5) is None


def test_key_cache_off_and_bounded_and_expiry_checked_on_every_use():
    clock = FakeClock()
    cache = auth.KeyCache(clock=clock)
    principal = auth.Principal("key", "id", "n", frozenset(), utcnow() + timedelta(hours=1))
    cache.put("db", "h", principal, ttl=0)
    assert cache.get("db", "h", ttl=0) is None  # TTL 0: no cache at all
    expiring = auth.Principal("key", "id", "n", frozenset(), utcnow() - timedelta(seconds=1))
    cache.put("db", "h", expiring, ttl=60)
    with pytest.raises(ApiError, match="expired") as refused:
        cache.get("db", "h", ttl=60)  # cached, but the key's own expiry has passed
    assert (refused.value.status, refused.value.code) == (403, "INVALID_API_KEY")
    for n in range(auth.KeyCache.MAX_ENTRIES + 1):
        cache.put("db", f"h{n}", principal, ttl=60)
    assert len(cache._entries) <= auth.KeyCache.MAX_ENTRIES


def test_key_cache_ttl_setting():
    assert ApiSettings.from_env({}).key_cache_ttl_seconds == 5
    assert ApiSettings.from_env({"HOTCRM_API_KEY_CACHE_TTL": "0"}).key_cache_ttl_seconds == 0
    with pytest.raises(ValueError, match="HOTCRM_API_KEY_CACHE_TTL: must be at least 0"):
        ApiSettings.from_env({"HOTCRM_API_KEY_CACHE_TTL": "-1"})
    assert ApiSettings.from_env({"HOTCRM_API_DB_POOL_SIZE": "4"}).db_pool_size == 4
