"""Airflow side of the lead import: the bucket's lead folders and one file's import as a task body.

The DAG (``dags/lead_import.py``) calls these inside its tasks; the work itself is
:func:`hotcrm.leads.importer.import_lead_file`, which knows nothing of Airflow.
"""

from __future__ import annotations

import logging
from typing import Any

from hotcrm.airflow.storage import bucket_root

log = logging.getLogger(__name__)

LEADS_PREFIX = "imports/leads"
# Files ending like this are our own reports or uploads still in flight, never lead files.
IGNORED_SUFFIXES = (".report.html", ".report.json", ".rejects.csv", ".tmp", ".part", ".crdownload")


def lead_folders(root: Any = None) -> dict[str, Any]:
    """``incoming``, ``processed`` and ``failed`` under the bucket root (created if missing)."""
    root = root if root is not None else bucket_root()
    folders = {name: root / LEADS_PREFIX / name for name in ("incoming", "processed", "failed")}
    for folder in folders.values():
        # Object stores have no folders (a prefix exists once a file is under it).
        if getattr(folder, "protocol", "file") in ("file", "local"):
            folder.mkdir(parents=True, exist_ok=True)
    return folders


def list_incoming(file_name: str | None = None, root: Any = None) -> list[str]:
    """The names of the files waiting in ``incoming/`` (sorted), or just ``file_name``.

    A named file that is not there is an error that says what is there instead.
    """
    incoming = lead_folders(root)["incoming"]
    names = sorted(
        p.name
        for p in (incoming.iterdir() if incoming.exists() else [])
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(IGNORED_SUFFIXES)
    )
    if file_name:
        if "/" in file_name or file_name.startswith("."):
            raise ValueError(f"file_name {file_name!r}: give the name of a file in {incoming}, not a path")
        if file_name not in names:
            raise FileNotFoundError(
                f"file_name {file_name!r} is not in {incoming}; files waiting there: {names or 'none'}"
            )
        return [file_name]
    return names


def import_incoming_file(file_name: str, database_url: str, root: Any = None) -> dict[str, Any]:
    """Import ``incoming/<file_name>`` and return its outcome as a dict (the task's return value).

    When the file is gone because an earlier try of this task finished it, the ledger's
    record of that import is returned instead. Either way the uploader's summary email is
    queued (once per file, see :mod:`hotcrm.leads.notices`).
    """
    from hotcrm.leads.importer import import_lead_file, outcome_from_ledger
    from hotcrm.leads.notices import queue_import_summary

    folders = lead_folders(root)
    source = folders["incoming"] / file_name
    if not source.exists():
        previous = outcome_from_ledger(database_url, str(source))
        if previous is None:
            raise FileNotFoundError(f"{source} is gone and the ledger has no record of it")
        log.info("%s was already handled by an earlier try (file_id %s)", file_name, previous.file_id)
        result = previous.to_dict()
    else:
        result = import_lead_file(
            source, database_url, processed_dir=folders["processed"], failed_dir=folders["failed"], progress=log.info
        ).to_dict()
    if queue_import_summary(database_url, result):
        log.info("%s: summary email queued for the uploader", file_name)
    return result


def summarize_outcomes(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``summarize`` task: logs one line per file and returns the run's totals by status."""
    from hotcrm.leads.models import COUNT_FIELDS

    outcomes = [o for o in (outcomes or []) if o]
    for o in outcomes:
        log.info(
            "%s: %s (%s read, %s inserted, %s updated, %s duplicates, %s rejected); report: %s",
            o["file_name"],
            o["status"],
            *(o.get(k) or 0 for k in COUNT_FIELDS),
            o.get("report_path"),
        )
    by_status: dict[str, int] = {}
    for o in outcomes:
        by_status[o["status"]] = by_status.get(o["status"], 0) + 1
    return {
        "files": len(outcomes),
        "by_status": by_status,
        **{k: sum(o.get(k) or 0 for o in outcomes) for k in COUNT_FIELDS},
    }
