"""Salesforce sync benchmark against the emulator (HTTPS on loopback, added latency per call).

    .venv/bin/python benchmarks/salesforce_sync.py [--accounts 10000] [--latency 0.05] [--naive-sample 1000]

Phases, on the same data (Accounts only, SQLite CRM database in a temp folder):
  1. Collections mode: initial sync, re-sync with 1% changed, re-sync with none changed;
  2. Bulk API 2.0 mode: initial sync into a fresh org;
  3. the naive way (one REST upsert call per record, every night, as the CRM's old
     integration guide did), on ``--naive-sample`` records and scaled linearly to all of
     them (say ``--naive-sample 10000`` to run it whole: about 10 minutes at 50 ms).
It prints API calls, records sent, wall time and the ratios against the naive way.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


def make_accounts(database_url: str, n: int) -> list[str]:
    """Insert ``n`` Accounts with every mapped field filled; returns their Ids."""
    from sqlalchemy import insert

    from hotcrm.crm.db import session_scope
    from hotcrm.crm.models import Account, new_id, utcnow

    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "name": f"Account {i:05d}",
            "industry": ("Retail", "Energy", "Banking", "Media")[i % 4],
            "annual_revenue": 1000 * i,
            "phone": f"+1512555{i:04d}",
            "website": f"https://a{i}.example",
            "billing_city": "Austin",
            "billing_state": "TX",
            "billing_country": "US",
            "created_date": now,
            "last_modified_date": now,
        }
        for i in range(n)
    ]
    with session_scope(database_url) as session:
        for start in range(0, n, 2000):
            session.execute(insert(Account), rows[start : start + 2000])
    return [r["id"] for r in rows]


def change(database_url: str, ids: list[str]) -> None:
    """Edit a mapped field of these Accounts."""
    from sqlalchemy import update

    from hotcrm.crm.db import session_scope
    from hotcrm.crm.models import Account

    with session_scope(database_url) as session:
        session.execute(update(Account).where(Account.id.in_(ids)).values(phone="+1 800 555 0199"))


def client_for(emulator):
    """A sync client on the emulator."""
    from hotcrm.salesforce.client import SalesforceClient

    return SalesforceClient(
        emulator.base_url,
        emulator.issue_token(),
        verify=str(emulator.ca_path),
        login=lambda: (emulator.issue_token(), emulator.base_url),
        poll_interval=0.2,
    )


def timed_sync(database_url: str, emulator, run_id: str, transport: str) -> dict:
    """One sync run of Accounts; returns calls, records sent and wall time."""
    from hotcrm.salesforce.sync import SyncOptions, run_sync

    client = client_for(emulator)
    started = time.perf_counter()
    result = run_sync(database_url, client, SyncOptions(objects=("Account",), run_id=run_id, transport=transport))
    wall = time.perf_counter() - started
    account = result["objects"]["Account"]
    return {
        "calls": client.api_calls,
        "sent": account["created"] + account["updated"] + account["failed"],
        "created": account["created"],
        "updated": account["updated"],
        "failed": account["failed"],
        "wall": wall,
        "outcome": result["outcome"],
    }


def naive(database_url: str, emulator, sample: int) -> dict:
    """One REST upsert call per record (the old integration guide), on ``sample`` records."""
    from sqlalchemy import select

    from hotcrm.crm.db import session_scope
    from hotcrm.crm.models import Account
    from hotcrm.salesforce.mapping import load_mapping, to_payload

    mapping = load_mapping()
    obj = mapping.objects["Account"]
    with session_scope(database_url) as session:
        rows = [
            a.to_api(["Id", *obj.fields])
            for a in session.execute(select(Account).order_by(Account.id).limit(sample)).scalars()
        ]
    client = client_for(emulator)
    started = time.perf_counter()
    for row in rows:
        payload = to_payload(mapping, obj, row)
        ext = payload.pop(mapping.external_id_field)
        client.request("PATCH", f"/sobjects/Account/{mapping.external_id_field}/{ext}", json=payload)
    return {"calls": client.api_calls, "sent": len(rows), "wall": time.perf_counter() - started}


def main() -> int:
    """Run the phases and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every API call")
    parser.add_argument("--naive-sample", type=int, default=1000, help="records the naive way really sends")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from hotcrm.crm import migrate
    from tests.fakes.salesforce.server import start_emulator

    work = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    n = args.accounts
    rows = []
    try:
        db = f"sqlite:///{work / 'collections.db'}"
        migrate.upgrade(db)
        ids = make_accounts(db, n)
        org = start_emulator(daily_limit=1_000_000)
        org.faults.latency = args.latency
        rows.append(("collections: initial sync", timed_sync(db, org, "initial", "collections")))
        change(db, ids[::100])
        rows.append(("collections: re-sync, 1% changed", timed_sync(db, org, "one-percent", "collections")))
        rows.append(("collections: re-sync, none changed", timed_sync(db, org, "unchanged", "collections")))
        assert len(org.find("Account")) == n, "the org must hold exactly one record per Account"
        org.stop()

        bulk_db = f"sqlite:///{work / 'bulk.db'}"
        from hotcrm.crm.db import dispose_engine

        dispose_engine(db)  # closing the last connection checkpoints the WAL into the file we copy
        shutil.copyfile(work / "collections.db", work / "bulk.db")
        from sqlalchemy import delete

        from hotcrm.crm.db import session_scope
        from hotcrm.salesforce.models import SyncState

        with session_scope(bulk_db) as session:  # same data, never synced
            session.execute(delete(SyncState))
        org = start_emulator(daily_limit=1_000_000)
        org.faults.latency = args.latency
        rows.append(("bulk: initial sync", timed_sync(bulk_db, org, "bulk-initial", "bulk")))
        org.stop()

        org = start_emulator(daily_limit=1_000_000)
        org.faults.latency = args.latency
        sample = min(args.naive_sample, n)
        measured = naive(db, org, sample)
        org.stop()
        scale = n / sample
        naive_row = {"calls": round(measured["calls"] * scale), "sent": n, "wall": measured["wall"] * scale}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nSalesforce sync: {n} Accounts, {args.latency * 1000:.0f} ms added latency per API call\n")
    print(f"{'phase':38} {'API calls':>9} {'sent':>7} {'wall s':>8} {'vs naive':>9}")
    for label, r in rows:
        ratio = naive_row["wall"] / r["wall"] if r["wall"] else float("inf")
        print(f"{label:38} {r['calls']:>9} {r['sent']:>7} {r['wall']:>8.2f} {ratio:>8.1f}x")
    print(
        f"{'naive: one REST call per record':38} {naive_row['calls']:>9} {naive_row['sent']:>7} "
        f"{naive_row['wall']:>8.2f}   (measured on {sample}, x{scale:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
