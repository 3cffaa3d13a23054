"""The REST API's PostgreSQL hot path and API-key cache, over real HTTP on loopback: a request
is counted once whatever refuses it (429 wins), creation over the limit writes nothing,
concurrent creations of one email create it once, a revoked key is refused by other
processes within the cache lifetime, an expired key at once, and a pooled connection the
server dropped is replaced instead of failing a request."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import psycopg
from sqlalchemy import func, select

from hotcrm.api import auth
from hotcrm.api.config import ApiSettings, RateLimit
from hotcrm.api.pgpool import libpq_conninfo
from hotcrm.cli import main as cli
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Contact, Lead, OutboxEvent, utcnow
from hotcrm.settings import database_env
from tests.integration.test_api import ALL, LEAD, SETTINGS, Api, assert_error, wait_for_fresh_window
from tests.support.api_server import ProcessServer


def _lead_count(db_url: str) -> int:
    with session_scope(db_url) as session:
        return session.scalar(select(func.count()).select_from(Lead))


def test_every_request_counts_once_and_creation_over_the_limit_writes_nothing(db_url):
    limits = {"leads.create": RateLimit(4, 3600)}
    settings = ApiSettings(jwt_secret="s" * 32, default_rate_limit=RateLimit(100, 60), route_rate_limits=limits)
    api = Api(db_url, settings)
    try:
        wait_for_fresh_window(3600)
        with session_scope(db_url) as session:
            session.add(Contact(last_name="Known", email="known@example.com"))
        invalid = api.create({"firstName": "No"})
        assert_error(invalid, 400, "VALIDATION_ERROR")
        assert invalid.headers["RateLimit-Remaining"] == "3"
        created = api.create(LEAD)
        assert created.status_code == 201 and created.headers["RateLimit-Remaining"] == "2"
        conflict = api.create({**LEAD, "email": "known@example.com"})
        assert_error(conflict, 409, "CONTACT_EXISTS")
        assert conflict.headers["RateLimit-Remaining"] == "1"  # counted once
        again = api.create({**LEAD, "email": "second@example.com"})
        assert again.status_code == 201 and again.headers["RateLimit-Remaining"] == "0"
        over = api.create({**LEAD, "email": "third@example.com"})
        assert_error(over, 429, "RATE_LIMITED")
        assert int(over.headers["Retry-After"]) > 0 and over.headers["RateLimit-Limit"] == "4"
        assert _lead_count(db_url) == 2  # the refused creation wrote nothing
        # Over the limit, 429 wins over whatever else is wrong with the request.
        assert_error(api.create({"firstName": "No"}), 429, "RATE_LIMITED")
        as_text = {**api.headers(), "Content-Type": "text/plain"}
        assert_error(api.client.post("/crm/leads", content=b"x", headers=as_text), 429, "RATE_LIMITED")

        # A credential refused for its scope is counted too (its own counter).
        reader = auth.create_api_key(db_url, "reader", ["leads:read"]).key
        refused = [api.create({**LEAD, "email": f"r{n}@example.com"}, key=reader) for n in range(5)]
        assert [r.status_code for r in refused] == [403, 403, 403, 403, 429]
        assert refused[0].headers["RateLimit-Remaining"] == "3"
        assert _lead_count(db_url) == 2
    finally:
        api.close()


def test_concurrent_creations_of_one_email_create_one_lead(db_url):
    api = Api(db_url, SETTINGS)
    try:
        _create_concurrently(api)
    finally:
        api.close()


def _create_concurrently(api: Api) -> None:
    barrier = threading.Barrier(8)
    results: list[httpx.Response] = []

    def create(n: int) -> None:
        with httpx.Client(base_url=str(api.client.base_url), timeout=60) as client:
            barrier.wait()
            body = {**LEAD, "email": "race@example.com", "title": f"T{n}"}
            results.append(client.post("/crm/leads", json=body, headers=api.headers()))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 7 + [201], [r.text for r in results]
    assert len({r.json()["data"]["Id"] for r in results}) == 1
    with session_scope(api.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Lead).where(Lead.email == "race@example.com")) == 1


def test_a_key_revoked_by_the_cli_is_refused_by_server_processes_within_the_cache_ttl(db_url, capsys):
    """The servers are other processes than the CLI: they learn of the revocation only when
    their cached verification ends (HOTCRM_API_KEY_CACHE_TTL), or at once with the cache off."""
    cached_key = auth.create_api_key(db_url, "cached", ["leads:read"])
    uncached_key = auth.create_api_key(db_url, "uncached", ["leads:read"])
    env = database_env(db_url)
    with (
        ProcessServer({**env, "HOTCRM_API_KEY_CACHE_TTL": "1"}) as cached,
        ProcessServer({**env, "HOTCRM_API_KEY_CACHE_TTL": "0"}) as uncached,
    ):
        path = "/hotcrm/api/v1/crm/leads/none"
        assert httpx.get(cached.base_url + path, headers={"X-API-Key": cached_key.key}).status_code == 404
        assert httpx.get(uncached.base_url + path, headers={"X-API-Key": uncached_key.key}).status_code == 404
        for key in (cached_key, uncached_key):
            assert cli(["--database-url", db_url, "apikeys", "revoke", key.id]) == 0
        assert "HOTCRM_API_KEY_CACHE_TTL" in capsys.readouterr().out
        # Cache off: refused at once.
        refused = httpx.get(uncached.base_url + path, headers={"X-API-Key": uncached_key.key})
        assert_error(refused, 403, "INVALID_API_KEY")
        # Cache of 1 s: refused once the cached verification is older than that.
        time.sleep(1.2)
        refused = httpx.get(cached.base_url + path, headers={"X-API-Key": cached_key.key})
        assert_error(refused, 403, "INVALID_API_KEY")


def test_a_cached_key_is_refused_when_it_expires(db_url):
    api = Api(db_url, ApiSettings(jwt_secret="s" * 32, key_cache_ttl_seconds=3600))
    try:
        expiring = auth.create_api_key(db_url, "short", ALL, expires_at=utcnow() + timedelta(seconds=1.5))
        assert api.client.get("/crm/leads/x", headers=api.headers(expiring.key)).status_code == 404  # now cached
        time.sleep(1.6)
        body = assert_error(api.client.get("/crm/leads/x", headers=api.headers(expiring.key)), 403, "INVALID_API_KEY")
        assert "expired" in body["error"]
    finally:
        api.close()


def test_a_pooled_connection_the_server_dropped_is_replaced(pg_url):
    api = Api(pg_url, SETTINGS)
    try:
        assert api.client.get("/crm/leads/x", headers=api.headers()).status_code == 404
        with psycopg.connect(libpq_conninfo(pg_url), autocommit=True) as admin:
            others = "datname = current_database() AND pid <> pg_backend_pid()"
            admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}")
            deadline = time.monotonic() + 10
            while admin.execute(f"SELECT count(*) FROM pg_stat_activity WHERE {others}").fetchone()[0]:
                assert time.monotonic() < deadline, "the backends did not end"
                time.sleep(0.05)
        assert api.client.get("/crm/leads/x", headers=api.headers()).status_code == 404
        assert api.create(LEAD).status_code == 201
    finally:
        api.close()


def test_conversion_over_the_limit_writes_nothing(db_url):
    limits = {"leads.convert": RateLimit(2, 3600)}
    api = Api(db_url, ApiSettings(jwt_secret="s" * 32, default_rate_limit=RateLimit(100, 60), route_rate_limits=limits))
    try:
        wait_for_fresh_window(3600)
        first = api.create(LEAD).json()["data"]
        second = api.create({**LEAD, "email": "second@example.com"}).json()["data"]
        missing = api.convert("no-such-lead")
        assert_error(missing, 404, "LEAD_NOT_FOUND")
        assert missing.headers["RateLimit-Remaining"] == "1"
        converted = api.convert(first["Id"])
        assert converted.status_code == 200 and converted.headers["RateLimit-Remaining"] == "0"
        assert_error(api.convert(second["Id"]), 429, "RATE_LIMITED")
        with session_scope(db_url) as session:
            statuses = dict(session.execute(select(Lead.id, Lead.status)).all())
            assert statuses == {first["Id"]: "Converted", second["Id"]: "New"}
            assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1
            event = session.scalars(select(OutboxEvent)).one()
        data = converted.json()["data"]
        assert event.event_type == "lead.converted" and event.payload["data"] == {
            "leadId": first["Id"],
            "accountId": data["account"]["Id"],
            "contactId": data["contact"]["Id"],
            "opportunityId": data["opportunity"]["Id"],
            "convertedDate": event.payload["data"]["convertedDate"],
        }
    finally:
        api.close()
