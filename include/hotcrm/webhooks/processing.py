"""Drain the inbox: claim due rows in batches and apply each with its handler, exactly once.

Each event's change and its row's new status commit in the same transaction. A chunk of
events first runs in one transaction (the fast path); if any event fails, that transaction
rolls back and the chunk runs again with a savepoint per event, so the failing event alone
is rolled back and rescheduled (attempts + 1, exponential backoff) or dead-lettered after
``max_attempts``, while the others commit.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hotcrm.crm.db import is_postgresql, session_scope
from hotcrm.crm.events import EVENT_TYPES
from hotcrm.crm.models import OutboxEvent, Payment, new_id, utcnow
from hotcrm.retry import exponential_delay
from hotcrm.settings import airflow_task_context
from hotcrm.webhooks.config import DEFAULT_PAYMENT_PATH, SourceConfigError, SourceRegistry, env_source_registry
from hotcrm.webhooks.handlers import HANDLERS, EventContext, PayloadError, RetryableError, aware, payment_refs
from hotcrm.webhooks.inbox import DEFAULT_LEASE, claim_batch, next_lease_end
from hotcrm.webhooks.models import CLAIMED_BY_LENGTH, DEAD, DONE, IGNORED, PENDING, PROCESSING, WebhookInbox

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 200
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 3600.0
_MAX_ERROR_LENGTH = 2000


@dataclass
class ProcessResult:
    """Counts of one drain, and the dead letters it made (event id and reason)."""

    processed: int = 0
    ignored: int = 0
    retried: int = 0
    dead_lettered: int = 0
    stale: int = 0
    batches: int = 0
    seconds: float = 0.0
    dead_letters: list[dict[str, str]] = field(default_factory=list)

    def add(self, other: ProcessResult) -> None:
        """Fold another result into this one."""
        for name in ("processed", "ignored", "retried", "dead_lettered", "stale", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_letters.extend(other.dead_letters)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the DAG's XCom)."""
        return asdict(self)


def backoff_delay(attempts: int, base: float = DEFAULT_BACKOFF_SECONDS) -> timedelta:
    """Delay before retry number ``attempts``: base * 2^(attempts-1), at most an hour."""
    return timedelta(seconds=exponential_delay(attempts, base, MAX_BACKOFF_SECONDS))


def default_worker_name() -> str:
    """Who claims: the host and, inside an Airflow task, the task instance (dag/run/task/try,
    from the ``AIRFLOW_CTX_*`` variables Airflow's task runner exports), so a stuck claim
    names the worker and the task log to look at; elsewhere the process id. Unique across
    hosts and processes (a mapped task appends its map index)."""
    host = socket.gethostname()[:63]
    ctx = airflow_task_context()
    if ctx["DAG_ID"] and ctx["TASK_ID"]:
        name = f"{host} {ctx['DAG_ID']}/{ctx['DAG_RUN_ID']}/{ctx['TASK_ID']}/try{ctx['TRY_NUMBER']}"
        return name[: CLAIMED_BY_LENGTH - 16]  # room for a map index suffix
    return f"{host} pid{os.getpid()} {uuid.uuid4().hex[:8]}"


def process_inbox(
    database_url: str,
    *,
    worker: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
    max_seconds: float | None = None,
    max_batches: int | None = None,
    now: datetime | None = None,
    lease: timedelta = DEFAULT_LEASE,
    registry: SourceRegistry | None = None,
) -> ProcessResult:
    """Claim and apply due inbox rows until none is due (or the time/batch budget is spent).

    ``now`` fixes the clock (tests move it forward to reach retries). Safe to run in several
    workers at once: a row is claimed by one worker only. ``registry`` gives each source's
    settings (its ``payment_path``); default: the ``AIRFLOW_CONN_HOTCRM_WEBHOOK_*`` variables.
    """
    if batch_size < 1 or max_attempts < 1:
        raise ValueError("batch_size and max_attempts must be at least 1")
    worker = worker or default_worker_name()
    paths = PaymentPaths(registry or env_source_registry)
    total = ProcessResult()
    started = time.monotonic()
    last_log = started
    while True:
        if max_batches is not None and total.batches >= max_batches:
            break
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            log.info("Time budget of %.0fs spent; the rest waits for the next run", max_seconds)
            break
        clock = now or utcnow()
        ids = claim_batch(database_url, worker, batch_size, now=clock, lease=lease)
        if not ids:
            if now is None and max_seconds is not None and _await_lease(database_url, started + max_seconds):
                continue  # a claim of a worker that may be dead ends within our budget: take it over
            break
        result = _process_claimed(database_url, worker, ids, clock, max_attempts, backoff_seconds, paths)
        result.batches = 1
        total.add(result)
        if time.monotonic() - last_log >= 10:
            last_log = time.monotonic()
            done = total.processed + total.ignored + total.retried + total.dead_lettered
            log.info("Inbox: %d events handled so far (%.0f/s)", done, done / (last_log - started))
    total.seconds = round(time.monotonic() - started, 3)
    for letter in total.dead_letters:
        log.warning(
            "Dead letter: source %s event %s (%s) after %s attempts: %s",
            letter["source"],
            letter["event_id"],
            letter["event_type"],
            letter["attempts"],
            letter["reason"],
        )
    return total


