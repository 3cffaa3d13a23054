"""The sync engine: select changed records, upsert them into Salesforce by external id, and
write each record's result back in the same transaction as its bookkeeping.

Idempotent by construction: every write is an upsert on the external-id field holding the
HotCRM Id, so a run that crashed after Salesforce answered but before the write-back simply
sends those records again next time, and Salesforce updates them instead of creating
duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from typing import Any

from sqlalchemy import and_, bindparam, func, literal, select, tuple_, update

from hotcrm.crm.db import session_scope
from hotcrm.crm.events import record_event
from hotcrm.crm.models import CRM_OBJECTS, api_to_attr, utcnow
from hotcrm.salesforce import models as m
from hotcrm.salesforce.client import (
    BULK_UPLOAD_HARD_LIMIT,
    COLLECTION_SIZE,
    DEFAULT_BULK_MAX_BYTES,
    JOB_ENDED,
    RETRYABLE_RECORD_CODES,
    BudgetExhausted,
    BulkCsvWriter,
    BulkPart,
    LiteralNullMarker,
    RecordResult,
    SalesforceApiError,
    SalesforceClient,
    bulk_row,
    parse_bulk_error,
)
from hotcrm.salesforce.mapping import (
    SYNCABLE_OBJECTS,
    Mapping,
    ObjectMapping,
    load_mapping,
    payload_hash,
    to_payload,
)

log = logging.getLogger(__name__)

DEFAULT_BULK_THRESHOLD = 2000
DEFAULT_BULK_WAIT_SECONDS = 20 * 60
PAGE_SIZE = 5000  # records read from the CRM per query
WRITE_BACK_BATCH = 5000  # bulk result rows written back per transaction
LOCK_RETRY_CAP = 10_000  # bulk records locked (UNABLE_TO_LOCK_ROW) sent again at once, through Collections
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
    bulk_max_bytes: int = DEFAULT_BULK_MAX_BYTES  # CSV bytes per job upload (UTF-8, header included)
    bulk_wait_seconds: float = DEFAULT_BULK_WAIT_SECONDS  # then a running job is left for a later run
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
        if not 1000 <= self.bulk_max_bytes <= BULK_UPLOAD_HARD_LIMIT:
            raise ValueError(
                f"bulk_max_bytes {self.bulk_max_bytes!r}: between 1000 and {BULK_UPLOAD_HARD_LIMIT} "
                f"(Salesforce advises at most {DEFAULT_BULK_MAX_BYTES})"
            )
        if self.bulk_wait_seconds < 0:
            raise ValueError(f"bulk_wait_seconds {self.bulk_wait_seconds!r}: 0 or more")


@dataclass
class _Item:
    hotcrm_id: str
    payload: dict[str, Any]
    hash: str | None  # None: store as synced but send again (it changed after it was sent)
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
    created_or_updated: int = 0  # succeeded, but whether created or updated cannot be known
    pending: int = 0  # in bulk jobs still running: collected by a later run
    api_calls: int = 0
    duration_seconds: float = 0.0
    outcome: str = m.SUCCESS
    message: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)  # bulk jobs this run submitted
    pending_jobs: list[str] = field(default_factory=list)  # ... and those still running at the wait limit
    collected_jobs: list[str] = field(default_factory=list)  # earlier runs' jobs this run collected

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (the task's return value)."""
        return dict(self.__dict__)


def iter_changes(
    database_url: str,
    mapping: Mapping,
    obj: ObjectMapping,
    *,
    full: bool = False,
    page_size: int = PAGE_SIZE,
    counts: dict[str, int] | None = None,
) -> Iterator[_Item]:
    """The records to send (changed, never synced, or failed last time), read a page at a time
    (keyset pagination, so a large first sync never holds every record); ``counts["unchanged"]``
    counts the others. Contacts come grouped by Account (one Account's children in one batch
    avoid ``UNABLE_TO_LOCK_ROW`` on the parent from parallel batches)."""
    counts = counts if counts is not None else {}
    counts.setdefault("unchanged", 0)
    model = CRM_OBJECTS[obj.name]
    wanted = list(dict.fromkeys(["Id", "SalesforceId", *obj.fields, *(r.hotcrm_field for r in obj.relationships)]))
    state = m.SyncState
    parent = getattr(model, api_to_attr(obj.relationships[0].hotcrm_field)) if obj.relationships else None
    first_key = func.coalesce(parent, "") if parent is not None else None
    last: tuple[str, str] | None = None
    while True:
        query = select(model, state.status, state.payload_hash, state.salesforce_id).outerjoin(
            state, and_(state.object == obj.name, state.hotcrm_id == model.id)
        )
        if first_key is not None:
            query = query.order_by(first_key, model.id)
            if last is not None:
                query = query.where(tuple_(first_key, model.id) > tuple_(literal(last[0]), literal(last[1])))
        else:
            query = query.order_by(model.id)
            if last is not None:
                query = query.where(model.id > last[1])
        with session_scope(database_url) as session:
            page = [(r.to_api(wanted), st, old, sf) for r, st, old, sf in session.execute(query.limit(page_size))]
        if not page:
            return
        for row, status, old_hash, sf_id in page:
            payload = to_payload(mapping, obj, row)
            digest = payload_hash(payload)
            if not full and status == m.SYNCED and old_hash == digest:
                counts["unchanged"] += 1
                continue
            yield _Item(row["Id"], payload, digest, sf_id or row.get("SalesforceId"))
        row = page[-1][0]
        last = ((row.get(obj.relationships[0].hotcrm_field) or "") if obj.relationships else "", row["Id"])
        if len(page) < page_size:
            return


