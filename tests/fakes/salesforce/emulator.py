"""The Salesforce REST emulator's data model and request handling (no sockets here).

Built from Salesforce's published REST API documentation (REST API Developer Guide:
sObject Rows, sObject Rows by External ID, sObject Collections, Query, Limits; Bulk API 2.0
ingest jobs; OAuth 2.0 flows), only as far as the HotCRM sync and its tests need:

- OAuth 2.0 token endpoint (password, client_credentials, JWT bearer, authorization_code
  with PKCE S256, refresh_token) and an authorize endpoint that redirects at once;
- sessions that expire on demand (``401 INVALID_SESSION_ID``);
- sObject create/get/update/delete and upsert by external id (201 / 200 / 300);
- sObject Collections create/update/upsert with per-record results and ``allOrNone``;
- Bulk API 2.0 ingest jobs (create, upload CSV, close, poll, successful/failed/unprocessed results);
- SOQL ``SELECT ... FROM ... [WHERE a = 'x' AND b IN (...)] [ORDER BY f] [LIMIT n]`` and ``COUNT()``;
- ``/limits`` and the ``Sforce-Limit-Info`` header counting every data call;
- validation with Salesforce's error codes and JSON shapes;
- fault injection: rate limiting after N calls, 5xx bursts, dropped connections, lock
  errors on a share of records, added latency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from tests.fakes.salesforce import bulk_csv

API_VERSION_RE = re.compile(r"^/services/data/v(\d+\.\d)(/.*)?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class FieldDef:
    """One field of an emulated sObject."""

    name: str
    type: str = "string"  # string, double, currency, email, picklist, reference, id, datetime
    length: int | None = None
    required: bool = False
    external_id: bool = False
    reference_to: str | None = None
    relationship_name: str | None = None
    updateable: bool = True
    picklist: tuple[str, ...] = ()  # a restricted picklist's values
    precision: int = 18  # currency/double: digits in all
    scale: int = 0  # ... of which after the decimal point
    case_insensitive: bool = False  # a unique external id "treating ABC and abc as duplicates"


# The standard Industry values (Account.Industry), made a restricted picklist in this org.
INDUSTRIES = (
    "Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications", "Construction",
    "Consulting", "Education", "Electronics", "Energy", "Engineering", "Entertainment", "Environmental",
    "Finance", "Food & Beverage", "Government", "Healthcare", "Hospitality", "Insurance", "Machinery",
    "Manufacturing", "Media", "Not For Profit", "Other", "Recreation", "Retail", "Shipping", "Technology",
    "Telecommunications", "Transportation", "Utilities",
)  # fmt: skip
# State and Country/Territory Picklists (enabled in this org): ISO code -> (name, state codes).
# The states are this org's configuration (an admin can add states in Setup), a subset of
# Salesforce's standard list.
COUNTRIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "US": ("United States", ("AL", "AK", "AZ", "CA", "CO", "FL", "GA", "IL", "MA", "NY", "OR", "TX", "WA")),
    "CA": ("Canada", ("AB", "BC", "MB", "NS", "ON", "QC")),
    "BR": ("Brazil", ("MG", "RJ", "RS", "SP")),
    "DE": ("Germany", ("BE", "BW", "BY", "HE", "HH", "NW")),
    "FR": ("France", ("ARA", "IDF", "NAQ", "OCC", "PAC")),
    "GB": ("United Kingdom", ()),
    "AU": ("Australia", ("NSW", "QLD", "VIC", "WA")),
    "JP": ("Japan", ()),
    "IN": ("India", ("DL", "KA", "MH")),
    "NL": ("Netherlands", ()),
}


def _schema() -> dict[str, dict[str, FieldDef]]:
    def fields(*defs: FieldDef) -> dict[str, FieldDef]:
        return {d.name: d for d in defs}

    system = (
        FieldDef("Id", "id", 18, updateable=False),
        FieldDef("CreatedDate", "datetime", updateable=False),
        FieldDef("LastModifiedDate", "datetime", updateable=False),
        FieldDef("SystemModstamp", "datetime", updateable=False),
        FieldDef("HotCRM_Id__c", "string", 255, external_id=True, case_insensitive=True),
    )
    return {
        "Account": fields(
            *system,
            FieldDef("Name", "string", 255, required=True),
            FieldDef("Type", "string", 255),
            FieldDef("Industry", "picklist", 255, picklist=INDUSTRIES),
            FieldDef("AnnualRevenue", "currency", precision=18, scale=0),
            FieldDef("Phone", "string", 40),
            FieldDef("Website", "string", 255),
            FieldDef("BillingCity", "string", 40),
            FieldDef("BillingState", "string", 80),
            FieldDef("BillingCountry", "string", 80),
            FieldDef("BillingStateCode", "picklist", 10),
            FieldDef("BillingCountryCode", "picklist", 10),
            FieldDef("Description", "string", 32000),
        ),
        "Contact": fields(
            *system,
            FieldDef("FirstName", "string", 40),
            FieldDef("LastName", "string", 80, required=True),
            FieldDef("Email", "email", 80),
            FieldDef("Phone", "string", 40),
            FieldDef("Title", "string", 128),
            FieldDef("AccountId", "reference", 18, reference_to="Account", relationship_name="Account"),
        ),
    }


KEY_PREFIXES = {"Account": "001", "Contact": "003"}


class SalesforceError(Exception):
    """An error the emulator answers with: status, errorCode, message, fields."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []

    def rest_body(self) -> list[dict[str, Any]]:
        """The REST API's error shape: a list of ``{message, errorCode, fields}``."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields:
            body["fields"] = self.fields
        return [body]

    def record_error(self) -> dict[str, Any]:
        """The per-record error shape of Collections results."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass
class Response:
    """What the handler sends back."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    drop: bool = False  # close the connection without answering (a network fault)

    def payload(self) -> bytes:
        """The body as bytes."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Faults:
    """Switches a test flips to make the emulator misbehave (all off by default)."""

    latency: float = 0.0  # seconds added to every data call
    rate_limit_after: int | None = None  # data calls allowed before REQUEST_LIMIT_EXCEEDED
    rate_limit_calls: int | None = None  # how many calls are refused then (None: all of them)
    server_errors: int = 0  # the next N data calls answer 503
    server_error_status: int = 503
    dropped_connections: int = 0  # the next N data calls close the connection unanswered
    dropped_answers: int = 0  # the next N data calls are applied, then the connection closes unanswered
    lock_share: float = 0.0  # share of records written that fail with UNABLE_TO_LOCK_ROW
    lock_max_per_record: int = 1  # how often one record may hit a lock error
    bulk_hold: bool = False  # bulk jobs stay InProgress (a job longer than the client waits)
    bulk_rows_per_poll: int | None = None  # rows a bulk job processes per status poll (None: all)
    bulk_fail_after: int | None = None  # a bulk job ends Failed after processing this many rows
    bulk_background: bool = False  # process jobs in a thread after UploadComplete (as an org does), not on polls
    _rate_limited: int = 0
    _locks: Counter = field(default_factory=Counter)


