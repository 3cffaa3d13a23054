"""An example of the HotCRM operators in a DAG of your own: every Monday, export the big retail
Accounts as CSV, check the published file with a Great Expectations suite, and email the sales
operations team where it is.

Copy it into your ``dags/`` folder and change the filters, fields, suite and recipient. The
email goes out through the ``quote_emails`` DAG (the outbox), exactly once per file.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from hotcrm.airflow.operators import HotCrmAccountExportOperator, HotCrmDataQualityOperator

DAG_ID = "retail_accounts_report"


@dag(
    dag_id=DAG_ID,
    schedule="0 6 * * 1",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["hotcrm", "example"],
    default_args={"owner": "sales-analytics", "retries": 2, "retry_delay": timedelta(minutes=5)},
    render_template_as_native_obj=True,
    params={
        "min_revenue": Param(1_000_000, type="number", minimum=0, description="AnnualRevenue at least"),
        "notify": Param("sales-ops@example.com", type="string", description="who gets the email"),
    },
)
def retail_accounts_report():
    export = HotCrmAccountExportOperator(
        task_id="export_retail",
        fields=["Name", "Industry", "AnnualRevenue", "BillingCity"],
        filters=[["Industry", "=", "Retail"], ["AnnualRevenue", ">=", "{{ params.min_revenue }}"]],
        format="csv",
    )
    check = HotCrmDataQualityOperator(
        task_id="check_file",
        suite="account_file",
        file_path="{{ ti.xcom_pull(task_ids='export_retail')['url'] }}",
        suite_params={"min_rows": 1},
        policy="fail",
    )

    @task
    def notify(manifest: dict, quality: dict, params=None) -> dict:
        """Queue one email naming the file and the check's verdict."""
        from hotcrm.airflow.hooks import HotCrmDatabaseHook
        from hotcrm.crm.db import session_scope
        from hotcrm.email.outbox import queue_notice

        text = (
            f"{manifest['record_count']} retail Accounts exported to {manifest['url']}\nQuality: {quality['summary']}\n"
        )
        with session_scope(HotCrmDatabaseHook().get_database_url()) as session:
            queue_notice(
                session,
                params["notify"],
                f"Retail Accounts: {manifest['record_count']} exported",
                text,
                kind="retail_report",
                dedupe_key=f"retail_report:{manifest['sha256']}",
            )
        return {"notified": params["notify"], "file": manifest["url"], "records": manifest["record_count"]}

    export >> check
    notify(export.output, check.output)


retail_accounts_report()