def select_changes(
    database_url: str, mapping: Mapping, obj: ObjectMapping, *, full: bool = False
) -> tuple[list[_Item], int]:
    """:func:`iter_changes` as a list, and how many records are unchanged."""
    counts: dict[str, int] = {}
    items = list(iter_changes(database_url, mapping, obj, full=full, counts=counts))
    return items, counts["unchanged"]


def _current_items(database_url: str, mapping: Mapping, obj: ObjectMapping, ids: Sequence[str]) -> dict[str, _Item]:
    """The records with these Ids as they are now (mapped and hashed)."""
    model = CRM_OBJECTS[obj.name]
    wanted = list(dict.fromkeys(["Id", "SalesforceId", *obj.fields, *(r.hotcrm_field for r in obj.relationships)]))
    out: dict[str, _Item] = {}
    with session_scope(database_url) as session:
        for start in range(0, len(ids), 1000):
            for record in session.execute(select(model).where(model.id.in_(ids[start : start + 1000]))).scalars():
                row = record.to_api(wanted)
                payload = to_payload(mapping, obj, row)
                out[row["Id"]] = _Item(row["Id"], payload, payload_hash(payload), row.get("SalesforceId"))
    return out


def write_back(database_url: str, object_name: str, items: Sequence[_Item], results: Sequence[RecordResult]) -> None:
    """Store each record's result (state row, and SalesforceId/LastSyncDate on success) in one transaction.

    A success stores the item's hash as acknowledged; an item whose hash is ``None`` (the record
    changed after it was sent) is stored as synced but is selected again next run."""
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
                states[item.hotcrm_id] = state
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
            if result.created is None:
                summary.created_or_updated += 1
            elif result.created:
                summary.created += 1
            else:
                summary.updated += 1
        else:
            summary.failed += 1
            code = result.error_code or "UNKNOWN_EXCEPTION"
            summary.errors[code] = summary.errors.get(code, 0) + 1


@dataclass
class _Run:
    """What one object's sending needs."""

    database_url: str
    client: SalesforceClient
    mapping: Mapping
    name: str
    summary: ObjectSummary
    options: SyncOptions
    run_id: str

    @property
    def obj(self) -> ObjectMapping:
        return self.mapping.objects[self.name]


def _send_collections(run: _Run, items: Iterable[_Item]) -> None:
    client, name, summary = run.client, run.name, run.summary
    done = 0
    started = time.monotonic()
    iterator = iter(items)
    while batch := list(islice(iterator, COLLECTION_SIZE)):
        try:
            results = client.upsert_collection(name, run.mapping.external_id_field, [i.payload for i in batch])
        except BudgetExhausted as exc:
            raise _Stop(str(exc)) from None
        except SalesforceApiError as exc:
            if exc.code in _STOP_CODES or exc.status >= 500:
                raise _Stop(f"stopped sending {name}: {exc}") from None
            results = [RecordResult(False, error_code=exc.code, error_message=exc.message) for _ in batch]
        write_back(run.database_url, name, batch, results)
        _count(summary, results)
        done += len(batch)
        rate = done / max(time.monotonic() - started, 1e-6)
        log.info("%s: %d sent, %.0f records/s, %d API calls so far", name, done, rate, client.api_calls)


def _record_job(run: _Run, job_id: str, part: BulkPart) -> None:
    with session_scope(run.database_url) as session:
        session.add(
            m.BulkJob(
                job_id=job_id,
                object=run.name,
                run_id=run.run_id,
                status=m.JOB_PENDING,
                state="Open",
                records=part.records,
                upload_bytes=len(part.data),
            )
        )


