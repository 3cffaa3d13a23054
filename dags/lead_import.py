"""lead_import: CSV files dropped in the import bucket become validated, de-duplicated Leads."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from hotcrm.airflow.leads import close_ledger_on_failure

DAG_ID = "lead_import"
LEADS_ASSET = Asset(name="hotcrm_leads", uri="hotcrm://crm/leads")

DOC_MD = """
# lead_import

Business users drop lead files (CSV: comma, semicolon, tab or pipe; UTF-8, UTF-16 (Excel's
"Unicode Text") or Windows-1252)
into **`imports/leads/incoming/`** of the import bucket (`HOTCRM_BUCKET_URL`: `file://` by
default, `s3://` through the `hotcrm_bucket` connection). Each file becomes Leads in the CRM
database (`hotcrm_db`); rows that cannot be loaded are reported line by line.

**Trigger.** A short schedule: every 5 minutes the DAG lists `incoming/` (one cheap listing,
no worker held while waiting, which a sensor would need) and imports what it finds; a run
with nothing to do skips the import. `max_active_runs=1`, so two runs never race on a file
(the file ledger's unique content hash guards that too). To import one file now, trigger
the DAG with the param `file_name` (a name in `incoming/`).

**Tasks.** `find_files` lists the files; `import_file` is mapped over them, one task per
file: it reads the file in a stream, validates each row with the CRM's lead rules (a bad
row is rejected, a repeated email reported as a duplicate: neither fails the file), checks
the file's shape with the Great Expectations suite `include/config/quality/lead_file.json`,
and loads it in one transaction (all-or-nothing; a re-run after a crash ends in the same
state as one clean run). Each returns its counts (rows read = inserted + updated +
duplicates + rejected + not loaded) and updates the `hotcrm_leads` Asset. A file that fails
as a whole fails its `import_file` task (no retry) and `summarize`, so the run is red;
`summarize` logs one line per file.

**Where results go.** The file moves to `processed/` (or `failed/` when it cannot be read,
fails the quality suite, or its content was imported before), with
`<name>.report.html` (open it in a browser), `<name>.report.json` and `<name>.rejects.csv`
beside it. Links and special files in `incoming/` are refused unread. To check a file
without loading it: `hotcrm leads check FILE`. The ledger table `lead_import_files` holds each file's status and counts.

**Configuration.** Header names: `include/config/lead_mapping.json`. Thresholds:
`include/config/quality/lead_file.json`.
"""


@dag(
    dag_id=DAG_ID,
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["hotcrm", "leads", "import"],
    default_args={
        "owner": "crm-data-team",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        # A killed import_file try leaves no ledger row "processing" (hotcrm.airflow.leads).
        "on_failure_callback": close_ledger_on_failure,
    },
    params={
        "file_name": Param(
            None,
            type=["null", "string"],
            description="Import only this file from imports/leads/incoming/ (empty: every file there).",
        )
    },
)
def lead_import():
    @task
    def find_files(params=None) -> list[str]:
        """The files waiting in incoming/ (or the one named by the file_name param)."""
        from hotcrm.airflow.leads import list_incoming

        names = list_incoming((params or {}).get("file_name"))
        print(f"{len(names)} file(s) to import: {names}")
        return names

    @task(outlets=[LEADS_ASSET], map_index_template="{{ file_name }}")
    def import_file(file_name: str) -> dict:
        """Import one file; returns its counts and where its report is."""
        from airflow.sdk import get_current_context

        from hotcrm.airflow.hooks import HotCrmDatabaseHook
        from hotcrm.airflow.leads import import_incoming_file

        get_current_context()["file_name"] = file_name
        return import_incoming_file(file_name, HotCrmDatabaseHook().get_database_url())

    @task(trigger_rule="all_done")
    def summarize(outcomes: list[dict]) -> dict:
        """One line per file, and the totals."""
        from hotcrm.airflow.leads import summarize_outcomes

        return summarize_outcomes(list(outcomes or []))

    summarize(import_file.expand(file_name=find_files()))


lead_import()
