"""Lead creation and conversion for the REST API.

Creation uses the lead form rules of the file import (:mod:`hotcrm.leads.rules`): the same
normalization and the same duplicate rules. An email that belongs to an open Lead updates
that Lead (200, ``action: updated``); one that belongs to a converted Lead or a Contact is
refused with 409 (``LEAD_ALREADY_CONVERTED`` / ``CONTACT_EXISTS``), as the import reports
those rows instead of loading them.

Conversion is a CRM rule (:mod:`hotcrm.crm.conversion`); this module runs it for a request
(with the rate-limit count as its gate on PostgreSQL) and turns its domain errors into
:class:`ApiError` answers (:func:`hotcrm.api.errors.from_crm_error`).

On PostgreSQL the API uses the ``*_async`` functions below instead: each request is one
statement that also counts it against the rate limit (see the comments there).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotcrm.api import ratelimit
from hotcrm.api.errors import ApiError, from_crm_error
from hotcrm.api.schemas import API_TO_BODY, E164_PATTERN, LEAD_BODY_FIELDS, LeadCreate
from hotcrm.crm import conversion, services
from hotcrm.crm.db import get_engine, is_postgresql, session_scope
from hotcrm.crm.errors import ContactExists, ConvertedLeadExists, CrmError, LeadBeingCreated
from hotcrm.crm.models import Lead, api_to_attr, attr_to_api
from hotcrm.crm.statements import typed_param
from hotcrm.leads.rules import match_existing, normalize_lead
from hotcrm.web import jsonbody

API_REQUIRED = ("FirstName", "LastName", "Company")
_E164 = re.compile(E164_PATTERN)
MAX_ID_LENGTH = 64


def _plain(value: Any) -> Any:
    """JSON-friendly value: Decimal -> float, naive datetime -> UTC-aware."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_FIELD_CACHE: dict[type, list[tuple[str, str]]] = {}


def record_to_api(record, fields: list[str] | None = None) -> dict[str, Any]:
    """A CRM record by API names, ready for JSON."""
    if fields is None:
        # (API name, attribute) pairs once per model: every response needs them.
        pairs = _FIELD_CACHE.get(type(record))
        if pairs is None:
            pairs = [(attr_to_api(c.key), c.key) for c in type(record).__table__.columns]
            _FIELD_CACHE[type(record)] = pairs
    else:
        pairs = [(name, api_to_attr(name)) for name in fields]
    return {name: _plain(getattr(record, attr)) for name, attr in pairs}


@contextmanager
def statement_session(url: str) -> Iterator[Session]:
    """A session whose statements each commit on their own, for single-statement work (the
    credential check, the rate-limit count, reads by id). On PostgreSQL it is autocommit: the
    counter row of a busy credential is locked only while its one UPDATE runs, not across
    round trips, and BEGIN/COMMIT cost no round trips. SQLite keeps a transaction (its
    writers are serialised anyway)."""
    if not is_postgresql(url):
        with session_scope(url) as session:
            yield session
        return
    with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        session = Session(bind=connection)
        try:
            yield session
        finally:
            session.close()


def _text_problem(value: str) -> str | None:
    # PostgreSQL cannot store NUL, and a lone surrogate is not UTF-8: refuse both as client errors.
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def safe_text(value: str) -> str:
    """``value`` if it can be sent back as JSON text, else its escaped repr (a client's odd key or value)."""
    return value if _text_problem(value) is None else ascii(value)