def _await_lease(database_url: str, deadline: float) -> bool:
    """Nothing is due, but rows are claimed (by a sibling at work, or by a worker that died):
    wait a moment and return True if the earliest lease ends before ``deadline`` (monotonic),
    so the drain takes a dead worker's rows over instead of leaving them to the next run."""
    remaining = deadline - time.monotonic()
    wait = next_lease_end(database_url)
    if wait is None or wait >= remaining:
        return False
    time.sleep(min(max(wait, 0.05), 1.0, remaining))
    return True


class PaymentPaths:
    """Each source's ``payment_path`` (where its Stripe events name the Payment), looked up
    once per drain; a source that is gone, misconfigured or cannot be read now uses the
    default path (its events then wait and retry if they name the Payment elsewhere)."""

    def __init__(self, registry: SourceRegistry) -> None:
        self.registry = registry
        self._paths: dict[str, str] = {}

    def __call__(self, source: str) -> str:
        path = self._paths.get(source)
        if path is None:
            try:
                config = self.registry(source)
            except Exception as exc:  # a secrets backend's error must not stop the whole drain
                log.warning(
                    "Webhook source %r: %s (%s); its events use the default payment path",
                    source,
                    exc if isinstance(exc, SourceConfigError) else "connection not readable",
                    type(exc).__name__,
                )
                config = None
            path = self._paths[source] = config.payment_path if config is not None else DEFAULT_PAYMENT_PATH
        return path


def _process_claimed(
    database_url: str,
    worker: str,
    ids: list[int],
    now: datetime,
    max_attempts: int,
    backoff: float,
    paths: PaymentPaths | None = None,
) -> ProcessResult:
    paths = paths or PaymentPaths(lambda _source: None)
    try:
        return _run_chunk(database_url, worker, ids, now, max_attempts, backoff, paths, isolate=False)
    except _EventFailed:
        pass  # some event failed: run again, each event in its own savepoint
    except Exception as exc:  # e.g. a constraint at commit: find the culprit event by event
        log.warning("Batch of %d failed at commit (%s); retrying event by event", len(ids), type(exc).__name__)
    try:
        return _run_chunk(database_url, worker, ids, now, max_attempts, backoff, paths, isolate=True)
    except Exception:
        _release(database_url, worker, ids)
        raise


def _release(database_url: str, worker: str, ids: list[int]) -> None:
    # The batch could not be committed at all (database gone?): hand the rows back at once
    # instead of leaving them to the lease; attempts are not counted against the events.
    try:
        with session_scope(database_url) as session:
            session.execute(
                update(WebhookInbox)
                .where(WebhookInbox.id.in_(ids), WebhookInbox.claimed_by == worker)
                .values(status=PENDING, claimed_by=None, locked_until=None)
            )
    except Exception as exc:  # the lease still frees them later
        log.warning("Could not release %d claimed rows (%s); their lease frees them", len(ids), type(exc).__name__)


class _EventFailed(Exception):
    """An event failed on the fast path; the chunk is rolled back and rerun event by event."""


def _run_chunk(
    database_url: str,
    worker: str,
    ids: list[int],
    now: datetime,
    max_attempts: int,
    backoff: float,
    paths: PaymentPaths,
    *,
    isolate: bool,
) -> ProcessResult:
    result = ProcessResult()
    with session_scope(database_url) as session:
        query = select(WebhookInbox).where(
            WebhookInbox.id.in_(ids), WebhookInbox.status == PROCESSING, WebhookInbox.claimed_by == worker
        )
        if is_postgresql(database_url):
            # Hold our rows for the transaction, so no other worker can take them even if the lease ends.
            # Wait for a lock rather than skip the row: another worker's claim (FOR UPDATE SKIP LOCKED)
            # can lock a row of ours for an instant while it rechecks it, and a skipped row would sit
            # claimed by us, unprocessed, until its lease ran out.
            query = query.with_for_update()
        rows = list(session.scalars(query))
        # Event-time order, so events for one Payment within a chunk apply as they happened.
        rows.sort(key=lambda r: (aware(r.event_time) or aware(r.received_at), r.id))
        payments = _preload_payments(session, rows, paths)
        if not isolate:
            # Fast path: outbox events are written after the loop and nothing flushes per event,
            # so the ORM sends each kind of change as one batched statement at commit.
            gathered: list[tuple[str, dict[str, Any]]] = []

            def emit(_session: Session, event_type: str, data: dict[str, Any]) -> None:
                gathered.append((event_type, data))

            with session.no_autoflush:
                for row in rows:
                    _count(result, _apply(session, row, now, payments, emit, paths, flush=False))
            session.add_all(outbox_events(gathered))
            return result
        for row in rows:
            try:
                with session.begin_nested():
                    outcome = _apply(session, row, now, payments, None, paths, flush=True)
            except Exception as exc:  # any handler error: this event alone is rolled back
                outcome = _failed(row, exc, now, max_attempts, backoff, result)
            _count(result, outcome)
    return result


