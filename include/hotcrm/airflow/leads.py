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


def _waiting(path: Any) -> bool:
    """True for an entry of ``incoming/`` to import or refuse: a file, and on a local disk also
    a symbolic link or special file (the import refuses those unread, with a report); folders
    are left alone."""
    if path.name.startswith(".") or path.name.endswith(IGNORED_SUFFIXES):
        return False
    if getattr(path, "protocol", "file") in ("file", "local"):
        import os
        import stat

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
    names = sorted(p.name for p in (incoming.iterdir() if incoming.exists() else []) if _waiting(p))
    if file_name:
        if "/" in file_name or file_name.startswith("."):
            raise ValueError(f"file_name {file_name!r}: give the name of a file in {incoming}, not a path")
        if file_name not in names:
            raise FileNotFoundError(
                f"file_name {file_name!r} is not in {incoming}; files waiting there: {names or 'none'}"
            )
        return [file_name]
    return names


def import_incoming_file(
    file_name: str, database_url: str, root: Any = None, *, fail_task: bool = True
) -> dict[str, Any]:
    """Import ``incoming/<file_name>`` and return its outcome as a dict (the task's return value).

    When the file is gone because an earlier try of this task finished it, the ledger's
    record of that import is returned instead. Either way the uploader's summary email is
    queued (once per file, see :mod:`hotcrm.leads.notices`). A file that failed then fails
    the task (``fail_task``; the command line reports it itself).
    """
    from hotcrm.leads.importer import import_lead_file, outcome_from_ledger
    from hotcrm.leads.notices import queue_import_summary

    folders = lead_folders(root)
    source = folders["incoming"] / file_name
    if not source.exists() and not _waiting(source):  # (a dangling link does not "exist")
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
        except BaseException as exc:  # the task fails: no ledger row may stay "processing"
            _close_ledger(database_url, str(source), f"{type(exc).__name__}: {exc}")
            raise
    if queue_import_summary(database_url, result):
        log.info("%s: summary email queued for the uploader", file_name)
    if result["status"] == "failed" and fail_task:
        counts = ", ".join(
            f"{result.get(k) or 0} {k.replace('_', ' ')}" for k in ("rows_read", "rejected", "not_loaded")
        )
        _fail_task(
            f"{file_name} was not imported: {result.get('error')} ({counts}); report: {result.get('report_path')}",
            result,
        )
    return result


def _close_ledger(database_url: str, path: str, cause: str) -> None:
    from hotcrm.leads.ledger import fail_unfinished

    reason = f"the import task failed ({cause}); the file stays in incoming/ for a retry"
    try:
        if fail_unfinished(database_url, path, reason):
            log.warning("%s: ledger row marked failed (%s)", path, cause)
    except Exception as close_error:  # the database may be what failed: report the original error
        log.warning("%s: could not close its ledger row (%s)", path, type(close_error).__name__)


def close_ledger_on_failure(context: Any) -> None:
    """``on_failure_callback`` of the lead import. A try killed outright (SIGKILL, the OOM
    killer, a lost machine) runs no ``except`` clause; Airflow fails it after its heartbeat
    timeout and runs this callback (in the DAG processor), which closes the file's ledger row
    if it is still ``processing``. Other failures closed it already (a no-op then)."""
    ti = context["ti"]
    if ti.task_id != "import_file":
        return
    try:
        from hotcrm.airflow.hooks import HotCrmDatabaseHook

        # import_file is mapped over find_files' list: its map index is the file's place in it.
        file_name = ti.xcom_pull(task_ids="find_files", map_indexes=-1)[ti.map_index]
        source = lead_folders()["incoming"] / file_name
        reason = context.get("exception") or "no heartbeat: its worker died or was killed"
        _close_ledger(HotCrmDatabaseHook().get_database_url(), str(source), str(reason))
    except Exception as exc:  # a callback must not fail; the next run's retry of the file reuses the row
        log.warning("lead import failure callback: could not close the ledger row (%s: %s)", type(exc).__name__, exc)


def _fail_task(message: str, result: dict[str, Any]) -> None:
    """End the task as failed (red in the UI, no retry: the file is in ``failed/`` already), with
    ``result`` pushed as its return value all the same (``summarize`` still lists the file)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        from airflow.sdk import get_current_context

        get_current_context()["ti"].xcom_push(key="return_value", value=result)
    except RuntimeError:  # called outside a task (tests, the command line): nothing to push
        pass
    raise AirflowFailException(message)


def summarize_outcomes(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``summarize`` task: logs one line per file and returns the run's totals by status;
    fails (after pushing them) when a file failed, so the run shows it."""
    from hotcrm.leads.models import COUNT_FIELDS

    outcomes = [o for o in (outcomes or []) if o]
    for o in outcomes:
        log.info(
            "%s: %s (%s read, %s inserted, %s updated, %s duplicates, %s rejected, %s not loaded); report: %s",
            o["file_name"],
            o["status"],
            *(o.get(k) or 0 for k in COUNT_FIELDS),
            o.get("report_path"),
        )
    by_status: dict[str, int] = {}
    for o in outcomes:
        by_status[o["status"]] = by_status.get(o["status"], 0) + 1
    totals = {
        "files": len(outcomes),
        "by_status": by_status,
        **{k: sum(o.get(k) or 0 for o in outcomes) for k in COUNT_FIELDS},
    }
    failed = [o["file_name"] for o in outcomes if o["status"] == "failed"]
    if failed:
        # The run's state follows this last task: a failed file makes the whole run red.
        _fail_task(f"{len(failed)} of {len(outcomes)} file(s) failed: {', '.join(failed)}", totals)
    return totals