def validate_lead_body(raw: bytes) -> tuple[dict[str, Any], bool]:
    """Validate a lead creation body; returns (clean values by API name, whether LeadSource was given).

    Raises ApiError 400 VALIDATION_ERROR listing every failing field at once: shape and type
    errors (pydantic) and the lead rules' errors (required, email, phone, lengths).
    """
    try:
        body = jsonbody.loads(raw)
    except jsonbody.JsonBodyError as exc:
        raise ApiError(400, "INVALID_JSON", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_ERROR", "The request body must be a JSON object")
    problems: dict[str, str] = {}
    for key in [k for k in body if _text_problem(k)]:
        problems[ascii(key)] = "unknown field (its name is not valid text)"
        del body[key]
    try:
        LeadCreate.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "body"
            if error["type"] == "extra_forbidden":
                message = f"unknown field; allowed: {', '.join(LEAD_BODY_FIELDS)}"
            elif error["type"] == "missing":
                message = "is required"
            else:
                message = error["msg"]
            problems.setdefault(field, message)
    for field, value in body.items():
        if isinstance(value, str) and field not in problems and (problem := _text_problem(value)):
            problems[field] = problem
    # The lead rules see only the fields that passed the shape check, so each field is reported once.
    values = {LEAD_BODY_FIELDS[k]: v for k, v in body.items() if k in LEAD_BODY_FIELDS and k not in problems}
    required = [f for f in API_REQUIRED if API_TO_BODY[f] not in problems]
    clean, errors = normalize_lead(values, default_source="API", required=required)
    for error in errors:
        problems.setdefault(API_TO_BODY.get(error.field, error.field), error.message)
    if "Phone" in clean and not _E164.match(clean["Phone"]):
        problems.setdefault("phone", f"{clean['Phone']!r} does not match {E164_PATTERN}")
    if problems:
        order = list(LEAD_BODY_FIELDS)
        details = [
            {"field": safe_text(f), "message": safe_text(m)}
            for f, m in sorted(problems.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99)
        ]
        raise ApiError(400, "VALIDATION_ERROR", f"The lead is not valid: {len(details)} field(s) failed", details)
    return clean, "leadSource" in body and bool(clean.get("LeadSource"))


def create_lead(database_url: str, clean: dict[str, Any], source_given: bool) -> tuple[dict[str, Any], str]:
    """Create the lead, or update the open lead with the same email; returns (lead by API names, action)."""
    for attempt in range(2):
        try:
            return _create_lead_once(database_url, clean, source_given)
        except IntegrityError:
            # A concurrent request inserted the same email between our check and our insert:
            # run again, and this time the email is found and updated.
            if attempt:
                raise from_crm_error(LeadBeingCreated()) from None
    raise AssertionError("unreachable")


def _create_lead_once(database_url: str, clean: dict[str, Any], source_given: bool) -> tuple[dict[str, Any], str]:
    with session_scope(database_url) as session:
        email = clean.get("Email")
        match = match_existing(session, [email]).get(email) if email else None
        if match is not None and match.kind == "contact":
            raise _contact_exists(match.record_id)
        if match is not None and match.kind == "converted_lead":
            raise _already_converted(match.record_id)
        if match is not None:
            lead = session.execute(select(Lead).where(Lead.id == match.record_id).with_for_update()).scalar_one()
            if lead.status == "Converted":  # converted between the match and the lock
                raise _already_converted(lead.id)
            changes = {k: v for k, v in clean.items() if k != "Status" and (k != "LeadSource" or source_given)}
            services.update(session, Lead, lead.id, changes)
            return record_to_api(lead), "updated"
        lead = services.create(session, Lead, clean)
        return record_to_api(lead), "created"


# --- PostgreSQL hot path: one statement counts the request and does its work ---------------
#
# Creation: the rate-limit count, the import's duplicate check by email (Leads and Contacts)
# and the INSERT in one autocommit statement (data-modifying CTEs see one snapshot and commit
# together). The lead is inserted only when the request is within its limit and the email is
# new; ON CONFLICT covers a concurrent insert of the same email after the snapshot. Anything
# but a plain creation (an open lead to update, a race) goes to the ORM path above, already counted.

_LEAD_COLUMNS = list(Lead.__table__.columns)
_LEAD_API = [(attr_to_api(c.key), c.key) for c in _LEAD_COLUMNS]
# (attribute, API name, default: a callable, a constant or None) of every column, in order.
_LEAD_DEFAULTS = [
    (
        column.key,
        attr_to_api(column.key),
        None if column.default is None else column.default.arg,
        column.default is not None and column.default.is_callable,
    )
    for column in _LEAD_COLUMNS
]


CREATE_LEAD_SQL = (
    f"WITH hit AS ({ratelimit.HIT_CTE}), "
    "found AS ("
    "SELECT CASE WHEN status = 'Converted' THEN 'converted_lead' ELSE 'lead' END AS kind, id "
    "FROM leads WHERE email = %(email)s "
    "UNION ALL SELECT 'contact', id FROM contacts WHERE email = %(email)s), "
    f"ins AS (INSERT INTO leads ({', '.join(c.name for c in _LEAD_COLUMNS)}) "
    f"SELECT {', '.join(typed_param(c) for c in _LEAD_COLUMNS)} FROM hit "
    "WHERE hit.hits <= %(rl_limit)s AND NOT EXISTS (SELECT 1 FROM found) "
    "ON CONFLICT (email) DO NOTHING RETURNING 1) "
    "SELECT hit.hits, (SELECT count(*) FROM ins), found.kind, found.id FROM hit LEFT JOIN found ON true"
)

READ_LEAD_SQL = (
    f"WITH hit AS ({ratelimit.HIT_CTE}) "
    f"SELECT hit.hits, {', '.join(f'l.{c.name}' for c in _LEAD_COLUMNS)} "
    "FROM hit LEFT JOIN leads l ON l.id = %(lead_id)s"
)

# Which match decides when an email is found more than once (as the import's match_existing).
_MATCH_RANK = {"converted_lead": 2, "contact": 1, "lead": 0}


def _new_lead_values(clean: dict[str, Any]) -> dict[str, Any]:
    """Every column's value of a new lead: the clean fields, else the model's defaults (Id, dates...)."""
    values: dict[str, Any] = {}
    for attr, name, default, is_callable in _LEAD_DEFAULTS:
        value = clean.get(name)
        if value is None and default is not None:
            value = default(None) if is_callable else default
        values[attr] = value
    return values


async def create_lead_async(
    connection, bucket: str, limit, clean: dict[str, Any]
) -> tuple[ratelimit.RateDecision, dict[str, Any] | ApiError | None]:
    """Count the request and create the lead in one statement (PostgreSQL, autocommit).

    Returns (rate decision, the new lead by API names); the lead is None when the request is
    over its limit (nothing written) or when the ORM path must decide (an open lead has that
    email, or a concurrent request inserted it); an ApiError 409 (to raise once the decision
    is recorded) for a converted lead or a contact.
    """
    key, window_start, now = ratelimit.window(bucket, limit)
    values = _new_lead_values(clean)
    params = {**values, **ratelimit.hit_params(key, window_start), "rl_limit": limit.requests}
    cursor = await connection.execute(CREATE_LEAD_SQL, params)
    rows = await cursor.fetchall()
    hits, inserted = rows[0][0], rows[0][1]
    await ratelimit.after_hit_async(connection, key, window_start, hits, now)
    decision = ratelimit.decide(limit, hits, window_start, now)
    if not decision.allowed:
        return decision, None
    if inserted:
        return decision, {name: _plain(values[attr]) for name, attr in _LEAD_API}
    found = [(kind, record_id) for _h, _i, kind, record_id in rows if kind is not None]
    if found:
        kind, record_id = max(found, key=lambda match: _MATCH_RANK[match[0]])
        if kind == "contact":
            return decision, _contact_exists(record_id)
        if kind == "converted_lead":
            return decision, _already_converted(record_id)
    return decision, None


async def read_lead_async(connection, bucket: str, limit, lead_id: str) -> tuple[ratelimit.RateDecision, dict | None]:
    """Count the request and read the lead in one statement; (decision, the lead or None when not found)."""
    key, window_start, now = ratelimit.window(bucket, limit)
    params = {**ratelimit.hit_params(key, window_start), "lead_id": lead_id}
    cursor = await connection.execute(READ_LEAD_SQL, params)
    row = await cursor.fetchone()
    await ratelimit.after_hit_async(connection, key, window_start, row[0], now)
    decision = ratelimit.decide(limit, row[0], window_start, now)
    if row[1] is None:
        return decision, None
    return decision, {name: _plain(value) for (name, _attr), value in zip(_LEAD_API, row[1:], strict=True)}


def _contact_exists(contact_id: str) -> ApiError:
    return from_crm_error(ContactExists(contact_id))


def _already_converted(lead_id: str) -> ApiError:
    return from_crm_error(ConvertedLeadExists(lead_id))


async def convert_lead_async(
    connection, bucket: str, limit, lead_id: str, *, create_opportunity: bool
) -> tuple[ratelimit.RateDecision, dict[str, Any] | ApiError | None]:
    """Count the request and convert the lead in one statement (PostgreSQL, autocommit; the
    count is the conversion's gate: nothing is written over the limit). Returns (decision, what
    was created), or (decision, ApiError 404 LEAD_NOT_FOUND / 400 ALREADY_CONVERTED) for the
    caller to raise once the decision is recorded."""
    key, window_start, now = ratelimit.window(bucket, limit)
    gate_params = {**ratelimit.hit_params(key, window_start), "rl_limit": limit.requests}
    hits, outcome = await conversion.convert_lead_async(
        connection, lead_id, create_opportunity=create_opportunity, gate=ratelimit.GATE_CTES, gate_params=gate_params
    )
    await ratelimit.after_hit_async(connection, key, window_start, hits, now)
    decision = ratelimit.decide(limit, hits, window_start, now)
    if isinstance(outcome, CrmError):
        return decision, from_crm_error(outcome)
    return decision, outcome


def check_lead_id(lead_id: str) -> None:
    """ApiError 404 LEAD_NOT_FOUND for an id no lead can have (too long, NUL, not text)."""
    if len(lead_id) > MAX_ID_LENGTH or _text_problem(lead_id):
        raise _lead_not_found(lead_id)


def lead_not_found(lead_id: str) -> ApiError:
    """ApiError 404 LEAD_NOT_FOUND naming the id."""
    return _lead_not_found(lead_id)


def get_lead(database_url: str, lead_id: str) -> dict[str, Any]:
    """A lead by API names, or ApiError 404 LEAD_NOT_FOUND."""
    if len(lead_id) > MAX_ID_LENGTH or _text_problem(lead_id):
        raise _lead_not_found(lead_id)
    with statement_session(database_url) as session:
        lead = session.get(Lead, lead_id)
        if lead is None:
            raise _lead_not_found(lead_id)
        return record_to_api(lead)


def _lead_not_found(lead_id: str) -> ApiError:
    shown = lead_id if len(lead_id) <= MAX_ID_LENGTH and not _text_problem(lead_id) else lead_id[:20] + "..."
    return ApiError(404, "LEAD_NOT_FOUND", f"No lead with id {shown!r}")


def convert_lead(database_url: str, lead_id: str, *, create_opportunity: bool) -> dict[str, Any]:
    """Convert a lead in one transaction (:func:`hotcrm.crm.conversion.convert_lead`); returns the
    created account, contact and opportunity (or None). ApiError 404 LEAD_NOT_FOUND, or 400
    ALREADY_CONVERTED (also for the loser of two concurrent conversions)."""
    check_lead_id(lead_id)
    try:
        with session_scope(database_url) as session:
            return conversion.convert_lead(session, lead_id, create_opportunity=create_opportunity)
    except CrmError as exc:
        raise from_crm_error(exc) from None