def _mark_job(run: _Run, job_id: str, *, status: str | None = None, state: str | None = None, message=None) -> None:
    with session_scope(run.database_url) as session:
        job = session.execute(select(m.BulkJob).where(m.BulkJob.job_id == job_id)).scalar_one()
        if status:
            job.status = status
            if status == m.JOB_COLLECTED:
                job.collected_at, job.collected_by_run = utcnow(), run.run_id
        if state:
            job.state = state
        if message is not None:
            job.message = message


def _submit(run: _Run, part: BulkPart) -> str:
    """Create a job, upload one part and close the job; the job id is stored before the upload."""
    client = run.client
    client.check_budget()
    job_id = client.create_ingest_job(run.name, run.mapping.external_id_field)
    _record_job(run, job_id, part)
    try:
        client.upload_job_data(job_id, bytes(part.data))
        client.close_job(job_id)
    except (SalesforceApiError, BudgetExhausted) as exc:
        # Never closed, so nothing in it was processed: abort it, its records are sent again.
        try:
            client.request("PATCH", f"/jobs/ingest/{job_id}", json={"state": "Aborted"}, budgeted=False)
        except SalesforceApiError:
            log.warning("could not abort bulk job %s (Salesforce deletes open jobs after a day)", job_id)
        _mark_job(run, job_id, status=m.JOB_ABORTED, state="Aborted", message=str(exc))
        raise
    _mark_job(run, job_id, state="UploadComplete")
    log.info("%s: bulk job %s: %d records, %d bytes uploaded", run.name, job_id, part.records, len(part.data))
    return job_id


def _send_bulk(run: _Run, items: Iterable[_Item]) -> None:
    """Bulk API 2.0: uploads split by column set and size, one job each; wait for the jobs, then
    write back what Salesforce reports. Jobs still running at the wait limit are kept (their ids
    are in ``salesforce_bulk_jobs``) and collected by a later run."""
    summary = run.summary
    writer = BulkCsvWriter(run.options.bulk_max_bytes)
    as_json: list[_Item] = []  # holds the text "#N/A": sent through Collections
    job_ids: list[str] = []
    iterator = iter(items)
    current: BulkPart | None = None
    try:
        for item in iterator:
            try:
                current = writer.add(item.payload)
            except LiteralNullMarker as exc:
                log.info("%s %s: %s", run.name, item.hotcrm_id, exc)
                as_json.append(item)
                continue
            if current is not None:
                job_ids.append(_submit(run, current))
                current = None
        for current in writer.flush():
            job_ids.append(_submit(run, current))
    except (SalesforceApiError, BudgetExhausted) as exc:
        # Records in no job that ran are counted as skipped by run_sync: sent next run.
        summary.jobs.extend(job_ids)
        with contextlib.suppress(SalesforceApiError, BudgetExhausted):  # else left pending for the next run
            _wait_and_collect(run, job_ids)
        raise _Stop(f"stopped sending {run.name}: {exc}") from None
    summary.jobs.extend(job_ids)
    retry = _wait_and_collect(run, job_ids)
    if as_json or retry:
        _send_collections(run, [*as_json, *retry])


def _wait_and_collect(run: _Run, job_ids: list[str]) -> list[_Item]:
    """Wait for the jobs up to the wait limit; collect the ended ones; returns the records to
    send again at once (lock errors). Counts records of still-running jobs as pending."""
    if not job_ids:
        return []
    infos = run.client.wait_for_jobs(job_ids, run.options.bulk_wait_seconds)
    retry: list[_Item] = []
    for job_id in job_ids:
        info = infos[job_id]
        if info.get("state") in JOB_ENDED:
            retry.extend(_collect(run, job_id, info))
        else:
            with session_scope(run.database_url) as session:
                records = session.execute(select(m.BulkJob.records).where(m.BulkJob.job_id == job_id)).scalar_one()
            _mark_job(run, job_id, state=str(info.get("state")))
            run.summary.pending += records
            run.summary.pending_jobs.append(job_id)
    return retry


