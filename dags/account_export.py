"""Accounts to the export bucket as JSON, NDJSON or CSV: streamed, checked, published atomically."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from hotcrm.airflow.exports import DEFAULT_FIELDS, DEFAULT_FORMAT, FORMATS
from hotcrm.airflow.operators import HotCrmAccountExportOperator

DAG_ID = "account_export"

DOC_MD = """
### Account export

Writes Accounts to `exports/accounts/` in the bucket (`HOTCRM_BUCKET_URL`): daily with the
default fields, or on demand (**Trigger DAG** with params) with your own `fields`, `filters`
(`[["Industry", "=", "Retail"], ["AnnualRevenue", ">=", 1000000]]`), `format` (`json`,
`ndjson`, `csv`) and `changed_since` (ISO timestamp, for incremental feeds).

One task, **export** (`HotCrmAccountExportOperator`):

1. validates the params (a bad field, operator or value fails here, without retries, before
   the database is touched, naming the entry and the allowed values) and streams the rows
   with a server-side cursor into `exports/accounts/_tmp/` (consumers ignore `_tmp/`);
2. runs the `account_export` Great Expectations suite (record count equals the database's
   count for the same filters; Ids present and unique; required fields set). A failure fails
   the run with the reason, without retries; the file stays in `_tmp/`, never published;
3. renames the file to `accounts_<data interval>[_<params hash>].<format>`, writes
   `<file>.manifest.json` beside it (record count, sha256, fields, filters, data interval, GX
   result), records an `export.completed` outbox event and updates the `hotcrm_account_export`
   Asset. Its return value (XCom) is the manifest.
"""


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["hotcrm", "export", "accounts"],
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(minutes=2)},
    render_template_as_native_obj=True,
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
    HotCrmAccountExportOperator(
        task_id="export",
        fields="{{ params.fields }}",
        filters="{{ params.filters }}",
        format="{{ params.format }}",
        changed_since="{{ params.changed_since }}",
    )


account_export()
