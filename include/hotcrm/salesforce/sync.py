"""The sync engine: select changed records, upsert them into Salesforce by external id, and
write each record's result back in the same transaction as its bookkeeping.

Idempotent by construction: every write is an upsert on the external-id field holding the
HotCRM Id, so a run that crashed after Salesforce answered but before the write-back simply
sends those records again next time, and Salesforce updates them instead of creating
duplicates.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from hotcrm.crm.db import session_scope
from hotcrm.crm.events import record_event
from hotcrm.crm.models import CRM_OBJECTS, utcnow
from hotcrm.salesforce import models as m
from hotcrm.salesforce.client import (
    COLLECTION_SIZE,
    RETRYABLE_RECORD_CODES,
    BudgetExhausted,
    RecordResult,
    SalesforceApiError,
    SalesforceClient,
)
from hotcrm.salesforce.mapping import (
    SYNCABLE_OBJECTS,
    Mapping,
    ObjectMapping,
    chunks,
    group_by_parent,
    load_mapping,
    payload_hash,
    to_payload,
)

log = logging.getLogger(__name__)

DEFAULT_BULK_THRESHOLD = 2000
TRANSPORTS = ("auto", "collections", "bulk")
# Whole-call failures after which sending more only burns budget: stop, leave the rest for the next run.
_STOP_CODES = {"REQUEST_LIMIT_EXCEEDED", "CONNECTION_ERROR", "SERVER_UNAVAILABLE", "INVALID_SESSION_ID"}


@dataclass
class SyncOptions:
    """What one run does (the DAG's params)."""

    objects: Sequence[str] = SYNCABLE_OBJECTS
    dry_run: bool = False
    full: bool = False  # ignore change detection: send every record
    limit: int | None = None  # at most this many records sent per object; the rest wait
    transport: str = "auto"
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD  # auto: Bulk API 2.0 from this many records up
    run_id: str | None = None
    mapping: Mapping | None = None

    def validate(self) -> None:
        """Raise ValueError naming the bad option and the allowed values."""
        unknown = [o for o in self.objects if o not in SYNCABLE_OBJECTS]
        if unknown or not self.objects:
            raise ValueError(f"objects {list(self.objects)!r}: choose from {', '.join(SYNCABLE_OBJECTS)}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport {self.transport!r}: choose one of {', '.join(TRANSPORTS)}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 0):
            raise ValueError(f"limit {self.limit!r}: a whole number >= 0, or empty for no limit")
        if self.bulk_threshold < 1:
            raise ValueError(f"bulk_threshold {self.bulk_threshold!r}: at least 1")


@dataclass
class _Item:
    hotcrm_id: str
    payload: dict[str, Any]
    hash: str
    known_salesforce_id: str | None


@dataclass
class ObjectSummary:
    """Counts for one object in one run."""

    object: str
    transport: str | None = None
    selected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    api_calls: int = 0
    duration_seconds: float = 0.0
    outcome: str = m.SUCCESS
    message: str = ""
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (the task's return value)."""
        return dict(self.__dict__)


def select_changes(
    database_url: str, mapping: Mapping, obj: ObjectMapping, *, full: bool = False
) -> tuple[list[_Item], int]:
    """The records to send (changed, never synced, or failed last time) and how many are unchanged."""
    model = CRM_OBJECTS[obj.name]
    wanted = ["Id", "SalesforceId", *obj.fields, *(r.hotcrm_field for r in obj.relationships)]
    with session_scope(database_url) as session:
        states = {
            s.hotcrm_id: (s.status, s.payload_hash, s.salesforce_id)
            for s in session.execute(select(m.SyncState).where(m.SyncState.object == obj.name)).scalars()
        }
        rows = [r.to_api(list(dict.fromkeys(wanted))) for r in session.execute(select(model)).scalars()]
    parent = obj.relationships[0].hotcrm_field if obj.relationships else None
    rows = (
        group_by_parent(sorted(rows, key=lambda r: r["Id"]), parent) if parent else sorted(rows, key=lambda r: r["Id"])
    )
    to_send: list[_Item] = []
    unchanged = 0
    for row in rows:
        payload = to_payload(mapping, obj, row)
        digest = payload_hash(payload)
        status, old_hash, sf_id = states.get(row["Id"], (None, None, None))
        if not full and status == m.SYNCED and old_hash == digest:
            unchanged += 1
            continue
        to_send.append(_Item(row["Id"], payload, digest, sf_id or row.get("SalesforceId")))
    return to_send, unchanged


def write_back(database_url: str, object_name: str, items: Sequence[_Item], results: Sequence[RecordResult]) -> None:
    """Store each record's result (state row, and SalesforceId/LastSyncDate on success) in one transaction."""
    now = utcnow()
    model = CRM_OBJECTS[object_name]
    table = model.__table__
    with session_scope(database_url) as session:
        ids = [i.hotcrm_id for i in items]
        states = {
            s.hotcrm_id: s
            for s in session.execute(
                select(m.SyncState).where(m.SyncState.object == object_name, m.SyncState.hotcrm_id.in_(ids))
            ).scalars()
        }
        acknowledged = []
        for item, result in zip(items, results, strict=True):
            state = states.get(item.hotcrm_id)
            if state is None:
                state = m.SyncState(object=object_name, hotcrm_id=item.hotcrm_id, attempts=0, status=m.FAILED)
                session.add(state)
            state.last_attempt_at = now
            if result.success:
                state.status = m.SYNCED
                state.payload_hash = item.hash
                state.salesforce_id = result.salesforce_id or state.salesforce_id
                state.last_error_code = state.last_error_message = None
                state.attempts = 0
                state.last_synced_at = now
                acknowledged.append({"b_id": item.hotcrm_id, "b_sf": state.salesforce_id, "b_at": now})
            else:
                state.status = m.FAILED
                state.last_error_code = (result.error_code or "UNKNOWN_EXCEPTION")[:100]
                state.last_error_message = result.error_message
                state.attempts = (state.attempts or 0) + 1
        if acknowledged:
            # LastModifiedDate stays: a sync acknowledgement is not a business change.
            statement = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(
                    salesforce_id=bindparam("b_sf"),
                    last_sync_date=bindparam("b_at"),
                    last_modified_date=table.c.last_modified_date,
                )
            )
            session.connection().execute(statement, acknowledged)


class _Stop(Exception):
    """Stop sending for this run (budget or a failure that more calls would not fix)."""


def _count(summary: ObjectSummary, results: Sequence[RecordResult]) -> None:
    for result in results:
        if result.success:
            if result.created:
                summary.created += 1
            else:
                summary.updated += 1
        else:
            summary.failed += 1
            code = result.error_code or "UNKNOWN_EXCEPTION"
            summary.errors[code] = summary.errors.get(code, 0) + 1


def _send_collections(
    database_url: str, client: SalesforceClient, mapping: Mapping, name: str, items: list[_Item], summary: ObjectSummary
) -> None:
    done = 0
    started = time.monotonic()
    for batch in chunks(items, COLLECTION_SIZE):
        try:
            results = client.upsert_collection(name, mapping.external_id_field, [i.payload for i in batch])
        except BudgetExhausted as exc:
            summary.skipped += len(items) - done
            raise _Stop(str(exc)) from None
        except SalesforceApiError as exc:
            if exc.code in _STOP_CODES or exc.status >= 500:
                summary.skipped += len(items) - done
                raise _Stop(f"stopped sending {name}: {exc}") from None
            results = [RecordResult(False, error_code=exc.code, error_message=exc.message) for _ in batch]
        write_back(database_url, name, batch, results)
        _count(summary, results)
        done += len(batch)
        rate = done / max(time.monotonic() - started, 1e-6)
        log.info("%s: %d/%d sent, %.0f records/s, %d API calls so far", name, done, len(items), rate, client.api_calls)


def _send_bulk(
    database_url: str, client: SalesforceClient, mapping: Mapping, name: str, items: list[_Item], summary: ObjectSummary
) -> None:
    try:
        by_key = client.bulk_upsert(name, mapping.external_id_field, [i.payload for i in items])
    except BudgetExhausted as exc:
        summary.skipped += len(items)
        raise _Stop(str(exc)) from None
    except SalesforceApiError as exc:
        summary.skipped += len(items)
        raise _Stop(f"stopped sending {name}: bulk job failed: {exc}") from None
    results = [by_key[i.hotcrm_id] for i in items]
    # Lock errors and unprocessed records get a second chance through Collections (few records, few calls).
    again = [
        n for n, r in enumerate(results) if not r.success and r.error_code in {*RETRYABLE_RECORD_CODES, "UNPROCESSED"}
    ]
    final_items = [i for n, i in enumerate(items) if n not in set(again)]
    final_results = [r for n, r in enumerate(results) if n not in set(again)]
    for start in range(0, len(final_items), 1000):
        write_back(database_url, name, final_items[start : start + 1000], final_results[start : start + 1000])
    _count(summary, final_results)
    if again:
        log.info("%s: %d record(s) locked or unprocessed in the bulk job; sending them again", name, len(again))
        _send_collections(database_url, client, mapping, name, [items[n] for n in again], summary)


def _dry_run(items: list[_Item], summary: ObjectSummary) -> None:
    for item in items:
        if item.known_salesforce_id:
            summary.updated += 1
        else:
            summary.created += 1
    summary.outcome = m.DRY_RUN
    summary.message = (
        f"dry run: would create {summary.created}, update {summary.updated}, "
        f"leave {summary.unchanged} unchanged; nothing was sent"
    )


def run_sync(database_url: str, client: SalesforceClient | None, options: SyncOptions | None = None) -> dict[str, Any]:
    """Sync the chosen objects; returns the run's summary (also stored in the sync history)."""
    options = options or SyncOptions()
    options.validate()
    mapping = options.mapping or load_mapping()
    run_id = options.run_id or f"manual__{utcnow().isoformat()}"
    if client is None and not options.dry_run:
        raise ValueError("a Salesforce client is needed unless dry_run is set")
    objects = [o for o in SYNCABLE_OBJECTS if o in options.objects]  # parents before children
    missing = [o for o in objects if o not in mapping.objects]
    if missing:
        raise ValueError(f"{mapping.path}: no mapping for {', '.join(missing)}; add it under 'objects'")
    summaries: list[ObjectSummary] = []
    started_at: dict[str, datetime] = {}
    stop_message = ""
    for name in objects:
        started = time.monotonic()
        started_at[name] = utcnow()
        calls_before = client.api_calls if client else 0
        summary = ObjectSummary(object=name)
        summaries.append(summary)
        items, summary.unchanged = select_changes(database_url, mapping, mapping.objects[name], full=options.full)
        if options.limit is not None and len(items) > options.limit:
            summary.skipped = len(items) - options.limit
            items = items[: options.limit]
        summary.selected = len(items)
        if options.dry_run:
            _dry_run(items, summary)
        elif stop_message:
            summary.skipped += len(items)
        elif items:
            assert client is not None
            bulk = options.transport == "bulk" or (options.transport == "auto" and len(items) >= options.bulk_threshold)
            summary.transport = "bulk" if bulk else "collections"
            try:
                if client.usage is None:
                    client.limits()  # one call tells how much of the daily budget is left
                client.check_budget()
                (_send_bulk if bulk else _send_collections)(database_url, client, mapping, name, items, summary)
            except BudgetExhausted as exc:
                summary.skipped += len(items)
                stop_message = str(exc)
            except _Stop as exc:
                stop_message = str(exc)
            except SalesforceApiError as exc:
                summary.skipped += len(items) - summary.created - summary.updated - summary.failed
                stop_message = f"stopped sending {name}: {exc}"
        summary.api_calls = (client.api_calls if client else 0) - calls_before
        summary.duration_seconds = round(time.monotonic() - started, 3)
        if not options.dry_run:
            if stop_message and summary.skipped:
                summary.outcome, summary.message = m.PARTIAL, stop_message
            elif summary.failed:
                summary.outcome = m.PARTIAL
                summary.message = (
                    f"{summary.failed} {name} record(s) failed ("
                    + ", ".join(f"{code}: {n}" for code, n in sorted(summary.errors.items()))
                    + "); they are retried next run"
                )
            elif summary.skipped:
                summary.outcome = m.PARTIAL
                summary.message = f"{summary.skipped} {name} record(s) left for the next run (limit {options.limit})"
            else:
                summary.message = f"created {summary.created}, updated {summary.updated}, unchanged {summary.unchanged}"
        log.info("%s: %s", name, summary.message)
    return _finish(database_url, run_id, options, summaries, started_at, client)


def _finish(
    database_url: str,
    run_id: str,
    options: SyncOptions,
    summaries: list[ObjectSummary],
    started_at: dict[str, datetime],
    client: SalesforceClient | None,
) -> dict[str, Any]:
    outcomes = {s.outcome for s in summaries}
    outcome = m.DRY_RUN if options.dry_run else (m.PARTIAL if m.PARTIAL in outcomes else m.SUCCESS)
    totals = {
        key: sum(getattr(s, key) for s in summaries)
        for key in ("selected", "created", "updated", "unchanged", "failed", "skipped", "api_calls")
    }
    result = {
        "run_id": run_id,
        "dry_run": options.dry_run,
        "full": options.full,
        "outcome": outcome,
        "message": "; ".join(f"{s.object}: {s.message}" for s in summaries if s.message),
        "totals": totals,
        "objects": {s.object: s.as_dict() for s in summaries},
        "retries": client.retries if client else 0,
        "relogins": client.relogins if client else 0,
        "api_usage": list(client.usage) if client and client.usage else None,
    }
    with session_scope(database_url) as session:
        for s in summaries:
            session.add(
                m.SyncRun(
                    run_id=run_id,
                    object=s.object,
                    started_at=started_at[s.object],
                    finished_at=utcnow(),
                    dry_run=options.dry_run,
                    full=options.full,
                    transport=s.transport,
                    selected=s.selected,
                    created=s.created,
                    updated=s.updated,
                    unchanged=s.unchanged,
                    failed=s.failed,
                    skipped=s.skipped,
                    api_calls=s.api_calls,
                    duration_seconds=s.duration_seconds,
                    outcome=s.outcome,
                    message=s.message,
                )
            )
        if not options.dry_run:
            # One event per run; its id comes from the run id, so a retried task writes it once.
            event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hotcrm:salesforce_sync:{run_id}"))
            record_event(
                session,
                "account.synced",
                {
                    "run_id": run_id,
                    "outcome": outcome,
                    "totals": totals,
                    "objects": {
                        s.object: {k: getattr(s, k) for k in ("created", "updated", "unchanged", "failed", "skipped")}
                        for s in summaries
                    },
                },
                event_id=event_id,
            )
    return result


def sync_history(database_url: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest sync-history rows, newest first."""
    with session_scope(database_url) as session:
        rows = session.execute(
            select(m.SyncRun).order_by(m.SyncRun.started_at.desc(), m.SyncRun.object).limit(limit)
        ).scalars()
        return [{c.key: getattr(r, c.key) for c in m.SyncRun.__table__.columns if c.key != "id"} for r in rows]


def failed_records(database_url: str, object_name: str | None = None) -> list[dict[str, Any]]:
    """Records whose last attempt failed, with Salesforce's error code and message."""
    with session_scope(database_url) as session:
        query = select(m.SyncState).where(m.SyncState.status == m.FAILED)
        if object_name:
            query = query.where(m.SyncState.object == object_name)
        return [
            {
                "object": s.object,
                "hotcrm_id": s.hotcrm_id,
                "error_code": s.last_error_code,
                "error_message": s.last_error_message,
                "attempts": s.attempts,
                "last_attempt_at": s.last_attempt_at,
            }
            for s in session.execute(query.order_by(m.SyncState.object, m.SyncState.hotcrm_id)).scalars()
        ]
