"""Rate limits hold across API server processes: the counter is in the CRM database, not in
a process. Real uvicorn processes on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from hotcrm.api import auth
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Lead
from hotcrm.settings import database_env
from tests.integration.test_api import wait_for_fresh_window
from tests.support.api_server import ProcessServer

LIMIT = 5
WINDOW = 3600
ENV = {"HOTCRM_API_RATE_LIMITS": f"leads.read={LIMIT}/{WINDOW}"}


def _get(url: str, headers: dict[str, str]) -> httpx.Response:
    # A new connection per request, so the kernel spreads them over the workers.
    with httpx.Client(timeout=30) as client:
        return client.get(url, headers={**headers, "Connection": "close"})


def test_two_server_processes_share_one_counter(db_url):
    """Two uvicorn processes on two ports: requests alternate between them and still only
    LIMIT pass; a token issued by one process is accepted by the other (shared signing key)."""
    key = auth.create_api_key(db_url, "partner", ["leads:read"]).key
    client = auth.create_oauth_client(db_url, "front end", ["leads:read"])
    env = {**ENV, **database_env(db_url)}
    with ProcessServer(env) as first, ProcessServer(env) as second:
        wait_for_fresh_window(WINDOW)
        statuses = [
            _get(f"{server.base_url}/hotcrm/api/v1/crm/leads/none", {"X-API-Key": key}).status_code
            for server in [first, second] * 4
        ]
        assert statuses == [404] * LIMIT + [429] * (8 - LIMIT)

        token = httpx.post(
            f"{first.base_url}/hotcrm/api/v1/oauth/token",
            data={"grant_type": "client_credentials", "client_id": client.client_id,
                  "client_secret": client.client_secret},
        ).json()["access_token"]  # fmt: skip
        on_second = _get(f"{second.base_url}/hotcrm/api/v1/crm/leads/none", {"Authorization": f"Bearer {token}"})
        assert on_second.status_code == 404 and on_second.headers["RateLimit-Remaining"] == str(LIMIT - 1)


def test_uvicorn_with_two_workers_enforces_the_limit_once(db_url):
    key = auth.create_api_key(db_url, "partner", ["leads:read"]).key
    with ProcessServer({**ENV, **database_env(db_url)}, workers=2) as server:
        wait_for_fresh_window(WINDOW)
        url = f"{server.base_url}/hotcrm/api/v1/crm/leads/none"
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: _get(url, {"X-API-Key": key}), range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [404] * LIMIT + [429] * (20 - LIMIT)
    limited = [r for r in responses if r.status_code == 429]
    assert all(r.json()["code"] == "RATE_LIMITED" and int(r.headers["Retry-After"]) > 0 for r in limited)


def test_creation_counts_and_inserts_in_one_statement_across_workers(db_url):
    """Lead creation counts the request in the statement that inserts the lead: across two
    workers, exactly LIMIT creations pass and only those leads are written."""
    key = auth.create_api_key(db_url, "partner", ["leads:write"]).key
    env = {**database_env(db_url), "HOTCRM_API_RATE_LIMITS": f"leads.create={LIMIT}/{WINDOW}"}
    with ProcessServer(env, workers=2) as server:
        wait_for_fresh_window(WINDOW)
        url = f"{server.base_url}/hotcrm/api/v1/crm/leads"

        def create(n: int) -> httpx.Response:
            body = {"firstName": "W", "lastName": f"L{n}", "company": "C", "email": f"w{n}@example.com"}
            with httpx.Client(timeout=30) as client:
                return client.post(url, json=body, headers={"X-API-Key": key, "Connection": "close"})

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(create, range(20)))
    assert sorted(r.status_code for r in responses) == [201] * LIMIT + [429] * (20 - LIMIT)
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == LIMIT
