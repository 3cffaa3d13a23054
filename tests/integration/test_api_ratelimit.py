"""The database rate-limit counter itself: fixed windows, rollover, clean-up (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select

from hotcrm.api import ratelimit
from hotcrm.api.config import RateLimit
from hotcrm.api.models import RateLimitCounter
from hotcrm.crm.db import session_scope

LIMIT = RateLimit(2, 60)
T0 = 1_800_000_000.0  # a window start (divisible by 60)


def _hit(db_url: str, bucket: str, now: float) -> ratelimit.RateDecision:
    with session_scope(db_url) as session:
        return ratelimit.hit(session, bucket, LIMIT, now=now)


def _rows(db_url: str) -> list[tuple[str, int, int]]:
    with session_scope(db_url) as session:
        return [(r.bucket, r.window_start, r.hits) for r in session.scalars(select(RateLimitCounter))]


def test_windows_count_reset_and_clean_up(db_url, monkeypatch):
    first, second, third = (_hit(db_url, "key:a:leads.read", T0 + s) for s in (1, 2, 3))
    assert [d.allowed for d in (first, second, third)] == [True, True, False]
    assert (third.hits, third.remaining, third.reset_after) == (3, 0, 57)
    assert _hit(db_url, "key:b:leads.read", T0 + 4).allowed  # another credential, another counter

    fresh = _hit(db_url, "key:a:leads.read", T0 + 61)  # the next window
    assert fresh.allowed and fresh.hits == 1 and fresh.reset_after == 59
    assert sorted(_rows(db_url)) == [("key:a:leads.read:60", int(T0) + 60, 1), ("key:b:leads.read:60", int(T0), 1)]

    monkeypatch.setattr(ratelimit, "SWEEP_PROBABILITY", 1.0)
    later = T0 + ratelimit.SWEEP_AGE_SECONDS + 120
    _hit(db_url, "key:c:leads.read", later)
    assert [row[0] for row in _rows(db_url)] == ["key:c:leads.read:60"]
