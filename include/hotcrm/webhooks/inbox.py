"""The inbox: store a verified delivery once, claim due rows for a worker, requeue dead letters.

Claims are atomic on both databases: one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n)
RETURNING`` marks a batch ``processing`` for one worker with a lease. On PostgreSQL the
sub-select takes ``FOR UPDATE SKIP LOCKED``, so concurrent workers skip each other's rows
instead of waiting; on SQLite the statement runs under ``BEGIN IMMEDIATE`` (the database's
single write lock), so two claims are serialized and can never pick the same row. A worker
that dies leaves its rows ``processing`` until the lease ends; then another worker takes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from hotcrm.crm.db import get_engine, is_postgresql, session_scope
from hotcrm.crm.models import utcnow
from hotcrm.webhooks.models import DEAD, PENDING, PROCESSING, STATUSES, WebhookInbox

# How long a claim holds its rows. A batch is applied in well under a second, and on
# PostgreSQL the rows stay locked while it is, so a short lease only matters when a worker
# died: its rows are due again this soon (the stall after a lost worker, see README).
DEFAULT_LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class StoreResult:
    """What storing a delivery did: its row id, or ``duplicate`` when (source, event id) existed."""

    duplicate: bool
    row_id: int | None = None


def parse_event_time(value: Any) -> datetime | None:
    """An event time from a Unix timestamp (seconds) or an ISO 8601 string, as aware UTC."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                return datetime.fromtimestamp(float(value), UTC)
            except ValueError:
                return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _row_values(delivery: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    received_at = delivery.get("received_at") or now
    return {
        "source": delivery["source"],
        "event_id": delivery["event_id"],
        "event_type": delivery["event_type"],
        "event_time": delivery.get("event_time"),
        "received_at": received_at,
        "body": delivery["body"],
        "headers": dict(delivery.get("headers") or {}),
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": received_at,
    }


def store_deliveries(engine: Engine, deliveries: list[Mapping[str, Any]]) -> list[StoreResult]:
    """Insert deliveries in one transaction, skipping any (source, event id) already stored;
    returns one result per delivery, in order (a repeat within the list is a duplicate too).

    ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` on the unique constraint makes the
    duplicate check and the insert one atomic statement, so concurrent repeats store one row.
    """
    now = utcnow()
    first: dict[tuple[str, str], int] = {}
    rows = []
    for index, delivery in enumerate(deliveries):
        key = (delivery["source"], delivery["event_id"])
        if key not in first:
            first[key] = index
            rows.append(_row_values(delivery, now))
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(WebhookInbox)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(WebhookInbox.id, WebhookInbox.source, WebhookInbox.event_id)
    )
    with engine.begin() as conn:
        inserted = {(source, event_id): row_id for row_id, source, event_id in conn.execute(statement)}
    results = []
    for index, delivery in enumerate(deliveries):
        key = (delivery["source"], delivery["event_id"])
        row_id = inserted.get(key) if first[key] == index else None
        results.append(StoreResult(duplicate=row_id is None, row_id=row_id))
    return results


def store_delivery(engine: Engine, **delivery: Any) -> StoreResult:
    """Insert one delivery (source, event_id, event_type, event_time, body, headers, and
    optionally received_at) unless its (source, event id) is already stored."""
    return store_deliveries(engine, [delivery])[0]


