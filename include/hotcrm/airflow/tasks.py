"""Small tasks the DAGs share, written once: the worker plan of the parallel webhook DAGs, their
summary, and the optional first steps (requeue, replay, fan-out) that run before the workers.

Each is a TaskFlow task: call it inside a DAG as you would a task of the DAG file itself.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import task

log = logging.getLogger(__name__)


def combine(results: list[dict[str, Any]], *extras: dict[str, Any]) -> dict[str, Any]:
    """Parallel workers' results as one: whole numbers summed, lists joined, ``seconds`` the
    longest (they ran side by side); then each of ``extras`` (earlier steps' results) merged in."""
    summary: dict[str, Any] = {}
    for result in results:
        for key, value in (result or {}).items():
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                summary[key] = summary.get(key, 0) + value
            elif isinstance(value, list):
                summary[key] = [*summary.get(key, []), *value]
            elif key == "seconds" and isinstance(value, float):
                summary[key] = max(summary.get(key, 0.0), value)
    for extra in extras:
        summary.update(extra or {})
    return summary


@task
def plan_workers(workers: int | str) -> list[int]:
    """One entry per parallel worker (``workers`` of them)."""
    return list(range(int(workers)))


@task
def summarize(results: list[dict[str, Any]], *extras: dict[str, Any]) -> dict[str, Any]:
    """The run's summary: the workers' results combined, the earlier steps' merged in."""
    summary = combine(list(results or []), *extras)
    log.info("%s", ", ".join(f"{k} {v}" for k, v in summary.items() if not isinstance(v, list)))
    return summary


@task
def requeue_dead_letters(requeue: bool | str, source: str | None = None) -> dict[str, int]:
    """Put the inbox's dead letters back to pending when ``requeue`` (after their cause is fixed)."""
    from hotcrm.airflow.operators import as_bool, as_text
    from hotcrm.airflow.webhooks import requeue_dead_letters as requeue_dead

    if not as_bool(requeue, "requeue_dead"):
        return {"requeued": 0}
    return requeue_dead(as_text(source))


@task
def replay_dead_letters(ids: list[str] | str, since: str | None, until: str | None) -> dict[str, int]:
    """Replay dead-lettered deliveries by id or by a dead-lettered time range; nothing when none given."""
    from hotcrm.airflow.delivery import replay_dead_letters as replay
    from hotcrm.airflow.operators import as_list, as_text, permanent_errors_fail

    with permanent_errors_fail("replay_dead_letters"):
        return replay(as_list(ids, "replay_ids", '["<delivery id>"]') or [], as_text(since), as_text(until))


@task
def fan_out_events() -> dict[str, int]:
    """Turn new outbox events into one pending delivery per matching subscription."""
    from hotcrm.airflow.delivery import fan_out_events as fan_out

    return fan_out()


@task(task_id="find_files")
def find_lead_files(file_name: str | None = None, triggering_asset_events: Any = None) -> list[str]:
    """The lead files to import: those the file watcher's asset events name that are still in
    ``imports/leads/incoming/``, or ``file_name`` (checked to be there), or every file waiting."""
    from hotcrm.airflow.leads import files_to_import
    from hotcrm.airflow.operators import as_text, permanent_errors_fail

    with permanent_errors_fail("find_files"):
        names = files_to_import(as_text(file_name), triggering_asset_events)
    log.info("%d file(s) to import: %s", len(names), names)
    return names


@task(task_id="summarize", trigger_rule="all_done")
def summarize_lead_imports(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """One line per file and the totals by status; fails (after pushing them) when a file failed."""
    from hotcrm.airflow.leads import summarize_outcomes

    return summarize_outcomes(list(outcomes or []))


@task(task_id="outcome")
def salesforce_sync_outcome(summary: dict[str, Any]) -> str:
    """Fail the run, with the reason, when the sync ended partial; else the outcome."""
    from hotcrm.airflow.salesforce import fail_if_partial

    return fail_if_partial(summary)
