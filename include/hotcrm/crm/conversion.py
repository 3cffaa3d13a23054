"""Lead conversion, a CRM rule: a Lead becomes an Account, a Contact and optionally an
Opportunity, the Lead is marked Converted and a ``lead.converted`` outbox event is written,
all in one transaction (any failure leaves nothing behind).

Two forms of the same rule, checked by one shared test specification
(``tests/integration/test_lead_conversion.py``):

- :func:`convert_lead`, on a SQLAlchemy session (SQLite and PostgreSQL). The Lead row is
  locked first (``SELECT ... FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already serialises
  writers), so two concurrent conversions convert it once.
- :func:`convert_lead_async`, one PostgreSQL statement on an async psycopg connection (the
  REST API's hot path): the Lead's UPDATE (only if it is not converted yet; a concurrent
  conversion waits for the row and then finds it converted), the records made from the
  updated row and the event, all or nothing. A caller may put a *gate* in front (a CTE named
  ``gate`` with columns ``value`` and ``allowed``, e.g. the API's rate-limit count): nothing
  is written unless it allows, and its value is handed back.

Both raise (or return) the domain errors of :mod:`hotcrm.crm.errors`: :class:`LeadNotFound`,
:class:`LeadAlreadyConverted` (also for the loser of two concurrent conversions).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotcrm.crm import services
from hotcrm.crm.errors import CrmError, LeadAlreadyConverted, LeadNotFound
from hotcrm.crm.events import record_event
from hotcrm.crm.models import Account, Contact, Lead, Opportunity, api_to_attr, new_id, utcnow
from hotcrm.crm.statements import default_params, insert_from

CONVERSION_EVENT = "lead.converted"
OPPORTUNITY_STAGE = "Prospecting"
OPPORTUNITY_SUFFIX = " - Opportunity"
# A Company may fill its column: cut it so "<Company> - Opportunity" fits the Opportunity's Name.
OPPORTUNITY_COMPANY_CHARS = Opportunity.__table__.c.name.type.length - len(OPPORTUNITY_SUFFIX)


def opportunity_name(company: str) -> str:
    """``<Company> - Opportunity``, the Company cut so the whole fits the Name column."""
    return company[:OPPORTUNITY_COMPANY_CHARS] + OPPORTUNITY_SUFFIX


def _records(lead: dict[str, Any], ids: dict[str, str | None]) -> dict[str, dict[str, Any] | None]:
    """The Account, Contact and Opportunity (None without its id) made from a lead's values
    (by attribute), by API names."""
    records: dict[str, dict[str, Any] | None] = {
        "account": {"Id": ids["account"], "Name": lead["company"], "Industry": lead["industry"],
                    "Phone": lead["phone"], "Website": lead["website"], "OwnerId": lead["owner_id"]},
        "contact": {"Id": ids["contact"], "FirstName": lead["first_name"], "LastName": lead["last_name"],
                    "Email": lead["email"], "Phone": lead["phone"], "AccountId": ids["account"],
                    "OwnerId": lead["owner_id"]},
        "opportunity": {"Id": ids["opportunity"], "Name": opportunity_name(lead["company"]),
                        "Stage": OPPORTUNITY_STAGE, "Amount": lead["estimated_value"],
                        "AccountId": ids["account"], "ContactId": ids["contact"], "OwnerId": lead["owner_id"]}
        if ids["opportunity"] else None,
    }  # fmt: skip
    return records


def _event_data(lead_id: str, ids: dict[str, str | None], when: datetime) -> dict[str, Any]:
    return {"leadId": lead_id, "accountId": ids["account"], "contactId": ids["contact"],
            "opportunityId": ids["opportunity"], "convertedDate": when.isoformat()}  # fmt: skip


# The lead's columns a conversion reads (attribute = column name for these).
_LEAD_COLUMNS = ("first_name", "last_name", "email", "phone", "company", "industry", "website",
                 "owner_id", "estimated_value")  # fmt: skip


def convert_lead(session: Session, lead_id: str, *, create_opportunity: bool) -> dict[str, Any]:
    """Convert a lead in ``session``'s transaction; returns the created ``account``, ``contact``
    and ``opportunity`` (or None) by API names. :class:`LeadNotFound`, :class:`LeadAlreadyConverted`."""
    # FOR UPDATE: a concurrent conversion waits here, then sees Status = Converted.
    lead = session.execute(select(Lead).where(Lead.id == lead_id).with_for_update()).scalar_one_or_none()
    if lead is None:
        raise LeadNotFound(lead_id)
    if lead.status == "Converted":
        raise LeadAlreadyConverted(
            lead_id, lead.converted_account_id, lead.converted_contact_id, lead.converted_opportunity_id
        )
    values = {column: getattr(lead, column) for column in _LEAD_COLUMNS}
    ids: dict[str, str | None] = {"account": new_id(), "contact": new_id()}
    ids["opportunity"] = new_id() if create_opportunity else None
    records = _records(values, ids)
    services.create(session, Account, records["account"])
    services.create(session, Contact, records["contact"])
    if records["opportunity"] is not None:
        services.create(session, Opportunity, records["opportunity"])
    now = utcnow()
    lead.status = "Converted"
    lead.converted_account_id = ids["account"]
    lead.converted_contact_id = ids["contact"]
    lead.converted_opportunity_id = ids["opportunity"]
    lead.converted_date = now
    session.flush()
    record_event(session, CONVERSION_EVENT, _event_data(lead.id, ids, now))
    return records


# --- PostgreSQL: the whole conversion in one statement ------------------------------------

NO_GATE = "gate AS (SELECT CAST(NULL AS BIGINT) AS value, TRUE AS allowed)"


def _attr_expressions(values: dict[str, str]) -> dict[str, str]:
    """SQL expressions by attribute, from SQL expressions by API name."""
    return {api_to_attr(name): sql for name, sql in values.items()}


@functools.cache
def conversion_sql(gate: str = NO_GATE) -> str:
    """The one-statement conversion behind ``gate`` (CTEs ending with one named ``gate``)."""
    account = insert_from(
        Account, "acc",
        _attr_expressions({"Name": "upd.company", "Industry": "upd.industry", "Phone": "upd.phone",
                                    "Website": "upd.website", "OwnerId": "upd.owner_id"}),
        "upd",
    )  # fmt: skip
    contact = insert_from(
        Contact, "con",
        _attr_expressions({"FirstName": "upd.first_name", "LastName": "upd.last_name", "Email": "upd.email",
                                    "Phone": "upd.phone", "AccountId": "%(acc_id)s", "OwnerId": "upd.owner_id"}),
        "upd",
    )  # fmt: skip
    opportunity = insert_from(
        Opportunity, "opp",
        _attr_expressions({
            "Name": f"left(upd.company, {OPPORTUNITY_COMPANY_CHARS}) || '{OPPORTUNITY_SUFFIX}'",
            "Stage": "%(opp_stage_value)s", "Amount": "upd.estimated_value", "AccountId": "%(acc_id)s",
            "ContactId": "%(con_id)s", "OwnerId": "upd.owner_id"}),
        "upd",
        " WHERE %(create_opportunity)s",
    )  # fmt: skip
    return (
        f"WITH {gate}, "
        "upd AS (UPDATE leads SET status = 'Converted', converted_account_id = %(acc_id)s, "
        "converted_contact_id = %(con_id)s, converted_opportunity_id = %(opp_id)s, "
        "converted_date = %(now)s, last_modified_date = %(now)s "
        "WHERE id = %(lead_id)s AND status <> 'Converted' AND (SELECT allowed FROM gate) "
        f"RETURNING {', '.join(_LEAD_COLUMNS)}), "
        f"acc AS ({account}), con AS ({contact}), opp AS ({opportunity}), "
        "evt AS (INSERT INTO outbox_events (id, event_type, payload, created_at) "
        "SELECT %(event_id)s, %(event_type)s, CAST(%(payload)s AS JSON), %(now)s FROM upd) "
        f"SELECT gate.value, gate.allowed, {', '.join(f'u.{c}' for c in _LEAD_COLUMNS)}, l.id, l.status, "
        "l.converted_account_id, l.converted_contact_id, l.converted_opportunity_id "
        "FROM gate LEFT JOIN upd u ON true LEFT JOIN leads l ON l.id = %(lead_id)s"
    )


_CONVERTED_IDS_SQL = (
    "SELECT status, converted_account_id, converted_contact_id, converted_opportunity_id FROM leads WHERE id = %s"
)


async def convert_lead_async(
    connection,
    lead_id: str,
    *,
    create_opportunity: bool,
    gate: str = NO_GATE,
    gate_params: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any] | CrmError | None]:
    """Convert a lead in one statement on an async psycopg ``connection`` (PostgreSQL, autocommit).

    Returns (the gate's value, the outcome): what was created (as :func:`convert_lead`), the
    :class:`CrmError` for the caller to raise (once it has used the gate's value), or None
    when the gate did not allow (nothing written).
    """
    when = utcnow()
    ids: dict[str, str | None] = {"account": new_id(), "contact": new_id()}
    ids["opportunity"] = new_id() if create_opportunity else None
    stamps = {"created_date": when, "last_modified_date": when}
    params = {
        # Column defaults first, so the ids and times given below win over them.
        **default_params(Account, "acc", stamps),
        **default_params(Contact, "con", stamps),
        **default_params(Opportunity, "opp", stamps),
        **(gate_params or {}),
        "lead_id": lead_id,
        "acc_id": ids["account"],
        "con_id": ids["contact"],
        "opp_id": ids["opportunity"],
        "opp_stage_value": OPPORTUNITY_STAGE,
        "now": when,
        "create_opportunity": create_opportunity,
        "event_id": new_id(),
        "event_type": CONVERSION_EVENT,
        "payload": json.dumps(
            {"event": CONVERSION_EVENT, "timestamp": when.isoformat(), "data": _event_data(lead_id, ids, when)}
        ),
    }
    cursor = await connection.execute(conversion_sql(gate), params)
    row = await cursor.fetchone()
    gate_value, allowed = row[0], row[1]
    if not allowed:
        return gate_value, None
    lead = dict(zip(_LEAD_COLUMNS, row[2 : 2 + len(_LEAD_COLUMNS)], strict=True))
    found_id, status, *converted = row[2 + len(_LEAD_COLUMNS) :]
    if lead["last_name"] is None:  # not updated (last_name is NOT NULL): not found, or converted already
        if found_id is None:
            return gate_value, LeadNotFound(lead_id)
        if status != "Converted":  # converted by a concurrent request after this statement's snapshot
            cursor = await connection.execute(_CONVERTED_IDS_SQL, (lead_id,))
            _status, *converted = await cursor.fetchone()
        return gate_value, LeadAlreadyConverted(lead_id, *converted)
    return gate_value, _records(lead, ids)
