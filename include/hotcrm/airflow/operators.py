"""HotCRM operators: each wraps one core function and returns that run's summary (its XCom).

Built like Airflow's own providers: a keyword-only ``__init__`` that only stores its
arguments, ``template_fields`` named like them, hooks built lazily from their connection ids in
``execute``. DAG files import this module at parse time, so pandas, Great Expectations,
simple-salesforce and the CRM's models are imported inside ``execute`` only.

Errors: what a retry cannot fix (:class:`hotcrm.errors.PermanentError`, a ``ValueError`` or
``TypeError`` from bad arguments or a bad configuration file, a file that is not there) fails
the task without retries (``AirflowFailException``); anything else, including
:class:`hotcrm.errors.TransientError`, is raised as it is, so the task's ``retries`` apply.

Values rendered from templates arrive as text unless the DAG sets
``render_template_as_native_obj=True``: list and boolean arguments accept their JSON or
Python literal text as well (``"[['Industry', '=', 'Retail']]"``, ``"false"``).
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from hotcrm.airflow.hooks import HotCrmBucketHook, HotCrmDatabaseHook
from hotcrm.airflow.salesforce import MAX_DEFERRALS, HotCrmSalesforceHook
from hotcrm.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

__all__ = [
    "HotCrmAccountExportOperator",
    "HotCrmDataQualityOperator",
    "HotCrmEmailOutboxOperator",
    "HotCrmLeadImportOperator",
    "HotCrmRetentionOperator",
    "HotCrmSalesforceSyncOperator",
    "HotCrmWebhookDeliveryOperator",
    "HotCrmWebhookInboxOperator",
    "PERMANENT_ERRORS",
]

# Errors a retry cannot fix. TransientError is checked first, so a subclass of both retries.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    PermanentError,
    ValueError,
    TypeError,
    LookupError,
    FileNotFoundError,
)


@contextmanager
def permanent_errors_fail(what: str) -> Iterator[None]:
    """Turn a permanent error into ``AirflowFailException`` (no retries), naming ``what`` failed."""
    try:
        yield
    except TransientError:
        raise
    except PERMANENT_ERRORS as exc:
        raise AirflowFailException(f"{what}: {exc} (not retried: fix the cause, then clear the task)") from exc


# --- templated values -------------------------------------------------------------------------


def _literal(value: Any) -> Any:
    """A rendered template's text as the value it spells (JSON or a Python literal), else as is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("", "None", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return value


def as_list(value: Any, name: str, example: str) -> list | None:
    """A list argument (or None); its rendered text is read back as a list."""
    value = _literal(value)
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    raise PermanentError(f"{name}={value!r}: expected a list, e.g. {example}")


def as_bool(value: Any, name: str) -> bool:
    """A boolean argument; ``"true"``/``"false"`` (any case), ``1``/``0``, ``yes``/``no`` as well."""
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    value = _literal(value)
    if value is None:
        return False
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise PermanentError(f"{name}={value!r}: expected true or false")


def as_number(value: Any, name: str, *, integer: bool = False, minimum: float = 0) -> Any:
    """A number argument (None or empty stays None)."""
    value = _literal(value)
    if value is None:
        return None
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{name}={value!r}: expected {'a whole number' if integer else 'a number'}") from None
    if isinstance(value, bool) or number < minimum or (integer and number != float(value)):
        raise PermanentError(f"{name}={value!r}: expected {'a whole number' if integer else 'a number'} >= {minimum}")
    return number


def as_text(value: Any) -> str | None:
    """A text argument; empty (or a rendered ``None``) is None."""
    value = _literal(value) if isinstance(value, str) and value.strip() in ("", "None", "null") else value
    return None if value in (None, "") else str(value)


# --- base -------------------------------------------------------------------------------------


