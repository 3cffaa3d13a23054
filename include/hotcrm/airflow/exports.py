"""Airflow side of the account export: arguments -> spec, the run's interval -> the file name.

:class:`hotcrm.airflow.operators.HotCrmAccountExportOperator` calls :func:`export_accounts`.
Only the plain constants of :mod:`hotcrm.exports.options` are imported at the top (DAG files
import this module's neighbours at parse time); the export itself (SQLAlchemy, pandas, Great
Expectations) is imported inside the functions.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from hotcrm.airflow.assets import ACCOUNT_EXPORT
from hotcrm.exports.options import DEFAULT_FIELDS, DEFAULT_FORMAT, FORMATS

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_FIELDS", "DEFAULT_FORMAT", "FORMATS", "build_export_spec", "export_accounts"]


def _interval(context: dict[str, Any]):
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if end is None:
        # A manual run without a logical date has no data interval: name it by when it was due.
        dag_run = context.get("dag_run")
        end = getattr(dag_run, "run_after", None) or context.get("logical_date")
        start = None
    return start, end


def build_export_spec(fields: Any, filters: Any, format: Any, changed_since: Any):
    """The export's spec; bad arguments fail the task now, without retries, naming the entry and the fix."""
    from hotcrm.exports import accounts

    try:
        return accounts.build_spec(fields, filters, format, changed_since)
    except accounts.FilterError as exc:
        raise AirflowFailException(f"invalid export params: {exc}") from exc


def export_accounts(
    context: dict[str, Any],
    spec: Any,
    *,
    database_url: str,
    root: Any,
    outlet: Any = ACCOUNT_EXPORT,
) -> dict[str, Any]:
    """Stream the export to ``_tmp/``, run its Great Expectations suite, then publish it with its
    manifest, record the outbox event and fill ``outlet``'s event extra. Returns the manifest.

    A failed check fails the task without retries (the data would fail again), naming the
    expectations that failed; the file stays in ``_tmp/`` for inspection, unpublished."""
    from hotcrm.exports import accounts

    start, end = _interval(context)
    name = accounts.export_name(spec, start, end)
    log.info("exporting Accounts to %s (fields %s, filters %s)", name, list(spec.fields), spec.query_filters)
    written = accounts.write_export(database_url, root, spec, name)
    log.info("wrote %d records (database count %d)", written.record_count, written.database_count)

    quality = accounts.check_export(written)
    log.info("%s", quality.summary())
    try:
        accounts.reject_unless_passed(written, quality, root)
    except accounts.ExportCheckError as exc:
        raise AirflowFailException(str(exc)) from exc

    manifest = accounts.publish_export(
        database_url,
        root,
        written,
        quality.to_dict(),
        data_interval={"start": start.isoformat() if start else None, "end": end.isoformat() if end else None},
        run_id=context.get("run_id"),
    )
    outlet_events = context.get("outlet_events")
    if outlet_events is not None and outlet is not None:
        outlet_events[outlet].extra = {
            k: manifest[k] for k in ("file", "url", "manifest_url", "format", "record_count", "sha256")
        }
    return manifest