def _collect(run: _Run, job_id: str, info: dict[str, Any]) -> list[_Item]:
    """Write back an ended job's results as Salesforce reports them (successfulResults with
    ``sf__Created``, failedResults with ``sf__Error``, unprocessedrecords). A record's hash is
    stored only if what the job sent is what the record maps to now."""
    client = run.client
    state = info.get("state")
    processed, failed = int(info.get("numberRecordsProcessed") or 0), int(info.get("numberRecordsFailed") or 0)
    kinds = []
    if processed - failed > 0:
        kinds.append("successfulResults")
    if failed > 0:
        kinds.append("failedResults")
    if state != "JobComplete":
        kinds.append("unprocessedrecords")
    retry: list[_Item] = []
    for kind in kinds:
        batch: list[dict[str, str]] = []
        for row in client.job_results(job_id, kind):
            batch.append(row)
            if len(batch) >= WRITE_BACK_BATCH:
                retry.extend(_write_results(run, kind, batch, state))
                batch = []
        if batch:
            retry.extend(_write_results(run, kind, batch, state))
    message = f"{state}: {processed} processed, {failed} failed"
    if info.get("errorMessage"):
        message += f"; {info['errorMessage']}"
    _mark_job(run, job_id, status=m.JOB_COLLECTED, state=str(state), message=message)
    log.info("%s: bulk job %s collected (%s)", run.name, job_id, message)
    return retry


def _write_results(run: _Run, kind: str, rows: list[dict[str, str]], state: Any) -> list[_Item]:
    ext = run.mapping.external_id_field
    current = _current_items(run.database_url, run.mapping, run.obj, [r.get(ext, "") for r in rows])
    items: list[_Item] = []
    results: list[RecordResult] = []
    retry: list[_Item] = []
    for row in rows:
        item = current.get(row.get(ext, ""))
        if item is None:
            continue  # deleted from HotCRM since
        if kind == "successfulResults":
            result = RecordResult(True, row.get("sf__Id") or None, row.get("sf__Created", "").lower() == "true")
        elif kind == "failedResults":
            code, message = parse_bulk_error(row.get("sf__Error", ""))
            result = RecordResult(False, error_code=code, error_message=message)
            if code in RETRYABLE_RECORD_CODES and len(retry) < LOCK_RETRY_CAP:
                retry.append(item)
                continue
        else:
            result = RecordResult(
                False, error_code="UNPROCESSED", error_message=f"the bulk job ended {state} before processing it"
            )
        if not _sent_as_now(row, item.payload):
            item = _Item(item.hotcrm_id, item.payload, None, item.known_salesforce_id)  # changed since: resend
        items.append(item)
        results.append(result)
    if items:
        write_back(run.database_url, run.name, items, results)
        _count(run.summary, results)
    return retry


def _sent_as_now(row: dict[str, str], payload: dict[str, Any]) -> bool:
    """Whether the cells a job echoes back are what the record maps to now."""
    try:
        columns, cells = bulk_row(payload)
    except LiteralNullMarker:
        return False
    return all(row.get(c) == v for c, v in zip(columns, cells, strict=True)) and all(
        k in columns for k in row if not k.startswith("sf__")
    )


def _collect_pending(run: _Run) -> list[str]:
    """Collect the object's jobs left running by earlier runs; returns those still running."""
    with session_scope(run.database_url) as session:
        pending = list(
            session.execute(
                select(m.BulkJob.job_id).where(m.BulkJob.object == run.name, m.BulkJob.status == m.JOB_PENDING)
            ).scalars()
        )
    if not pending:
        return []
    _check_budget(run.client)
    log.info("%s: collecting %d bulk job(s) left by earlier runs: %s", run.name, len(pending), ", ".join(pending))
    retry = _wait_and_collect(run, pending)
    still = [j for j in pending if j in run.summary.pending_jobs]
    run.summary.collected_jobs.extend(j for j in pending if j not in still)
    if retry:
        _send_collections(run, retry)
    return still


def _check_budget(client: SalesforceClient) -> None:
    if client.usage is None:
        client.limits()  # one call tells how much of the daily budget is left
    client.check_budget()


def _dry_run(items: Iterable[_Item], summary: ObjectSummary) -> None:
    for item in items:
        if item.known_salesforce_id:
            summary.updated += 1
        else:
            summary.created += 1
    summary.outcome = m.DRY_RUN


def _limited(items: Iterable[_Item], summary: ObjectSummary, limit: int | None) -> Iterator[_Item]:
    """Count what is selected; past ``limit``, count the rest as skipped instead."""
    for item in items:
        if limit is not None and summary.selected >= limit:
            summary.skipped += 1
            continue
        summary.selected += 1
        yield item


