"""A Salesforce REST client with what simple-salesforce lacks: retries with exponential
backoff and jitter on lock errors, 5xx, concurrent-request limits and connection errors (but
not on the org's daily limit, which no retry within a run clears); a re-login on expired
sessions; an API budget read from ``Sforce-Limit-Info``; sObject Collections upserts with
per-record results that say when "created or updated" cannot be known; Bulk API 2.0 ingest
jobs driven step by step, with CSV written to the Bulk API 2.0 CSV rules and split under the
upload limit. Where simple-salesforce does the job it is used (SOQL paging through
``query_all_iter``, ``Sforce-Limit-Info`` through ``parse_api_usage``), on a ``Salesforce``
whose HTTP calls all go through :meth:`SalesforceClient.request`.

It takes plain settings (instance URL, access token, a login callable) and imports no
Airflow; :mod:`hotcrm.airflow.salesforce` builds it from the ``salesforce_default``
connection. The access token is never put into a log line or an error message.
"""

from __future__ import annotations

import codecs
import csv
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from hotcrm.retry import exponential_delay

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "60.0"
COLLECTION_SIZE = 200  # sObject Collections take at most 200 records a call
RETRYABLE_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"}
RETRYABLE_RECORD_CODES = {"UNABLE_TO_LOCK_ROW"}
# REQUEST_LIMIT_EXCEEDED means two things: "TotalRequests Limit exceeded" (the org's rolling
# 24-hour limit: stop at once) and "ConcurrentRequests ... Limit exceeded" /
# "ConcurrentPerOrgLongTxn" (too many calls in flight: transient, back off and retry).
_CONCURRENT_LIMIT = re.compile(r"concurrent", re.IGNORECASE)
# Bulk API 2.0: an upload may hold 150 MB once base64-encoded; the docs advise at most 100 MB
# of CSV ("Upload Job Data", "Prepare CSV Files").
BULK_UPLOAD_HARD_LIMIT = 150_000_000
DEFAULT_BULK_MAX_BYTES = 100_000_000
BULK_NULL = "#N/A"
JOB_ENDED = ("JobComplete", "Failed", "Aborted")

# login() returns (access_token, instance_url)
LoginFn = Callable[[], tuple[str, str]]


class SalesforceApiError(Exception):
    """A call Salesforce refused (after any retries): HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str, *, path: str = "") -> None:
        super().__init__(f"Salesforce {status} {code} on {path}: {message}")
        self.status, self.code, self.message, self.path = status, code, message, path


class BudgetExhausted(Exception):
    """The run reached its share of the org's daily API limit; it must stop sending."""

    def __init__(self, used: int, limit: int, share: float) -> None:
        super().__init__(
            f"API budget reached: {used}/{limit} daily API requests used, the run may use up to "
            f"{share:.0%} of the limit; what is left is sent by the next run"
        )
        self.used, self.limit, self.share = used, limit, share


@dataclass
class RecordResult:
    """Salesforce's answer for one record: its Id and whether it was created, or an error."""

    success: bool
    salesforce_id: str | None = None
    created: bool | None = False  # None: created or updated, Salesforce's answer cannot tell
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class RetryPolicy:
    """How often and how long to wait before trying again."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter (attempt 1 → up to ``base_delay``)."""
        return exponential_delay(attempt, self.base_delay, self.max_delay, jitter=True, rng=rng)