class HotCrmBaseOperator(BaseOperator):
    """What every HotCRM operator shares: the ``hotcrm_db`` hook, built on first use, and the
    fail-vs-retry policy around :meth:`run`."""

    ui_color = "#fde8c8"

    def __init__(self, *, hotcrm_db_conn_id: str = HotCrmDatabaseHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hotcrm_db_conn_id = hotcrm_db_conn_id

    @cached_property
    def db_hook(self) -> HotCrmDatabaseHook:
        """The CRM database hook (from ``hotcrm_db_conn_id``)."""
        return HotCrmDatabaseHook(hotcrm_db_conn_id=self.hotcrm_db_conn_id)

    def execute(self, context: Any) -> Any:
        with permanent_errors_fail(f"{type(self).__name__} {self.task_id!r}"):
            return self.run(context)

    def run(self, context: Any) -> Any:
        """The work; its return value is the task's XCom."""
        raise NotImplementedError


class _BucketMixin:
    """The ``hotcrm_bucket`` hook, built on first use."""

    bucket_conn_id: str

    @cached_property
    def bucket_hook(self) -> HotCrmBucketHook:
        """The bucket hook (from ``bucket_conn_id``)."""
        return HotCrmBucketHook(bucket_conn_id=self.bucket_conn_id)


def _push_and_fail(context: Any, message: str, result: Any) -> None:
    """Fail without retries, with ``result`` pushed as the task's return value all the same."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        ti.xcom_push(key="return_value", value=result)
    raise AirflowFailException(message)


# --- lead import ------------------------------------------------------------------------------


class HotCrmLeadImportOperator(_BucketMixin, HotCrmBaseOperator):
    """Import lead files from ``imports/leads/incoming/`` of the bucket into the CRM.

    With ``file_name``, that one file: returns its outcome (counts, status, report path). Without
    it, every file waiting there: returns the totals by status. A file that fails as a whole
    (unreadable, failed its quality suite, imported before) goes to ``failed/`` with its report
    and fails the task without retries, its outcome (or the totals) still pushed; with
    ``fail_on_failed_file=False`` a named file's failure is only reported in its outcome.

    :param file_name: a file name in ``incoming/`` (templated); empty for every waiting file.
    """

    template_fields: Sequence[str] = ("file_name", "hotcrm_db_conn_id", "bucket_conn_id")
    ui_color = "#d9f2e6"

    def __init__(
        self,
        *,
        file_name: str | None = None,
        fail_on_failed_file: bool = True,
        bucket_conn_id: str = HotCrmBucketHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            # Imported here: the assets module imports the watcher's trigger, which DAG files
            # without these operators need not load at parse time.
            from hotcrm.airflow.assets import LEADS

            kwargs["outlets"] = [LEADS]
        super().__init__(**kwargs)
        self.file_name = file_name
        self.fail_on_failed_file = fail_on_failed_file
        self.bucket_conn_id = bucket_conn_id

    def run(self, context: Any) -> dict[str, Any]:
        from hotcrm.airflow.leads import import_incoming_file, list_incoming, summarize_outcomes

        file_name = as_text(self.file_name)
        if file_name and ("/" in file_name or file_name.startswith(".")):
            raise PermanentError(f"file_name {file_name!r}: give the name of a file in incoming/, not a path")
        root = self.bucket_hook.get_root()
        database_url = self.db_hook.get_database_url()
        if file_name:
            # A file an earlier try already moved is answered from the ledger, so no listing here.
            return import_incoming_file(file_name, database_url, root, fail_task=self.fail_on_failed_file)
        names = list_incoming(None, root)
        log.info("%d file(s) to import: %s", len(names), names)
        outcomes = [import_incoming_file(name, database_url, root, fail_task=False) for name in names]
        # The totals; a failed file fails the task after pushing them (the files are in failed/).
        return summarize_outcomes(outcomes)


# --- account export ---------------------------------------------------------------------------


class HotCrmAccountExportOperator(_BucketMixin, HotCrmBaseOperator):
    """Export Accounts to ``exports/accounts/`` of the bucket: stream the file, check it with the
    ``account_export`` Great Expectations suite, publish it with a manifest. Returns the manifest
    (file, url, record count, sha256, fields, filters, quality result).

    Bad fields, filters or format fail without retries before the database is touched; a failed
    check fails without retries and leaves the file unpublished in ``exports/accounts/_tmp/``.

    :param fields: Account fields by API name (``Id`` always comes first); default: the standard set.
    :param filters: ``[[field, operator, value], ...]``, e.g. ``[["Industry", "=", "Retail"]]``.
    :param format: ``json``, ``ndjson`` or ``csv``.
    :param changed_since: only Accounts modified after this ISO 8601 time.
    """

    template_fields: Sequence[str] = (
        "fields",
        "filters",
        "format",
        "changed_since",
        "hotcrm_db_conn_id",
        "bucket_conn_id",
    )
    ui_color = "#e0ecff"

    def __init__(
        self,
        *,
        fields: Sequence[str] | str | None = None,
        filters: Sequence[Sequence[Any]] | str | None = None,
        format: str | None = None,  # noqa: A002 - the export's own word for it
        changed_since: str | None = None,
        bucket_conn_id: str = HotCrmBucketHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            from hotcrm.airflow.assets import ACCOUNT_EXPORT  # (see HotCrmLeadImportOperator)

            kwargs["outlets"] = [ACCOUNT_EXPORT]
        super().__init__(**kwargs)
        self.fields = fields
        self.filters = filters
        self.format = format
        self.changed_since = changed_since
        self.bucket_conn_id = bucket_conn_id

    def run(self, context: Any) -> dict[str, Any]:
        from hotcrm.airflow.assets import ACCOUNT_EXPORT
        from hotcrm.airflow.exports import build_export_spec, export_accounts

        spec = build_export_spec(
            as_list(self.fields, "fields", '["Name", "Industry"]'),
            as_list(self.filters, "filters", '[["Industry", "=", "Retail"]]'),
            as_text(self.format),
            as_text(self.changed_since),
        )
        outlet = ACCOUNT_EXPORT if ACCOUNT_EXPORT in (self.outlets or []) else None
        return export_accounts(
            context,
            spec,
            database_url=self.db_hook.get_database_url(),
            root=self.bucket_hook.get_root(),
            outlet=outlet,
        )


# --- Salesforce sync --------------------------------------------------------------------------


class HotCrmSalesforceSyncOperator(HotCrmBaseOperator):
    """Upsert changed HotCRM Accounts and Contacts into Salesforce; returns the run's summary
    (``outcome`` ``success``, ``partial`` or ``dry_run``, counts per object).

    Bulk API 2.0 jobs still running after ``wait_before_defer`` seconds are not abandoned: with
    ``deferrable`` (the default) the task defers to :class:`~hotcrm.airflow.triggers.SalesforceBulkJobTrigger`,
    which polls them from the triggerer without holding a worker slot, then resumes, collects
    their results and sends what waited for them (e.g. the Contacts of those Accounts). Without
    it, or if the jobs outlive the trigger's ``defer_timeout``, the next run collects them.

    :param objects: ``["Account", "Contact"]`` or a part of it (templated).
    :param dry_run: select and map, send nothing (templated).
    :param full: ignore change detection, send every record (templated).
    :param limit: records sent per object, at most (templated).
    :param transport: ``auto``, ``collections`` or ``bulk`` (templated).
    """

    template_fields: Sequence[str] = (
        "objects",
        "dry_run",
        "full",
        "limit",
        "transport",
        "salesforce_conn_id",
        "hotcrm_db_conn_id",
    )
    ui_color = "#00a1e0"

    def __init__(
        self,
        *,
        objects: Sequence[str] | str = ("Account", "Contact"),
        dry_run: bool | str = False,
        full: bool | str = False,
        limit: int | str | None = None,
        transport: str = "auto",
        salesforce_conn_id: str = HotCrmSalesforceHook.default_conn_name,
        deferrable: bool = True,
        wait_before_defer: float | None = None,
        poll_interval: float | None = None,
        defer_timeout: float = 6 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.objects = objects
        self.dry_run = dry_run
        self.full = full
        self.limit = limit
        self.transport = transport
        self.salesforce_conn_id = salesforce_conn_id
        self.deferrable = deferrable
        self.wait_before_defer = wait_before_defer
        self.poll_interval = poll_interval
        self.defer_timeout = defer_timeout

    def _options(self) -> dict[str, Any]:
        return {
            "objects": as_list(self.objects, "objects", '["Account", "Contact"]'),
            "dry_run": as_bool(self.dry_run, "dry_run"),
            "full": as_bool(self.full, "full"),
            "limit": as_number(self.limit, "limit", integer=True),
            "transport": as_text(self.transport) or "auto",
        }

    def _wait(self) -> float | None:
        if self.wait_before_defer is not None:
            return self.wait_before_defer
        if self.deferrable:  # a short wait in the worker, the rest in the triggerer
            from hotcrm.salesforce.settings import BulkSettings

            return BulkSettings.from_env().wait_before_defer_seconds
        return None

    def _sync(self, context: Any) -> dict[str, Any]:
        from hotcrm.airflow.salesforce import run_salesforce_sync

        return run_salesforce_sync(
            self._options(),
            context["run_id"],
            bulk_wait_seconds=self._wait(),
            salesforce_conn_id=self.salesforce_conn_id,
            hotcrm_db_conn_id=self.hotcrm_db_conn_id,
        )

    def run(self, context: Any) -> dict[str, Any]:
        return self._defer_or_return(self._sync(context), deferrals=0)

    def _defer_or_return(self, summary: dict[str, Any], deferrals: int) -> dict[str, Any]:
        pending = [job for s in summary["objects"].values() for job in s.get("pending_jobs", [])]
        # One wait per object at most (Accounts, then their Contacts); then the next run collects.
        if pending and self.deferrable and deferrals < MAX_DEFERRALS:
            from hotcrm.airflow.triggers import SalesforceBulkJobTrigger

            self.log.info("Waiting in the triggerer for bulk job(s) %s", ", ".join(pending))
            from hotcrm.salesforce.settings import BulkSettings

            poll = self.poll_interval or BulkSettings.from_env().poll_seconds
            self.defer(
                trigger=SalesforceBulkJobTrigger(
                    job_ids=pending,
                    salesforce_conn_id=self.salesforce_conn_id,
                    poll_interval=poll,
                    timeout=self.defer_timeout,
                    carry={"first": summary, "deferrals": deferrals + 1},
                ),
                method_name="execute_complete",
                kwargs={"first": summary, "deferrals": deferrals + 1},
            )
        return summary

    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any],
        first: dict[str, Any] | None = None,
        deferrals: int | None = None,
    ) -> dict[str, Any]:
        """Back from the trigger: collect the jobs' results, send what waited; one summary for both.

        ``first`` and ``deferrals`` come from the deferral's kwargs, or from the event's
        ``carry`` where the runner dropped those kwargs (``dag.test()`` does)."""
        from hotcrm.salesforce.sync import merge_summaries

        carry = event.get("carry") or {}
        if first is None:
            first = carry.get("first")
        if first is None:
            raise RuntimeError("execute_complete: the first part's summary was lost (no 'first' kwarg or carry)")
        deferrals = deferrals if deferrals is not None else int(carry.get("deferrals", 1))

        self.log.info(
            "Bulk job wait ended (%s): %s %s", event.get("status"), event.get("states"), event.get("message", "")
        )
        with permanent_errors_fail(f"{type(self).__name__} {self.task_id!r}"):
            second = self._sync(context)
        return self._defer_or_return(merge_summaries(first, second), deferrals)


# --- webhooks ---------------------------------------------------------------------------------


class HotCrmWebhookInboxOperator(HotCrmBaseOperator):
    """Apply verified inbound webhooks from the inbox to the CRM, exactly once: claims due rows in
    batches until none is due or ``max_seconds`` is spent. Returns this worker's counts
    (processed, ignored, retried, dead_lettered, stale) and its dead letters.

    Several instances (``.partial(...).expand(worker=[0, 1])``) claim side by side safely.
    """

    template_fields: Sequence[str] = (
        "worker",
        "batch_size",
        "max_attempts",
        "backoff_seconds",
        "max_seconds",
        "hotcrm_db_conn_id",
    )
    ui_color = "#f3e5f5"

    def __init__(
        self,
        *,
        worker: int | str = 0,
        batch_size: int | str = 200,
        max_attempts: int | str = 5,
        backoff_seconds: float | str = 30,
        max_seconds: float | str = 50,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.worker = worker
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_seconds = max_seconds

    def run(self, context: Any) -> dict[str, Any]:
        from hotcrm.airflow.webhooks import AirflowSourceRegistry
        from hotcrm.webhooks.processing import default_worker_name, process_inbox

        batch_size = as_number(self.batch_size, "batch_size", integer=True, minimum=1)
        max_attempts = as_number(self.max_attempts, "max_attempts", integer=True, minimum=1)
        backoff = as_number(self.backoff_seconds, "backoff_seconds")
        max_seconds = as_number(self.max_seconds, "max_seconds", minimum=0.001)
        result = process_inbox(
            self.db_hook.get_database_url(),
            worker=f"{default_worker_name()}#{self.worker}",
            batch_size=batch_size,
            max_attempts=max_attempts,
            backoff_seconds=backoff,
            max_seconds=max_seconds,
            registry=AirflowSourceRegistry(),
        )
        return result.as_dict()


class HotCrmWebhookDeliveryOperator(HotCrmBaseOperator):
    """Deliver CRM events from the outbox to subscribers, signed (Standard Webhooks), concurrent,
    retried with backoff and dead-lettered. Claims due deliveries until none is due or the time
    budget is spent; returns the counts (claimed, succeeded, retrying, dead, gone).

    :param fan_out: first turn new outbox events into deliveries (leave it off on parallel
        workers that a fan-out task precedes).
    :param batch_size: deliveries per claim; :param concurrency: requests in flight;
        :param max_seconds: time budget (each: empty or 0 for ``include/config/delivery.json``'s).
    """

    template_fields: Sequence[str] = (
        "worker",
        "fan_out",
        "batch_size",
        "concurrency",
        "max_seconds",
        "hotcrm_db_conn_id",
    )
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        worker: int | str = 0,
        fan_out: bool | str = True,
        batch_size: int | str | None = None,
        concurrency: int | str | None = None,
        max_seconds: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.worker = worker
        self.fan_out = fan_out
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_seconds = max_seconds

    def run(self, context: Any) -> dict[str, Any]:
        from hotcrm.airflow.delivery import deliver, fan_out_events

        db_url = self.db_hook.get_database_url()
        options = {
            "batch_size": as_number(self.batch_size, "batch_size", integer=True) or None,
            "concurrency": as_number(self.concurrency, "concurrency", integer=True) or None,
            "max_seconds": as_number(self.max_seconds, "max_seconds") or None,
        }
        fanned = fan_out_events(db_url) if as_bool(self.fan_out, "fan_out") else {}
        return {**deliver(f"{context['run_id']}#{self.worker}", db_url=db_url, **options), **fanned}


# --- email ------------------------------------------------------------------------------------


class HotCrmEmailOutboxOperator(HotCrmBaseOperator):
    """Send the email outbox over SMTP, exactly once: first (``queue_quotes``) queue an email for
    each quote ready to send, then send every due message (quotes, and notices other pipelines
    queued) through ``smtp_conn_id``. Returns the counts: ready, queued, sent, retrying, failed.
    """

    template_fields: Sequence[str] = ("queue_quotes", "smtp_conn_id", "hotcrm_db_conn_id")
    ui_color = "#e8f5e9"

    def __init__(self, *, queue_quotes: bool | str = True, smtp_conn_id: str = "smtp_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queue_quotes = queue_quotes
        self.smtp_conn_id = smtp_conn_id

    def run(self, context: Any) -> dict[str, Any]:
        from hotcrm.airflow.email import queue_quote_emails, send_queued_emails

        db_url = self.db_hook.get_database_url()
        queued = queue_quote_emails(db_url) if as_bool(self.queue_quotes, "queue_quotes") else {}
        return {**queued, **send_queued_emails(self.smtp_conn_id, db_url=db_url)}


# --- maintenance ------------------------------------------------------------------------------


class HotCrmRetentionOperator(HotCrmBaseOperator):
    """Delete finished bookkeeping rows past their age in ``include/config/retention.json``, as of
    the run's data interval end, in small batches. Returns what each rule removed.

    :param dry_run: only count (templated); :param max_seconds: time budget (empty: the config's).
    """

    template_fields: Sequence[str] = ("dry_run", "max_seconds", "hotcrm_db_conn_id")

    def __init__(self, *, dry_run: bool | str = False, max_seconds: float | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dry_run = dry_run
        self.max_seconds = max_seconds

    def run(self, context: Any) -> dict[str, Any]:
        from hotcrm.airflow.maintenance import purge_expired

        return purge_expired(
            context.get("data_interval_end"),
            dry_run=as_bool(self.dry_run, "dry_run"),
            max_seconds=as_number(self.max_seconds, "max_seconds") or None,
            db_url=self.db_hook.get_database_url(),
        )


# --- data quality -----------------------------------------------------------------------------

POLICIES = ("fail", "warn")
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FILE_READERS = (".csv", ".json", ".ndjson", ".jsonl", ".parquet")


class HotCrmDataQualityOperator(_BucketMixin, HotCrmBaseOperator):
    """Run a Great Expectations suite from ``include/config/quality/<suite>.json`` on one of: a file
    in the bucket (``file_path``: CSV, JSON, NDJSON or Parquet), the rows of a SQL query on the
    CRM database (``sql``), or a pandas DataFrame (``dataframe``: a callable returning one, so it
    is built when the task runs, not when the DAG is parsed). Returns the result summary
    (suite, success, rows, each expectation's outcome, statistics).

    ``policy="fail"`` fails the task without retries when an expectation fails (the data would
    fail again; the summary is still pushed); ``policy="warn"`` logs the failures and succeeds.

    :param suite: the suite's name (templated).
    :param file_path: a path under the bucket root, or a URL inside it (templated).
    :param sql: a query on ``hotcrm_db`` (templated).
    :param suite_params: values for the suite's ``$name`` placeholders (templated).
    """

    template_fields: Sequence[str] = (
        "suite",
        "file_path",
        "sql",
        "policy",
        "suite_params",
        "hotcrm_db_conn_id",
        "bucket_conn_id",
    )
    template_fields_renderers = {"sql": "sql", "suite_params": "json"}
    ui_color = "#fff9c4"

    def __init__(
        self,
        *,
        suite: str,
        file_path: str | None = None,
        sql: str | None = None,
        dataframe: Callable[[], Any] | Any | None = None,
        policy: str = "fail",
        suite_params: dict[str, Any] | None = None,
        bucket_conn_id: str = HotCrmBucketHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        sources = (("file_path", file_path), ("sql", sql), ("dataframe", dataframe))
        given = [name for name, value in sources if value is not None and not (isinstance(value, str) and not value)]
        if len(given) != 1:
            # A DAG author's mistake: fail the parse, where they see it at once.
            raise ValueError(
                f"{type(self).__name__} {kwargs.get('task_id')!r}: give exactly one of file_path, sql or dataframe "
                f"(got {', '.join(given) or 'none'})"
            )
        self.suite = suite
        self.file_path = file_path
        self.sql = sql
        self.dataframe = dataframe
        self.policy = policy
        self.suite_params = suite_params
        self.bucket_conn_id = bucket_conn_id

    def run(self, context: Any) -> dict[str, Any]:
        from hotcrm.quality import validate_dataframe

        policy = str(self.policy).strip().lower()
        if policy not in POLICIES:
            raise PermanentError(f"policy={self.policy!r}: use one of {', '.join(POLICIES)}")
        suite = self._suite()
        df, source = self._data()
        self.log.info("Running suite %r on %s (%d rows)", suite["name"], source, len(df))
        result = validate_dataframe(df, suite["name"], suite["expectations"])
        summary = {
            **result.to_dict(),
            "source": source,
            "rows": len(df),
            "policy": policy,
            "summary": result.summary(),
        }
        if result.success:
            self.log.info("%s", result.summary())
        elif policy == "warn":
            self.log.warning("%s (policy 'warn': the task succeeds)", result.summary())
        else:
            _push_and_fail(context, f"{source}: {result.summary()}", summary)
        return summary

    def _suite(self) -> dict[str, Any]:
        from hotcrm.quality import QUALITY_CONFIG_DIR, load_suite

        name = str(self.suite).strip().removesuffix(".json")
        known = sorted(p.stem for p in QUALITY_CONFIG_DIR.glob("*.json"))
        if not SUITE_NAME.match(name) or name not in known:
            raise PermanentError(f"suite {self.suite!r} is not in {QUALITY_CONFIG_DIR}; suites there: {known}")
        suite = load_suite(name)
        suite.setdefault("name", name)
        params = _literal(self.suite_params) or {}
        if not isinstance(params, dict):
            raise PermanentError(f"suite_params={self.suite_params!r}: expected a mapping of placeholder to value")
        params = {**suite.get("params", {}), **params}  # the suite file's defaults, then the operator's

        def fill(value: Any, where: str) -> Any:
            if isinstance(value, str) and value.startswith("$"):
                if value[1:] not in params:
                    raise PermanentError(
                        f"suite {name!r}, {where}: placeholder {value!r} has no value; pass it in suite_params"
                    )
                return params[value[1:]]
            return value

        suite["expectations"] = [
            {
                **spec,
                "kwargs": {
                    k: fill(v, f"expectation #{i} {spec.get('type')}.{k}") for k, v in spec.get("kwargs", {}).items()
                },
            }
            for i, spec in enumerate(suite["expectations"], 1)
        ]
        return suite

    def _data(self) -> tuple[Any, str]:
        import pandas as pd

        if self.dataframe is not None:
            df = self.dataframe() if callable(self.dataframe) else self.dataframe
            if not isinstance(df, pd.DataFrame):
                raise PermanentError(
                    f"dataframe: expected a pandas DataFrame (or a callable returning one), got {type(df).__name__}"
                )
            return df, "dataframe"
        if as_text(self.sql):
            from sqlalchemy import text

            from hotcrm.crm.db import get_engine

            with get_engine(self.db_hook.get_database_url()).connect() as connection:
                return pd.read_sql_query(text(self.sql), connection), f"query on {self.hotcrm_db_conn_id}"
        path = self._bucket_path(as_text(self.file_path) or "")
        return _read_table(path), _url(path)

    def _bucket_path(self, file_path: str):
        root = self.bucket_hook.get_root()
        root_url = _url(root)
        if "://" in file_path:
            if not file_path.startswith(root_url + "/"):
                raise PermanentError(f"file_path {file_path!r} is not in the bucket {root_url}")
            file_path = file_path[len(root_url) + 1 :]
        parts = [p for p in file_path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise PermanentError(f"file_path {file_path!r}: give a file's path under the bucket root, without '..'")
        path = root.joinpath(*parts)
        if not path.is_file():
            raise PermanentError(f"file_path {file_path!r}: no such file in the bucket {root_url}")
        return path


def _url(path: Any) -> str:
    """A bucket path as the URL a person (and a manifest) uses: no connection id in it."""
    return path.fs.unstrip_protocol(path.path).rstrip("/")


def _read_table(path: Any):
    """A file of the bucket as a DataFrame, read by its suffix (an Account export's JSON document
    is read from its ``data`` list)."""
    import pandas as pd

    suffix = "." + path.name.rsplit(".", 1)[-1].lower() if "." in path.name else ""
    if suffix not in FILE_READERS:
        raise PermanentError(f"{path}: cannot read {suffix or 'a file without suffix'}; use {', '.join(FILE_READERS)}")
    with path.open("rb") as handle:
        if suffix == ".csv":
            return pd.read_csv(handle, dtype=str, keep_default_na=False, na_values=[""])
        if suffix == ".parquet":
            return pd.read_parquet(handle)
        if suffix in (".ndjson", ".jsonl"):
            return pd.read_json(handle, lines=True, dtype=False)
        document = json.load(handle)
    records = document.get("data") if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise PermanentError(f"{path}: expected a JSON list of records (or an object with a 'data' list)")
    return pd.DataFrame.from_records(records)
