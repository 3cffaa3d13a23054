"""Triggers: waits that run in Airflow's triggerer, so no worker slot is held meanwhile.

:class:`SalesforceBulkJobTrigger` polls Bulk API 2.0 ingest jobs with async HTTP until each
has ended (``JobComplete``, ``Failed`` or ``Aborted``); the sync operator defers to it when a
job outlives the wait it does itself, then resumes to collect the results.

``carry`` is handed back in the event: the operator puts there what it also passes as the
deferral's ``kwargs``, because ``dag.test()`` (Airflow 3.3, ``_run_task`` in
``airflow/sdk/definitions/dag.py``) resumes a task with ``next_kwargs = {"event": ...}`` only,
dropping the deferral's own kwargs (a real triggerer keeps them).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

JOB_ENDED = ("JobComplete", "Failed", "Aborted")


class SalesforceBulkJobTrigger(BaseTrigger):
    """Fires once every job in ``job_ids`` has ended, or after ``timeout`` seconds (the jobs are
    then left for the next run, which collects them), or on an error it cannot get past."""

    def __init__(
        self,
        *,
        job_ids: list[str],
        salesforce_conn_id: str = "salesforce_default",
        poll_interval: float = 30.0,
        timeout: float = 6 * 3600.0,
        carry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.carry = carry
        self.job_ids = list(job_ids)
        self.salesforce_conn_id = salesforce_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and the arguments that rebuild this trigger in the triggerer."""
        return (
            "hotcrm.airflow.triggers.SalesforceBulkJobTrigger",
            {
                "job_ids": self.job_ids,
                "salesforce_conn_id": self.salesforce_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "carry": self.carry,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the jobs; yield one event (with ``carry`` in it, when given)."""
        async for payload in self._poll():
            if self.carry is not None:
                payload["carry"] = self.carry
            yield TriggerEvent(payload)
            return

    async def _poll(self) -> AsyncIterator[dict[str, Any]]:
        import httpx

        from hotcrm.airflow.salesforce import HotCrmSalesforceHook

        hook = HotCrmSalesforceHook(salesforce_conn_id=self.salesforce_conn_id)
        try:
            # The connection is read the triggerer's way (async); the login's HTTP runs in a thread.
            hook._conn = await hook.aget_connection(self.salesforce_conn_id)
            token, instance_url = await asyncio.to_thread(hook.login)
        except Exception as exc:  # noqa: BLE001 - reported in the event, the operator decides
            yield {"status": "error", "message": f"login failed: {exc}", "states": {}}
            return
        verify: bool | ssl.SSLContext = True
        if isinstance(hook.verify, str):
            verify = ssl.create_default_context(cafile=hook.verify)
        base = f"{instance_url.rstrip('/')}/services/data/v{hook.api_version}/jobs/ingest"
        deadline = time.monotonic() + self.timeout
        states: dict[str, str] = {}
        async with httpx.AsyncClient(verify=verify, timeout=60.0, trust_env=False) as http:
            while True:
                for job_id in self.job_ids:
                    if states.get(job_id) in JOB_ENDED:
                        continue
                    response = await http.get(f"{base}/{job_id}", headers={"Authorization": f"Bearer {token}"})
                    if response.status_code == 401:  # the session expired while Salesforce worked
                        token, instance_url = await asyncio.to_thread(hook.login)
                        base = f"{instance_url.rstrip('/')}/services/data/v{hook.api_version}/jobs/ingest"
                        break
                    if response.status_code >= 500 or response.status_code == 403:
                        continue  # transient, or a limit: poll again later
                    if response.status_code != 200:
                        yield {
                            "status": "error",
                            "message": f"GET job {job_id}: HTTP {response.status_code} {response.text[:200]}",
                            "states": states,
                        }
                        return
                    states[job_id] = str(response.json().get("state"))
                if all(states.get(j) in JOB_ENDED for j in self.job_ids):
                    yield {"status": "done", "states": states}
                    return
                if time.monotonic() + self.poll_interval > deadline:
                    yield {"status": "timeout", "states": states}
                    return
                self.log.info("Bulk jobs still running: %s", {j: states.get(j) for j in self.job_ids})
                await asyncio.sleep(self.poll_interval)
