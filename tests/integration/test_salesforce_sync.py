"""The sync end to end against the Salesforce emulator over HTTPS, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hotcrm.crm import seed, services
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account, Contact, OutboxEvent
from hotcrm.salesforce import models as m
from hotcrm.salesforce import sync as sync_module
from hotcrm.salesforce.client import RetryPolicy, SalesforceClient
from hotcrm.salesforce.sync import SyncOptions, failed_records, run_sync, sync_history
from tests.fakes.salesforce import server as emulator_server

salesforce_emulator = emulator_server.salesforce_emulator

N_ACCOUNTS = 12  # in crm_seed.json
N_CONTACTS = 12


def make_client(emulator, **options) -> tuple[SalesforceClient, list[float]]:
    """A client on the emulator that records its backoff sleeps instead of sleeping."""
    sleeps: list[float] = []
    client = SalesforceClient(
        emulator.base_url,
        emulator.issue_token(),
        verify=str(emulator.ca_path),
        login=lambda: (emulator.issue_token(), emulator.base_url),
        retry=RetryPolicy(max_attempts=6, base_delay=0.2, max_delay=2.0),
        sleep=sleeps.append,
        poll_interval=0.01,
        seed=1,
        **options,
    )
    return client, sleeps


def sync(db_url, emulator, run_id, **options):
    client, _ = make_client(emulator, budget_share=options.pop("budget_share", 0.9))
    return run_sync(db_url, client, SyncOptions(run_id=run_id, **options))


@pytest.fixture
def seeded(db_url):
    seed.load_seed(db_url)
    return db_url


def states(db_url, status=None):
    with session_scope(db_url) as session:
        query = select(m.SyncState)
        if status:
            query = query.where(m.SyncState.status == status)
        return list(session.execute(query).scalars())


def test_first_sync_creates_all_and_second_sends_nothing(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    with session_scope(db_url) as session:
        before = {a.id: a.last_modified_date for a in session.execute(select(Account)).scalars()}

    first = sync(db_url, sf, "night-1")
    assert first["outcome"] == "success"
    assert first["objects"]["Account"]["created"] == N_ACCOUNTS
    assert first["objects"]["Contact"]["created"] == N_CONTACTS
    # one /limits, one Collections call per object
    assert first["totals"]["api_calls"] == 3 == sf.api_calls
    assert len(sf.find("Account")) == N_ACCOUNTS and len(sf.find("Contact")) == N_CONTACTS

    with session_scope(db_url) as session:
        accounts = {a.id: a for a in session.execute(select(Account)).scalars()}
        contacts = list(session.execute(select(Contact)).scalars())
    for account in accounts.values():
        remote = sf.find("Account", HotCRM_Id__c=account.id)
        assert len(remote) == 1 and remote[0]["Id"] == account.salesforce_id
        assert remote[0]["Name"] == account.name
        assert account.last_sync_date is not None
        assert account.last_modified_date == before[account.id], "a sync acknowledgement is not a business change"
    for contact in contacts:
        remote = sf.find("Contact", HotCRM_Id__c=contact.id)[0]
        assert remote["Id"] == contact.salesforce_id
        assert remote["AccountId"] == accounts[contact.account_id].salesforce_id

    client, _ = make_client(sf)  # read back with SOQL, as a person checking the org would
    rows = client.query("SELECT Id, Name, HotCRM_Id__c, AnnualRevenue FROM Account ORDER BY Name")
    assert len(rows) == N_ACCOUNTS and rows[0]["HotCRM_Id__c"] in accounts
    assert rows[0]["Name"] == min(a.name for a in accounts.values())

    sf.reset_counters()
    second = sync(db_url, sf, "night-2")
    assert second["outcome"] == "success"
    assert second["totals"]["unchanged"] == N_ACCOUNTS + N_CONTACTS
    assert second["totals"]["selected"] == 0
    assert sf.api_calls == 0 and second["totals"]["api_calls"] == 0

    history = sync_history(db_url)
    assert {h["run_id"] for h in history[:2]} == {"night-2"}  # newest first
    assert {(h["run_id"], h["object"], h["created"]) for h in history} >= {
        ("night-1", "Account", N_ACCOUNTS),
        ("night-1", "Contact", N_CONTACTS),
    }
    with session_scope(db_url) as session:
        events = session.execute(select(OutboxEvent).where(OutboxEvent.event_type == "account.synced")).scalars()
        payloads = [e.payload["data"] for e in events]
    assert sorted(p["run_id"] for p in payloads) == ["night-1", "night-2"]
    assert next(p for p in payloads if p["run_id"] == "night-1")["objects"]["Account"]["created"] == N_ACCOUNTS


def test_edits_send_only_the_edited_records(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    sync(db_url, sf, "night-1")
    with session_scope(db_url) as session:
        ids = sorted(session.execute(select(Account.id)).scalars())[:2]
        for n, account_id in enumerate(ids):
            services.update(session, Account, account_id, {"Phone": f"+1555000{n}", "Description": "not mapped"})
        third = sorted(session.execute(select(Account.id)).scalars())[2]
        services.update(session, Account, third, {"Description": "only an unmapped field"})
    sf.reset_counters()
    result = sync(db_url, sf, "night-2")
    assert result["objects"]["Account"]["updated"] == 2
    assert result["objects"]["Account"]["unchanged"] == N_ACCOUNTS - 2
    assert result["objects"]["Contact"]["selected"] == 0
    assert sf.calls["PATCH composite/sobjects/upsert"] == 1
    assert [sf.find("Account", HotCRM_Id__c=i)[0]["Phone"] for i in ids] == ["+15550000", "+15550001"]
    assert len(sf.find("Account")) == N_ACCOUNTS


def test_per_record_failures_are_written_back_and_retried(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    with session_scope(db_url) as session:
        bad = services.create(
            session,
            Contact,
            {"LastName": "Broken", "Email": "no-at-sign", "AccountId": "a0000000-0000-4000-8000-000000000001"},
        ).id
        long_name = services.create(session, Account, {"Name": "x" * 255, "BillingCity": "C" * 60}).id

    first = sync(db_url, sf, "night-1")
    assert first["outcome"] == "partial"
    assert first["objects"]["Contact"]["failed"] == 1 and first["objects"]["Account"]["failed"] == 1
    assert first["objects"]["Contact"]["created"] == N_CONTACTS
    failures = {f["hotcrm_id"]: f for f in failed_records(db_url)}
    assert failures[bad]["error_code"] == "INVALID_EMAIL_ADDRESS"
    assert "no-at-sign" in failures[bad]["error_message"]
    assert failures[long_name]["error_code"] == "STRING_TOO_LONG"
    assert "BillingCity" in failures[long_name]["error_message"]
    with session_scope(db_url) as session:
        assert session.get(Contact, bad).salesforce_id is None

    sf.reset_counters()
    second = sync(db_url, sf, "night-2")  # failed records are sent again, and fail again
    assert second["totals"]["selected"] == 2 and second["totals"]["failed"] == 2
    assert {f["hotcrm_id"]: f["attempts"] for f in failed_records(db_url)} == {bad: 2, long_name: 2}

    with session_scope(db_url) as session:
        services.update(session, Contact, bad, {"Email": "fixed@example.com"})
        services.update(session, Account, long_name, {"BillingCity": "Austin"})
    third = sync(db_url, sf, "night-3")
    assert third["outcome"] == "success" and third["totals"]["created"] == 2
    assert failed_records(db_url) == []
    assert sf.find("Contact", HotCRM_Id__c=bad)[0]["Email"] == "fixed@example.com"


def test_a_crash_before_the_write_back_leaves_no_duplicate(seeded, salesforce_emulator, monkeypatch):
    db_url, sf = seeded, salesforce_emulator
    real_write_back = sync_module.write_back

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed after Salesforce answered")

    monkeypatch.setattr(sync_module, "write_back", crash)
    with pytest.raises(RuntimeError, match="worker killed"):
        sync(db_url, sf, "night-1")
    assert len(sf.find("Account")) == N_ACCOUNTS  # Salesforce has them; HotCRM does not know
    assert states(db_url) == []

    monkeypatch.setattr(sync_module, "write_back", real_write_back)
    rerun = sync(db_url, sf, "night-1")
    assert rerun["outcome"] == "success"
    assert rerun["objects"]["Account"]["created"] == 0 and rerun["objects"]["Account"]["updated"] == N_ACCOUNTS
    assert rerun["objects"]["Contact"]["created"] == N_CONTACTS
    assert len(sf.find("Account")) == N_ACCOUNTS and len(sf.find("Contact")) == N_CONTACTS
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Account).where(Account.salesforce_id.is_(None))) == 0


def _add_accounts(db_url, n):
    with session_scope(db_url) as session:
        for i in range(n):
            services.create(session, Account, {"Name": f"Bulk {i:05d}", "Industry": "Retail", "AnnualRevenue": i})


def test_budget_stop_leaves_a_resumable_state(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    _add_accounts(db_url, 388)  # 400 accounts: two Collections calls
    sf.daily_limit = 20
    sf.api_usage = 16  # other integrations used most of today's budget
    first = sync(db_url, sf, "night-1", budget_share=0.9, transport="collections")  # stop at 18 of 20
    assert first["outcome"] == "partial"
    assert "API budget reached" in first["message"] and "18/20" in first["message"]
    account = first["objects"]["Account"]
    assert account["created"] == 200 and account["skipped"] == 200
    assert first["objects"]["Contact"]["skipped"] == N_CONTACTS
    assert sf.api_usage == 18, "nothing is sent once the budget is reached"
    assert len(states(db_url)) == 200

    sf.api_usage = 0  # the next day
    second = sync(db_url, sf, "night-2")
    assert second["outcome"] == "success"
    assert second["objects"]["Account"]["created"] == 200 and second["objects"]["Account"]["unchanged"] == 200
    assert second["objects"]["Contact"]["created"] == N_CONTACTS
    assert len(sf.find("Account")) == 400


@pytest.mark.parametrize(
    "fault",
    ["lock_errors", "server_errors", "dropped_connections", "rate_limit", "expired_session", "latency"],
)
def test_faults_are_survived(seeded, salesforce_emulator, fault):
    db_url, sf = seeded, salesforce_emulator
    _add_accounts(db_url, 188)  # 200 accounts
    client, sleeps = make_client(sf)
    if fault == "lock_errors":
        sf.faults.lock_share = 0.3
    elif fault == "server_errors":
        sf.faults.server_errors = 3
    elif fault == "dropped_connections":
        sf.faults.dropped_connections = 2
    elif fault == "rate_limit":
        sf.faults.rate_limit_after, sf.faults.rate_limit_calls = 1, 3
    elif fault == "expired_session":
        client.limits()
        sf.expire_sessions()
    else:
        sf.faults.latency = 0.05
    result = run_sync(db_url, client, SyncOptions(run_id="night-1"))
    assert result["outcome"] == "success", result["message"]
    assert result["totals"]["created"] == 200 + N_CONTACTS and result["totals"]["failed"] == 0
    assert len(sf.find("Account")) == 200 and len(sf.find("Contact")) == N_CONTACTS
    if fault == "expired_session":
        assert client.relogins == 1 and sf.token_requests == 0  # the login callable issued the new token
    elif fault != "latency":
        assert client.retries >= 1 and len(sleeps) == client.retries
        assert all(0 <= s <= 2.0 for s in sleeps)


def test_retries_give_up_and_the_run_ends_partial(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    sf.faults.server_errors = 100
    result = sync(db_url, sf, "night-1")
    assert result["outcome"] == "partial"
    assert "SERVER_UNAVAILABLE" in result["message"]
    assert result["totals"]["skipped"] == N_ACCOUNTS + N_CONTACTS
    assert states(db_url) == []
    sf.faults.server_errors = 0
    second = sync(db_url, sf, "night-2")
    assert second["totals"]["created"] == N_ACCOUNTS + N_CONTACTS, second


def test_dry_run_sends_nothing_and_reports(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    result = run_sync(db_url, None, SyncOptions(run_id="dry-1", dry_run=True))
    assert result["outcome"] == "dry_run"
    assert result["objects"]["Account"]["created"] == N_ACCOUNTS
    assert "would create 12" in result["objects"]["Account"]["message"]
    assert sf.api_calls == 0 and states(db_url) == []
    sync(db_url, sf, "night-1")
    with session_scope(db_url) as session:
        services.update(session, Account, "a0000000-0000-4000-8000-000000000001", {"Phone": "+1 555 0100"})
    again = run_sync(db_url, None, SyncOptions(run_id="dry-2", dry_run=True))
    assert again["objects"]["Account"]["updated"] == 1 and again["objects"]["Account"]["unchanged"] == 11
    assert [h["outcome"] for h in sync_history(db_url) if h["run_id"] == "dry-2"] == ["dry_run", "dry_run"]


def test_full_and_limit(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    limited = sync(db_url, sf, "night-1", objects=("Account",), limit=5)
    assert limited["objects"]["Account"]["created"] == 5 and limited["objects"]["Account"]["skipped"] == 7
    assert "Contact" not in limited["objects"]
    rest = sync(db_url, sf, "night-2", objects=("Account",))
    assert rest["objects"]["Account"]["created"] == 7 and rest["objects"]["Account"]["unchanged"] == 5
    full = sync(db_url, sf, "night-3", objects=("Account",), full=True)
    assert full["objects"]["Account"]["updated"] == N_ACCOUNTS
    assert len(sf.find("Account")) == N_ACCOUNTS


def test_bulk_transport_with_lock_errors(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    _add_accounts(db_url, 288)  # 300 accounts
    sf.faults.lock_share = 0.05
    result = sync(db_url, sf, "night-1", transport="bulk")
    account = result["objects"]["Account"]
    assert account["transport"] == "bulk"
    assert account["created"] == 300 and account["failed"] == 0
    assert sf.calls["POST jobs/ingest"] == 2  # one job per object
    assert sf.calls["PATCH composite/sobjects/upsert"] >= 1  # the locked records, sent again
    assert len(sf.find("Account")) == 300 and len(sf.find("Contact")) == N_CONTACTS
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Account).where(Account.salesforce_id.is_(None))) == 0
    sf.reset_counters()
    assert sync(db_url, sf, "night-2", transport="bulk")["totals"]["api_calls"] == 0


def test_bulk_failures_are_written_back(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    with session_scope(db_url) as session:
        bad = services.create(session, Contact, {"LastName": "Broken", "Email": "nope"}).id
    result = sync(db_url, sf, "night-1", transport="bulk")
    assert result["objects"]["Contact"]["failed"] == 1 and result["objects"]["Contact"]["created"] == N_CONTACTS
    failure = failed_records(db_url, "Contact")[0]
    assert failure["hotcrm_id"] == bad and failure["error_code"] == "INVALID_EMAIL_ADDRESS"
