"""``make demo``: set up the embedded defaults and run every pipeline once, end to end.

Creates and migrates the CRM database, loads the sample records, then runs each
capability's demo step in :data:`DEMO_STEPS`. A step is a module with
``run(ctx: DemoContext) -> list[str]``: it drops sample files, starts what it needs on
loopback (SMTP, subscribers, the Salesforce emulator), runs its DAG with
:meth:`DemoContext.run_dag` and returns the lines of its summary.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotcrm.airflow.runner import DagResult, run_dag
from hotcrm.crm import migrate, seed
from hotcrm.settings import PROJECT_DIR, bucket_url, data_dir, default_database_url

DEMO_STEPS: list[str] = [
    "hotcrm.leads.demo",
    "hotcrm.exports.demo",
    "hotcrm.webhooks.demo",
    "hotcrm.api.demo",
    "hotcrm.salesforce.demo",
    "hotcrm.delivery.demo",  # keep last: it delivers the events the other steps wrote
]


@dataclass
class DemoContext:
    """What a demo step needs: where things are, and a way to run a DAG."""

    database_url: str
    bucket_url: str
    data_dir: Path
    dags_folder: Path

    def run_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> DagResult:
        """Run a DAG once with ``dag.test()`` and collect its tasks' return values."""
        return run_dag(dag_id, self.dags_folder, conf)


def build_context() -> DemoContext:
    """The demo's context from the environment the Makefile sets."""
    return DemoContext(
        database_url=default_database_url(),
        bucket_url=bucket_url(),
        data_dir=data_dir(),
        dags_folder=Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", PROJECT_DIR / "dags")),
    )


def main() -> int:
    """Run the demo; exit code 1 when any step failed."""
    ctx = build_context()
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"HotCRM demo: database {ctx.database_url}, bucket {ctx.bucket_url}", flush=True)
    migrate.upgrade(ctx.database_url)
    counts = seed.load_seed(ctx.database_url)
    summary = ["CRM database migrated; sample records: " + ", ".join(f"{n} {k}" for k, n in counts.items())]
    failed = []
    for module_name in DEMO_STEPS:
        started = time.monotonic()
        try:
            lines = importlib.import_module(module_name).run(ctx)
            summary.append(f"[ok] {module_name} ({time.monotonic() - started:.1f}s)")
            summary.extend(f"    {line}" for line in lines)
        except Exception:  # a broken step is reported and the others still run
            failed.append(module_name)
            traceback.print_exc()
            summary.append(f"[FAILED] {module_name}: see the trace above")
    if not DEMO_STEPS:
        summary.append("no pipeline demo steps are registered yet")
    print("\n==================== HotCRM demo summary ====================")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
