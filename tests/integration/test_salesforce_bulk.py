"""The Bulk API 2.0 path against the emulator, on SQLite and PostgreSQL: relationships sent one
way only, nulls, a literal "#N/A", uploads split under the size limit, long jobs collected by
a later run, the daily limit, counts from Salesforce's results, and the same Salesforce state
as the Collections path for the same HotCRM edits."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from hotcrm.crm import seed, services
from hotcrm.crm.db import dispose_engine, session_scope
from hotcrm.crm.models import Account, Contact
from hotcrm.salesforce import models as m
from hotcrm.salesforce.sync import SyncOptions, failed_records, run_sync
from tests.fakes.salesforce import server as emulator_server
from tests.fakes.salesforce.server import start_emulator
from tests.integration.test_salesforce_sync import N_ACCOUNTS, N_CONTACTS, make_client

salesforce_emulator = emulator_server.salesforce_emulator


@pytest.fixture
def seeded(db_url):
    seed.load_seed(db_url)
    return db_url


def sync(db_url, emulator, run_id, **options):
    client, _ = make_client(emulator)
    return run_sync(db_url, client, SyncOptions(run_id=run_id, **options))


def jobs(db_url, **where):
    with session_scope(db_url) as session:
        query = select(m.BulkJob)
        for key, value in where.items():
            query = query.where(getattr(m.BulkJob, key) == value)
        return [
            {c.key: getattr(j, c.key) for c in m.BulkJob.__table__.columns} for j in session.execute(query).scalars()
        ]


def test_contacts_with_and_without_an_account_in_one_bulk_run(seeded, salesforce_emulator):
    """A Contact's Account goes as Account.HotCRM_Id__c only when it has one; one without goes in
    another job with AccountId = #N/A (a CSV file has one header for all its rows)."""
    db_url, sf = seeded, salesforce_emulator
    with session_scope(db_url) as session:
        loners = [services.create(session, Contact, {"LastName": f"Alone {i}"}).id for i in range(3)]
    result = sync(db_url, sf, "night-1", transport="bulk")
    contact = result["objects"]["Contact"]
    assert contact["created"] == N_CONTACTS + 3 and contact["failed"] == 0, result["message"]
    assert len(contact["jobs"]) == 2 and sf.calls["POST jobs/ingest"] == 3  # Accounts, Contacts x2
    with session_scope(db_url) as session:
        linked = [(c.id, c.account_id) for c in session.execute(select(Contact)).scalars() if c.account_id]
        accounts = {a.id: a.salesforce_id for a in session.execute(select(Account)).scalars()}
    assert len(linked) == N_CONTACTS
    for contact_id, account_id in linked:
        assert sf.find("Contact", HotCRM_Id__c=contact_id)[0]["AccountId"] == accounts[account_id]
    for contact_id in loners:
        assert sf.find("Contact", HotCRM_Id__c=contact_id)[0].get("AccountId") is None

    # Taking a Contact off its Account clears AccountId in Salesforce (#N/A, not an empty cell).
    moved = linked[0][0]
    with session_scope(db_url) as session:
        services.update(session, Contact, moved, {"AccountId": None})
    again = sync(db_url, sf, "night-2", transport="bulk")
    assert again["objects"]["Contact"]["updated"] == 1
    assert sf.find("Contact", HotCRM_Id__c=moved)[0]["AccountId"] is None


