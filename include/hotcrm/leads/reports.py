"""A lead file's reports: ``<name>.report.html``, ``.report.json`` and ``.rejects.csv``.

The rejects file lists every row not loaded as itself (line, kind, reason, original cells),
each cell neutralized so a spreadsheet never runs it as a formula.
"""

from __future__ import annotations

import csv
import html
import json
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotcrm import files
from hotcrm.leads.ledger import CHECKED, ImportOutcome
from hotcrm.leads.models import (
    DUPLICATE,
    FAILED,
    IMPORTED,
    ImportIssue,
)
from hotcrm.leads.reader import (
    DELIMITER_NAMES,
    HeaderMap,
    copy_to,
)
from hotcrm.spreadsheet import neutralize


def write_reports(dest: Any, outcome: ImportOutcome, header_map: HeaderMap | None, session: Session | None) -> str:
    """Write ``<dest>.report.json``, ``<dest>.report.html`` and (with a session) ``<dest>.rejects.csv``;
    returns the HTML report's path."""
    parent, name = dest.parent, dest.name
    if session is not None:
        rejects = parent / f"{name}.rejects.csv"
        _write_rejects(rejects, outcome, header_map, session)
        outcome.rejects_path = str(rejects)
    report = dict(outcome.to_dict())
    report["delimiter_name"] = DELIMITER_NAMES.get(outcome.delimiter or "", None)
    report["columns"] = dict(header_map.columns) if header_map else None
    report["header"] = list(header_map.header) if header_map else None
    report["quality"] = outcome.quality
    report_path = parent / f"{name}.report.html"
    report["report_path"] = str(report_path)
    files.create_private(parent / f"{name}.report.json")  # 0640, see hotcrm.files
    with (parent / f"{name}.report.json").open("wb") as f:
        f.write(json.dumps(report, indent=2, default=str).encode("utf-8"))
    files.create_private(report_path)
    with report_path.open("wb") as f:
        f.write(_render_report(report, outcome).encode("utf-8"))
    return str(report_path)


def _write_rejects(path: Any, outcome: ImportOutcome, header_map: HeaderMap | None, session: Session) -> None:
    header = header_map.header if header_map else []
    # A local file first: the rejects are streamed from the database, then copied to the bucket.
    tmp = tempfile.NamedTemporaryFile("w", encoding="utf-8-sig", newline="", suffix=".csv", delete=False)  # noqa: SIM115
    try:
        with tmp:
            writer = csv.writer(tmp)
            writer.writerow(["line", "kind", "reason", *[neutralize(h) for h in header], "extra fields"])
            rows = session.execute(
                select(ImportIssue.line_number, ImportIssue.kind, ImportIssue.reason, ImportIssue.raw)
                .where(ImportIssue.file_id == outcome.file_id)
                .order_by(ImportIssue.line_number, ImportIssue.id)
                .execution_options(yield_per=5_000)
            )
            for line, kind, reason, raw in rows:
                cells = list(raw or [])
                main, extra = cells[: len(header)], cells[len(header) :]
                main += [""] * (len(header) - len(main))
                writer.writerow(
                    [line, kind, neutralize(reason), *[neutralize(c) for c in main], neutralize(" | ".join(extra))]
                )
        files.create_private(path)
        copy_to(Path(tmp.name), path)
    finally:
        Path(tmp.name).unlink(missing_ok=True)


def _render_report(report: dict[str, Any], outcome: ImportOutcome) -> str:
    esc = html.escape
    verdict = {
        IMPORTED: "imported",
        FAILED: "NOT imported (failed)",
        DUPLICATE: "NOT imported (duplicate)",
        CHECKED: "checked: would be imported (nothing was loaded)",
    }.get(outcome.status, outcome.status)
    facts = [
        ("status", verdict),
        ("file_id", outcome.file_id),
        ("error", outcome.error or ""),
        ("rows read", outcome.rows_read),
        ("inserted", outcome.inserted),
        ("updated", outcome.updated),
        ("duplicates (earlier rows with the same email)", outcome.duplicates),
        ("rejected", outcome.rejected),
        ("not loaded (the file failed as a whole)", outcome.not_loaded),
        ("encoding", outcome.encoding or ""),
        ("delimiter", report.get("delimiter_name") or ""),
        (
            "columns used",
            ", ".join(f"{k} ← {report['columns'] and _col(report, k)}" for k in (report["columns"] or {})),
        ),
        ("number format of amounts", outcome.number_format or ""),
        ("unknown columns (ignored)", ", ".join(outcome.unknown_columns)),
        ("columns not used (another column maps to the same field)", ", ".join(outcome.unused_columns)),
        ("rejects file", outcome.rejects_path or ""),
        ("sha256", outcome.sha256 or ""),
    ]
    rows = "\n".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in facts)
    from hotcrm.quality import html_page, render_section

    quality = ""
    if outcome.quality is not None:
        quality = render_section(_result_from_dict(outcome.quality), "Quality checks")
        skipped = outcome.quality["statistics"].get("skipped")
        if skipped:
            quality += f"\n<p>File-level checks {esc(skipped)}.</p>"
    title = f"Lead import: {outcome.file_name}"
    return html_page(title, f"<h1>{esc(title)}</h1>\n<table>{rows}</table>\n{quality}")


def _col(report: dict[str, Any], field_name: str) -> str:
    index = report["columns"][field_name]
    return f"column {index + 1} {report['header'][index]!r}"


def _result_from_dict(data: dict[str, Any]):
    from hotcrm.quality import ExpectationOutcome, QualityResult

    return QualityResult(
        data["suite"], data["success"], [ExpectationOutcome(**o) for o in data["outcomes"]], data["statistics"]
    )
