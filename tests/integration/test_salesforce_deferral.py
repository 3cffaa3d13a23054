"""A long Bulk API 2.0 job is waited for in the triggerer: the sync operator defers to
``SalesforceBulkJobTrigger`` (async HTTP polls, no worker slot held), then resumes, collects
the results and goes on. Driven step by step here: execute → TaskDeferred → the trigger's
``run()`` on an event loop → execute_complete, as the triggerer and a worker would."""

from __future__ import annotations

import asyncio

import pytest
from airflow.sdk.exceptions import TaskDeferred
from sqlalchemy import select

from hotcrm.airflow.operators import HotCrmSalesforceSyncOperator
from hotcrm.airflow.triggers import SalesforceBulkJobTrigger
from hotcrm.crm import seed
from hotcrm.crm.db import session_scope
from hotcrm.salesforce.models import BulkJob
from tests.fakes.salesforce import server as emulator_server

salesforce_connection = emulator_server.salesforce_connection
salesforce_emulator = emulator_server.salesforce_emulator


def _fire(trigger: SalesforceBulkJobTrigger) -> dict:
    # as the triggerer does: rebuilt from its serialized form, run until its first event
    classpath, kwargs = trigger.serialize()
    assert classpath == "hotcrm.airflow.triggers.SalesforceBulkJobTrigger"
    rebuilt = SalesforceBulkJobTrigger(**kwargs)

    async def first_event():
        async for event in rebuilt.run():
            return event.payload

    return asyncio.run(first_event())


def test_the_operator_defers_to_the_trigger_and_resumes(hotcrm_env, salesforce_connection, monkeypatch):
    sf = salesforce_connection
    seed.load_seed(hotcrm_env["database_url"])
    sf.faults.bulk_rows_per_poll = 4  # each job takes three polls
    operator = HotCrmSalesforceSyncOperator(task_id="sync", transport="bulk", wait_before_defer=0, poll_interval=0.05)
    context = {"run_id": "night-1"}

    deferrals = 0
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    while True:
        deferrals += 1
        defer = deferred.value
        assert defer.method_name == "execute_complete"
        event = _fire(defer.trigger)
        assert event["status"] == "done" and set(event["states"].values()) == {"JobComplete"}
        # dag.test() resumes with the event only (no deferral kwargs): the event carries them
        assert event["carry"] == defer.kwargs
        try:
            kwargs = defer.kwargs if deferrals == 1 else {}  # the second resume as dag.test() does it
            summary = getattr(operator, defer.method_name)(context, event, **kwargs)
            break
        except TaskDeferred as again:  # the Contacts' job, after the Accounts'
            deferred = pytest.ExceptionInfo.from_exc_info((type(again), again, again.__traceback__))
    assert deferrals == 2
    assert summary["outcome"] == "success", summary["message"]
    assert summary["totals"]["created"] == 24 and summary["totals"]["pending"] == 0
    assert "resumed after its bulk jobs ended" in summary["message"]
    assert len(sf.find("Account")) == 12 and len(sf.find("Contact")) == 12
    with session_scope(hotcrm_env["database_url"]) as session:
        jobs = list(session.execute(select(BulkJob)).scalars())
    assert len(jobs) == 2 and {j.status for j in jobs} == {"collected"}


def test_the_trigger_gives_up_at_its_timeout(salesforce_connection):
    sf = salesforce_connection
    sf.faults.bulk_hold = True
    token = sf.issue_token()
    import requests

    base = f"{sf.base_url}/services/data/v60.0/jobs/ingest"
    auth = {"Authorization": f"Bearer {token}"}
    job = requests.post(
        base,
        json={"object": "Account", "operation": "upsert", "externalIdFieldName": "HotCRM_Id__c"},
        headers=auth,
        verify=str(sf.ca_path),
    ).json()
    requests.put(f"{base}/{job['id']}/batches", data=b"HotCRM_Id__c,Name\nx,A\n", headers=auth, verify=str(sf.ca_path))
    requests.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, headers=auth, verify=str(sf.ca_path))
    event = _fire(SalesforceBulkJobTrigger(job_ids=[job["id"]], poll_interval=0.05, timeout=0.3))
    assert event == {"status": "timeout", "states": {job["id"]: "InProgress"}}
