"""Throttling of failed authentications, so that guessing credentials is slow and cheap for us,
and nobody can lock a client out by failing in its name.

* Per **source address** (route name ``auth.failures``, default 30 per 60 s): every failed
  authentication (missing or unknown API key, bad bearer token, bad client credentials at the
  token endpoint) counts. Over the limit the address gets 429 ``RATE_LIMITED`` with
  ``Retry-After``; this process then refuses its failures from memory
  (:data:`hotcrm.api.ratelimit.failure_gate`) and skips the API-key look-up of keys it has not
  verified lately until the window ends. Valid bearer tokens and recently verified API keys
  keep working from a blocked address: they cost no look-up.
* Per **OAuth client** (``oauth.client_failures``, default 10 per 60 s): only failures count,
  and only for client ids that exist, so junk ids write no counter rows. Over the limit wrong
  secrets get 429; the right secret still gets its token (it is checked anyway: 256-bit
  secrets cannot be guessed, so answering it costs no safety).

The source address is the connection's peer (``request.client.host``). Behind a reverse proxy,
run uvicorn with ``--proxy-headers --forwarded-allow-ips=<the proxy>`` so it is the real client's.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from hotcrm.api import ratelimit
from hotcrm.api.config import ApiSettings, RateLimit
from hotcrm.api.errors import ApiError

ADDRESS_ROUTE = "auth.failures"
CLIENT_ROUTE = "oauth.client_failures"
DEFAULT_ADDRESS_LIMIT = RateLimit(30, 60)
DEFAULT_CLIENT_LIMIT = RateLimit(10, 60)
# The answers that are failed authentications (INSUFFICIENT_SCOPE is an authenticated caller).
FAILURE_CODES = frozenset({"MISSING_API_KEY", "INVALID_API_KEY", "INVALID_TOKEN", "INVALID_CLIENT"})


def source_address(request: Request) -> str:
    """The caller's address as the server sees it (the proxy's, unless uvicorn trusts its headers)."""
    return request.client.host if request.client and request.client.host else "unknown"


def address_bucket(address: str) -> str:
    """The counter of failed authentications from ``address``."""
    return f"addr:{address}:{ADDRESS_ROUTE}"


def address_limit(settings: ApiSettings) -> RateLimit:
    """Failed authentications allowed per source address."""
    return settings.rate_limit(ADDRESS_ROUTE, DEFAULT_ADDRESS_LIMIT)


def client_limit(settings: ApiSettings) -> RateLimit:
    """Failed token requests allowed per (existing) OAuth client."""
    return settings.rate_limit(CLIENT_ROUTE, DEFAULT_CLIENT_LIMIT)


def too_many(decision: ratelimit.RateDecision, what: str) -> ApiError:
    """429 RATE_LIMITED for a refused failure count, with ``Retry-After`` and ``RateLimit-*``."""
    return ApiError(
        429,
        "RATE_LIMITED",
        f"Too many failed authentications {what}; retry in {decision.reset_after} s",
        headers=decision.headers(),
    )


def check_blocked(database_url: str, address: str) -> None:
    """ApiError 429 when this process knows ``address`` is over its failure limit (no database work)."""
    decision = ratelimit.failure_gate.blocked(database_url, address)
    if decision is not None:
        raise too_many(decision, "from this address")


def _with_headers(error: ApiError, decision: ratelimit.RateDecision) -> ApiError:
    error.headers = {**decision.headers(), **error.headers}
    return error


def after_address_count(database_url: str, address: str, decision: ratelimit.RateDecision, error: ApiError) -> ApiError:
    """The error to answer once a failure was counted: 429 when over the limit (and remembered), else
    ``error`` with the counter's ``RateLimit-*`` headers."""
    if not decision.allowed:
        ratelimit.failure_gate.block(database_url, address, decision)
        return too_many(decision, "from this address")
    if decision.remaining == 0:
        # The last failure allowed: the next one is refused, from memory, without a look-up.
        refused = ratelimit.RateDecision(False, decision.limit, decision.hits + 1, decision.reset_after)
        ratelimit.failure_gate.block(database_url, address, refused)
    return _with_headers(error, decision)


def count_failure(
    session: Session, database_url: str, address: str, settings: ApiSettings, error: ApiError
) -> ApiError:
    """Count a failed authentication from ``address`` in ``session`` (its own transaction) and
    return the error to answer. An address already known to be blocked costs no database work."""
    blocked = ratelimit.failure_gate.blocked(database_url, address)
    if blocked is not None:
        return too_many(blocked, "from this address")
    decision = ratelimit.hit(session, address_bucket(address), address_limit(settings))
    return after_address_count(database_url, address, decision, error)


async def count_failure_async(
    connection, database_url: str, address: str, settings: ApiSettings, error: ApiError
) -> ApiError:
    """:func:`count_failure` on an asynchronous psycopg connection in autocommit (PostgreSQL)."""
    blocked = ratelimit.failure_gate.blocked(database_url, address)
    if blocked is not None:
        return too_many(blocked, "from this address")
    decision = await ratelimit.hit_async(connection, address_bucket(address), address_limit(settings))
    return after_address_count(database_url, address, decision, error)


def count_client_failure(
    session: Session, database_url: str, address: str, client_id: str | None, settings: ApiSettings, error: ApiError
) -> ApiError:
    """A failed token request: counted per address, and per client when ``client_id`` names an
    existing client (None otherwise). Returns 429 when either count is over its limit."""
    answer = count_failure(session, database_url, address, settings, error)
    if client_id is None or answer.status == 429:
        return answer
    decision = ratelimit.hit(session, f"client:{client_id}:{CLIENT_ROUTE}", client_limit(settings))
    if not decision.allowed:
        return too_many(decision, "for this client")
    return answer