def _counts_message(s: ObjectSummary) -> str:
    text = f"created {s.created}, updated {s.updated}"
    if s.created_or_updated:
        text += (
            f", created or updated {s.created_or_updated} (a call was retried after its first attempt may have "
            "been applied; Salesforce's answer to the retry cannot tell which)"
        )
    return text


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
        counts: dict[str, int] = {}
        changes = iter_changes(database_url, mapping, mapping.objects[name], full=options.full, counts=counts)
        items = _limited(changes, summary, options.limit)
        if options.dry_run:
            _dry_run(items, summary)
        elif stop_message:
            summary.skipped += sum(1 for _ in items)
        else:
            assert client is not None
            run = _Run(database_url, client, mapping, name, summary, options, run_id)
            try:
                still_running = _collect_pending(run)
                if still_running:
                    raise _Stop(
                        f"{name}: bulk job(s) {', '.join(still_running)} still running after "
                        f"{options.bulk_wait_seconds:.0f}s; the next run collects their results and then sends "
                        "newer changes"
                    )
                # auto: Bulk API 2.0 once there are bulk_threshold records to send
                head = list(islice(items, options.bulk_threshold if options.transport == "auto" else 1))
                if head:
                    _check_budget(client)
                    bulk = options.transport == "bulk" or (
                        options.transport == "auto" and len(head) >= options.bulk_threshold
                    )
                    summary.transport = "bulk" if bulk else "collections"
                    (_send_bulk if bulk else _send_collections)(run, chain(head, items))
                if summary.pending:
                    raise _Stop(
                        f"{name}: {summary.pending} record(s) in bulk job(s) {', '.join(summary.pending_jobs)} still "
                        f"running after {options.bulk_wait_seconds:.0f}s; kept, not aborted: the next run collects "
                        "their results"
                    )
            except BudgetExhausted as exc:
                stop_message = str(exc)
            except _Stop as exc:
                stop_message = str(exc)
            except SalesforceApiError as exc:
                stop_message = f"stopped sending {name}: {exc}"
            if stop_message:
                # Selected but not sent (or sent with no answer): the next run sends them.
                for _ in items:
                    pass
                answered = summary.created + summary.updated + summary.created_or_updated + summary.failed
                summary.skipped += max(summary.selected - answered - summary.pending, 0)
        summary.unchanged = counts.get("unchanged", 0)
        summary.api_calls = (client.api_calls if client else 0) - calls_before
        summary.duration_seconds = round(time.monotonic() - started, 3)
        if options.dry_run:
            summary.message = (
                f"dry run: would create {summary.created}, update {summary.updated}, "
                f"leave {summary.unchanged} unchanged; nothing was sent"
            )
        else:
            if stop_message and (summary.skipped or summary.pending):
                summary.outcome, summary.message = m.PARTIAL, stop_message
            elif summary.failed:
                summary.outcome = m.PARTIAL
                summary.message = (
                    f"{summary.failed} {name} record(s) failed ("
                    + ", ".join(f"{code}: {n}" for code, n in sorted(summary.errors.items()))
                    + f"); they are retried next run; {_counts_message(summary)}"
                )
            elif summary.skipped:
                summary.outcome = m.PARTIAL
                summary.message = f"{summary.skipped} {name} record(s) left for the next run (limit {options.limit})"
            else:
                summary.message = f"{_counts_message(summary)}, unchanged {summary.unchanged}"
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
        for key in (
            "selected",
            "created",
            "updated",
            "created_or_updated",
            "unchanged",
            "failed",
            "skipped",
            "pending",
            "api_calls",
        )
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


def merge_summaries(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One summary for a run that waited for its bulk jobs and resumed: what Salesforce answered
    in either part is added up; what is still skipped or pending, and the outcome, are the
    second part's."""
    summed = ("created", "updated", "created_or_updated", "failed", "api_calls")
    merged = dict(second)
    merged["objects"] = {}
    for name in dict.fromkeys([*first["objects"], *second["objects"]]):
        a, b = first["objects"].get(name, {}), second["objects"].get(name, {})
        obj = dict(b or a)
        for key in summed:
            obj[key] = a.get(key, 0) + b.get(key, 0)
        obj["selected"] = a.get("selected", 0) + b.get("selected", 0)
        obj["unchanged"] = a.get("unchanged", b.get("unchanged", 0))
        obj["jobs"] = [*a.get("jobs", []), *b.get("jobs", [])]
        obj["errors"] = {
            k: a.get("errors", {}).get(k, 0) + b.get("errors", {}).get(k, 0)
            for k in {*a.get("errors", {}), *b.get("errors", {})}
        }
        merged["objects"][name] = obj
    merged["totals"] = {
        key: sum(o.get(key, 0) for o in merged["objects"].values())
        for key in (*summed, "selected", "unchanged", "skipped", "pending")
    }
    merged["retries"] = first.get("retries", 0) + second.get("retries", 0)
    merged["relogins"] = first.get("relogins", 0) + second.get("relogins", 0)
    merged["message"] = f"{second['message']} (resumed after its bulk jobs ended; before the wait: {first['message']})"
    return merged


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
