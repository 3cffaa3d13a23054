"""A Salesforce REST client with what simple-salesforce lacks: retries with exponential
backoff and jitter on rate limits, lock errors, 5xx and connection errors; a re-login on
expired sessions; an API budget read from ``Sforce-Limit-Info``; sObject Collections
upserts with per-record results; Bulk API 2.0 ingest jobs.

It takes plain settings (instance URL, access token, a login callable) and imports no
Airflow; :mod:`hotcrm.airflow.salesforce` builds it from the ``salesforce_default``
connection. The access token is never put into a log line or an error message.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "60.0"
COLLECTION_SIZE = 200  # sObject Collections take at most 200 records a call
RETRYABLE_CODES = {"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"}
RETRYABLE_RECORD_CODES = {"UNABLE_TO_LOCK_ROW"}
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")

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
    created: bool = False
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
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


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
        self.session = requests.Session()
        self.api_calls = 0
        self.retries = 0
        self.relogins = 0
        self.usage: tuple[int, int] | None = None  # (used, daily limit) from the last answer

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
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.usage = (int(match.group(1)), int(match.group(2)))

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
    ) -> requests.Response:
        """One API call with retries, re-login and the budget check; returns a 2xx/3xx response."""
        # A path under /services/ is relative to the instance; others to /services/data/vXX.X.
        short = path if path.startswith("/services/") else f"/services/data/v{self.api_version}{path}"
        attempt = 0
        relogged = False
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
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
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
            retryable = response.status_code >= 500 or code in RETRYABLE_CODES
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

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record a SOQL query returns (following ``nextRecordsUrl``)."""
        body = self.request("GET", "/query", params={"q": soql}).json()
        records = list(body.get("records", []))
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            body = self.request("GET", body["nextRecordsUrl"]).json()
            records.extend(body.get("records", []))
        return records

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
            retry_next = []
            for index, item in zip(pending, answer, strict=True):
                result = _collection_result(item)
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

    def bulk_upsert(
        self, sobject: str, external_id_field: str, records: list[dict[str, Any]]
    ) -> dict[str, RecordResult]:
        """Upsert records in one Bulk API 2.0 ingest job; results keyed by external id value.

        Records the job did not process come back as failures with code ``UNPROCESSED``.
        """
        columns: list[str] = []
        for record in records:
            for key, value in record.items():
                name = f"{key}.{next(iter(value))}" if isinstance(value, dict) else key
                if name not in columns:
                    columns.append(name)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            flat: dict[str, Any] = {}
            for key, value in record.items():
                if isinstance(value, dict):
                    sub, sub_value = next(iter(value.items()))
                    flat[f"{key}.{sub}"] = sub_value
                else:
                    flat[key] = value
            # "#N/A" sets a field to null; an empty cell would leave it unchanged.
            writer.writerow(["#N/A" if flat.get(c) is None else _csv_value(flat[c]) for c in columns])
        job = self.request(
            "POST",
            "/jobs/ingest",
            json={
                "object": sobject,
                "externalIdFieldName": external_id_field,
                "contentType": "CSV",
                "operation": "upsert",
                "lineEnding": "LF",
            },
        ).json()
        job_path = f"/jobs/ingest/{job['id']}"
        self.request("PUT", job_path + "/batches", data=out.getvalue().encode(), headers={"Content-Type": "text/csv"})
        self.request("PATCH", job_path, json={"state": "UploadComplete"})
        info = self._wait_for_job(job_path)
        results: dict[str, RecordResult] = {}
        if int(info.get("numberRecordsProcessed", 0)) - int(info.get("numberRecordsFailed", 0)) > 0:
            for row in self._csv(job_path + "/successfulResults"):
                results[row.get(external_id_field, "")] = RecordResult(
                    True, row.get("sf__Id") or None, row.get("sf__Created", "").lower() == "true"
                )
        if int(info.get("numberRecordsFailed", 0)) > 0:
            for row in self._csv(job_path + "/failedResults"):
                code, _, message = (row.get("sf__Error") or "UNKNOWN_EXCEPTION:").partition(":")
                results[row.get(external_id_field, "")] = RecordResult(
                    False, error_code=code, error_message=message.rsplit(":", 1)[0] if ":" in message else message
                )
        for record in records:
            key = str(record.get(external_id_field))
            if key not in results:
                results[key] = RecordResult(
                    False,
                    error_code="UNPROCESSED",
                    error_message=f"the bulk job ended {info.get('state')} before processing this record",
                )
        return results

    def _wait_for_job(self, job_path: str) -> dict[str, Any]:
        delay = self.poll_interval
        started = time.monotonic()
        while True:
            info = self.request("GET", job_path).json()
            if info.get("state") in ("JobComplete", "Failed", "Aborted"):
                if info["state"] != "JobComplete":
                    log.warning("bulk job %s ended %s: %s", info.get("id"), info["state"], info.get("errorMessage"))
                return info
            if time.monotonic() - started > self.timeout * 10:
                raise SalesforceApiError(0, "JOB_TIMEOUT", f"bulk job still {info.get('state')}", path=job_path)
            self._sleep(delay)
            delay = min(delay * 2, 10.0)

    def _csv(self, path: str) -> Iterable[dict[str, str]]:
        text = self.request("GET", path, headers={"Accept": "text/csv"}).text
        return csv.DictReader(io.StringIO(text))


def _csv_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _collection_result(item: dict[str, Any]) -> RecordResult:
    if item.get("success"):
        return RecordResult(True, item.get("id"), bool(item.get("created")))
    errors = item.get("errors") or [{}]
    first = errors[0]
    fields = first.get("fields") or []
    message = first.get("message", "")
    if fields:
        message = f"{message} (fields: {', '.join(fields)})"
    return RecordResult(False, item.get("id"), False, first.get("statusCode", "UNKNOWN_EXCEPTION"), message)