class GroupCommitWriter:
    """Stores deliveries from concurrent requests in shared transactions (group commit).

    Each request waits for the commit that holds its row, so a 2xx still means "durably
    stored"; while one transaction commits, the next requests gather for the following one.
    One commit per batch instead of per request is what lets one receiver process keep up
    with a busy sender. Bound to the event loop it was created on.
    """

    def __init__(self, engine: Engine, max_batch: int = 500) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._pending: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def store(self, **delivery: Any) -> StoreResult:
        """Store one delivery with the next group commit; raises what the database raised."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((delivery, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                try:
                    results = await asyncio.to_thread(store_deliveries, self.engine, [d for d, _ in batch])
                except Exception as exc:  # every request of the batch gets the database's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flusher = None


def claim_batch(
    database_url: str, worker: str, limit: int, *, now: datetime | None = None, lease: timedelta = DEFAULT_LEASE
) -> list[int]:
    """Mark up to ``limit`` due rows as ``processing`` for ``worker``; returns their ids.

    Due: ``pending`` with ``next_attempt_at`` reached, or ``processing`` whose lease ended
    (its worker died). The claim commits at once, so the lock is held for one statement.
    """
    engine = get_engine(database_url)
    now = now or utcnow()
    due = or_(
        and_(WebhookInbox.status == PENDING, WebhookInbox.next_attempt_at <= now),
        and_(WebhookInbox.status == PROCESSING, WebhookInbox.locked_until < now),
    )
    candidates = select(WebhookInbox.id).where(due).order_by(WebhookInbox.id).limit(limit)
    if is_postgresql(engine):
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(WebhookInbox)
        .where(WebhookInbox.id.in_(candidates.scalar_subquery()))
        .values(status=PROCESSING, claimed_by=worker, locked_until=now + lease)
        .returning(WebhookInbox.id)
    )
    with engine.begin() as conn:
        ids = list(conn.execute(statement).scalars())
    return sorted(ids)


def next_lease_end(database_url: str, now: datetime | None = None) -> float | None:
    """Seconds until the earliest lease of a ``processing`` row ends (0 if one has ended
    already), or None when no row is claimed."""
    with session_scope(database_url) as session:
        earliest = session.scalar(select(func.min(WebhookInbox.locked_until)).where(WebhookInbox.status == PROCESSING))
    if earliest is None:
        return None
    earliest = earliest if earliest.tzinfo else earliest.replace(tzinfo=UTC)
    return max(0.0, (earliest - (now or utcnow())).total_seconds())


def requeue(
    database_url: str,
    *,
    source: str | None = None,
    event_ids: Iterable[str] | None = None,
    statuses: Iterable[str] = (DEAD,),
    now: datetime | None = None,
) -> int:
    """Put dead letters (or rows in ``statuses``) back to ``pending`` with fresh attempts,
    optionally only one source's or some event ids; returns how many rows were requeued.
    The last error stays on the row until it is processed again, for the record."""
    statuses = list(statuses)
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ValueError(f"unknown inbox status {unknown}; known: {', '.join(STATUSES)}")
    statement = update(WebhookInbox).where(WebhookInbox.status.in_(statuses))
    if source:
        statement = statement.where(WebhookInbox.source == source)
    if event_ids is not None:
        statement = statement.where(WebhookInbox.event_id.in_(list(event_ids)))
    statement = statement.values(
        status=PENDING, attempts=0, next_attempt_at=now or utcnow(), claimed_by=None, locked_until=None
    )
    with session_scope(database_url) as session:
        return session.execute(statement).rowcount or 0


def status_counts(database_url: str, source: str | None = None) -> dict[str, int]:
    """How many inbox rows are in each status (every status listed, zeros included)."""
    statement = select(WebhookInbox.status, func.count()).group_by(WebhookInbox.status)
    if source:
        statement = statement.where(WebhookInbox.source == source)
    with session_scope(database_url) as session:
        found = dict(session.execute(statement).all())
    return {status: int(found.get(status, 0)) for status in STATUSES}


def dead_letters(database_url: str, source: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The dead-lettered rows (newest first): source, event id, type, attempts, last error."""
    statement = select(WebhookInbox).where(WebhookInbox.status == DEAD).order_by(WebhookInbox.id.desc()).limit(limit)
    if source:
        statement = statement.where(WebhookInbox.source == source)
    with session_scope(database_url) as session:
        return [
            {
                "source": row.source,
                "event_id": row.event_id,
                "event_type": row.event_type,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "received_at": row.received_at,
            }
            for row in session.scalars(statement)
        ]
