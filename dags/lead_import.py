"""lead_import: CSV files dropped in the import bucket become validated, de-duplicated Leads."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from hotcrm.airflow.assets import LEAD_FILES, LEADS
from hotcrm.airflow.leads import close_ledger_on_failure
from hotcrm.airflow.operators import HotCrmLeadImportOperator
from hotcrm.airflow.tasks import find_lead_files, summarize_lead_imports

DAG_ID = "lead_import"

DOC_MD = """
# lead_import

Business users drop lead files (CSV: comma, semicolon, tab or pipe; UTF-8, UTF-16 (Excel's
"Unicode Text") or Windows-1252)
into **`imports/leads/incoming/`** of the import bucket (`HOTCRM_BUCKET_URL`: `file://` by
default, `s3://` through the `hotcrm_bucket` connection). Each file becomes Leads in the CRM
database (`hotcrm_db`); rows that cannot be loaded are reported line by line.

**Trigger.** A file drop starts a run within seconds: the DAG is scheduled on the
`hotcrm_lead_files` Asset (`x-hotcrm://imports/leads/incoming`), whose `AssetWatcher` runs in
Airflow's **triggerer** (it must be running): it lists `incoming/` every 5 s (no worker held,
no empty runs) and fires once per new file, when the file is complete (a local file
untouched for 2 s; an S3 object once its upload finished; `*.part`/`*.tmp` never). The run
imports the files its events name that are still waiting. `max_active_runs=1`, so two runs
never race on a file (the file ledger's unique content hash guards that too). To import one
file now, trigger the DAG with the param `file_name` (a name in `incoming/`); a manual run
without it imports every file waiting.

**Tasks.** `find_files` lists the files; `import_file` (`HotCrmLeadImportOperator`) is mapped
over them, one task per file: it reads the file in a stream, validates each row with the CRM's
lead rules (a bad row is rejected, a repeated email reported as a duplicate: neither fails the
file), checks the file's shape with the Great Expectations suite
`include/config/quality/lead_file.json`, and loads it in one transaction (all-or-nothing; a
re-run after a crash ends in the same state as one clean run). Each returns its counts (rows
read = inserted + updated + duplicates + rejected + not loaded) and updates the `hotcrm_leads`
Asset. A file that fails as a whole fails its `import_file` task (no retry) and `summarize`, so
the run is red; `summarize` logs one line per file.

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
    schedule=[LEAD_FILES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
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
    render_template_as_native_obj=True,
    params={
        "file_name": Param(
            None,
            type=["null", "string"],
            description="Import only this file from imports/leads/incoming/ (empty: every file there).",
        )
    },
)
def lead_import():
    files = find_lead_files("{{ params.file_name }}")
    imported = HotCrmLeadImportOperator.partial(
        task_id="import_file", outlets=[LEADS], map_index_template="{{ task.file_name }}"
    ).expand(file_name=files)
    summarize_lead_imports(imported.output)


lead_import()
