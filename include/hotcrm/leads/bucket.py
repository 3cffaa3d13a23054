"""The lead import's place in the bucket: ``imports/leads/incoming|processed|failed/``.

Business users drop files in ``incoming/``; an import moves each one to ``processed/`` or
``failed/``, with its report and rejects beside it. :func:`import_incoming_file` imports one
waiting file (the ``lead_import`` DAG's task and ``hotcrm leads import`` both call it); the
Airflow adapter (:mod:`hotcrm.airflow.leads`) only adds the bucket's connection and the
task's failure.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any

from hotcrm.storage import bucket_root, is_local

log = logging.getLogger(__name__)

LEADS_PREFIX = "imports/leads"
FOLDERS = ("incoming", "processed", "failed")
# Files ending like this are our own reports or uploads still in flight, never lead files.
IGNORED_SUFFIXES = (".report.html", ".report.json", ".rejects.csv", ".tmp", ".part", ".crdownload")


def lead_folders(root: Any = None) -> dict[str, Any]:
    """``incoming``, ``processed`` and ``failed`` under the bucket root (created if missing)."""
    root = root if root is not None else bucket_root()
    folders = {name: root / LEADS_PREFIX / name for name in FOLDERS}
    for folder in folders.values():
        # Object stores have no folders (a prefix exists once a file is under it).
        if is_local(folder):
            folder.mkdir(parents=True, exist_ok=True)
    return folders


def is_lead_file_name(name: str) -> bool:
    """False for names that are never lead files: hidden, our own reports, uploads in flight."""
    return not (name.startswith(".") or name.endswith(IGNORED_SUFFIXES))


def is_waiting(path: Any) -> bool:
    """True for an entry of ``incoming/`` to import or refuse: a file, and on a local disk also
    a symbolic link or special file (the import refuses those unread, with a report); folders
    and our own files (see :data:`IGNORED_SUFFIXES`) are left alone."""
    if not is_lead_file_name(path.name):
        return False
    if is_local(path):
        try:
            mode = os.lstat(path.path if hasattr(path, "protocol") else path).st_mode
        except OSError:
            return False
        return not stat.S_ISDIR(mode)
    return path.is_file()


def list_incoming(file_name: str | None = None, root: Any = None) -> list[str]:
    """The names of the files waiting in ``incoming/`` (sorted), or just ``file_name``.

    A named file that is not there is an error that says what is there instead.
    """
    incoming = lead_folders(root)["incoming"]
    names = sorted(p.name for p in (incoming.iterdir() if incoming.exists() else []) if is_waiting(p))
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
    """Import ``incoming/<file_name>`` and return its outcome as a dict (a failed file included:
    its ``status`` says so; the caller decides whether that fails its run).

    When the file is gone because an earlier try finished it, the ledger's record of that
    import is returned instead. Either way the uploader's summary email is queued (once per
    file, see :mod:`hotcrm.leads.notices`).
    """
    from hotcrm.leads import ledger  # (here, not at the top: DAG files import this module when parsed)
    from hotcrm.leads.importer import import_lead_file, outcome_from_ledger
    from hotcrm.leads.notices import queue_import_summary

    folders = lead_folders(root)
    source = folders["incoming"] / file_name
    if not source.exists() and not is_waiting(source):  # (a dangling link does not "exist")
        previous = outcome_from_ledger(database_url, str(source))
        if previous is None:
            raise FileNotFoundError(f"{source} is gone and the ledger has no record of it")
        log.info("%s was already handled by an earlier try (file_id %s)", file_name, previous.file_id)
        result = previous.to_dict()
    else:
        try:
            result = import_lead_file(
                source,
                database_url,
                processed_dir=folders["processed"],
                failed_dir=folders["failed"],
                progress=log.info,
            ).to_dict()
        except BaseException as exc:  # the import failed: no ledger row may stay "processing"
            ledger.close_unfinished(database_url, str(source), f"{type(exc).__name__}: {exc}")
            raise
    if queue_import_summary(database_url, result):
        log.info("%s: summary email queued for the uploader", file_name)
    return result


def failure_message(result: dict[str, Any]) -> str:
    """One line saying why a failed file was not imported, with its counts and report."""
    counts = ", ".join(f"{result.get(k) or 0} {k.replace('_', ' ')}" for k in ("rows_read", "rejected", "not_loaded"))
    name, error, report = result["file_name"], result.get("error"), result.get("report_path")
    return f"{name} was not imported: {error} ({counts}); report: {report}"