def outbox_events(gathered: list[tuple[str, dict[str, Any]]]) -> list[OutboxEvent]:
    """Outbox rows for a batch, shaped exactly as :func:`hotcrm.crm.events.record_event` makes
    them, but added together: ``record_event`` flushes each event on its own, one INSERT round
    trip per event, which would cap a batch at a few hundred events a second."""
    events = []
    for event_type, data in gathered:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
        now = utcnow()
        payload = {"event": event_type, "timestamp": now.isoformat(), "data": data}
        events.append(OutboxEvent(id=new_id(), event_type=event_type, payload=payload, created_at=now))
    return events


def _preload_payments(session: Session, rows: list[WebhookInbox], paths: PaymentPaths) -> dict[str, Payment]:
    # One query locks and loads every Payment the chunk touches (ordered by id, so two workers
    # lock in the same order); the handlers look them up here instead of querying each.
    txns: set[str] = set()
    for row in rows:
        if row.event_type in HANDLERS:
            try:
                payload = json.loads(row.body)
            except ValueError:
                continue
            txns.update(payment_refs(row.event_type, payload, paths(row.source)))
    if not txns:
        return {}
    found = session.scalars(
        select(Payment).where(Payment.transaction_id.in_(sorted(txns))).order_by(Payment.id).with_for_update()
    )
    return {payment.transaction_id: payment for payment in found}


def _apply(
    session: Session,
    row: WebhookInbox,
    now: datetime,
    payments: dict[str, Payment],
    emit,
    paths: PaymentPaths,
    *,
    flush: bool,
) -> str:
    handler = HANDLERS.get(row.event_type)
    if handler is None:
        row.status = IGNORED
        row.result = f"no handler for event type {row.event_type!r}"
        outcome = IGNORED
    else:
        try:
            payload = json.loads(row.body)
        except ValueError as exc:
            raise _wrap(PayloadError(f"body is not JSON: {exc}")) from exc
        if not isinstance(payload, dict):
            raise _wrap(PayloadError("body must be a JSON object"))
        event_time = aware(row.event_time) or aware(row.received_at)
        ctx = EventContext(row.source, row.event_id, row.event_type, event_time, payments, emit, paths(row.source))
        try:
            note = handler(session, payload, ctx)
        except Exception as exc:
            raise _wrap(exc) from exc
        row.status = DONE
        row.result = note
        outcome = "stale" if note.startswith("stale") else DONE
    row.processed_at = now
    row.last_error = None
    row.claimed_by = None
    row.locked_until = None
    if flush:
        session.flush()
    return outcome


def _wrap(exc: Exception) -> Exception:
    # On the fast path every failure aborts the chunk; on the isolated path the savepoint
    # handler unwraps it to record the reason.
    error = _EventFailed(str(exc))
    error.cause = exc  # type: ignore[attr-defined]
    return error


def _failed(
    row: WebhookInbox, exc: Exception, now: datetime, max_attempts: int, backoff: float, result: ProcessResult
) -> str:
    cause = getattr(exc, "cause", exc)
    kind = "not ready" if isinstance(cause, RetryableError) else type(cause).__name__
    reason = f"{kind}: {cause}"[:_MAX_ERROR_LENGTH]
    row.attempts = (row.attempts or 0) + 1
    row.last_error = reason
    row.claimed_by = None
    row.locked_until = None
    if row.attempts >= max_attempts:
        row.status = DEAD
        row.processed_at = now
        result.dead_letters.append(
            {
                "source": row.source,
                "event_id": row.event_id,
                "event_type": row.event_type,
                "attempts": str(row.attempts),
                "reason": reason,
            }
        )
        return DEAD
    row.status = PENDING
    row.next_attempt_at = now + backoff_delay(row.attempts, backoff)
    return "retried"


def _count(result: ProcessResult, outcome: str) -> None:
    if outcome == DONE:
        result.processed += 1
    elif outcome == "stale":
        result.processed += 1
        result.stale += 1
    elif outcome == IGNORED:
        result.ignored += 1
    elif outcome == DEAD:
        result.dead_lettered += 1
    else:
        result.retried += 1
