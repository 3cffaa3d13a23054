"""The Salesforce sync's own settings, from the environment (the org's address and credentials
are the ``salesforce_default`` connection's, read by the hook)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hotcrm.salesforce.client import DEFAULT_BULK_MAX_BYTES
from hotcrm.salesforce.sync import DEFAULT_BULK_THRESHOLD, DEFAULT_BULK_WAIT_SECONDS
from hotcrm.settings import env_number


@dataclass(frozen=True)
class BulkSettings:
    """When and how the sync uses Bulk API 2.0, and how long it waits for its jobs."""

    threshold: int = DEFAULT_BULK_THRESHOLD  # records from which ``auto`` uses Bulk API 2.0
    max_bytes: int = DEFAULT_BULK_MAX_BYTES  # CSV bytes per job
    wait_seconds: float = DEFAULT_BULK_WAIT_SECONDS  # how long a task waits for its jobs
    wait_before_defer_seconds: float = 120.0  # a deferrable task's wait in the worker first
    poll_seconds: float = 30.0  # the triggerer's polling interval

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BulkSettings:
        """``HOTCRM_SALESFORCE_BULK_THRESHOLD``, ``_MAX_BYTES``, ``_WAIT_SECONDS``,
        ``_WAIT_BEFORE_DEFER_SECONDS`` and ``_POLL_SECONDS``; a bad value names its setting."""
        prefix = "HOTCRM_SALESFORCE_BULK_"
        return cls(
            threshold=env_number(f"{prefix}THRESHOLD", cls.threshold, env=env),
            max_bytes=env_number(f"{prefix}MAX_BYTES", cls.max_bytes, minimum=1, env=env),
            wait_seconds=env_number(f"{prefix}WAIT_SECONDS", cls.wait_seconds, kind=float, env=env),
            wait_before_defer_seconds=env_number(
                f"{prefix}WAIT_BEFORE_DEFER_SECONDS", cls.wait_before_defer_seconds, kind=float, env=env
            ),
            poll_seconds=env_number(f"{prefix}POLL_SECONDS", cls.poll_seconds, kind=float, env=env),
        )
