"""Daily retention: delete finished bookkeeping rows past their configured age, in small batches."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from hotcrm.airflow.operators import HotCrmRetentionOperator

DAG_ID = "maintenance"

DOC_MD = """
### Maintenance: retention of bookkeeping rows

Every day this DAG deletes rows that are finished and older than their age in
`include/config/retention.json` (days; `null` keeps a kind of row forever):

| rule | rows | default |
|---|---|---|
| `webhook_inbox.done` / `.dead` | inbound webhooks done or ignored / dead-lettered | 30 / 90 days |
| `webhook_deliveries.succeeded` / `.dead` | deliveries (and their attempts) delivered / dead | 30 / 90 days |
| `outbox_events` | CRM events fanned out with no delivery left | 90 days |
| `email_outbox.sent` / `.failed` | emails sent / failed for good | 30 / 90 days |
| `api_rate_limits` | rate-limit counters of past windows | 2 days |
| `lead_import_issues` | rejected and duplicate rows of finished imports (the file ledger stays) | 90 days |
| `salesforce_sync_runs` | sync history of finished runs | 180 days |

Nothing still pending, claimed, sending or waiting for an operator is ever removed, and dead
letters are kept at least as long as rows that succeeded. Deletes go oldest first in batches of
`batch_size` (5,000), each its own short transaction, so the webhook receiver keeps inserting
while it runs. The age is measured from the run's data interval end. The `purge` task returns
what each rule removed; `dry_run` only counts. Same thing by hand:
`python -m hotcrm maintenance purge [--dry-run]`.
"""


@dag(
    dag_id=DAG_ID,
    schedule="30 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    doc_md=DOC_MD,
    tags=["hotcrm", "maintenance", "retention"],
    default_args={"owner": "platform", "retries": 2, "retry_delay": timedelta(minutes=5)},
    render_template_as_native_obj=True,
    params={
        "dry_run": Param(False, type="boolean", description="count what would be removed, remove nothing"),
        "max_seconds": Param(0, type="number", minimum=0, description="time budget (0: config file)"),
    },
)
def maintenance():
    HotCrmRetentionOperator(task_id="purge", dry_run="{{ params.dry_run }}", max_seconds="{{ params.max_seconds }}")


maintenance()
