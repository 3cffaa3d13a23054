"""Rate limits per credential and route, counted in the CRM database so that every API
server process (uvicorn workers, the Airflow API server) shares one counter.

A fixed window: the count of ``(bucket, window_start)`` is bumped by one atomic
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (PostgreSQL and SQLite alike), so two
processes can never both take the last request of a window. On PostgreSQL the REST API's
hot routes run the same upsert as the first CTE (:data:`HIT_CTE`) of the statement that
does the request's work, on an asynchronous connection, so counting costs no round trip.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hotcrm.api.config import RateLimit
from hotcrm.api.models import RateLimitCounter

SWEEP_PROBABILITY = 0.01
SWEEP_AGE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one request against a limit, and the headers that tell the client."""

    allowed: bool
    limit: RateLimit
    hits: int
    reset_after: int

    @property
    def remaining(self) -> int:
        """Requests left in this window."""
        return max(0, self.limit.requests - self.hits)

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers (IETF draft), plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit.requests),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
            "RateLimit-Policy": f"{self.limit.requests};w={self.limit.seconds}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after)
        return headers


def window(bucket: str, limit: RateLimit, now: float | None = None) -> tuple[str, int, float]:
    """(counter key, window start, now) of a request in ``bucket`` under ``limit``."""
    now = time.time() if now is None else now
    window_start = int(now // limit.seconds) * limit.seconds
    # Windows depend on the period, so a changed limit never reuses an old count.
    return f"{bucket}:{limit.seconds}"[:200], window_start, now


def decide(limit: RateLimit, hits: int, window_start: int, now: float) -> RateDecision:
    """The decision for the ``hits``-th request of the window starting at ``window_start``."""
    reset_after = max(1, math.ceil(window_start + limit.seconds - now))
    return RateDecision(hits <= limit.requests, limit, hits, reset_after)


def hit(session: Session, bucket: str, limit: RateLimit, *, now: float | None = None) -> RateDecision:
    """Count one request in ``bucket`` (e.g. ``key:<id>:leads.create``) inside the caller's transaction."""
    key, window_start, now = window(bucket, limit, now)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = RateLimitCounter.__table__
    statement = insert(table).values(bucket=key, window_start=window_start, hits=1)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.bucket, table.c.window_start], set_={"hits": table.c.hits + 1}
    ).returning(table.c.hits)
    hits = session.execute(statement).scalar_one()
    if hits == 1:
        # First request of a new window: the bucket's older windows are dead weight.
        session.execute(delete(table).where(table.c.bucket == key, table.c.window_start < window_start))
        if random.random() < SWEEP_PROBABILITY:
            # Now and then, every bucket's long-dead windows too (credentials gone quiet, unknown client ids).
            session.execute(delete(table).where(table.c.window_start < now - SWEEP_AGE_SECONDS))
    return decide(limit, hits, window_start, now)


# The same count as one PostgreSQL statement, for the asynchronous hot path (hotcrm.api.pgpool);
# HIT_CTE is also the first part of the statements that count and do a request's work at once.
HIT_CTE = (
    "INSERT INTO api_rate_limits AS c (bucket, window_start, hits) VALUES (%(rl_bucket)s, %(rl_window)s, 1) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1 RETURNING c.hits"
)


# The count as the gate of a one-statement CRM operation (see hotcrm.crm.conversion): the
# work is done only when the request is within its limit; the gate's value is the count.
GATE_CTES = f"hit AS ({HIT_CTE}), gate AS (SELECT hits AS value, hits <= %(rl_limit)s AS allowed FROM hit)"


def hit_params(key: str, window_start: int) -> dict:
    """The parameters of :data:`HIT_CTE`."""
    return {"rl_bucket": key, "rl_window": window_start}


async def hit_async(connection, bucket: str, limit: RateLimit, *, now: float | None = None) -> RateDecision:
    """:func:`hit` on an asynchronous psycopg connection in autocommit (PostgreSQL)."""
    key, window_start, now = window(bucket, limit, now)
    cursor = await connection.execute(HIT_CTE, hit_params(key, window_start))
    hits = (await cursor.fetchone())[0]
    await after_hit_async(connection, key, window_start, hits, now)
    return decide(limit, hits, window_start, now)


async def after_hit_async(connection, key: str, window_start: int, hits: int, now: float) -> None:
    """The clean-up :func:`hit` does on the first request of a window, on an async connection."""
    if hits != 1:
        return
    await connection.execute("DELETE FROM api_rate_limits WHERE bucket = %s AND window_start < %s", (key, window_start))
    if random.random() < SWEEP_PROBABILITY:
        await connection.execute("DELETE FROM api_rate_limits WHERE window_start < %s", (int(now - SWEEP_AGE_SECONDS),))


class FailureGate:
    """Source addresses over their failed-authentication limit, remembered by this process until
    their window ends, so their next failures are refused without a database round trip.

    Each process learns a block from the shared counter on its own first failure after the limit
    was passed. Bounded: when full it starts over (a forgotten block costs one count).
    """

    MAX_ENTRIES = 10_000

    def __init__(self, clock=time.time) -> None:
        self._blocked: dict[tuple[str, str], RateDecision] = {}
        self._until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def blocked(self, database_url: str, address: str) -> RateDecision | None:
        """The refusing decision of an address still blocked (its ``reset_after`` brought up to date), else None."""
        key = (database_url, address)
        until = self._until.get(key)
        if until is None:
            return None
        now = self.clock()
        if now >= until:
            with self._lock:
                self._until.pop(key, None)
                self._blocked.pop(key, None)
            return None
        decision = self._blocked[key]
        return RateDecision(False, decision.limit, decision.hits, max(1, math.ceil(until - now)))

    def block(self, database_url: str, address: str, decision: RateDecision) -> None:
        """Remember that ``address`` is over its limit until its window resets."""
        with self._lock:
            if len(self._until) >= self.MAX_ENTRIES:
                self._until.clear()
                self._blocked.clear()
            key = (database_url, address)
            self._blocked[key] = decision
            self._until[key] = self.clock() + decision.reset_after

    def clear(self) -> None:
        """Forget every block."""
        with self._lock:
            self._until.clear()
            self._blocked.clear()


failure_gate = FailureGate()
