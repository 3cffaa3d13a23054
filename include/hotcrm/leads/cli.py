"""``hotcrm leads check FILE`` and ``hotcrm leads import FILE``: one lead file from a terminal.

``check`` reads and judges a file as an import would (encoding, delimiter, header mapping,
every rejected row and duplicate with its line, the quality suite), against the CRM as it is,
and loads nothing; it writes the same ``<name>.report.html`` / ``.report.json`` /
``.rejects.csv``. ``import`` imports one file as the ``lead_import`` DAG's task does: the file
goes into the bucket's ``imports/leads/incoming/`` (``--bucket-url`` / ``HOTCRM_BUCKET_URL``),
is imported from there, and ends in ``processed/`` or ``failed/`` with its reports; the
uploader's summary email is queued. Both exit 0 when the file is (or would be) imported,
1 when not.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers) -> None:
    """Add the ``leads`` command group."""
    leads = subparsers.add_parser("leads", help="check or import one lead file")
    commands = leads.add_subparsers(dest="leads_command", required=True)
    check = commands.add_parser(
        "check",
        help="validate a lead file without loading anything; writes its report",
        description="Read and judge a lead file as the import would, load nothing, and write its reports.",
    )
    check.add_argument("file", type=Path, help="the lead file (CSV or tab-separated text)")
    check.add_argument("--report-dir", type=Path, default=None, help="where the reports go (default: beside the file)")
    check.set_defaults(handler=_check)
    imp = commands.add_parser(
        "import",
        help="import one lead file as the lead_import DAG would",
        description="Put the file in the bucket's imports/leads/incoming/ and import it from there, as the DAG does.",
    )
    imp.add_argument("file", type=Path, help="the lead file, anywhere on this machine or already in incoming/")
    imp.add_argument("--bucket-url", default=None, help="bucket root (default: HOTCRM_BUCKET_URL)")
    imp.set_defaults(handler=_import)


def _check(args) -> int:
    from hotcrm.leads.importer import CHECKED, check_lead_file

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    path = _existing(args.file)
    report_dir = args.report_dir or path.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    outcome = check_lead_file(path, args.database_url, report_dir=report_dir)
    _print_outcome(outcome.to_dict(), verdict={CHECKED: "would be imported (nothing loaded)"})
    if outcome.quality is not None:
        skipped = outcome.quality["statistics"].get("skipped")
        verdict = "passed" if outcome.quality["success"] else "FAILED"
        print(f"  quality suite: {verdict}" + (f" ({skipped})" if skipped else ""))
    _print_rejects(outcome.rejects_path)
    return 0 if outcome.status == CHECKED else 1


def _import(args) -> int:
    from hotcrm.leads.bucket import import_incoming_file, lead_folders
    from hotcrm.leads.reader import copy_to
    from hotcrm.storage import bucket_root, is_local

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = _existing(args.file)
    root = bucket_root(args.bucket_url)
    incoming = lead_folders(root)["incoming"]
    target = incoming / path.name
    local_incoming = Path(incoming.path) if is_local(incoming) else None
    if local_incoming is None or path.resolve().parent != local_incoming.resolve():
        if target.exists():
            raise ValueError(f"{path.name} is already waiting in {incoming}; import it from there or rename the file")
        copy_to(path, target)
        print(f"copied {path} to {target}")
    result = import_incoming_file(path.name, args.database_url, root)
    _print_outcome(result)
    _print_rejects(result.get("rejects_path"))
    return 0 if result["status"] == "imported" else 1


def _existing(path: Path) -> Path:
    """``path`` if it is a regular file (a link is refused, as the import refuses it)."""
    if os.path.islink(path):
        raise ValueError(f"{path} is a symbolic link; give the file itself")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path


def _print_outcome(outcome: dict[str, Any], verdict: dict[str, str] | None = None) -> None:
    from hotcrm.leads.models import COUNT_FIELDS
    from hotcrm.leads.reader import DELIMITER_NAMES

    status = (verdict or {}).get(outcome["status"], outcome["status"])
    print(f"{outcome['file_name']}: {status}")
    if outcome.get("error"):
        print(f"  why: {outcome['error']}")
    if outcome.get("encoding"):
        read_as = f"  encoding: {outcome['encoding']}"
        if outcome.get("delimiter"):
            read_as += f", delimiter: {DELIMITER_NAMES.get(outcome['delimiter'], repr(outcome['delimiter']))}"
        print(read_as)
    print("  " + ", ".join(f"{k.replace('_', ' ')} {outcome.get(k) or 0}" for k in COUNT_FIELDS))
    if outcome.get("unknown_columns"):
        print("  unknown columns (ignored): " + ", ".join(outcome["unknown_columns"]))
    if outcome.get("unused_columns"):
        print("  columns not used (another maps to the same field): " + ", ".join(outcome["unused_columns"]))
    if outcome.get("report_path"):
        print(f"  report: {outcome['report_path']}")


def _print_rejects(rejects_path: str | None) -> None:
    """Every rejected row and duplicate of the rejects file, with its line and reason."""
    if not rejects_path:
        return
    from upath import UPath

    with UPath(rejects_path).open("rb") as f:
        rows = list(csv.reader(io.StringIO(f.read().decode("utf-8-sig"))))
    for line, kind, reason, *_ in rows[1:]:
        print(f"  line {line} ({kind}): {reason}")
    print(f"  rejects: {rejects_path}", file=sys.stdout)
