"""Airflow adapter of the ``maintenance`` DAG: the CRM database from ``hotcrm_db``, the retention
settings from ``include/config/retention.json``, the run's logical end as the reference time.

Heavy imports happen inside the functions: DAG files import this module at parse time.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from hotcrm.airflow.hooks import HotCrmDatabaseHook

log = logging.getLogger(__name__)


def purge_expired(
    reference_time: datetime | None,
    *,
    dry_run: bool = False,
    max_seconds: float | None = None,
    db_url: str | None = None,
) -> dict[str, Any]:
    """Apply the retention rules as of ``reference_time`` (the run's data interval end)."""
    from hotcrm.maintenance.retention import load_config, purge

    config = load_config()
    if max_seconds:
        config = replace(config, time_budget_seconds=max_seconds)
    summary = purge(db_url or HotCrmDatabaseHook().get_database_url(), config, now=reference_time, dry_run=dry_run)
    log.info(
        "retention: %s %d rows: %s",
        "would remove" if dry_run else "removed",
        summary["total_removed"],
        ", ".join(f"{name} {n}" for name, n in summary["removed"].items()),
    )
    return summary