def test_blanked_values_are_blanked_and_a_literal_na_is_kept(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    sync(db_url, sf, "night-1", transport="bulk")
    with session_scope(db_url) as session:
        ids = sorted(session.execute(select(Account.id)).scalars())
        services.update(session, Account, ids[0], {"BillingCity": "", "Phone": None})
        services.update(session, Account, ids[1], {"BillingCity": "#N/A"})
    assert sf.find("Account", HotCRM_Id__c=ids[0])[0]["BillingCity"]
    sf.reset_counters()
    result = sync(db_url, sf, "night-2", transport="bulk")
    account = result["objects"]["Account"]
    assert account["updated"] == 2 and account["failed"] == 0, result["message"]
    blanked = sf.find("Account", HotCRM_Id__c=ids[0])[0]
    assert blanked["BillingCity"] is None and blanked["Phone"] is None
    # the text "#N/A" would mean null in a Bulk CSV: that record went through Collections
    assert sf.find("Account", HotCRM_Id__c=ids[1])[0]["BillingCity"] == "#N/A"
    assert sf.calls["PATCH composite/sobjects/upsert"] == 1
    assert sync(db_url, sf, "night-3", transport="bulk")["totals"]["selected"] == 0  # both acknowledged


def test_uploads_are_split_under_the_size_limit(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    with session_scope(db_url) as session:
        for i in range(300):
            services.create(session, Account, {"Name": f"Split, Inc {i:04d}", "BillingCity": 'The "City"'})
    result = sync(db_url, sf, "night-1", transport="bulk", objects=("Account",), bulk_max_bytes=8000)
    account = result["objects"]["Account"]
    assert account["created"] == 312 and account["failed"] == 0
    uploads = jobs(db_url, object="Account")
    assert len(uploads) >= 4 and all(j["upload_bytes"] <= 8000 for j in uploads)
    assert sum(j["records"] for j in uploads) == 312 and {j["status"] for j in uploads} == {"collected"}
    assert sf.find("Account", Name="Split, Inc 0007")[0]["BillingCity"] == 'The "City"'


def test_an_upload_salesforce_refuses_aborts_the_job_and_resends_next_run(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    sf.max_upload_base64_bytes = 1000  # an org that refuses this upload
    result = sync(db_url, sf, "night-1", transport="bulk", objects=("Account",))
    assert result["outcome"] == "partial" and "INVALIDBATCH" in result["message"]
    assert result["objects"]["Account"]["skipped"] == N_ACCOUNTS
    (job,) = jobs(db_url)
    assert job["status"] == "aborted" and sf.jobs[job["job_id"]]["info"]["state"] == "Aborted"
    sf.max_upload_base64_bytes = 150_000_000
    assert sync(db_url, sf, "night-2", transport="bulk", objects=("Account",))["totals"]["created"] == N_ACCOUNTS


def test_a_long_job_is_kept_and_collected_by_the_next_run(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    sf.faults.bulk_hold = True
    first = sync(db_url, sf, "night-1", transport="bulk", objects=("Account",), bulk_wait_seconds=0.05)
    account = first["objects"]["Account"]
    assert first["outcome"] == "partial" and account["pending"] == N_ACCOUNTS
    assert "still running" in first["message"] and "not aborted" in first["message"]
    (job,) = jobs(db_url)
    assert job["status"] == "pending" and sf.jobs[job["job_id"]]["info"]["state"] == "InProgress"
    with session_scope(db_url) as session:
        assert list(session.execute(select(m.SyncState)).scalars()) == []
        changed = sorted(session.execute(select(Account.id)).scalars())[0]

    # Still running at the next run: nothing is resent, nothing aborted.
    sf.reset_counters()
    second = sync(db_url, sf, "night-2", transport="bulk", objects=("Account",), bulk_wait_seconds=0.05)
    assert second["outcome"] == "partial" and sf.calls["POST jobs/ingest"] == 0
    assert sf.jobs[job["job_id"]]["info"]["state"] == "InProgress"

    # The job ends; meanwhile one Account changed. The next run writes back what Salesforce
    # reports and sends only the changed Account again.
    sf.faults.bulk_hold = False
    with session_scope(db_url) as session:
        services.update(session, Account, changed, {"Phone": "+1 555 0199"})
    sf.reset_counters()
    third = sync(db_url, sf, "night-3", objects=("Account",))
    account = third["objects"]["Account"]
    assert third["outcome"] == "success", third["message"]
    assert account["collected_jobs"] == [job["job_id"]] and account["created"] == N_ACCOUNTS
    assert account["selected"] == 1 and account["updated"] == 1 and sf.calls["POST jobs/ingest"] == 0
    assert jobs(db_url)[0]["status"] == "collected" and jobs(db_url)[0]["collected_by_run"] == "night-3"
    assert sf.find("Account", HotCRM_Id__c=changed)[0]["Phone"] == "+1 555 0199"
    assert sync(db_url, sf, "night-4", objects=("Account",))["totals"]["selected"] == 0


def test_a_failed_job_writes_back_what_it_did_and_the_rest_is_resent(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    sf.faults.bulk_fail_after = 5
    first = sync(db_url, sf, "night-1", transport="bulk", objects=("Account",))
    account = first["objects"]["Account"]
    assert (account["created"], account["failed"], account["errors"]) == (5, 7, {"UNPROCESSED": 7})
    assert {f["error_code"] for f in failed_records(db_url)} == {"UNPROCESSED"}
    sf.faults.bulk_fail_after = None
    second = sync(db_url, sf, "night-2", transport="bulk", objects=("Account",))
    assert second["objects"]["Account"]["created"] == 7 and second["objects"]["Account"]["unchanged"] == 5


def test_the_daily_limit_stops_at_once(seeded, salesforce_emulator):
    db_url, sf = seeded, salesforce_emulator
    client, sleeps = make_client(sf, budget_share=1.0)
    client.limits()
    sf.daily_limit = sf.api_usage  # the org's 24-hour allowance is used up
    result = run_sync(db_url, client, SyncOptions(run_id="night-1"))
    assert result["outcome"] == "partial" and "TotalRequests" in result["message"]
    assert client.retries == 0 and sleeps == []
    assert result["totals"]["skipped"] == N_ACCOUNTS + N_CONTACTS


def test_counts_come_from_salesforce_and_unknown_is_said(seeded, salesforce_emulator):
    """A call applied by Salesforce whose answer was lost is retried; the retry's answer says
    "updated" for records the first attempt created, so the summary says it cannot tell."""
    db_url, sf = seeded, salesforce_emulator
    client, _ = make_client(sf)
    client.limits()
    sf.faults.dropped_answers = 1
    result = run_sync(db_url, client, SyncOptions(run_id="night-1", objects=("Account",), transport="collections"))
    account = result["objects"]["Account"]
    assert (account["created"], account["updated"], account["created_or_updated"]) == (0, 0, N_ACCOUNTS)
    assert "cannot tell" in account["message"] and result["totals"]["created_or_updated"] == N_ACCOUNTS
    assert len(sf.find("Account")) == N_ACCOUNTS
    bulk = sync(db_url, sf, "night-2", objects=("Account",), transport="bulk", full=True)
    assert (bulk["objects"]["Account"]["created"], bulk["objects"]["Account"]["updated"]) == (0, N_ACCOUNTS)


@pytest.fixture
def second_db_url(db_url, tmp_path, request):
    """A second fresh database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite"):
        path = tmp_path / "second.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
        yield url
        dispose_engine(url)
    else:
        server = request.getfixturevalue("postgres_server")
        name = server.create_database(template=request.getfixturevalue("_pg_template"))
        url = server.url(name)
        yield url
        dispose_engine(url)
        server.drop_database(name)


def _edits(db_url):
    with session_scope(db_url) as session:
        accounts = sorted(session.execute(select(Account.id)).scalars())
        contacts = sorted(session.execute(select(Contact.id)).scalars())
        services.update(session, Account, accounts[0], {"BillingCity": "", "Phone": None, "Website": "https://x.test"})
        services.update(session, Account, accounts[1], {"Industry": None, "AnnualRevenue": None})
        services.update(session, Account, accounts[2], {"Name": 'Quotes "and", commas\nand lines'})
        services.update(session, Contact, contacts[0], {"AccountId": None, "Phone": ""})
        services.update(session, Contact, contacts[1], {"AccountId": accounts[3]})
        # the same Ids in both databases, so the two orgs can be compared
        session.add(Contact(id="c0000000-0000-4000-8000-00000000aa01", last_name="New, alone", email="a@example.com"))
        session.add(Contact(id="c0000000-0000-4000-8000-00000000aa02", last_name="New", account_id=accounts[4]))


def _state(emulator):
    """The org's records, keyed by external id, Ids and timestamps replaced by what they point to."""
    skip = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp"}
    ext = {r["Id"]: r["HotCRM_Id__c"] for r in emulator.find("Account")}
    out = {}
    for sobject in ("Account", "Contact"):
        for record in emulator.find(sobject):
            values = {k: v for k, v in record.items() if k not in skip and v is not None}
            if "AccountId" in values:
                values["AccountId"] = ext[values["AccountId"]]
            out[(sobject, record["HotCRM_Id__c"])] = values
    return out


def test_bulk_and_collections_give_the_same_salesforce_state(seeded, second_db_url):
    second = second_db_url
    seed.load_seed(second)
    states = {}
    for transport, db_url in (("collections", seeded), ("bulk", second)):
        sf = start_emulator()
        try:
            first = sync(db_url, sf, "night-1", transport=transport)
            _edits(db_url)
            after = sync(db_url, sf, "night-2", transport=transport)
            assert first["outcome"] == after["outcome"] == "success", after["message"]
            assert after["objects"]["Contact"]["transport"] == transport
            states[transport] = _state(sf)
        finally:
            sf.stop()
    assert states["bulk"] == states["collections"]
    blanked = [v for (o, _), v in states["bulk"].items() if o == "Account" and "BillingCity" not in v]
    assert blanked, "a blanked BillingCity is blank in Salesforce"
