"""``make demo`` step: start the Salesforce emulator, sync the sample data into it, re-sync
(nothing is sent), and show the sync history."""

from __future__ import annotations

import os
from typing import Any


def run(ctx: Any) -> list[str]:
    """Run ``salesforce_sync`` twice against a fresh emulator; returns the summary lines."""
    from hotcrm.salesforce.cli import history_lines
    from tests.fakes.salesforce.server import start_emulator

    emulator = start_emulator()
    previous = os.environ.get("AIRFLOW_CONN_SALESFORCE_DEFAULT")
    os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = emulator.connection_json("password")
    try:
        # full: the emulator starts empty each demo, while the database may remember an earlier demo's sync
        first = ctx.run_dag("salesforce_sync", {"full": True})
        second = ctx.run_dag("salesforce_sync")
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_SALESFORCE_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = previous
        emulator.stop()
    if not (first.succeeded and second.succeeded):
        raise RuntimeError(f"salesforce_sync runs ended {first.state} and {second.state}")
    lines = []
    for label, result in (("sync", first), ("re-sync", second)):
        s = result.returns["sync"]
        t = s["totals"]
        lines.append(
            f"{label}: {s['outcome']}, created {t['created']}, updated {t['updated']}, unchanged {t['unchanged']}, "
            f"failed {t['failed']}, {t['api_calls']} API calls"
        )
    lines.append(
        f"Salesforce (emulator) now holds {len(emulator.find('Account'))} Accounts and "
        f"{len(emulator.find('Contact'))} Contacts"
    )
    lines.append("sync history (python -m hotcrm salesforce history):")
    lines.extend("  " + line for line in history_lines(ctx.database_url, 4))
    return lines