class SalesforceClient:
    """One org's REST API, for one run. Counts every call it makes in :attr:`api_calls`."""

    def __init__(
        self,
        instance_url: str,
        access_token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        verify: bool | str = True,
        login: LoginFn | None = None,
        budget_share: float = 0.9,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 120.0,
        poll_interval: float = 0.5,
        seed: int | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.instance_url = instance_url.rstrip("/")
        self._token = access_token
        self.api_version = api_version
        # verify goes on every request: a session-level setting loses to REQUESTS_CA_BUNDLE.
        self.verify = verify
        self._login = login
        self.budget_share = budget_share
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._rng = random.Random(seed)
        self.session = session or requests.Session()
        self.last_call_ambiguous = False
        self.api_calls = 0
        self.retries = 0
        self.relogins = 0
        self.usage: tuple[int, int] | None = None  # (used, daily limit) from the last answer
        self._sf = None

    def __repr__(self) -> str:  # never show the token
        return f"SalesforceClient({self.instance_url!r}, api_version={self.api_version!r})"

    # --- plumbing -----------------------------------------------------------------------------

    @property
    def data_url(self) -> str:
        """``{instance}/services/data/vXX.X``."""
        return f"{self.instance_url}/services/data/v{self.api_version}"

    def check_budget(self) -> None:
        """Raise :class:`BudgetExhausted` when usage has reached the run's share of the daily limit."""
        if self.usage is None:
            return
        used, limit = self.usage
        if limit and used >= self.budget_share * limit:
            raise BudgetExhausted(used, limit, self.budget_share)

    def _read_usage(self, response: requests.Response) -> None:
        # simple-salesforce parses the header (api-usage=18/5000[;per-app-api-usage=...]).
        from simple_salesforce import Salesforce

        usage = Salesforce.parse_api_usage(response.headers.get("Sforce-Limit-Info", "")).get("api-usage")
        if usage is not None:
            self.usage = (usage.used, usage.total)

    @staticmethod
    def _error(response: requests.Response) -> tuple[str, str]:
        try:
            body = response.json()
        except ValueError:
            return f"HTTP_{response.status_code}", (response.text or response.reason or "")[:300]
        if isinstance(body, list) and body and isinstance(body[0], dict):
            return str(body[0].get("errorCode", f"HTTP_{response.status_code}")), str(body[0].get("message", ""))
        if isinstance(body, dict):
            return str(body.get("errorCode") or body.get("error") or f"HTTP_{response.status_code}"), str(
                body.get("message") or body.get("error_description") or ""
            )
        return f"HTTP_{response.status_code}", str(body)[:300]

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        budgeted: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        """One API call with retries, re-login and the budget check; returns a 2xx/3xx response.

        :attr:`last_call_ambiguous` tells whether an earlier attempt of this call may have been
        applied (a dropped connection, a timeout or a 5xx before the answer that counted)."""
        # A path under /services/ is relative to the instance; others to /services/data/vXX.X.
        short = path if path.startswith("/services/") else f"/services/data/v{self.api_version}{path}"
        attempt = 0
        relogged = False
        self.last_call_ambiguous = False
        while True:
            if budgeted:
                self.check_budget()
            attempt += 1
            url = self.instance_url + short  # recomputed: a re-login may move the instance
            all_headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
            all_headers.update(headers or {})
            self.api_calls += 1
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json,
                    data=data,
                    params=params,
                    headers=all_headers,
                    verify=self.verify,
                    timeout=self.timeout,
                    stream=stream,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.last_call_ambiguous = True
                if attempt >= self.retry.max_attempts:
                    raise SalesforceApiError(0, "CONNECTION_ERROR", type(exc).__name__, path=short) from None
                self._backoff(attempt, f"{method} {short}: {type(exc).__name__}")
                continue
            self._read_usage(response)
            if response.status_code < 400:
                return response
            code, message = self._error(response)
            if response.status_code == 401 and code == "INVALID_SESSION_ID" and self._login and not relogged:
                log.info("Salesforce session expired; logging in again")
                self._token, instance_url = self._login()
                self.instance_url = instance_url.rstrip("/")
                self.relogins += 1
                relogged = True
                continue
            if response.status_code >= 500:
                self.last_call_ambiguous = True
            retryable = (
                response.status_code >= 500
                or code in RETRYABLE_CODES
                or (code == "REQUEST_LIMIT_EXCEEDED" and bool(_CONCURRENT_LIMIT.search(message)))
            )
            if retryable and attempt < self.retry.max_attempts:
                retry_after = response.headers.get("Retry-After")
                self._backoff(attempt, f"{method} {short}: {response.status_code} {code}", retry_after)
                continue
            raise SalesforceApiError(response.status_code, code, message, path=short)

    def _backoff(self, attempt: int, why: str, retry_after: str | None = None) -> None:
        delay = self.retry.delay(attempt, self._rng)
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self.retry.max_delay))
        self.retries += 1
        log.warning("%s; retry %d in %.2fs", why, attempt, delay)
        self._sleep(delay)

    # --- reads ----------------------------------------------------------------------------------

    def limits(self) -> dict[str, Any]:
        """``GET /limits`` (also refreshes :attr:`usage` from ``DailyApiRequests``)."""
        body = self.request("GET", "/limits", budgeted=False).json()
        daily = body.get("DailyApiRequests") or {}
        if "Max" in daily and "Remaining" in daily:
            self.usage = (int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))
        return body

    @property
    def sf(self):
        """A simple-salesforce ``Salesforce`` whose every HTTP call goes through :meth:`request`
        (so through its retries, re-login, budget and call count): for what the library does
        itself, such as SOQL paging."""
        if self._sf is None:
            from simple_salesforce import Salesforce

            self._sf = Salesforce(
                session_id="via-SalesforceClient",  # the real token is put on by request()
                instance_url=self.instance_url,
                version=self.api_version,
                session=_ThroughClient(self),
            )
        return self._sf

    def query_iter(self, soql: str) -> Iterator[dict[str, Any]]:
        """The records a SOQL query returns, page by page (simple-salesforce's
        ``query_all_iter`` follows ``nextRecordsUrl``)."""
        for record in self.sf.query_all_iter(soql):
            yield dict(record)

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record a SOQL query returns."""
        return list(self.query_iter(soql))

    # --- sObject Collections ----------------------------------------------------------------------

    def upsert_collection(
        self, sobject: str, external_id_field: str, records: list[dict[str, Any]]
    ) -> list[RecordResult]:
        """Upsert up to 200 records by external id (``allOrNone=false``); one result per record.

        Records that fail with a transient per-record error (``UNABLE_TO_LOCK_ROW``) are sent
        again, alone, with backoff; other failures are returned as they are.
        """
        if len(records) > COLLECTION_SIZE:
            raise ValueError(f"at most {COLLECTION_SIZE} records per collection call, got {len(records)}")
        results: list[RecordResult | None] = [None] * len(records)
        pending = list(range(len(records)))
        attempt = 0
        while pending:
            attempt += 1
            body = {
                "allOrNone": False,
                "records": [{"attributes": {"type": sobject}, **records[i]} for i in pending],
            }
            answer = self.request("PATCH", f"/composite/sobjects/{sobject}/{external_id_field}", json=body).json()
            ambiguous = self.last_call_ambiguous
            retry_next = []
            for index, item in zip(pending, answer, strict=True):
                result = _collection_result(item, ambiguous)
                if (
                    not result.success
                    and result.error_code in RETRYABLE_RECORD_CODES
                    and attempt < self.retry.max_attempts
                ):
                    retry_next.append(index)
                results[index] = result
            pending = retry_next
            if pending:
                self._backoff(attempt, f"{len(pending)} {sobject} record(s) locked")
        return [r for r in results if r is not None]

    # --- Bulk API 2.0 -----------------------------------------------------------------------------
    # The sync drives a job's life (create, upload, close, wait, results) step by step so it can
    # keep the job id in its state and collect the results in a later run.

    def create_ingest_job(self, sobject: str, external_id_field: str) -> str:
        """``POST /jobs/ingest``: an open upsert job for CSV with LF line endings and commas; its id."""
        job = self.request(
            "POST",
            "/jobs/ingest",
            json={
                "object": sobject,
                "externalIdFieldName": external_id_field,
                "contentType": "CSV",
                "operation": "upsert",
                "lineEnding": "LF",
                "columnDelimiter": "COMMA",
            },
        ).json()
        return str(job["id"])

    def upload_job_data(self, job_id: str, data: bytes) -> None:
        """``PUT /jobs/ingest/{id}/batches``: the job's CSV (at most :data:`BULK_UPLOAD_HARD_LIMIT`)."""
        if len(data) > BULK_UPLOAD_HARD_LIMIT:
            raise ValueError(f"a Bulk API 2.0 upload takes at most {BULK_UPLOAD_HARD_LIMIT} bytes, got {len(data)}")
        self.request("PUT", f"/jobs/ingest/{job_id}/batches", data=data, headers={"Content-Type": "text/csv"})

    def close_job(self, job_id: str) -> None:
        """``PATCH state=UploadComplete``: Salesforce starts processing the job."""
        self.request("PATCH", f"/jobs/ingest/{job_id}", json={"state": "UploadComplete"})

    def abort_job(self, job_id: str) -> None:
        """``PATCH state=Aborted`` (only for a job whose records will be sent again)."""
        self.request("PATCH", f"/jobs/ingest/{job_id}", json={"state": "Aborted"})

    def job_info(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/ingest/{id}``: state, counts, errorMessage."""
        return self.request("GET", f"/jobs/ingest/{job_id}").json()

    def wait_for_jobs(self, job_ids: Sequence[str], wait_seconds: float) -> dict[str, dict[str, Any]]:
        """Poll the jobs until each has ended (``JobComplete``, ``Failed``, ``Aborted``) or
        ``wait_seconds`` have passed; returns each job's last info (a running job stays running)."""
        infos: dict[str, dict[str, Any]] = {}
        running = list(job_ids)
        delay = self.poll_interval
        deadline = time.monotonic() + wait_seconds
        while running:
            for job_id in list(running):
                infos[job_id] = info = self.job_info(job_id)
                if info.get("state") in JOB_ENDED:
                    running.remove(job_id)
                    if info["state"] != "JobComplete":
                        log.warning("bulk job %s ended %s: %s", job_id, info["state"], info.get("errorMessage"))
            if not running or time.monotonic() + delay > deadline:
                break
            self._sleep(delay)
            delay = min(delay * 2, 30.0)
        return infos

    def job_results(self, job_id: str, kind: str) -> Iterator[dict[str, str]]:
        """The rows of ``successfulResults``, ``failedResults`` or ``unprocessedrecords``, read
        as a stream (a result file can be as big as the upload)."""
        if kind not in ("successfulResults", "failedResults", "unprocessedrecords"):
            raise ValueError(f"unknown result kind {kind!r}")
        response = self.request("GET", f"/jobs/ingest/{job_id}/{kind}", headers={"Accept": "text/csv"}, stream=True)
        try:
            yield from csv.DictReader(_lines(response))
        finally:
            response.close()


class _ThroughClient(requests.Session):
    """The ``requests`` session handed to simple-salesforce: each of its calls becomes one
    :meth:`SalesforceClient.request` on the instance the client is on now (after a re-login it
    may have moved), with the client's token, not the one simple-salesforce was built with."""

    def __init__(self, client: SalesforceClient) -> None:
        super().__init__()
        self._client = client

    def request(self, method, url, params=None, data=None, headers=None, json=None, **_ignored):  # noqa: D102
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        keep = {k: v for k, v in (headers or {}).items() if k.lower() not in ("authorization", "x-prettyprint")}
        return self._client.request(method, path, params=params, data=data, json=json, headers=keep)


def _lines(response: requests.Response) -> Iterator[str]:
    """A streamed body as text lines split at LF only (a quoted value may hold other breaks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    for chunk in response.iter_content(1 << 20):
        rest += decoder.decode(chunk)
        *lines, rest = rest.split("\n")
        for line in lines:
            yield line + "\n"
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


# --- Bulk API 2.0 CSV -----------------------------------------------------------------------------
# Written from "Valid CSV Record Rows" and "Prepare CSV Files" (Bulk API 2.0 Developer Guide):
# comma-delimited, LF line endings (declared in the job), a value with a comma, a quote or a
# line break is quoted with inner quotes doubled; an empty cell leaves a field unchanged on
# update and "#N/A" sets it to null, so null is always sent as "#N/A" and never as "".


class LiteralNullMarker(ValueError):
    """A value is the text ``#N/A``, which Bulk API 2.0 would read as null."""

    def __init__(self, field: str) -> None:
        super().__init__(
            f"field {field} holds the text '#N/A', which Bulk API 2.0 reads as 'set to null'; "
            "this record goes through sObject Collections (JSON) instead"
        )
        self.field = field


def bulk_row(payload: dict[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """A payload as (CSV columns, cells): a relationship ``{"Account": {"X__c": v}}`` becomes
    column ``Account.X__c``; ``None`` becomes ``#N/A``. Raises :class:`LiteralNullMarker`."""
    columns: list[str] = []
    cells: list[str] = []
    for key, value in payload.items():
        if isinstance(value, dict):
            sub, value = next(iter(value.items()))
            key = f"{key}.{sub}"
        columns.append(key)
        if value is None:
            cells.append(BULK_NULL)
        elif value == BULK_NULL:
            raise LiteralNullMarker(key)
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        else:
            cells.append(str(value))
    return tuple(columns), cells


def _csv_cell(cell: str) -> str:
    if "," in cell or '"' in cell or "\n" in cell or "\r" in cell:
        return '"' + cell.replace('"', '""') + '"'
    return cell


def csv_line(cells: Iterable[str]) -> bytes:
    """One CSV line (LF-terminated), UTF-8."""
    return (",".join(_csv_cell(c) for c in cells) + "\n").encode("utf-8")


@dataclass
class BulkPart:
    """One job's upload: records with the same columns, under the size limit."""

    columns: tuple[str, ...]
    data: bytearray
    records: int = 0


class BulkCsvWriter:
    """Payloads into CSV uploads: one per column set (a Contact with an Account has column
    ``Account.HotCRM_Id__c``, one without has ``AccountId`` = ``#N/A``: the two cannot share a
    file), each at most ``max_bytes`` of UTF-8 CSV, header included."""

    def __init__(self, max_bytes: int = DEFAULT_BULK_MAX_BYTES) -> None:
        if max_bytes > BULK_UPLOAD_HARD_LIMIT:
            raise ValueError(f"max_bytes {max_bytes}: at most {BULK_UPLOAD_HARD_LIMIT} (the documented upload limit)")
        self.max_bytes = max_bytes
        self._open: dict[tuple[str, ...], BulkPart] = {}

    def add(self, payload: dict[str, Any]) -> BulkPart | None:
        """Add one payload; returns a full part to send first when this one did not fit."""
        columns, cells = bulk_row(payload)
        line = csv_line(cells)
        part = self._open.get(columns)
        full = None
        if part is not None and len(part.data) + len(line) > self.max_bytes:
            full = self._open.pop(columns)
            part = None
        if part is None:
            header = csv_line(columns)
            if len(header) + len(line) > self.max_bytes:
                raise ValueError(f"one record needs {len(header) + len(line)} bytes, more than max_bytes")
            part = self._open[columns] = BulkPart(columns, bytearray(header))
        part.data += line
        part.records += 1
        return full

    def flush(self) -> list[BulkPart]:
        """The parts still open (each non-empty)."""
        parts = list(self._open.values())
        self._open.clear()
        return parts


def parse_bulk_error(text: str) -> tuple[str, str]:
    """``sf__Error`` (``CODE:message[:fields --]``) as (code, message)."""
    code, _, rest = (text or "UNKNOWN_EXCEPTION:").partition(":")
    return code or "UNKNOWN_EXCEPTION", rest.removesuffix("--").strip().rstrip(":").strip()


def _collection_result(item: dict[str, Any], ambiguous: bool = False) -> RecordResult:
    if item.get("success"):
        created = bool(item.get("created"))
        # After a retry whose first attempt may have been applied, "updated" may mean "created by the first attempt".
        return RecordResult(True, item.get("id"), True if created else (None if ambiguous else False))
    errors = item.get("errors") or [{}]
    first = errors[0]
    fields = first.get("fields") or []
    message = first.get("message", "")
    if fields:
        message = f"{message} (fields: {', '.join(fields)})"
    return RecordResult(False, item.get("id"), False, first.get("statusCode", "UNKNOWN_EXCEPTION"), message)
