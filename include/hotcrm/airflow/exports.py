"""Airflow side of the account export: params -> spec, connections -> settings, the Asset.

The DAG file imports this module at parse time, so only ``airflow.sdk`` and the plain
constants of :mod:`hotcrm.exports.options` are imported at the top; the export itself
(SQLAlchemy, pandas, Great Expectations) is imported inside the task functions.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from hotcrm.airflow.assets import ACCOUNT_EXPORT
from hotcrm.exports.options import DEFAULT_FIELDS, DEFAULT_FORMAT, FORMATS

log = logging.getLogger(__name__)

__all__ = [
    "ACCOUNT_EXPORT_ASSET",
    "DEFAULT_FIELDS",
    "DEFAULT_FORMAT",
    "FORMATS",
    "check_account_export",
    "publish_account_export",
    "write_account_export",
]

# Defined with the other assets (one module, one scheme); the name stays for existing imports.
ACCOUNT_EXPORT_ASSET = ACCOUNT_EXPORT


def _interval(context: dict[str, Any]):
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if end is None:
        # A manual run without a logical date has no data interval: name it by when it was due.
        dag_run = context.get("dag_run")
        end = getattr(dag_run, "run_after", None) or context.get("logical_date")
        start = None
    return start, end


def write_account_export(context: dict[str, Any]) -> dict[str, Any]:
    """Validate the run's params (before any database access), then stream the export to ``_tmp/``."""
    from hotcrm.airflow.hooks import HotCrmDatabaseHook
    from hotcrm.airflow.storage import bucket_root
    from hotcrm.exports import accounts

    params = context["params"]
    try:
        spec = accounts.build_spec(
            params.get("fields"), params.get("filters"), params.get("format"), params.get("changed_since")
        )
    except accounts.FilterError as exc:
        # A bad request stays bad: fail now, without retries, naming the entry and the fix.
        raise AirflowFailException(f"invalid export params: {exc}") from exc
    start, end = _interval(context)
    name = accounts.export_name(spec, start, end)
    log.info("exporting Accounts to %s (fields %s, filters %s)", name, list(spec.fields), spec.query_filters)
    written = accounts.write_export(HotCrmDatabaseHook().get_database_url(), bucket_root(), spec, name)
    return written.to_dict()


def check_account_export(written: dict[str, Any]) -> dict[str, Any]:
    """Run the Great Expectations suite; a failure fails the task with the reason (file unpublished)."""
    from hotcrm.airflow.storage import bucket_root
    from hotcrm.exports import accounts

    export = accounts.WrittenExport.from_dict(written)
    quality = accounts.check_export(export)
    log.info("%s", quality.summary())
    try:
        accounts.reject_unless_passed(export, quality, bucket_root())
    except accounts.ExportCheckError as exc:
        raise AirflowFailException(str(exc)) from exc
    return quality.to_dict()


def publish_account_export(written: dict[str, Any], quality: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Publish the checked export and its manifest, record the outbox event, update the Asset."""
    from hotcrm.airflow.hooks import HotCrmDatabaseHook
    from hotcrm.airflow.storage import bucket_root
    from hotcrm.exports import accounts

    start, end = _interval(context)
    manifest = accounts.publish_export(
        HotCrmDatabaseHook().get_database_url(),
        bucket_root(),
        accounts.WrittenExport.from_dict(written),
        quality,
        data_interval={
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
        },
        run_id=context.get("run_id"),
    )
    outlet_events = context.get("outlet_events")
    if outlet_events is not None:
        outlet_events[ACCOUNT_EXPORT_ASSET].extra = {
            k: manifest[k] for k in ("file", "url", "manifest_url", "format", "record_count", "sha256")
        }
    return manifest
