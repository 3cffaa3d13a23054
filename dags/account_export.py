"""Accounts to the export bucket as JSON, NDJSON or CSV: streamed, checked, published atomically."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from hotcrm.airflow.assets import ACCOUNT_EXPORT
from hotcrm.airflow.exports import (
    DEFAULT_FIELDS,
    DEFAULT_FORMAT,
    FORMATS,
    check_account_export,
    publish_account_export,
    write_account_export,
)

DAG_ID = "account_export"

DOC_MD = """
### Account export

Writes Accounts to `exports/accounts/` in the bucket (`HOTCRM_BUCKET_URL`): daily with the
default fields, or on demand (**Trigger DAG** with params) with your own `fields`, `filters`
(`[["Industry", "=", "Retail"], ["AnnualRevenue", ">=", 1000000]]`), `format` (`json`,
`ndjson`, `csv`) and `changed_since` (ISO timestamp, for incremental feeds).

1. **write_export** validates the params (a bad field, operator or value fails here, before
   the database is touched, naming the entry and the allowed values) and streams the rows
   with a server-side cursor into `exports/accounts/_tmp/` (consumers ignore `_tmp/`).
2. **check_export** runs the `account_export` Great Expectations suite (record count equals
   the database's count for the same filters; Ids present and unique; required fields set).
   A failure fails the run with the reason; the file is never published.
3. **publish_export** renames the file to `accounts_<data interval>[_<params hash>].<format>`,
   writes `<file>.manifest.json` beside it (record count, sha256, fields, filters, data
   interval, GX result), records an `export.completed` outbox event and updates the
   `hotcrm_account_export` Asset. Its return value (XCom) is the manifest.
"""


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["hotcrm", "export", "accounts"],
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": dt.timedelta(minutes=2)},
    params={
        "fields": Param(
            DEFAULT_FIELDS,
            type="array",
            items={"type": "string"},
            description="Account fields by API name (Id is always included first).",
        ),
        "filters": Param(
            [],
            type="array",
            description='[[field, operator, value], ...], e.g. [["Industry", "=", "Retail"]]. Operators: '
            "=, !=, <, <=, >, >=, in, not in, like, is null, is not null.",
        ),
        "format": Param(DEFAULT_FORMAT, type="string", enum=list(FORMATS), description="Output format."),
        "changed_since": Param(
            None,
            type=["null", "string"],
            description="Only Accounts modified after this ISO 8601 timestamp (e.g. 2026-01-31T00:00:00Z).",
        ),
    },
)
def account_export():
    @task(task_id="write_export")
    def write_export() -> dict:
        return write_account_export(get_current_context())

    @task(task_id="check_export")
    def check_export(written: dict) -> dict:
        return check_account_export(written)

    @task(task_id="publish_export", outlets=[ACCOUNT_EXPORT])
    def publish_export(written: dict, quality: dict) -> dict:
        return publish_account_export(written, quality, get_current_context())

    written = write_export()
    publish_export(written, check_export(written))


account_export()
