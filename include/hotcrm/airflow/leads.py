"""Airflow side of the lead import: the bucket's lead folders and one file's import as a task body.

The DAG (``dags/lead_import.py``) calls these inside its tasks. The bucket layout and the work
are core (:mod:`hotcrm.leads.bucket`, :func:`hotcrm.leads.importer.import_lead_file`), which know
nothing of Airflow; this module adds the ``hotcrm_bucket`` connection and the task's failure.
"""

from __future__ import annotations

import logging
from typing import Any

from hotcrm.airflow.storage import bucket_root
from hotcrm.leads import bucket

log = logging.getLogger(__name__)


def lead_folders(root: Any = None) -> dict[str, Any]:
    """:func:`hotcrm.leads.bucket.lead_folders` in the bucket opened with the ``hotcrm_bucket`` connection."""
    return bucket.lead_folders(root if root is not None else bucket_root())


def list_incoming(file_name: str | None = None, root: Any = None) -> list[str]:
    """:func:`hotcrm.leads.bucket.list_incoming` in the bucket opened with the ``hotcrm_bucket`` connection."""
    return bucket.list_incoming(file_name, root if root is not None else bucket_root())


def files_to_import(file_name: str | None = None, triggering_asset_events: Any = None, root: Any = None) -> list[str]:
    """The files a ``lead_import`` run imports.

    A run started by the file watcher (:class:`hotcrm.airflow.watchers.LeadFilesTrigger`)
    imports the files its asset events name that are still waiting (an earlier run may have
    taken some; a file that arrived meanwhile has an event of its own, once it is complete).
    A manual run imports ``file_name``, or without it every file waiting.
    """
    if file_name:
        return list_incoming(file_name, root)
    waiting = list_incoming(None, root)
    named = _event_file_names(triggering_asset_events)
    if named is None:
        return waiting
    gone = sorted(named.difference(waiting))
    if gone:
        log.info("Already taken by an earlier run: %s", gone)
    return [name for name in waiting if name in named]


def _event_file_names(triggering_asset_events: Any) -> set[str] | None:
    """The file names in the watcher's events (``None`` when no event carries any: a manual
    run, or an asset event posted by hand, which then imports everything waiting)."""
    names: set[str] | None = None
    for events in (triggering_asset_events or {}).values():
        for event in events:
            files = ((getattr(event, "extra", None) or {}).get("payload") or {}).get("files")
            if isinstance(files, list):
                names = (names or set()) | {f["name"] for f in files if isinstance(f, dict) and f.get("name")}
    return names


def import_incoming_file(
    file_name: str, database_url: str, root: Any = None, *, fail_task: bool = True
) -> dict[str, Any]:
    """Import ``incoming/<file_name>`` (:func:`hotcrm.leads.bucket.import_incoming_file`) and
    return its outcome as a dict (the task's return value). A file that failed then fails the
    task (``fail_task``), with the outcome pushed all the same."""
    result = bucket.import_incoming_file(file_name, database_url, root if root is not None else bucket_root())
    if result["status"] == "failed" and fail_task:
        _fail_task(bucket.failure_message(result), result)
    return result


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
        from hotcrm.leads.ledger import close_unfinished

        # import_file is mapped over find_files' list: its map index is the file's place in it.
        file_name = ti.xcom_pull(task_ids="find_files", map_indexes=-1)[ti.map_index]
        source = lead_folders()["incoming"] / file_name
        reason = context.get("exception") or "no heartbeat: its worker died or was killed"
        close_unfinished(HotCrmDatabaseHook().get_database_url(), str(source), str(reason))
    except Exception as exc:  # a callback must not fail; the next run's retry of the file reuses the row
        log.warning("lead import failure callback: could not close the ledger row (%s: %s)", type(exc).__name__, exc)
