"""Retention: delete bookkeeping rows past a configurable age, in small batches.

Every rule names a table, the finished states it may remove (never a row still pending,
claimed, sending or awaiting an operator) and the timestamp its age is measured on. Ages are
in ``include/config/retention.json`` (``HOTCRM_RETENTION_CONFIG`` for another file); dead
letters are kept longer than rows that succeeded, and a setting of ``null`` keeps a kind of
row forever.

Each batch is its own short transaction (select up to ``batch_size`` keys in age order, delete
them), so the webhook receiver's inserts wait at most one batch on SQLite's write lock and never
on PostgreSQL, where deletes lock only the rows they remove. Batches walk the age index from the
oldest row on (keyset on the timestamp), so a batch never rescans the rows the previous ones
removed. A run stops after ``time_budget_seconds`` and reports what is left for the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, select, tuple_

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import utcnow
from hotcrm.settings import CONFIG_DIR, read_settings_file

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = CONFIG_DIR / "retention.json"
DAY = 86400


@dataclass(frozen=True)
class RetentionConfig:
    """Ages in days (None: keep forever) and how the deletes are paced."""

    webhook_inbox_done_days: float | None = 30
    webhook_inbox_dead_days: float | None = 90
    webhook_deliveries_succeeded_days: float | None = 30
    webhook_deliveries_dead_days: float | None = 90
    outbox_events_days: float | None = 90
    email_outbox_sent_days: float | None = 30
    email_outbox_failed_days: float | None = 90
    rate_limit_counters_days: float | None = 2
    lead_import_issues_days: float | None = 90
    salesforce_sync_runs_days: float | None = 180
    batch_size: int = 5000
    pause_seconds: float = 0.01
    time_budget_seconds: float = 1800
    progress_every_seconds: float = 30

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_days") and value is not None and (not isinstance(value, int | float) or value <= 0):
                raise ValueError(f"{f.name}: give a number of days above 0, or null to keep forever; got {value!r}")
        if self.batch_size < 1 or self.time_budget_seconds <= 0 or self.pause_seconds < 0:
            raise ValueError("batch_size must be >= 1, time_budget_seconds > 0, pause_seconds >= 0")
        for done, dead in (
            ("webhook_inbox_done_days", "webhook_inbox_dead_days"),
            ("webhook_deliveries_succeeded_days", "webhook_deliveries_dead_days"),
            ("email_outbox_sent_days", "email_outbox_failed_days"),
        ):
            done_days, dead_days = getattr(self, done), getattr(self, dead)
            if dead_days is not None and (done_days is None or dead_days < done_days):
                raise ValueError(
                    f"{dead} ({dead_days}) must be at least {done} ({done_days}): dead letters are kept "
                    "longer than rows that succeeded, for the operators to replay or inspect"
                )


def load_config(path: str | Path | None = None) -> RetentionConfig:
    """The retention settings from ``path`` (default: ``HOTCRM_RETENTION_CONFIG`` or the project's file)."""
    path, values = read_settings_file(
        path, "HOTCRM_RETENTION_CONFIG", DEFAULT_CONFIG_PATH, {f.name for f in fields(RetentionConfig)}, "retention"
    )
    try:
        return RetentionConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Rule:
    """Rows of ``table`` in one of ``states`` whose ``age_column`` is older than ``setting`` days."""

    name: str
    setting: str
    what: str
    # The rule's passes: table, key, age column, condition (a dict, or a list of them run in turn).
    build: Callable[[datetime], Any] = field(repr=False)


def _inbox(states: tuple[str, ...]) -> Callable[[datetime], list[dict[str, Any]]]:
    def build(_cutoff: datetime) -> list[dict[str, Any]]:
        from hotcrm.webhooks.models import WebhookInbox

        # One pass per state: ``status = x ORDER BY processed_at`` is a range of the (status,
        # processed_at) index; ``status IN (...)`` would sort every candidate row at each batch.
        return [
            {
                "table": WebhookInbox.__table__,
                "key": WebhookInbox.id,
                "age": WebhookInbox.processed_at,
                "where": WebhookInbox.status == state,
            }
            for state in states
        ]

    return build


def _deliveries(state: str) -> Callable[[datetime], dict[str, Any]]:
    def build(_cutoff: datetime) -> dict[str, Any]:
        from hotcrm.delivery.models import WebhookAttempt, WebhookDelivery

        age = WebhookDelivery.delivered_at if state == "succeeded" else WebhookDelivery.dead_at
        return {
            "table": WebhookDelivery.__table__,
            "key": WebhookDelivery.id,
            "age": age,
            "where": WebhookDelivery.status == state,
            # Each delivery's attempts go with it (they reference it).
            "children": [(WebhookAttempt.__table__, WebhookAttempt.delivery_id)],
        }

    return build


def _outbox_events(_cutoff: datetime) -> dict[str, Any]:
    from hotcrm.crm.models import OutboxEvent
    from hotcrm.delivery.models import FannedOutEvent, WebhookDelivery

    return {
        "table": OutboxEvent.__table__,
        "key": OutboxEvent.id,
        "age": OutboxEvent.created_at,
        # Fanned out, and no delivery of it left (pending or kept): nothing will read it again.
        "where": and_(
            exists().where(FannedOutEvent.event_id == OutboxEvent.id),
            ~exists().where(WebhookDelivery.event_id == OutboxEvent.id),
        ),
        "children": [(FannedOutEvent.__table__, FannedOutEvent.event_id)],
    }


def _email(state: str) -> Callable[[datetime], dict[str, Any]]:
    def build(_cutoff: datetime) -> dict[str, Any]:
        from hotcrm.email.models import EmailOutbox

        return {
            "table": EmailOutbox.__table__,
            "key": EmailOutbox.id,
            "age": EmailOutbox.sent_at if state == "sent" else EmailOutbox.created_at,
            "where": EmailOutbox.status == state,
        }

    return build


def _rate_limits(_cutoff: datetime) -> dict[str, Any]:
    from hotcrm.api.models import RateLimitCounter

    return {
        "table": RateLimitCounter.__table__,
        "key": (RateLimitCounter.bucket, RateLimitCounter.window_start),
        "age": RateLimitCounter.window_start,
        "epoch": True,  # window_start is a Unix time
        "where": None,
    }


def _import_issues(cutoff: datetime) -> dict[str, Any]:
    from hotcrm.leads.models import DUPLICATE, FAILED, IMPORTED, ImportFile, ImportIssue

    # Issues of files whose import finished (the ledger row itself is kept: it stops a file
    # from being imported twice). A file still received or processing keeps its issues.
    finished = (
        select(ImportFile.id)
        .where(ImportFile.status.in_((IMPORTED, FAILED, DUPLICATE)))
        .where(ImportFile.finished_at < cutoff)
    )
    return {
        "table": ImportIssue.__table__,
        "key": ImportIssue.id,
        "age": ImportIssue.id,  # walked in id order; the age is the file's
        "keyset_only": True,
        "where": ImportIssue.file_id.in_(finished),
    }


def _sync_runs(_cutoff: datetime) -> dict[str, Any]:
    from hotcrm.salesforce.models import SyncRun

    return {
        "table": SyncRun.__table__,
        "key": SyncRun.id,
        "age": SyncRun.started_at,
        "where": SyncRun.finished_at.is_not(None),  # a run still going is kept
    }


RULES = (
    Rule(
        "webhook_inbox.done",
        "webhook_inbox_done_days",
        "processed inbound webhooks (done, ignored)",
        _inbox(("done", "ignored")),
    ),  # fmt: skip
    Rule("webhook_inbox.dead", "webhook_inbox_dead_days", "dead-lettered inbound webhooks", _inbox(("dead",))),
    Rule(
        "webhook_deliveries.succeeded",
        "webhook_deliveries_succeeded_days",
        "delivered webhooks and their attempts",
        _deliveries("succeeded"),
    ),  # fmt: skip
    Rule(
        "webhook_deliveries.dead",
        "webhook_deliveries_dead_days",
        "dead-lettered deliveries and their attempts",
        _deliveries("dead"),
    ),  # fmt: skip
    Rule("outbox_events", "outbox_events_days", "CRM events fanned out with no delivery left", _outbox_events),
    Rule("email_outbox.sent", "email_outbox_sent_days", "sent emails", _email("sent")),
    Rule("email_outbox.failed", "email_outbox_failed_days", "emails that failed for good", _email("failed")),
    Rule("api_rate_limits", "rate_limit_counters_days", "rate-limit counters of past windows", _rate_limits),
    Rule(
        "lead_import_issues",
        "lead_import_issues_days",
        "rejected/duplicate rows of finished lead imports",
        _import_issues,
    ),  # fmt: skip
    Rule("salesforce_sync_runs", "salesforce_sync_runs_days", "Salesforce sync history", _sync_runs),
)


@dataclass
class RuleReport:
    """What one rule removed."""

    removed: int = 0
    batches: int = 0
    seconds: float = 0.0
    cutoff: str | None = None
    finished: bool = True


def purge(
    database_url: str,
    config: RetentionConfig | None = None,
    *,
    now: datetime | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    on_batch: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Apply every retention rule (or those named in ``only``); returns what each removed.

    ``now`` is the reference time (the DAG passes its run's logical end). ``dry_run`` counts
    what would go. ``on_batch(rule, removed)`` is called after each committed batch, outside
    any transaction.
    """
    config = config or load_config()
    now = now or utcnow()
    started = time.monotonic()
    deadline = started + config.time_budget_seconds
    names = [r.name for r in RULES]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown retention rule(s) {unknown}; rules: {', '.join(names)}")
    reports: dict[str, RuleReport] = {}
    stopped = False
    for rule in RULES:
        if only and rule.name not in only:
            continue
        days = getattr(config, rule.setting)
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        report = reports[rule.name] = RuleReport(cutoff=cutoff.isoformat())
        rule_started = time.monotonic()
        specs = rule.build(cutoff)
        for spec in specs if isinstance(specs, list) else [specs]:
            if dry_run:
                report.removed += _count(database_url, spec, cutoff)
            else:
                _purge_rule(database_url, rule, spec, cutoff, config, report, deadline, on_batch)
            if not report.finished:
                break
        report.seconds = round(time.monotonic() - rule_started, 3)
        log.info("retention %s: %s %d %s older than %s days (%d batches, %.1f s)%s", rule.name,
                 "would remove" if dry_run else "removed", report.removed, rule.what, days, report.batches,
                 report.seconds, "" if report.finished else "; time budget spent, the rest goes next run")  # fmt: skip
        if not report.finished:
            stopped = True
            break
    summary = {
        "removed": {name: r.removed for name, r in reports.items()},
        "total_removed": sum(r.removed for r in reports.values()),
        "batches": sum(r.batches for r in reports.values()),
        "seconds": round(time.monotonic() - started, 3),
        # False when the time budget ran out: the next run goes on where this one stopped.
        "finished": not stopped,
        "dry_run": dry_run,
        "cutoffs": {name: r.cutoff for name, r in reports.items()},
    }
    return summary


def _cutoff_value(spec: dict[str, Any], cutoff: datetime) -> Any:
    return int(cutoff.timestamp()) if spec.get("epoch") else cutoff


def _condition(spec: dict[str, Any], cutoff: datetime) -> ColumnElement[bool]:
    parts = [] if spec.get("keyset_only") else [spec["age"] < _cutoff_value(spec, cutoff)]
    if spec["where"] is not None:
        parts.append(spec["where"])
    return and_(*parts)


def _count(database_url: str, spec: dict[str, Any], cutoff: datetime) -> int:
    with session_scope(database_url) as session:
        query = select(func.count()).select_from(spec["table"]).where(_condition(spec, cutoff))
        return int(session.execute(query).scalar_one())


def _purge_rule(
    database_url: str,
    rule: Rule,
    spec: dict[str, Any],
    cutoff: datetime,
    config: RetentionConfig,
    report: RuleReport,
    deadline: float,
    on_batch: Callable[[str, int], None] | None,
) -> None:
    keys = spec["key"] if isinstance(spec["key"], tuple) else (spec["key"],)
    age = spec["age"]
    rule_started = time.monotonic()
    last_age = None
    next_progress = time.monotonic() + config.progress_every_seconds
    while True:
        if time.monotonic() >= deadline:
            report.finished = False
            return
        condition = _condition(spec, cutoff)
        if last_age is not None:
            # Keyset: start where the previous batch ended (its rows are gone, ties included).
            condition = and_(condition, age > last_age if spec.get("keyset_only") else age >= last_age)
        query = select(age, *keys).where(condition).order_by(age).limit(config.batch_size)
        with session_scope(database_url) as session:
            rows = session.execute(query).all()
            if rows:
                last_age = rows[-1][0]
                if len(keys) == 1:
                    ids = [row[1] for row in rows]
                    for child, column in spec.get("children", ()):
                        session.execute(delete(child).where(column.in_(ids)))
                    session.execute(delete(spec["table"]).where(keys[0].in_(ids)))
                else:
                    session.execute(delete(spec["table"]).where(tuple_(*keys).in_([tuple(row[1:]) for row in rows])))
        if not rows:
            return
        report.removed += len(rows)
        report.batches += 1
        if on_batch is not None:
            on_batch(rule.name, len(rows))
        if time.monotonic() >= next_progress:
            log.info("retention %s: %d removed so far (%.0f rows/s)", rule.name, report.removed,
                     report.removed / max(1e-9, time.monotonic() - rule_started))  # fmt: skip
            next_progress = time.monotonic() + config.progress_every_seconds
        if len(rows) < config.batch_size:
            return
        if config.pause_seconds:
            time.sleep(config.pause_seconds)  # lets waiting writers (SQLite's one write lock) in
