"""One specification of lead conversion (:mod:`hotcrm.crm.conversion`), run against each of its
forms: the ORM path on SQLite and on PostgreSQL, and the one-statement async path on PostgreSQL
(the REST API's hot path). A behaviour the two forms disagree on fails here."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import func, select

from hotcrm.api.pgpool import libpq_conninfo
from hotcrm.crm import conversion, services
from hotcrm.crm.db import session_scope
from hotcrm.crm.errors import CrmError, LeadAlreadyConverted, LeadNotFound
from hotcrm.crm.models import Account, Contact, Lead, Opportunity, OutboxEvent

LEAD = {
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Company": "Analytical Engines",
    "Email": "ada@engines.example",
    "Phone": "+442071234567",
    "Industry": "Technology",
    "Website": "https://engines.example",
    "EstimatedValue": Decimal("12500.50"),
    "OwnerId": "owner-1",
}


class OrmPath:
    """:func:`conversion.convert_lead` in its own transaction."""

    def __init__(self, url: str) -> None:
        self.url = url

    def convert(self, lead_id: str, create_opportunity: bool = True) -> dict:
        with session_scope(self.url) as session:
            return conversion.convert_lead(session, lead_id, create_opportunity=create_opportunity)


class AsyncPath:
    """:func:`conversion.convert_lead_async` on an autocommit psycopg connection, no gate."""

    def __init__(self, url: str) -> None:
        self.url = url

    def convert(self, lead_id: str, create_opportunity: bool = True, **gate) -> dict:
        value, outcome = asyncio.run(self._convert(lead_id, create_opportunity, gate))
        if isinstance(outcome, CrmError):
            raise outcome
        return outcome

    async def _convert(self, lead_id, create_opportunity, gate):
        async with await psycopg.AsyncConnection.connect(libpq_conninfo(self.url), autocommit=True) as connection:
            return await conversion.convert_lead_async(
                connection, lead_id, create_opportunity=create_opportunity, **gate
            )


@pytest.fixture(params=["orm-sqlite", "orm-postgresql", "async-postgresql"])
def path(request):
    form, backend = request.param.split("-")
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    return OrmPath(url) if form == "orm" else AsyncPath(url)


def _lead(url: str, **changes) -> str:
    with session_scope(url) as session:
        return services.create(session, Lead, {**LEAD, **changes}).id


def _count(url: str, model) -> int:
    with session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_lead_becomes_an_account_a_contact_and_an_opportunity(path):
    lead_id = _lead(path.url)
    data = path.convert(lead_id)
    account, contact, opportunity = data["account"], data["contact"], data["opportunity"]
    assert {k: v for k, v in account.items() if k != "Id"} == {
        "Name": "Analytical Engines", "Industry": "Technology", "Phone": "+442071234567",
        "Website": "https://engines.example", "OwnerId": "owner-1",
    }  # fmt: skip
    assert {k: v for k, v in contact.items() if k != "Id"} == {
        "FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@engines.example", "Phone": "+442071234567",
        "AccountId": account["Id"], "OwnerId": "owner-1",
    }  # fmt: skip
    assert {k: v for k, v in opportunity.items() if k != "Id"} == {
        "Name": "Analytical Engines - Opportunity", "Stage": "Prospecting", "Amount": Decimal("12500.50"),
        "AccountId": account["Id"], "ContactId": contact["Id"], "OwnerId": "owner-1",
    }  # fmt: skip
    with session_scope(path.url) as session:
        lead = session.get(Lead, lead_id)
        assert lead.status == "Converted" and lead.converted_date is not None
        assert (lead.converted_account_id, lead.converted_contact_id, lead.converted_opportunity_id) == (
            account["Id"], contact["Id"], opportunity["Id"],
        )  # fmt: skip
        stored = session.get(Opportunity, opportunity["Id"])
        assert (stored.name, stored.stage, stored.amount) == (opportunity["Name"], "Prospecting", Decimal("12500.50"))
        assert session.get(Contact, contact["Id"]).account_id == account["Id"]
        (event,) = session.scalars(select(OutboxEvent)).all()
        assert event.event_type == "lead.converted"
        assert {k: v for k, v in event.payload["data"].items() if k != "convertedDate"} == {
            "leadId": lead_id, "accountId": account["Id"], "contactId": contact["Id"],
            "opportunityId": opportunity["Id"],
        }  # fmt: skip


def test_without_an_opportunity(path):
    lead_id = _lead(path.url)
    data = path.convert(lead_id, create_opportunity=False)
    assert data["opportunity"] is None and data["account"]["Name"] == "Analytical Engines"
    assert _count(path.url, Opportunity) == 0
    with session_scope(path.url) as session:
        assert session.get(Lead, lead_id).converted_opportunity_id is None
        (event,) = session.scalars(select(OutboxEvent)).all()
        assert event.payload["data"]["opportunityId"] is None


def test_an_unknown_lead_is_a_domain_error(path):
    with pytest.raises(LeadNotFound, match="No lead with id 'no-such-lead'") as caught:
        path.convert("no-such-lead")
    assert caught.value.code == "LEAD_NOT_FOUND"
    assert _count(path.url, Account) == 0


def test_converting_twice_names_what_the_first_conversion_made(path):
    lead_id = _lead(path.url)
    first = path.convert(lead_id)
    with pytest.raises(LeadAlreadyConverted) as caught:
        path.convert(lead_id)
    assert caught.value.code == "ALREADY_CONVERTED"
    assert caught.value.details == {
        "accountId": first["account"]["Id"], "contactId": first["contact"]["Id"],
        "opportunityId": first["opportunity"]["Id"],
    }  # fmt: skip
    assert (_count(path.url, Account), _count(path.url, OutboxEvent)) == (1, 1)


def test_a_company_that_fills_its_column_still_fits_the_opportunity_name(path):
    company = "C" * Lead.__table__.c.company.type.length
    data = path.convert(_lead(path.url, Company=company))
    name = data["opportunity"]["Name"]
    assert name.endswith(" - Opportunity") and len(name) == Opportunity.__table__.c.name.type.length
    assert data["account"]["Name"] == company


def test_a_failure_halfway_leaves_nothing(path, monkeypatch):
    lead_id = _lead(path.url)

    def broken(*_args, **_kwargs):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(conversion, "record_event", broken)  # the ORM path's last step
    # The one statement has no record_event: its outbox INSERT fails in the database instead.
    monkeypatch.setattr(conversion, "CONVERSION_EVENT", "lead.converted" + "x" * 100)
    with pytest.raises(Exception):  # noqa: B017 (the ORM's RuntimeError, psycopg's StringDataRightTruncation)
        path.convert(lead_id)
    with session_scope(path.url) as session:
        assert session.get(Lead, lead_id).status == "New"
    for model in (Account, Contact, Opportunity, OutboxEvent):
        assert _count(path.url, model) == 0


def test_concurrent_conversions_convert_once(path):
    lead_id = _lead(path.url)
    outcomes: list[object] = []

    def convert():
        try:
            outcomes.append(path.convert(lead_id))
        except CrmError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=convert) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["LeadAlreadyConverted"] * 3 + ["dict"]
    assert (_count(path.url, Account), _count(path.url, Contact), _count(path.url, OutboxEvent)) == (1, 1, 1)


def test_the_async_gate_writes_nothing_when_it_refuses(pg_url):
    lead_id = _lead(pg_url)
    gate = {"gate": "gate AS (SELECT %(seen)s::bigint AS value, FALSE AS allowed)", "gate_params": {"seen": 7}}

    async def run():
        async with await psycopg.AsyncConnection.connect(libpq_conninfo(pg_url), autocommit=True) as connection:
            return await conversion.convert_lead_async(connection, lead_id, create_opportunity=True, **gate)

    assert asyncio.run(run()) == (7, None)
    with session_scope(pg_url) as session:
        assert session.get(Lead, lead_id).status == "New"
    assert _count(pg_url, Account) == _count(pg_url, OutboxEvent) == 0
