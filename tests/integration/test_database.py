"""The CRM database on SQLite and on a real PostgreSQL server: migrations, the service
layer's create/get/find/update/upsert, and outbox events committing with their change."""

from decimal import Decimal

import pytest
from sqlalchemy import inspect, select

from hotcrm.crm import events, migrate, seed, services
from hotcrm.crm.db import get_engine, session_scope
from hotcrm.crm.models import Account, Contact, Lead, OutboxEvent, Payment, Quote


def test_migrations_bring_the_database_to_every_head(db_url):
    assert migrate.is_up_to_date(db_url)
    tables = set(inspect(get_engine(db_url)).get_table_names())
    assert {
        "leads",
        "accounts",
        "contacts",
        "opportunities",
        "payments",
        "activities",
        "quotes",
        "outbox_events",
    } <= tables


def test_upgrade_is_idempotent(db_url):
    migrate.upgrade(db_url)
    assert migrate.is_up_to_date(db_url)


def test_create_get_update_find(db_url):
    with session_scope(db_url) as session:
        account = services.create(
            session, Account, {"Name": "Acme", "Industry": "Retail", "AnnualRevenue": "1500000.50"}
        )
        account_id = account.id
        assert account.created_date is not None
    with session_scope(db_url) as session:
        services.update(session, Account, account_id, {"Industry": "Technology"})
    with session_scope(db_url) as session:
        found = services.find(session, Account, [["Industry", "=", "Technology"], ["AnnualRevenue", ">", 1000000]])
        assert [a.id for a in found] == [account_id]
        assert services.get(session, Account, account_id).annual_revenue == Decimal("1500000.50")
        assert services.count(session, Account, [["Industry", "=", "Retail"]]) == 0
        with pytest.raises(services.NotFoundError):
            services.get(session, Account, "missing")


def test_upsert_inserts_then_updates_on_the_natural_key(db_url):
    rows = [
        {"FirstName": "Ada", "LastName": "Lovelace", "Company": "Engines", "Email": "ada@example.com"},
        {"FirstName": "Alan", "LastName": "Turing", "Company": "Bletchley", "Email": "alan@example.com"},
    ]
    with session_scope(db_url) as session:
        assert services.upsert(session, Lead, rows, key="Email") == 2
    with session_scope(db_url) as session:
        services.upsert(session, Lead, [{**rows[0], "Company": "Analytical Engines"}], key="Email")
    with session_scope(db_url) as session:
        leads = {lead.email: lead for lead in services.find(session, Lead)}
    assert len(leads) == 2
    assert leads["ada@example.com"].company == "Analytical Engines"


def test_a_failed_transaction_leaves_nothing_not_even_its_event(db_url):
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        services.create(session, Account, {"Name": "Ghost"})
        events.record_event(session, "export.completed", {"file": "x.json"})
        raise RuntimeError("task died")
    with session_scope(db_url) as session:
        assert services.count(session, Account, [["Name", "=", "Ghost"]]) == 0
        assert session.scalars(select(OutboxEvent)).all() == []


def test_an_event_with_an_id_is_written_once(db_url):
    for _ in range(2):
        with session_scope(db_url) as session:
            events.record_event(session, "lead.imported", {"file": "a.csv", "inserted": 3}, event_id="evt-1")
    with session_scope(db_url) as session:
        (event,) = session.scalars(select(OutboxEvent)).all()
    assert event.payload["event"] == "lead.imported"
    assert event.payload["data"] == {"file": "a.csv", "inserted": 3}
    assert "timestamp" in event.payload


def test_unique_keys_hold(db_url):
    from sqlalchemy.exc import IntegrityError

    seed.load_seed(db_url)
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        services.create(session, Payment, {"TransactionId": "txn_demo_0001", "Amount": 1})
    with pytest.raises(IntegrityError), session_scope(db_url) as session:
        services.create(session, Quote, {"QuoteNumber": "Q-2026-0001", "TotalAmount": 1})


def test_seed_is_idempotent(db_url):
    first = seed.load_seed(db_url)
    seed.load_seed(db_url)
    with session_scope(db_url) as session:
        assert services.count(session, Account) == first["Account"]
        assert services.count(session, Contact) == first["Contact"]
