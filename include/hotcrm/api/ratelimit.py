"""Rate limits per credential and route, counted in the CRM database so that every API
server process (uvicorn workers, the Airflow API server) shares one counter.

A fixed window: the count of ``(bucket, window_start)`` is bumped by one atomic
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (PostgreSQL and SQLite alike), so two
processes can never both take the last request of a window.
"""

from __future__ import annotations

import math
import random
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


def hit(session: Session, bucket: str, limit: RateLimit, *, now: float | None = None) -> RateDecision:
    """Count one request in ``bucket`` (e.g. ``key:<id>:leads.create``) inside the caller's transaction."""
    now = time.time() if now is None else now
    window_start = int(now // limit.seconds) * limit.seconds
    # Windows depend on the period, so a changed limit never reuses an old count.
    key = f"{bucket}:{limit.seconds}"[:200]
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
    reset_after = max(1, math.ceil(window_start + limit.seconds - now))
    return RateDecision(hits <= limit.requests, limit, hits, reset_after)
