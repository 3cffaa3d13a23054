"""Airflow adapter of the ``webhook_delivery`` DAG: the CRM database from ``hotcrm_db``, the
delivery settings from ``include/config/delivery.json``, the DAG's params as overrides.

Heavy imports (SQLAlchemy models, httpx) happen inside the functions: DAG files import this
module at parse time.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from datetime import datetime
from typing import Any

from hotcrm.airflow.hooks import HotCrmDatabaseHook

log = logging.getLogger(__name__)


def database_url() -> str:
    """The CRM database URL from the ``hotcrm_db`` connection (or the embedded default)."""
    return HotCrmDatabaseHook().get_database_url()


def replay_dead_letters(ids: list[str], since: str, until: str, db_url: str | None = None) -> dict[str, Any]:
    """Replay dead letters by id or by a dead-lettered time range (ISO 8601); nothing when none given."""
    if not ids and not since and not until:
        return {"replayed": 0}
    from hotcrm.crm.db import session_scope
    from hotcrm.delivery.service import replay

    def parse(value: str, name: str) -> datetime | None:
        if not value:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"param {name}={value!r}: use ISO 8601, e.g. 2026-11-25T10:00:00+00:00") from exc

    with session_scope(db_url or database_url()) as session:
        count = replay(session, ids=ids or None, since=parse(since, "replay_since"), until=parse(until, "replay_until"))
    log.info("replayed %d dead-lettered deliveries", count)
    return {"replayed": count}


def fan_out_events(db_url: str | None = None) -> dict[str, Any]:
    """Turn new outbox events into pending deliveries."""
    from hotcrm.delivery.service import fan_out_pending

    result = fan_out_pending(db_url or database_url())
    log.info("fan-out: %(events_fanned_out)d events -> %(deliveries_created)d new deliveries", result)
    return result


def deliver(
    worker: str,
    batch_size: int | None = None,
    concurrency: int | None = None,
    max_seconds: float | None = None,
    db_url: str | None = None,
) -> dict:
    """Claim and send due deliveries until none is due or the time budget is spent."""
    from hotcrm.delivery.config import load_config
    from hotcrm.delivery.service import deliver_due

    config = load_config()
    overrides = {
        k: v
        for k, v in {"batch_size": batch_size, "concurrency": concurrency, "time_budget_seconds": max_seconds}.items()
        if v
    }
    config = replace(config, **overrides)
    return deliver_due(db_url or database_url(), config, worker_id=f"{socket.gethostname()}/{worker}")
