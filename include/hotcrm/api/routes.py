"""The REST API under ``/hotcrm/api/v1``: leads (create, read, convert), import file status,
OAuth 2.0 client-credentials tokens, and connecting a Salesforce org.

Every protected route goes through :class:`ApiRoute`, which, before FastAPI reads the body,
authenticates the caller (``X-API-Key`` or ``Authorization: Bearer``), counts the request
against the credential's rate limit for the route, checks the route's scope, then checks the
content type (415) and the body size (413). So an unauthenticated client learns nothing
about the body it sent, and every request of a credential counts. Errors are
``{"error", "code", "details"?}`` with ``RateLimit-*`` headers where a limit applied.

On PostgreSQL, lead creation, reads and conversions count the request in the same statement
that does their work (``counts_itself``): ApiRoute then defers the count, and counts any
request refused before that statement (scope, body, validation) itself, before answering.
The outcome is the same: each request counted once, 429 before any other refusal. The
database work of these routes runs on the event loop (:mod:`hotcrm.api.pgpool`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Body, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, OAuth2
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from hotcrm.api import auth, pgpool, ratelimit, salesforce_oauth, throttle
from hotcrm.api import leads as lead_service
from hotcrm.api.config import RateLimit, get_settings
from hotcrm.api.errors import ApiError, from_crm_error
from hotcrm.api.leads import statement_session
from hotcrm.api.schemas import (
    ConvertRequest,
    ConvertResponse,
    ErrorBody,
    ImportResponse,
    LeadCreate,
    LeadResponse,
    SalesforceConnected,
    TokenResponse,
)
from hotcrm.crm.db import is_postgresql, session_scope
from hotcrm.crm.errors import CrmError
from hotcrm.web import jsonbody
from hotcrm.web.responses import database_url, error_response

PROTECTION_ATTR = "__hotcrm_protection__"


@dataclass(frozen=True)
class Protection:
    """What a route needs: a scope (None: no credential), its rate-limit name, the body it takes,
    and whether its endpoint counts the request itself in its own statement (PostgreSQL)."""

    route: str
    scope: str | None
    body: str | None = None  # "json", "form" or None
    default_limit: RateLimit | None = None
    counts_itself: bool = False


def protected(
    route: str,
    scope: str | None,
    *,
    body: str | None = None,
    limit: RateLimit | None = None,
    counts_itself: bool = False,
):
    """Mark an endpoint with the credential scope and rate-limit route name it needs."""

    def mark(endpoint: Callable) -> Callable:
        setattr(endpoint, PROTECTION_ATTR, Protection(route, scope, body, limit, counts_itself))
        return endpoint

    return mark


class RateCount:
    """One request's rate-limit count: counted once, by :meth:`count` or by an endpoint's own
    statement (which sets :attr:`decision`); refused with 429 when over the limit."""

    def __init__(self, principal: auth.Principal, route: str, limit: RateLimit) -> None:
        self.principal = principal
        self.bucket = f"{principal.rate_key}:{route}"
        self.limit = limit
        self.decision: ratelimit.RateDecision | None = None

    def record(self, decision: ratelimit.RateDecision) -> None:
        """Keep the decision of this request's count; ApiError 429 when it is over the limit."""
        self.decision = decision
        if not decision.allowed:
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"Rate limit of {self.limit.requests} requests per {self.limit.seconds} s exceeded for this "
                f"credential; retry in {decision.reset_after} s",
                headers=decision.headers(),
            )

    async def count(self, request: Request) -> None:
        """Count the request now (once), in its own statement."""
        if self.decision is not None:
            return
        url = await resolved_database_url(request)
        if _is_postgresql(url):
            async with pg_pool(request, url).connection() as connection:
                decision = await ratelimit.hit_async(connection, self.bucket, self.limit)
        else:

            def work() -> ratelimit.RateDecision:
                with statement_session(url) as session:
                    return ratelimit.hit(session, self.bucket, self.limit)

            decision = await run_in_threadpool(work)
        self.record(decision)

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` headers of the decision, once counted."""
        return self.decision.headers() if self.decision is not None else {}


@functools.lru_cache(maxsize=64)
def _is_postgresql(url: str) -> bool:
    return is_postgresql(url)


async def resolved_database_url(request: Request) -> str:
    """:func:`database_url`, resolved off the event loop the first time (it may read an Airflow connection)."""
    if callable(request.app.state.database_url):
        return await run_in_threadpool(database_url, request)
    return request.app.state.database_url


def pg_pool(request: Request, url: str) -> pgpool.AsyncPool:
    """The app's asynchronous PostgreSQL pool for this event loop."""
    return pgpool.pool_for(request.app.state, url, get_settings(request.app).db_pool_size)


async def _authenticate(request: Request) -> auth.Principal:
    """The caller (``X-API-Key`` or ``Authorization: Bearer``), or ApiError 401/403; a failure
    counts against the source address's limit (:mod:`hotcrm.api.throttle`), 429 over it."""
    try:
        return await _identify(request)
    except ApiError as error:
        if error.code not in throttle.FAILURE_CODES:
            raise
        raise await _count_failure(request, error) from None


async def _count_failure(request: Request, error: ApiError) -> ApiError:
    """Count a failed authentication of ``request``'s source address (own transaction); the error to answer."""
    settings = get_settings(request.app)
    url = await resolved_database_url(request)
    address = throttle.source_address(request)
    if _is_postgresql(url):
        async with pg_pool(request, url).connection() as connection:
            return await throttle.count_failure_async(connection, url, address, settings, error)

    def work() -> ApiError:
        with statement_session(url) as session:
            return throttle.count_failure(session, url, address, settings, error)

    return await run_in_threadpool(work)


async def _identify(request: Request) -> auth.Principal:
    """The caller, or ApiError 401/403. API keys verified lately come from the process's cache
    (``HOTCRM_API_KEY_CACHE_TTL``); other keys are looked up unless the source address is
    over its failure limit (429 without a look-up)."""
    settings = get_settings(request.app)
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "INVALID_TOKEN",
                "The Authorization header must be 'Bearer <token>' (or send an API key in X-API-Key)",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        url = await resolved_database_url(request)
        secret = settings.jwt_secret or auth.cached_signing_secret(url)
        if secret is None:
            secret = await run_in_threadpool(auth.signing_secret, url, settings)
        return auth.verify_token(secret, settings, token.strip())
    if not api_key:
        raise ApiError(
            401,
            "MISSING_API_KEY",
            "No credential: send an API key in X-API-Key or an OAuth bearer token in Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="hotcrm"'},
        )
    url = await resolved_database_url(request)
    key_hash = auth.hash_secret(api_key)
    ttl = settings.key_cache_ttl_seconds
    principal = auth.key_cache.get(url, key_hash, ttl)
    if principal is not None:
        return principal
    throttle.check_blocked(url, throttle.source_address(request))
    if _is_postgresql(url):
        async with pg_pool(request, url).connection() as connection:
            principal = await auth.authenticate_api_key_async(connection, api_key)
    else:

        def work() -> auth.Principal:
            with statement_session(url) as session:
                return auth.authenticate_api_key(session, api_key)

        principal = await run_in_threadpool(work)
    auth.key_cache.put(url, key_hash, principal, ttl)
    return principal


async def _authorize(request: Request, protection: Protection) -> RateCount:
    """Authenticate the request and count it against the credential's limit for the route,
    unless its endpoint counts it in its own statement (PostgreSQL). ApiRoute counts any
    request refused before that, so every request of a credential counts once and a client
    over its limit always gets 429."""
    settings = get_settings(request.app)
    principal = await _authenticate(request)
    limit = settings.rate_limit(protection.route, protection.default_limit)
    rate = RateCount(principal, protection.route, limit)
    request.state.principal = principal
    request.state.rate = rate
    if not (protection.counts_itself and _is_postgresql(await resolved_database_url(request))):
        await rate.count(request)
    return rate


def _check_scope(principal: auth.Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise ApiError(
            403,
            "INSUFFICIENT_SCOPE",
            f"This credential lacks the {scope!r} scope",
            {"required": scope, "granted": sorted(principal.scopes)},
        )


async def _read_body(request: Request, kind: str, max_bytes: int) -> None:
    """Check the content type (415) and read the body up to ``max_bytes`` (413), for FastAPI to reuse."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    expected = "application/json" if kind == "json" else "application/x-www-form-urlencoded"
    if content_type != expected and not (kind == "json" and content_type.endswith("+json")):
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Send the body as {expected} (got {content_type or 'no Content-Type'})",
        )
    too_large = ApiError(413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {max_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if kind == "json":
        # Refused here, in the one error shape with the rate-limit headers, rather than by
        # FastAPI's own parsing (a bare 400 HTTP_ERROR) or json's recursion (a 500).
        problem = jsonbody.encoding_or_depth_problem(body)
        if problem:
            raise ApiError(400, "INVALID_JSON", problem)
    request._body = body  # Starlette's cache: FastAPI reads the body from here


class ApiRoute(APIRoute):
    """A route that authenticates, rate-limits and checks the body before FastAPI runs the endpoint,
    and answers :class:`ApiError` in the one error shape."""

    def get_route_handler(self):
        """The FastAPI handler wrapped with the route's protection."""
        documented = self.dependant
        # The security schemes are dependencies for the OpenAPI document only (this wrapper
        # checks credentials): the handler runs without them, saving their work on every request.
        self.dependant = dataclasses.replace(
            documented, dependencies=[d for d in documented.dependencies if d.call not in _DOCUMENTED_ONLY]
        )
        try:
            handler = super().get_route_handler()
        finally:
            self.dependant = documented
        protection: Protection | None = getattr(self.endpoint, PROTECTION_ATTR, None)

        async def wrapped(request: Request) -> Response:
            rate: RateCount | None = None
            try:
                if protection is not None:
                    if protection.scope is not None:
                        rate = await _authorize(request, protection)
                        _check_scope(rate.principal, protection.scope)
                    if protection.body:
                        await _read_body(request, protection.body, get_settings(request.app).max_body_bytes)
                response = await handler(request)
            except (ApiError, CrmError, RequestValidationError) as exc:
                error = from_crm_error(exc) if isinstance(exc, CrmError) else exc
                if rate is not None and rate.decision is None:
                    # Refused before the endpoint counted it: it still counts (and 429 wins).
                    try:
                        await rate.count(request)
                    except ApiError as limited:
                        error = limited
                headers = rate.headers() if rate is not None else {}
                if isinstance(error, ApiError):
                    return error_response(
                        error.status, error.code, error.message, error.details, headers={**headers, **error.headers}
                    )
                # The app's own answer for an invalid body, plus this credential's rate-limit headers.
                details = [
                    {
                        "field": lead_service.safe_text(".".join(str(p) for p in err.get("loc", ()) if p != "body")),
                        "message": lead_service.safe_text(str(err.get("msg"))),
                    }
                    for err in error.errors()
                ]
                return error_response(400, "VALIDATION_ERROR", "The request is not valid", details, headers=headers)
            if rate is not None:
                response.headers.update(rate.headers())
            return response

        return wrapped


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "invalid request (details list every failing field)",
        401: "MISSING_API_KEY, INVALID_TOKEN or INVALID_CLIENT",
        403: "INVALID_API_KEY or INSUFFICIENT_SCOPE",
        404: "not found",
        409: "conflict with an existing record",
        413: "PAYLOAD_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
        429: "RATE_LIMITED (Retry-After and RateLimit-* headers)",
        502: "the Salesforce org refused or could not be reached",
        503: "the server is not configured for this",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


_AUTH_ERRORS = (401, 403, 429)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (`python -m hotcrm apikeys`)")
oauth2_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(tokenUrl="oauth/token", scopes=dict(auth.SCOPE_HELP))
    ),
    auto_error=False,
    description="bearer tokens from POST /hotcrm/api/v1/oauth/token",
)
# Only for the OpenAPI document: ApiRoute does the checking.
_SECURED = [Security(api_key_header), Security(oauth2_scheme)]
_DOCUMENTED_ONLY = (api_key_header, oauth2_scheme)

router = APIRouter(prefix="/api/v1", route_class=ApiRoute)


@router.post(
    "/crm/leads",
    tags=["leads"],
    status_code=201,
    response_model=LeadResponse,
    dependencies=_SECURED,
    responses={200: {"model": LeadResponse, "description": "an open lead with that email was updated"}}
    | _errors(400, *_AUTH_ERRORS, 409, 413, 415),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": LeadCreate.model_json_schema()}}}
    },
)
@protected("leads.create", "leads:write", body="json", counts_itself=True)
async def create_lead(request: Request) -> Response:
    """Create a Lead (scope `leads:write`) with the lead import's normalization and duplicate rules:
    an email of an open Lead updates it (200), of a converted Lead or a Contact is a 409."""
    raw = await request.body()
    url = await resolved_database_url(request)
    rate: RateCount = request.state.rate
    lead = None
    if rate.decision is None:
        # PostgreSQL: the count, the duplicate check and the INSERT in one statement, on the event loop.
        clean, source_given = lead_service.validate_lead_body(raw)
        async with pg_pool(request, url).connection() as connection:
            decision, lead = await lead_service.create_lead_async(connection, rate.bucket, rate.limit, clean)
        rate.record(decision)
        if isinstance(lead, ApiError):
            raise lead
        action = "created"
        if lead is None:  # an open lead to update, or a concurrent insert of that email: the ORM decides
            lead, action = await run_in_threadpool(lead_service.create_lead, url, clean, source_given)
    else:

        def work():
            clean, source_given = lead_service.validate_lead_body(raw)
            return lead_service.create_lead(url, clean, source_given)

        lead, action = await run_in_threadpool(work)
    return Response(
        LeadResponse(action=action, data=lead).model_dump_json(),
        status_code=201 if action == "created" else 200,
        media_type="application/json",
        headers={"Location": f"{request.url.path}/{lead['Id']}"},
    )


@router.get(
    "/crm/leads/{lead_id}",
    tags=["leads"],
    response_model=LeadResponse,
    dependencies=_SECURED,
    responses=_errors(*_AUTH_ERRORS, 404),
)
@protected("leads.read", "leads:read", counts_itself=True)
async def get_lead(request: Request, lead_id: str) -> Response:
    """A Lead by Id (scope `leads:read`); 404 LEAD_NOT_FOUND."""
    url = await resolved_database_url(request)
    rate: RateCount = request.state.rate
    if rate.decision is None:
        # PostgreSQL: the count and the read in one statement, on the event loop.
        lead_service.check_lead_id(lead_id)
        async with pg_pool(request, url).connection() as connection:
            decision, lead = await lead_service.read_lead_async(connection, rate.bucket, rate.limit, lead_id)
        rate.record(decision)
        if lead is None:
            raise lead_service.lead_not_found(lead_id)
    else:
        lead = await run_in_threadpool(lead_service.get_lead, url, lead_id)
    return Response(LeadResponse(action="read", data=lead).model_dump_json(), media_type="application/json")


@router.post(
    "/crm/leads/{lead_id}/convert",
    tags=["leads"],
    response_model=ConvertResponse,
    dependencies=_SECURED,
    responses=_errors(400, *_AUTH_ERRORS, 404, 413, 415),
)
@protected("leads.convert", "leads:convert", body="json", counts_itself=True)
async def convert_lead(request: Request, lead_id: str, options: ConvertRequest = Body(...)) -> Response:
    """Convert a Lead (scope `leads:convert`) into an Account, a Contact and optionally an Opportunity,
    in one transaction with a `lead.converted` event; 404 LEAD_NOT_FOUND, 400 ALREADY_CONVERTED."""
    url = await resolved_database_url(request)
    rate: RateCount = request.state.rate
    if rate.decision is None:
        # PostgreSQL: the count and the whole conversion in one statement, on the event loop.
        lead_service.check_lead_id(lead_id)
        async with pg_pool(request, url).connection() as connection:
            decision, data = await lead_service.convert_lead_async(
                connection, rate.bucket, rate.limit, lead_id, create_opportunity=options.createOpportunity
            )
        rate.record(decision)
        if isinstance(data, ApiError):
            raise data
    else:
        data = await run_in_threadpool(
            lead_service.convert_lead, url, lead_id, create_opportunity=options.createOpportunity
        )
    return Response(ConvertResponse(data=data).model_dump_json(), media_type="application/json")


@router.get(
    "/imports/{file_id}",
    tags=["imports"],
    response_model=ImportResponse,
    dependencies=_SECURED,
    responses=_errors(*_AUTH_ERRORS, 404),
)
@protected("imports.read", "leads:read")
def get_import(request: Request, file_id: str) -> dict:
    """A lead import file's status and row counts (scope `leads:read`); 404 IMPORT_NOT_FOUND."""
    from hotcrm.leads.models import ImportFile

    not_found = ApiError(404, "IMPORT_NOT_FOUND", f"No import file with id {file_id[:64]!r}")
    if len(file_id) > lead_service.MAX_ID_LENGTH or lead_service._text_problem(file_id):
        raise not_found
    with statement_session(database_url(request)) as session:
        record = session.scalars(select(ImportFile).where(ImportFile.id == file_id)).first()
        if record is None:
            raise not_found
        data = {
            "fileId": record.id,
            "fileName": record.file_name,
            "status": record.status,
            "rowsRead": record.rows_read or 0,
            "inserted": record.inserted or 0,
            "updated": record.updated or 0,
            "duplicates": record.duplicates or 0,
            "rejected": record.rejected or 0,
            "notLoaded": record.not_loaded or 0,
            "error": record.error,
            "createdAt": lead_service._plain(record.created_at),
            "startedAt": lead_service._plain(record.started_at),
            "finishedAt": lead_service._plain(record.finished_at),
        }
    return {"success": True, "data": data}


# --- OAuth 2.0 ---------------------------------------------------------------------------

_TOKEN_FORM = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": {"type": "string", "description": "or HTTP Basic authentication"},
        "client_secret": {"type": "string", "description": "or HTTP Basic authentication"},
        "scope": {"type": "string", "description": "space-separated subset of the client's scopes (default: all)"},
    },
}


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            client_id, _, secret = decoded.partition(":")
            return unquote(client_id), unquote(secret)
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "INVALID_CLIENT", "The Basic authorization header is not valid base64") from None
    return form.get("client_id", ""), form.get("client_secret", "")


@router.post(
    "/oauth/token",
    tags=["oauth"],
    response_model=TokenResponse,
    responses=_errors(400, 401, 413, 415, 429),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _TOKEN_FORM}}}
    },
)
@protected("oauth.token", None, body="form")
async def issue_token(request: Request) -> Response:
    """OAuth 2.0 client-credentials grant (RFC 6749 §4.4): a short-lived signed bearer token with
    the client's scopes. Client credentials by HTTP Basic or in the form."""
    raw = await request.body()
    settings = get_settings(request.app)
    url = database_url(request)

    def work() -> tuple[dict, dict[str, str]]:
        try:
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise ApiError(400, "INVALID_REQUEST", "The form is not UTF-8") from None
        form = {k: v[0] for k, v in parsed.items()}
        if form.get("grant_type") != "client_credentials":
            raise ApiError(
                400,
                "UNSUPPORTED_GRANT_TYPE",
                "grant_type must be client_credentials",
                {"field": "grant_type", "oauthError": "unsupported_grant_type"},
            )
        address = throttle.source_address(request)
        try:
            client_id, secret = _client_credentials(request, form)
        except ApiError as error:
            with session_scope(url) as session:  # (raised after the commit: the count must stay)
                answer = throttle.count_failure(session, url, address, settings, error)
            raise answer from None
        if not client_id or not secret or len(client_id) > 64 or "\x00" in client_id + secret:
            error = ApiError(401, "INVALID_CLIENT", "Give client_id and client_secret (form fields or HTTP Basic)")
            with session_scope(url) as session:
                answer = throttle.count_failure(session, url, address, settings, error)
            raise answer
        with session_scope(url) as session:
            record = auth.find_client(session, client_id)
            try:
                client = auth.check_client(record, secret)
            except ApiError as error:
                failed = error
            else:
                failed = None
                allowed = client.scopes.split()
        if failed is not None:
            # Failures count per address, and per client only for a client that exists (junk ids
            # write nothing); over either limit a wrong secret gets 429. The right secret is
            # never refused for someone else's failures.
            with session_scope(url) as session:
                answer = throttle.count_client_failure(
                    session, url, address, client_id if record is not None else None, settings, failed
                )
            raise answer
        limit = settings.rate_limit("oauth.token")
        with session_scope(url) as session:
            # The client's own rate of token requests, counted once it is authenticated.
            decision = ratelimit.hit(session, f"client:{client_id}:oauth.token", limit)
        headers = decision.headers()
        if not decision.allowed:
            raise ApiError(429, "RATE_LIMITED", f"Too many token requests; retry in {decision.reset_after} s",
                           headers=headers)  # fmt: skip
        requested = form.get("scope", "").split() or allowed
        if not set(requested) <= set(allowed):
            raise ApiError(
                400,
                "INVALID_SCOPE",
                f"The client may not ask for: {' '.join(sorted(set(requested) - set(allowed)))}",
                {"allowed": allowed, "oauthError": "invalid_scope"},
                headers=headers,
            )
        token, ttl = auth.issue_token(auth.signing_secret(url, settings), settings, client_id, requested)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": " ".join(requested)}
        return body, headers

    body, headers = await run_in_threadpool(work)
    return JSONResponse(body, headers={**headers, "Cache-Control": "no-store", "Pragma": "no-cache"})


# --- Connecting a Salesforce org ---------------------------------------------------------


@router.get(
    "/oauth/salesforce/authorize",
    tags=["salesforce"],
    status_code=302,
    response_class=RedirectResponse,
    dependencies=_SECURED,
    responses={302: {"description": "redirect to the org's authorization page"}} | _errors(*_AUTH_ERRORS, 503),
)
@protected("salesforce.authorize", "salesforce:connect")
def salesforce_authorize(request: Request) -> Response:
    """Start connecting the Salesforce org (scope `salesforce:connect`): redirects to the org's
    authorization page with a one-time `state` and a PKCE S256 challenge."""
    settings = get_settings(request.app)
    redirect_uri = settings.salesforce.redirect_uri or str(request.url_for("salesforce_callback"))
    principal: auth.Principal = request.state.principal
    location = salesforce_oauth.begin_authorization(
        database_url(request), settings, redirect_uri, f"{principal.kind}:{principal.name}"
    )
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})


@router.get(
    "/oauth/salesforce/callback",
    name="salesforce_callback",
    tags=["salesforce"],
    response_model=SalesforceConnected,
    responses=_errors(400, 502, 503),
)
def salesforce_callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> dict:
    """Where the org sends the browser back: checks `state`, exchanges the code (with the PKCE
    verifier) and stores the refresh token encrypted. Never returns a token."""
    if error:
        raise ApiError(
            400,
            "SALESFORCE_AUTHORIZATION_DENIED",
            f"Salesforce did not authorize the connection: {error}"
            + (f" ({error_description[:200]})" if error_description else ""),
        )
    if not code or not state:
        raise ApiError(400, "VALIDATION_ERROR", "The callback needs both code and state query parameters")
    data = salesforce_oauth.complete_authorization(database_url(request), get_settings(request.app), code, state)
    return {"success": True, "data": data}
