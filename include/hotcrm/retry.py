"""The one backoff helper: how long to wait before trying again.

Two shapes cover every retry in HotCRM:

- :func:`exponential_delay`: base, doubling, capped, optionally with full jitter; the
  Salesforce client's in-process retries (``RetryPolicy``) and the webhook inbox's
  rescheduled events.
- :func:`scheduled_delay`: a fixed schedule with proportional jitter, ending in a dead
  letter; outbound webhook deliveries and the email outbox.

Why not tenacity: three of the four retries are not loops in one process. A failed delivery,
email or inbound event is written back with its ``next_attempt_at`` and picked up by a later
run (possibly on another worker, after a crash), so what is needed is the delay, not a
retrying call. The one in-process loop (the Salesforce client) also honours ``Retry-After``,
logs in again on an expired session and counts its retries for the run summary; its loop is
clearer as it is, with the delay from here. Pure functions are also what the tests pin.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def exponential_delay(
    attempt: int, base: float, cap: float, *, jitter: bool = False, rng: random.Random | None = None
) -> float:
    """Seconds before retry number ``attempt`` (1 = the first retry): ``base`` doubled each time,
    at most ``cap``; with ``jitter``, a uniform draw below that ("full jitter"), so a burst of
    failures does not retry in step."""
    delay = min(cap, base * 2 ** (max(attempt, 1) - 1))
    return (rng or random).uniform(0, delay) if jitter else delay


def scheduled_delay(
    schedule: Sequence[float], failed_attempts: int, jitter_ratio: float = 0.0, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after the ``failed_attempts``-th failure, from ``schedule``, moved at
    random by up to ``jitter_ratio`` of itself; None when the schedule is used up (give up:
    dead letter)."""
    if failed_attempts > len(schedule):
        return None
    base = schedule[max(failed_attempts, 1) - 1]
    spread = base * jitter_ratio
    return max(0.0, base + (rng or random).uniform(-spread, spread))
