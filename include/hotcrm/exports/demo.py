"""``make demo`` step: run ``account_export`` once per format and say where each file went."""

from __future__ import annotations

RUNS = [
    ("json", {}),  # the scheduled export: default fields, every Account
    ("ndjson", {"format": "ndjson", "filters": [["AnnualRevenue", ">=", 500000]]}),
    ("csv", {"format": "csv", "fields": ["Name", "Industry", "AnnualRevenue", "Phone", "BillingCity"]}),
]


def run(ctx) -> list[str]:
    """Export the sample Accounts as JSON, NDJSON (filtered) and CSV; one summary line each."""
    lines = []
    for label, conf in RUNS:
        result = ctx.run_dag("account_export", conf)
        if not result.succeeded:
            raise RuntimeError(f"account_export ({label}) ended {result.state}: see the task log above")
        manifest = result.returns["export"]
        lines.append(f"{label}: {manifest['record_count']} Accounts -> {manifest['url']} (manifest beside it)")
    return lines
