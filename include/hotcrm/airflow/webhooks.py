"""Airflow adapters for the webhook inbox: a connection-based source registry (for the plugin)
and the CRM database URL for the ``webhook_inbox`` DAG."""

from __future__ import annotations

import logging
import threading
import time

from airflow.sdk.exceptions import AirflowNotFoundException

from hotcrm.airflow.hooks import HotCrmDatabaseHook, HotCrmWebhookSourceHook

log = logging.getLogger(__name__)


class AirflowSourceRegistry:
    """``source -> SourceConfig | None`` from the Airflow connection ``hotcrm_webhook_<source>``
    (any secrets backend Airflow is configured with).

    Looked-up configs are kept for ``ttl_seconds`` so the receiver does not ask the secrets
    backend on every delivery; a rotated secret is picked up within that time.
    """

    def __init__(self, ttl_seconds: float = 30.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._cache: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def __call__(self, source: str):
        """The config of ``source``, or ``None`` when it has no connection."""
        from hotcrm.webhooks.config import SOURCE_NAME, conn_id

        if not SOURCE_NAME.match(source):
            return None
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(source)
        if cached and now - cached[0] < self.ttl_seconds:
            return cached[1]
        try:
            config = HotCrmWebhookSourceHook(conn_id(source)).get_source_config()
        except AirflowNotFoundException:
            config = None
        with self._lock:
            self._cache[source] = (now, config)
        return config


def inbox_database_url() -> str:
    """The CRM database URL (the inbox lives there), from the ``hotcrm_db`` connection."""
    return HotCrmDatabaseHook().get_database_url()


def requeue_dead_letters(source: str | None = None, db_url: str | None = None) -> dict[str, int]:
    """Put the inbox's dead letters (of ``source``, or all) back to pending; returns ``{"requeued": n}``."""
    from hotcrm.webhooks.inbox import requeue

    count = requeue(db_url or inbox_database_url(), source=source or None)
    log.info("requeued %d dead letters", count)
    return {"requeued": count}
