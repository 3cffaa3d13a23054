"""Nightly, incremental, idempotent upserts of HotCRM Accounts and Contacts into Salesforce."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag

from hotcrm.airflow.operators import HotCrmSalesforceSyncOperator
from hotcrm.airflow.tasks import salesforce_sync_outcome

DAG_ID = "salesforce_sync"

DOC_MD = """
### Salesforce sync

Every night, Accounts and then Contacts whose mapped fields changed since Salesforce last
acknowledged them (or that never synced, or failed last time) are **upserted** into Salesforce
on the external-id field `HotCRM_Id__c` (see `include/config/salesforce_mapping.json`): a
re-run never creates duplicates. Fewer records than the bulk threshold go through sObject
Collections (200 a call), more through Bulk API 2.0 ingest jobs (one per column set, each
upload at most 100 MB of CSV). A job still running after a short wait is waited for by the
triggerer (the task defers, holding no worker slot) and its results collected when it ends;
if it outlives that too, its id stays in `salesforce_bulk_jobs` and the next run collects it.

Each record's result is written back with its bookkeeping in one transaction: `SalesforceId`
and `LastSyncDate` on success, Salesforce's error code and message on failure (table
`salesforce_sync_state`; failed records are sent again next run). The run's counts land in
`salesforce_sync_runs` and in this task's return value. When API usage passes the
connection's `api_budget_share` of the daily limit (or retries give up) the run stops sending and ends
*partial*: the `outcome` task fails with the reason, so the run shows red; what was sent is
written back and the next run picks up the rest.

Params: `objects`, `dry_run` (select and map, send nothing), `full` (ignore change
detection), `limit` (records per object), `transport` (`auto`, `collections`, `bulk`).
Connection: `salesforce_default` (see the README's "Salesforce sync" section).
"""


@dag(
    dag_id=DAG_ID,
    # Nightly at 02:30 UTC: edit here to change it (a DAG file reads no environment when parsed).
    schedule=CronTriggerTimetable("30 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["hotcrm", "salesforce", "sync"],
    default_args={
        "owner": "crm-integrations",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    render_template_as_native_obj=True,
    params={
        "objects": Param(["Account", "Contact"], type="array", items={"enum": ["Account", "Contact"]}),
        "dry_run": Param(False, type="boolean", description="select and map, send nothing"),
        "full": Param(False, type="boolean", description="ignore change detection: send every record"),
        "limit": Param(None, type=["null", "integer"], minimum=0, description="records per object, at most"),
        "transport": Param("auto", enum=["auto", "collections", "bulk"]),
    },
)
def salesforce_sync():
    # A Bulk API 2.0 job still running after a short wait is waited for in the triggerer.
    sync = HotCrmSalesforceSyncOperator(
        task_id="sync",
        objects="{{ params.objects }}",
        dry_run="{{ params.dry_run }}",
        full="{{ params.full }}",
        limit="{{ params.limit }}",
        transport="{{ params.transport }}",
        execution_timeout=timedelta(hours=3),
    )
    salesforce_sync_outcome(sync.output)


salesforce_sync()
