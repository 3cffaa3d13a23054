"""``make demo`` step: drop the sample lead files (one clean, one messy) and run lead_import."""

from __future__ import annotations

from typing import Any

from hotcrm.settings import SAMPLE_DATA_DIR

SAMPLE_FILES = ("tradeshow_clean.csv", "crm_export_messy.csv")


def run(ctx: Any) -> list[str]:
    """Copy the samples into ``imports/leads/incoming/``, run the DAG, summarize each file's report."""
    from hotcrm.leads.bucket import lead_folders

    incoming = lead_folders()["incoming"]
    for name in SAMPLE_FILES:
        with (incoming / name).open("wb") as out:
            out.write((SAMPLE_DATA_DIR / "leads" / name).read_bytes())
    result = ctx.run_dag("lead_import")
    if not result.succeeded:
        raise RuntimeError(f"lead_import run {result.run_id} ended {result.state}")
    lines = []
    for outcome in result.returns.get("import_file", []):
        lines.append(
            f"{outcome['file_name']}: {outcome['status']} ({outcome['encoding']}, {outcome['delimiter']!r}) "
            f"read {outcome['rows_read']}, inserted {outcome['inserted']}, updated {outcome['updated']}, "
            f"duplicates {outcome['duplicates']}, rejected {outcome['rejected']}"
            + (f"; {outcome['error']}" if outcome.get("error") else "")
        )
        lines.append(f"  report: {outcome['report_path']}")
        if outcome.get("rejects_path") and outcome["rejected"] + outcome["duplicates"]:
            lines.append(f"  rejects: {outcome['rejects_path']}")
            lines.extend(f"    {line}" for line in _first_rejects(outcome["rejects_path"]))
    return lines


def _first_rejects(path: str, limit: int = 6) -> list[str]:
    """The first rejected rows, as 'line N (kind): reason'."""
    import csv
    import io

    from upath import UPath

    text = UPath(path).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    return [f"line {r['line']} ({r['kind']}): {r['reason']}" for r in rows[:limit]]