class SalesforceEmulator:
    """The org's state and the request dispatcher, shared by the server's threads."""

    def __init__(
        self,
        *,
        username: str = "integration@hotcrm.test",
        password: str | None = None,
        security_token: str | None = None,
        client_id: str = "hotcrm-consumer-key",
        client_secret: str | None = None,
        daily_limit: int = 15000,
        seed: int = 7,
    ) -> None:
        # Fresh secrets per org, so a test can look for them in logs and be sure what it found.
        self.username = username
        self.password = password or "Pw-" + secrets.token_urlsafe(12)
        self.security_token = security_token or secrets.token_hex(8).upper()
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_hex(16)
        self.jwt_public_key: str | None = None  # the connected app's certificate (make_jwt_key)
        # Production org (users log in at login.salesforce.com, JWT aud login) or sandbox (test).
        self.is_sandbox = False
        self.my_domain = "hotcrm-dev.my.salesforce.com"  # this org's My Domain login host
        self.clock_offset = 0.0  # seconds added to the emulator's clock (to expire a JWT)
        self.daily_limit = daily_limit
        self.max_upload_base64_bytes = 150_000_000  # "Upload Job Data": 150 MB once base64-encoded
        self.base_url = ""  # set by the server once it listens
        self.schema = _schema()
        self.faults = Faults()
        self.lock = threading.RLock()
        self.random = random.Random(seed)
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        # external id value -> record Ids, per object (an org answers upserts by index, not by scan)
        self.ext_index: dict[str, dict[Any, set[str]]] = {name: {} for name in self.schema}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.auth_codes: dict[str, dict[str, str]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.api_usage = 0  # every data call, as Sforce-Limit-Info counts them
        self.calls: Counter = Counter()  # "METHOD kind" -> count, data calls only
        self.token_requests = 0
        self.requests_log: list[tuple[str, str, int]] = []  # (method, path, status)
        self._id_counter = 0

    # --- helpers for tests ------------------------------------------------------------------

    @property
    def api_calls(self) -> int:
        """Data calls served (every call under /services/data, failed ones included)."""
        return sum(self.calls.values())

    def reset_counters(self) -> None:
        """Zero the call counters (the records stay)."""
        with self.lock:
            self.calls.clear()
            self.requests_log.clear()
            self.token_requests = 0

    def expire_sessions(self) -> None:
        """Invalidate every access token: the next data call answers 401 INVALID_SESSION_ID."""
        with self.lock:
            self.tokens.clear()

    def find(self, sobject: str, **where: Any) -> list[dict[str, Any]]:
        """Records of ``sobject`` whose fields equal ``where``."""
        with self.lock:
            return [dict(r) for r in self.records[sobject].values() if all(r.get(k) == v for k, v in where.items())]

    def insert(self, sobject: str, values: dict[str, Any]) -> str:
        """Add a record directly (e.g. a duplicate external id, made by someone in the UI)."""
        with self.lock:
            record = self._new_record(sobject)
            self._touch(record, values, sobject)
            return record["Id"]

    @staticmethod
    def _ext_key(value: Any) -> Any:
        # HotCRM_Id__c is Unique and "treat ABC and abc as duplicate values": matched
        # case-insensitively (Apex Developer Guide, "Upserting Records").
        return value.lower() if isinstance(value, str) else value

    def _by_ext(self, sobject: str, ext_field: str, value: Any) -> list[dict[str, Any]]:
        if ext_field != "HotCRM_Id__c":
            return [r for r in self.records[sobject].values() if r.get(ext_field) == value]
        ids = self.ext_index[sobject].get(self._ext_key(value), ())
        return [self.records[sobject][i] for i in sorted(ids) if i in self.records[sobject]]

    def _reindex(self) -> None:
        self.ext_index = {name: {} for name in self.schema}
        for name, records in self.records.items():
            for record in records.values():
                if record.get("HotCRM_Id__c") is not None:
                    self.ext_index[name].setdefault(self._ext_key(record["HotCRM_Id__c"]), set()).add(record["Id"])

    def issue_token(self) -> str:
        """A valid access token (for tests that start from an existing session)."""
        return self._make_token()["access_token"]

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one HTTP request."""
        parsed = urlparse(raw_path)
        path = parsed.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parsed.query, keep_blank_values=True).items()}
        try:
            host = (headers.get("host") or "").split(":")[0].lower()
            self._request_host = host
            wrong_host = host.endswith("salesforce.com") and not self._host_allowed(host)
            if path == "/services/oauth2/token" and method == "POST":
                if wrong_host:  # e.g. a sandbox user at login.salesforce.com
                    return self._oauth_error("invalid_grant", "authentication failure")
                return self._token(body, headers)
            if path.startswith("/services/Soap/u/") and method == "POST":
                return self._soap_login(body, refuse=wrong_host)
            if wrong_host:
                return Response(404, [{"errorCode": "NOT_FOUND", "message": f"no such org at {host}"}])
            if path == "/services/oauth2/authorize" and method == "GET":
                return self._authorize(query)
            if path == "/services/oauth2/userinfo" or path.startswith("/id/"):
                return Response(200, {"user_id": "005000000000001AAA", "preferred_username": self.username})
            match = API_VERSION_RE.match(path)
            if match:
                return self._data_call(method, match.group(1), match.group(2) or "/", query, headers, body)
            return Response(404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
        except SalesforceError as exc:
            return Response(exc.status, exc.rest_body())

    # --- login hosts ---------------------------------------------------------------------------
    # A request routed from a Salesforce host (tests/fakes/salesforce/routing.py) keeps that host
    # in its Host header: login.salesforce.com serves production orgs, test.salesforce.com
    # sandboxes, and the org's My Domain both (and is the only host for client credentials).

    _request_host = ""

    def _host_allowed(self, host: str) -> bool:
        if host == "login.salesforce.com":
            return not self.is_sandbox
        if host == "test.salesforce.com":
            return self.is_sandbox
        return host == self.my_domain

    @property
    def instance_url(self) -> str:
        """What a login answers as the instance: the My Domain when reached by a Salesforce host."""
        return f"https://{self.my_domain}" if self._request_host.endswith("salesforce.com") else self.base_url

    def _audiences(self) -> list[str]:
        """The JWT ``aud`` values this org accepts (the login host of its kind, or its My Domain)."""
        return [
            "https://test.salesforce.com" if self.is_sandbox else "https://login.salesforce.com",
            f"https://{self.my_domain}",
            self.base_url,  # a token URL pointed at the emulator itself
        ]

    def _soap_login(self, body: bytes, *, refuse: bool = False) -> Response:
        """SOAP API ``login()`` (what simple-salesforce does with a security token): the password
        must have the user's security token appended (untrusted IP)."""
        import re as _re
        from html import unescape

        with self.lock:
            self.token_requests += 1
        text = body.decode("utf-8", "replace")
        user = _re.search(r"<n1:username>(.*?)</n1:username>", text, _re.S)
        password = _re.search(r"<n1:password>(.*?)</n1:password>", text, _re.S)
        if (
            refuse
            or not user
            or not password
            or unescape(user.group(1)) != self.username
            or (unescape(password.group(1)) != self.password + self.security_token)
        ):
            fault = (
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
                "<faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, "
                "security token; or user locked out.</faultstring><detail><sf:LoginFault>"
                "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, "
                "password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>"
                "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
            )
            return Response(500, fault, content_type="text/xml")
        token = self._make_token()["access_token"]
        ok = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com">'
            "<soapenv:Body><loginResponse><result>"
            f"<serverUrl>{self.instance_url}/services/Soap/u/60.0/00D000000000001</serverUrl>"
            f"<sessionId>{token}</sessionId><userId>005000000000001AAA</userId>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(200, ok, content_type="text/xml")

    # --- OAuth 2.0 ------------------------------------------------------------------------------

    def _make_token(self, *, refresh: bool = False) -> dict[str, Any]:
        token = "00D000000000001!" + secrets.token_urlsafe(32)
        issued = str(int(time.time() * 1000))
        with self.lock:
            self.tokens[token] = {"issued_at": issued}
        out = {
            "access_token": token,
            "instance_url": self.instance_url,
            "id": f"{self.base_url}/id/00D000000000001AAA/005000000000001AAA",
            "token_type": "Bearer",
            "issued_at": issued,
            "signature": base64.b64encode(hashlib.sha256(token.encode()).digest()).decode(),
            "scope": "api refresh_token",
        }
        if refresh:
            rt = "5Aep" + secrets.token_urlsafe(32)
            with self.lock:
                self.refresh_tokens[rt] = self.client_id
            out["refresh_token"] = rt
        return out

    @staticmethod
    def _oauth_error(error: str, description: str, status: int = 400) -> Response:
        return Response(status, {"error": error, "error_description": description})

    def _token(self, body: bytes, headers: dict[str, str]) -> Response:
        with self.lock:
            self.token_requests += 1
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):  # client credentials may come as HTTP Basic
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        if grant == "password":
            if client_id != self.client_id or client_secret != self.client_secret:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if form.get("username") != self.username or form.get("password") not in (
                self.password + self.security_token,
                self.password,
            ):
                return self._oauth_error("invalid_grant", "authentication failure")
            return Response(200, self._make_token())
        if grant == "client_credentials":
            if self._request_host in ("login.salesforce.com", "test.salesforce.com"):
                return self._oauth_error("invalid_grant", "request not supported on this domain")
            if client_id != self.client_id or client_secret != self.client_secret:
                return self._oauth_error("invalid_client", "invalid client credentials")
            return Response(200, self._make_token())
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_bearer(form.get("assertion", ""))
        if grant == "authorization_code":
            return self._authorization_code(form, client_id)
        if grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens or client_id != self.client_id:
                return self._oauth_error("invalid_grant", "expired access/refresh token")
            return Response(200, self._make_token())
        return self._oauth_error("unsupported_grant_type", f"grant type not supported: {grant!r}")

    def _jwt_bearer(self, assertion: str) -> Response:
        # Checked like Salesforce: RS256 signature against the connected app's certificate
        # (jwt_public_key, set by the test), iss = consumer key, sub = the user, aud = the
        # login host, exp in the future.
        import jwt

        if not self.jwt_public_key:
            return self._oauth_error("invalid_client", "the connected app has no certificate for the JWT flow")
        try:
            claims = jwt.decode(
                assertion,
                self.jwt_public_key,
                algorithms=["RS256"],
                audience=self._audiences(),
                options={"require": ["iss", "sub", "aud", "exp"], "verify_exp": False},
            )
            if float(claims["exp"]) < time.time() + self.clock_offset:
                raise jwt.ExpiredSignatureError
        except jwt.ExpiredSignatureError:
            return self._oauth_error("invalid_grant", "expired authorization code")
        except jwt.InvalidAudienceError:
            return self._oauth_error("invalid_grant", "audience is invalid")
        except jwt.PyJWTError:
            return self._oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.client_id:
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.username:
            return self._oauth_error("invalid_grant", "user hasn't approved this consumer")
        return Response(200, self._make_token())

    def make_jwt_key(self) -> str:
        """Give the connected app a certificate (an RSA key pair); returns the private key PEM."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwt_public_key = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def _authorize(self, query: dict[str, str]) -> Response:
        for required in ("response_type", "client_id", "redirect_uri"):
            if not query.get(required):
                return self._oauth_error("invalid_request", f"missing required parameter: {required}")
        if query["response_type"] != "code":
            return self._oauth_error("unsupported_response_type", "response type not supported")
        if query["client_id"] != self.client_id:
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        if query.get("code_challenge") and query.get("code_challenge_method", "plain") != "S256":
            return self._oauth_error("invalid_request", "code_challenge_method must be S256")
        code = "aPrx" + secrets.token_urlsafe(24)
        with self.lock:
            self.auth_codes[code] = {
                "redirect_uri": query["redirect_uri"],
                "code_challenge": query.get("code_challenge", ""),
            }
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        sep = "&" if "?" in query["redirect_uri"] else "?"
        return Response(302, None, {"Location": query["redirect_uri"] + sep + urlencode(params)})

    def _authorization_code(self, form: dict[str, str], client_id: str | None) -> Response:
        with self.lock:
            grant = self.auth_codes.pop(form.get("code", ""), None)  # a code is good once
        if grant is None:
            return self._oauth_error("invalid_grant", "invalid authorization code")
        if client_id != self.client_id:
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration")
        if grant["code_challenge"]:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != grant["code_challenge"]:
                return self._oauth_error("invalid_grant", "invalid code verifier")
        return Response(200, self._make_token(refresh=True))

    # --- data calls ------------------------------------------------------------------------------

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_usage}/{self.daily_limit}"}

    def _data_call(
        self, method: str, version: str, rest: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Response:
        kind = self._kind(rest)
        faults = self.faults
        with self.lock:
            self.calls[f"{method} {kind}"] += 1
            self.api_usage += 1
            drop = faults.dropped_connections > 0
            if drop:
                faults.dropped_connections -= 1
        if faults.latency:
            time.sleep(faults.latency)
        if drop:
            return Response(0, drop=True)
        token = headers.get("authorization", "")
        token = token[7:] if token.lower().startswith("bearer ") else token
        if token not in self.tokens:
            return Response(
                401,
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                self._limit_header(),
            )
        with self.lock:
            limited = self._rate_limited()
            if not limited and faults.server_errors > 0:
                faults.server_errors -= 1
                status = faults.server_error_status
                return Response(
                    status,
                    [{"message": "Service temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
                    self._limit_header(),
                )
        if limited:
            # One code, two limits: the rolling 24-hour total, and calls in flight at once.
            message = (
                "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
                if limited == "concurrent"
                else "TotalRequests Limit exceeded."
            )
            return Response(403, [{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}], self._limit_header())
        try:
            response = self._route(method, version, rest, query, body)
        except SalesforceError as exc:
            response = Response(exc.status, exc.rest_body())
        response.headers.update(self._limit_header())
        with self.lock:
            if faults.dropped_answers > 0:
                faults.dropped_answers -= 1
                return Response(0, drop=True)
        return response

    def _rate_limited(self) -> str:
        """ "daily", "concurrent" or "" (not limited)."""
        faults = self.faults
        if self.api_usage > self.daily_limit:
            return "daily"
        if faults.rate_limit_after is None or self.api_calls <= faults.rate_limit_after:
            return ""
        if faults.rate_limit_calls is None:
            return "daily"
        if faults._rate_limited < faults.rate_limit_calls:
            faults._rate_limited += 1
            return "concurrent"  # a burst that passes
        faults.rate_limit_after = None  # the window passed
        return ""

    @staticmethod
    def _kind(rest: str) -> str:
        parts = [p for p in rest.split("/") if p]
        if not parts:
            return "versions"
        if parts[0] == "composite" and len(parts) > 1:
            return "composite/sobjects" + ("/upsert" if len(parts) > 3 else "")
        if parts[0] == "jobs":
            return "jobs/ingest" + ("/" + parts[3] if len(parts) > 3 else "")
        if parts[0] == "sobjects":
            return "sobjects" + ("/upsert" if len(parts) == 4 else "")
        return parts[0]

    def _route(self, method: str, version: str, rest: str, query: dict[str, str], body: bytes) -> Response:
        parts = [p for p in rest.split("/") if p]
        if not parts:
            return Response(200, {"version": version})
        head = parts[0]
        if head == "limits" and method == "GET":
            return Response(200, self._limits())
        if head == "query" and method == "GET":
            if len(parts) == 2:
                return Response(200, self._query_more(parts[1], version))
            return Response(200, self._query(query.get("q", ""), version))
        if head == "sobjects":
            return self._sobject_route(method, parts[1:], body)
        if head == "composite" and len(parts) >= 2 and parts[1] == "sobjects":
            return self._collections(method, parts[2:], body)
        if head == "jobs" and len(parts) >= 2 and parts[1] == "ingest":
            return self._bulk(method, parts[2:], body)
        raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")

    def _limits(self) -> dict[str, Any]:
        return {
            "DailyApiRequests": {"Max": self.daily_limit, "Remaining": max(self.daily_limit - self.api_usage, 0)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000 - len(self.jobs)},
        }

    # --- records and validation ------------------------------------------------------------------

    def _sobject(self, name: str) -> dict[str, FieldDef]:
        if name not in self.schema:
            raise SalesforceError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'")
        return self.schema[name]

    def _new_record(self, sobject: str) -> dict[str, Any]:
        self._id_counter += 1
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "+0000")
        record_id = f"{KEY_PREFIXES[sobject]}{self._id_counter:012d}AAA"
        record = {"Id": record_id, "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now}
        self.records[sobject][record_id] = record
        return record

    def _resolve(self, sobject: str, values: dict[str, Any]) -> dict[str, Any]:
        """Validate ``values`` for ``sobject`` and resolve relationship references; raises SalesforceError."""
        schema = self._sobject(sobject)
        out: dict[str, Any] = {}
        relationships = {f.relationship_name: f for f in schema.values() if f.relationship_name}
        for key, value in values.items():
            if key == "attributes":
                continue
            if key in relationships:
                ref = relationships[key]
                if not isinstance(value, dict) or len([k for k in value if k != "attributes"]) != 1:
                    raise SalesforceError(400, "INVALID_FIELD", f"Invalid relationship value for {key}", [key])
                ext_field, ext_value = next((k, v) for k, v in value.items() if k != "attributes")
                target_schema = self._sobject(ref.reference_to or "")
                if ext_field not in target_schema or not target_schema[ext_field].external_id:
                    raise SalesforceError(
                        400,
                        "INVALID_FIELD",
                        f"Field {ext_field} is not an external id field of {ref.reference_to}",
                        [key],
                    )
                matches = self._by_ext(ref.reference_to or "", ext_field, ext_value)
                if not matches:
                    raise SalesforceError(
                        400,
                        "INVALID_FIELD",
                        f"Foreign key external ID: {ext_value} not found for field {ext_field} in entity "
                        f"{ref.reference_to}",
                        [key],
                    )
                if len(matches) > 1:
                    raise SalesforceError(
                        400,
                        "INVALID_FIELD",
                        f"Foreign key external ID: {ext_value} matches more than one record of {ref.reference_to}",
                        [key],
                    )
                out[ref.name] = matches[0]["Id"]
                continue
            if key not in schema:
                raise SalesforceError(
                    400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject}", [key]
                )
            fdef = schema[key]
            if not fdef.updateable and key != "Id":
                raise SalesforceError(
                    400, "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {key}.", [key]
                )
            if key == "Id":
                continue
            out[key] = self._check_value(fdef, value)
        return out

    def _check_value(self, fdef: FieldDef, value: Any) -> Any:
        if value is None or value == "":
            return None  # a JSON "" is stored as null (a Bulk empty cell never gets here: it is skipped)
        if fdef.type == "currency":
            return self._currency(fdef, value)
        if fdef.type == "picklist" and fdef.picklist and value not in fdef.picklist:
            raise SalesforceError(
                400,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{fdef.name}: bad value for restricted picklist field: {value}",
                [fdef.name],
            )
        if fdef.type == "double":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise SalesforceError(
                    400, "JSON_PARSER_ERROR", f"Cannot deserialize value for {fdef.name}", [fdef.name]
                )
            try:
                return float(value)
            except ValueError:
                raise SalesforceError(
                    400,
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    f"{fdef.name}: value not of required type: {value}",
                    [fdef.name],
                ) from None
        if not isinstance(value, str):
            value = str(value)
        if fdef.length and len(value) > fdef.length:
            raise SalesforceError(
                400,
                "STRING_TOO_LONG",
                f"{fdef.name}: data value too large: {value[:40]} (max length={fdef.length})",
                [fdef.name],
            )
        if fdef.type == "email" and value and not EMAIL_RE.match(value):
            raise SalesforceError(
                400, "INVALID_EMAIL_ADDRESS", f"{fdef.name}: invalid email address: {value}", [fdef.name]
            )
        return value

    @staticmethod
    def _currency(fdef: FieldDef, value: Any) -> float:
        """A currency value rounded half-up to the field's scale; too many digits is an error."""
        from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise SalesforceError(400, "JSON_PARSER_ERROR", f"Cannot deserialize value for {fdef.name}", [fdef.name])
        try:
            number = Decimal(str(value))
            if not number.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            raise SalesforceError(
                400, "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{fdef.name}: value not of required type: {value}", [fdef.name]
            ) from None
        rounded = number.quantize(Decimal(1).scaleb(-fdef.scale), rounding=ROUND_HALF_UP)
        if abs(rounded) >= Decimal(10) ** (fdef.precision - fdef.scale):
            raise SalesforceError(
                400,
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{fdef.name}: value outside of valid range on numeric field: {value}",
                [fdef.name],
            )
        return float(rounded)

    def _address(self, sobject: str, record: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
        """State and Country/Territory Picklists: codes checked, names filled in; returns the
        values to store beside ``changed``."""
        if sobject != "Account":
            return {}
        out: dict[str, Any] = {}
        code = record.get("BillingCountryCode")
        if "BillingCountryCode" in changed or ("BillingCountry" not in changed and code is not None):
            if code is not None and code not in COUNTRIES:
                raise SalesforceError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"Billing Country Code: bad value for restricted picklist field: {code}",
                    ["BillingCountryCode"],
                )
            out["BillingCountry"] = COUNTRIES[code][0] if code else None
        elif "BillingCountry" in changed:
            name = changed["BillingCountry"]
            codes = [c for c, (n, _) in COUNTRIES.items() if n == name]
            if name is not None and not codes:
                raise SalesforceError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    "There's a problem with this country, even though it may appear correct. Please select a "
                    "country/territory from the list of valid countries.: Billing Country",
                    ["BillingCountry"],
                )
            code = out["BillingCountryCode"] = codes[0] if codes else None
        state = record.get("BillingStateCode") if "BillingState" not in changed else changed["BillingState"]
        if "BillingStateCode" in changed:
            state = changed["BillingStateCode"]
        if state is not None and (code is None or state not in COUNTRIES.get(code, ("", ()))[1]):
            raise SalesforceError(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                "There's a problem with this state, even though it may appear correct. Please select a state from "
                "the list of valid states.: Billing State/Province",
                ["BillingState"],
            )
        out["BillingStateCode"] = out["BillingState"] = state
        return out

    def _check_required(self, sobject: str, record: dict[str, Any]) -> None:
        missing = [f.name for f in self.schema[sobject].values() if f.required and record.get(f.name) in (None, "")]
        if missing:
            raise SalesforceError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )

    def _maybe_lock(self, sobject: str, key: str) -> None:
        faults = self.faults
        if faults.lock_share <= 0:
            return
        lock_key = f"{sobject}:{key}"
        if faults._locks[lock_key] >= faults.lock_max_per_record:
            return
        if self.random.random() < faults.lock_share:
            faults._locks[lock_key] += 1
            raise SalesforceError(
                400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records: " + key
            )

    def _touch(self, record: dict[str, Any], values: dict[str, Any], sobject: str) -> None:
        if "HotCRM_Id__c" in values:
            index = self.ext_index[sobject]
            old = record.get("HotCRM_Id__c")
            if old is not None:
                index.get(self._ext_key(old), set()).discard(record["Id"])
            if values["HotCRM_Id__c"] is not None:
                index.setdefault(self._ext_key(values["HotCRM_Id__c"]), set()).add(record["Id"])
        record.update(values)
        record["LastModifiedDate"] = record["SystemModstamp"] = (
            datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "+0000")
        )

    def _create(self, sobject: str, values: dict[str, Any]) -> dict[str, Any]:
        resolved = self._resolve(sobject, values)
        resolved.update(self._address(sobject, resolved, resolved))
        self._check_required(sobject, resolved)
        ext = resolved.get("HotCRM_Id__c")
        if ext is not None and self._by_ext(sobject, "HotCRM_Id__c", ext):
            raise SalesforceError(
                400, "DUPLICATE_VALUE", f"duplicate value found: HotCRM_Id__c duplicates value on record with id: {ext}"
            )
        self._maybe_lock(sobject, str(ext or len(self.records[sobject])))
        record = self._new_record(sobject)
        self._touch(record, resolved, sobject)
        return record

    def _update(self, sobject: str, record: dict[str, Any], values: dict[str, Any]) -> None:
        resolved = self._resolve(sobject, values)
        resolved.update(self._address(sobject, {**record, **resolved}, resolved))
        merged = {**record, **resolved}
        self._check_required(sobject, merged)
        self._maybe_lock(sobject, record["Id"])
        self._touch(record, resolved, sobject)

    def _upsert(
        self, sobject: str, ext_field: str, ext_value: Any, values: dict[str, Any], *, single: bool = False
    ) -> tuple[dict, bool]:
        """Upsert one record by external id; returns (record, created). Several matches: 300
        MULTIPLE_CHOICES for one record by URL, DUPLICATE_EXTERNAL_ID per record otherwise."""
        schema = self._sobject(sobject)
        if ext_field != "Id" and (ext_field not in schema or not schema[ext_field].external_id):
            raise SalesforceError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {ext_field}"
            )
        if ext_value in (None, ""):
            raise SalesforceError(400, "MISSING_ARGUMENT", f"{ext_field} not specified", [ext_field])
        matches = self._by_ext(sobject, ext_field, ext_value)
        if len(matches) > 1 and single:
            raise SalesforceError(
                300,
                "MULTIPLE_CHOICES",
                f"More than one record found for external id field {ext_field} with value {ext_value}",
            )
        if len(matches) > 1:
            raise SalesforceError(
                400,
                "DUPLICATE_EXTERNAL_ID",
                f"{ext_field}: more than 1 record found for external id field: {ext_value}",
                [ext_field],
            )
        values = {k: v for k, v in values.items() if k != ext_field}
        if matches:
            self._update(sobject, matches[0], values)
            return matches[0], False
        return self._create(sobject, {**values, ext_field: ext_value}), True

    # --- sObject rows ---------------------------------------------------------------------------------

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except ValueError:
            raise SalesforceError(400, "JSON_PARSER_ERROR", "Unexpected character in request body") from None

    def _sobject_route(self, method: str, parts: list[str], body: bytes) -> Response:
        if not parts:
            return Response(200, {"sobjects": [{"name": n} for n in self.schema]})
        sobject = parts[0]
        schema = self._sobject(sobject)
        with self.lock:
            if len(parts) == 1 and method == "POST":
                record = self._create(sobject, self._json(body) or {})
                return Response(201, {"id": record["Id"], "success": True, "errors": []})
            if len(parts) == 2 and parts[1] == "describe":
                return Response(
                    200,
                    {
                        "name": sobject,
                        "fields": [
                            {"name": f.name, "length": f.length or 0, "type": f.type, "externalId": f.external_id}
                            for f in schema.values()
                        ],
                    },
                )
            if len(parts) == 2:
                record = self.records[sobject].get(parts[1])
                if record is None:
                    raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
                if method == "GET":
                    return Response(200, {"attributes": {"type": sobject}, **record})
                if method == "PATCH":
                    self._update(sobject, record, self._json(body) or {})
                    return Response(204)
                if method == "DELETE":
                    del self.records[sobject][parts[1]]
                    self._reindex()
                    return Response(204)
            if len(parts) == 3:
                ext_field, ext_value = parts[1], parts[2]
                if method == "GET":
                    matches = self._by_ext(sobject, ext_field, ext_value)
                    if not matches:
                        raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
                    return Response(200, {"attributes": {"type": sobject}, **matches[0]})
                if method == "PATCH":
                    record, created = self._upsert(sobject, ext_field, ext_value, self._json(body) or {}, single=True)
                    return Response(
                        201 if created else 200,
                        {"id": record["Id"], "success": True, "errors": [], "created": created},
                    )
        raise SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")

    # --- sObject Collections --------------------------------------------------------------------------

    def _collections(self, method: str, parts: list[str], body: bytes) -> Response:
        payload = self._json(body) or {}
        records = payload.get("records")
        if not isinstance(records, list):
            raise SalesforceError(400, "JSON_PARSER_ERROR", "records: expected a list")
        if len(records) > 200:
            raise SalesforceError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        all_or_none = bool(payload.get("allOrNone", False))
        upsert = method == "PATCH" and len(parts) == 2
        if upsert:
            sobject, ext_field = parts
            self._sobject(sobject)
        elif parts or method not in ("POST", "PATCH"):
            raise SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
        with self.lock:
            # A snapshot lets allOrNone roll the whole request back.
            snapshot = (
                {name: {k: dict(v) for k, v in recs.items()} for name, recs in self.records.items()}
                if all_or_none
                else None
            )
            seen: Counter = Counter()
            if upsert:
                seen.update(self._ext_key(r.get(ext_field)) for r in records if isinstance(r, dict))
            results = []
            for rec in records:
                results.append(self._collection_one(method, rec, upsert, parts, seen))
            if snapshot is not None and not all(r["success"] for r in results):
                self.records = snapshot
                self._reindex()
                results = [
                    r
                    if not r["success"]
                    else {
                        "id": None,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                "message": "Record rolled back because not all records were valid and the request "
                                "was using AllOrNone header",
                                "fields": [],
                            }
                        ],
                    }
                    for r in results
                ]
        return Response(200, results)

    def _collection_one(self, method: str, rec: Any, upsert: bool, parts: list[str], seen: Counter) -> dict:
        try:
            if not isinstance(rec, dict):
                raise SalesforceError(400, "JSON_PARSER_ERROR", "each record must be an object")
            sobject = parts[0] if upsert else (rec.get("attributes") or {}).get("type")
            if not sobject:
                raise SalesforceError(400, "INVALID_TYPE", "Must send a concrete entity type.")
            values = {k: v for k, v in rec.items() if k != "attributes"}
            if upsert:
                ext_field = parts[1]
                ext_value = values.get(ext_field)
                if ext_value is not None and seen[self._ext_key(ext_value)] > 1:
                    raise SalesforceError(
                        400, "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {ext_value}", [ext_field]
                    )
                record, created = self._upsert(sobject, ext_field, ext_value, values)
                return {"id": record["Id"], "success": True, "errors": [], "created": created}
            if method == "POST":
                if "Id" in values:
                    raise SalesforceError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
                record = self._create(sobject, values)
                return {"id": record["Id"], "success": True, "errors": []}
            record = self.records.get(sobject, {}).get(values.get("Id", ""))
            if record is None:
                raise SalesforceError(
                    404,
                    "ENTITY_IS_DELETED" if values.get("Id") else "MISSING_ARGUMENT",
                    "entity is deleted" if values.get("Id") else "Id not specified in an update call",
                )
            self._update(sobject, record, values)
            return {"id": record["Id"], "success": True, "errors": []}
        except SalesforceError as exc:
            return {"success": False, "errors": [exc.record_error()]}

    # --- SOQL -----------------------------------------------------------------------------------------

    _SOQL = re.compile(
        r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
        r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>[\w.]+)(?:\s+(?P<dir>ASC|DESC))?)?"
        r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
        re.IGNORECASE | re.DOTALL,
    )
    _CONDITION = re.compile(
        r"^\s*(?P<field>[\w.]+)\s*(?P<op>=|!=|IN)\s*(?P<value>'(?:[^'\\]|\\.)*'|null|[\d.]+|\((?:.*?)\))\s*$",
        re.IGNORECASE,
    )

    def _literal(self, token: str) -> Any:
        token = token.strip()
        if token.lower() == "null":
            return None
        if token.startswith("'"):
            return re.sub(r"\\(.)", r"\1", token[1:-1])
        return float(token)

    def _query(self, soql: str, version: str) -> dict[str, Any]:
        match = self._SOQL.match(soql)
        if not match:
            raise SalesforceError(400, "MALFORMED_QUERY", f"unexpected token in query: {soql[:80]}")
        sobject = match.group("object")
        schema = self._sobject(sobject)
        fields = [f.strip() for f in match.group("fields").split(",")]
        count_only = fields == ["COUNT()"]
        for f in [] if count_only else fields:
            base = f.split(".")[0]
            if f not in schema and base not in {d.relationship_name for d in schema.values()}:
                raise SalesforceError(400, "INVALID_FIELD", f"No such column '{f}' on entity '{sobject}'.")
        conditions = []
        if match.group("where"):
            for part in re.split(r"\s+AND\s+", match.group("where"), flags=re.IGNORECASE):
                cond = self._CONDITION.match(part)
                if not cond:
                    raise SalesforceError(400, "MALFORMED_QUERY", f"unsupported condition: {part.strip()[:80]}")
                op = cond.group("op").upper()
                raw = cond.group("value")
                if op == "IN":
                    value = [self._literal(v) for v in re.findall(r"'(?:[^'\\]|\\.)*'|[\d.]+", raw)]
                else:
                    value = self._literal(raw)
                conditions.append((cond.group("field"), op, value))
        with self.lock:
            rows = [dict(r) for r in self.records[sobject].values()]
        for fname, op, value in conditions:
            if op == "=":
                rows = [r for r in rows if self._get(sobject, r, fname) == value]
            elif op == "!=":
                rows = [r for r in rows if self._get(sobject, r, fname) != value]
            else:
                rows = [r for r in rows if self._get(sobject, r, fname) in value]
        if match.group("order"):
            key = match.group("order")
            rows.sort(
                key=lambda r: (self._get(sobject, r, key) is None, str(self._get(sobject, r, key))),
                reverse=(match.group("dir") or "").upper() == "DESC",
            )
        if match.group("limit"):
            rows = rows[: int(match.group("limit"))]
        if count_only:
            return {"totalSize": len(rows), "done": True, "records": []}
        out = [self._project(sobject, r, fields) for r in rows]
        return self._page(out, 0, version)

    def _get(self, sobject: str, record: dict[str, Any], name: str) -> Any:
        if "." in name:
            rel, sub = name.split(".", 1)
            ref = next((f for f in self.schema[sobject].values() if f.relationship_name == rel), None)
            target = self.records[ref.reference_to].get(record.get(ref.name) or "") if ref else None
            return target.get(sub) if target else None
        return record.get(name)

    def _project(self, sobject: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {"type": sobject, "url": f"/services/data/v60.0/sobjects/{sobject}/{record['Id']}"}
        }
        for f in fields:
            if "." in f:
                rel, sub = f.split(".", 1)
                value = self._get(sobject, record, f)
                out.setdefault(rel, {"attributes": {"type": rel}})[sub] = value
            else:
                out[f] = record.get(f)
        return out

    PAGE = 2000

    def _page(self, records: list[dict[str, Any]], start: int, version: str) -> dict[str, Any]:
        chunk = records[start : start + self.PAGE]
        done = start + self.PAGE >= len(records)
        result: dict[str, Any] = {"totalSize": len(records), "done": done, "records": chunk}
        if not done:
            cursor = "01g" + secrets.token_hex(6)
            with self.lock:
                self.jobs[f"query:{cursor}"] = {"records": records}
            result["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{start + self.PAGE}"
        return result

    def _query_more(self, locator: str, version: str) -> dict[str, Any]:
        cursor, _, start = locator.rpartition("-")
        saved = self.jobs.get(f"query:{cursor}")
        if saved is None or not start.isdigit():
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(saved["records"], int(start), version)

    # --- Bulk API 2.0 ingest ---------------------------------------------------------------------------
    # Bulk API 2.0 Developer Guide: "Create a Job", "Upload Job Data" (at most 150 MB of base64
    # content per upload), "Close or Abort a Job", "Get Information About an Ingest Job" (states
    # Open, UploadComplete, InProgress, JobComplete, Failed, Aborted), "Get Job Successful /
    # Failed Record Results", "Get Job Unprocessed Record Results". The CSV is read by
    # tests/fakes/salesforce/bulk_csv.py, written from the CSV rules.

    def _bulk(self, method: str, parts: list[str], body: bytes) -> Response:
        if not parts and method == "POST":
            spec = self._json(body) or {}
            sobject = spec.get("object", "")
            self._sobject(sobject)
            operation = spec.get("operation")
            if operation not in ("insert", "update", "upsert"):
                raise SalesforceError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
            if operation == "upsert" and not spec.get("externalIdFieldName"):
                raise SalesforceError(400, "INVALIDJOB", "InvalidJob : External ID was blank for upsert")
            delimiter = spec.get("columnDelimiter", "COMMA")
            line_ending = spec.get("lineEnding", "LF")
            if delimiter not in bulk_csv.DELIMITERS or line_ending not in bulk_csv.LINE_ENDINGS:
                raise SalesforceError(400, "INVALIDJOB", "InvalidJob : columnDelimiter or lineEnding not supported")
            job_id = "750" + secrets.token_hex(6).upper()[:12] + "AAA"
            job = {
                "id": job_id,
                "operation": operation,
                "object": sobject,
                "externalIdFieldName": spec.get("externalIdFieldName"),
                "createdById": "005000000000001AAA",
                "createdDate": datetime.now(UTC).isoformat(),
                "state": "Open",
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": 60.0,
                "lineEnding": line_ending,
                "columnDelimiter": delimiter,
                "numberRecordsProcessed": 0,
                "numberRecordsFailed": 0,
            }
            with self.lock:
                self.jobs[job_id] = {"info": job, "data": bytearray(), "polls": 0, "rows": [], "next": 0}
                self.jobs[job_id].update(success=[], failed=[], header=[])
            return Response(200, job)
        if not parts:
            raise SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
        job = self.jobs.get(parts[0])
        if job is None or parts[0].startswith("query:"):
            raise SalesforceError(404, "NOT_FOUND", f"Job {parts[0]} not found")
        info = job["info"]
        with self.lock:
            return self._bulk_job(method, parts, body, job, info)

    def _bulk_job(self, method: str, parts: list[str], body: bytes, job: dict, info: dict) -> Response:
        if len(parts) == 2 and parts[1] == "batches" and method == "PUT":
            if info["state"] != "Open":
                raise SalesforceError(409, "INVALIDJOBSTATE", f"Job {info['id']} is not open for uploads")
            encoded = 4 * ((len(job["data"]) + len(body) + 2) // 3)  # its size once base64-encoded
            if encoded > self.max_upload_base64_bytes:
                raise SalesforceError(
                    400,
                    "INVALIDBATCH",
                    f"InvalidBatch : the job's data is {encoded} bytes once base64-encoded, over the "
                    f"{self.max_upload_base64_bytes}-byte limit; upload at most 100 MB of CSV per job",
                )
            job["data"] += body
            return Response(201)
        if len(parts) == 1 and method == "PATCH":
            state = (self._json(body) or {}).get("state")
            if state == "UploadComplete":
                if info["state"] != "Open":
                    raise SalesforceError(409, "INVALIDJOBSTATE", "Job is not open")
                info["state"] = "UploadComplete"
                self._parse_job(job)
                answer = dict(info)
                if self.faults.bulk_background and info["state"] == "UploadComplete":
                    threading.Thread(target=self._work_job, args=(job,), daemon=True).start()
                return Response(200, answer)
            if state == "Aborted":
                if info["state"] in ("JobComplete", "Failed", "Aborted"):
                    raise SalesforceError(409, "INVALIDJOBSTATE", f"Job is already {info['state']}")
                info["state"] = "Aborted"
                return Response(200, dict(info))
            raise SalesforceError(400, "INVALIDJOBSTATE", f"invalid state: {state}")
        if len(parts) == 1 and method == "GET":
            job["polls"] += 1
            if info["state"] in ("UploadComplete", "InProgress"):
                self._advance_job(job)
            shown = dict(info)
            if info["state"] == "JobComplete" and job["polls"] == 1:
                shown["state"] = "InProgress"  # a real job is InProgress for a while
            return Response(200, shown)
        if len(parts) == 1 and method == "DELETE":
            self.jobs.pop(parts[0], None)
            return Response(204)
        if len(parts) == 2 and method == "GET" and parts[1] in ("successfulResults", "failedResults"):
            key, extra = (
                ("success", ["sf__Id", "sf__Created"])
                if parts[1] == "successfulResults"
                else (
                    "failed",
                    ["sf__Id", "sf__Error"],
                )
            )
            return self._csv_response(info, [extra + job["header"], *job[key]])
        if len(parts) == 2 and method == "GET" and parts[1] == "unprocessedrecords":
            rows = [cells for _, cells in job["rows"][job["next"] :]] if info["state"] in ("Failed", "Aborted") else []
            return self._csv_response(info, [job["header"], *rows])
        raise SalesforceError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")

    @staticmethod
    def _csv_response(info: dict[str, Any], rows: list[list[str]]) -> Response:
        text = bulk_csv.write(rows, info["columnDelimiter"], info["lineEnding"])
        return Response(200, text, content_type="text/csv")

    def _parse_job(self, job: dict[str, Any]) -> None:
        info = job["info"]
        try:
            text = bytes(job["data"]).decode("utf-8")
        except UnicodeDecodeError:
            info["state"], info["errorMessage"] = "Failed", "InvalidBatch : the data is not UTF-8"
            return
        try:
            rows = bulk_csv.parse(text, info["columnDelimiter"], info["lineEnding"])
        except bulk_csv.CsvRowError as exc:
            info["state"], info["errorMessage"] = "Failed", f"InvalidBatch : {exc}"
            return
        if not rows:
            info["state"], info["errorMessage"] = "Failed", "InvalidBatch : No data in job"
            return
        job["header"] = header = rows[0][1]
        for line, cells in rows[1:]:
            if len(cells) != len(header):
                info["state"] = "Failed"
                info["errorMessage"] = (
                    f"InvalidBatch : line {line}: {len(cells)} values for {len(header)} columns in the header"
                )
                return
        job["rows"] = rows[1:]
        job["data"] = bytearray()  # parsed: the raw upload is not needed any more

    def _work_job(self, job: dict[str, Any]) -> None:
        """Process a job in the background, a chunk at a time (polls are answered in between)."""
        while job["info"]["state"] in ("UploadComplete", "InProgress"):
            with self.lock:
                self._advance_job(job, chunk=10_000)

    def _advance_job(self, job: dict[str, Any], chunk: int | None = None) -> None:
        """One poll's worth of processing (``faults.bulk_rows_per_poll``, all by default)."""
        info, faults = job["info"], self.faults
        if faults.bulk_hold:
            info["state"] = "InProgress"
            return
        if faults.bulk_background and chunk is None:
            return  # a poll only looks; the worker thread processes
        rows = job["rows"]
        step = chunk or faults.bulk_rows_per_poll
        end = len(rows) if step is None else min(len(rows), job["next"] + step)
        sobject, ext_field, header = info["object"], info["externalIdFieldName"], job["header"]
        key = self._ext_key
        seen = (
            Counter(key(dict(zip(header, c, strict=True)).get(ext_field)) for _, c in rows)
            if job["next"] == 0
            else None
        )
        if seen is not None:
            job["seen"] = seen
        seen = job["seen"]
        while job["next"] < end:
            if faults.bulk_fail_after is not None and info["numberRecordsProcessed"] >= faults.bulk_fail_after:
                info["state"] = "Failed"
                info["errorMessage"] = "InternalServerError : the job failed while processing; resubmit the rest"
                return
            _, cells = rows[job["next"]]
            job["next"] += 1
            values: dict[str, Any] = {}
            for col, val in zip(header, cells, strict=True):
                if val == "":  # an empty value is ignored (on insert, the field is not set)
                    continue
                val = None if val == "#N/A" else val  # #N/A sets the field to null
                if "." in col:
                    rel, sub = col.split(".", 1)
                    values[rel] = {sub: val}
                else:
                    values[col] = val
            try:
                if info["operation"] == "upsert":
                    ext_value = values.get(ext_field)
                    if seen[key(ext_value)] > 1:
                        raise SalesforceError(
                            400, "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {ext_value}", [ext_field]
                        )
                    record, created = self._upsert(sobject, ext_field, ext_value, values)
                else:
                    record, created = self._create(sobject, values), True
                job["success"].append([record["Id"], "true" if created else "false", *cells])
            except SalesforceError as exc:
                fields = ":".join(exc.fields)
                job["failed"].append(["", f"{exc.code}:{exc.message}:{fields} --", *cells])
                info["numberRecordsFailed"] += 1
            info["numberRecordsProcessed"] += 1
        info["state"] = "JobComplete" if job["next"] >= len(rows) else "InProgress"
