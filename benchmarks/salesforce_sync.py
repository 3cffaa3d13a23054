"""Salesforce sync benchmark against the emulator (HTTPS on loopback, added latency per call).

    .venv/bin/python benchmarks/salesforce_sync.py [--accounts 10000] [--latency 0.05] [--naive-sample 1000]

Phases, on the same data (Accounts only, SQLite CRM database in a temp folder):
  1. Collections mode: initial sync, re-sync with 1% changed, re-sync with none changed;
  2. Bulk API 2.0 mode: initial sync into a fresh org;
  3. the naive way (one REST upsert call per record, every night, as the CRM's old
     integration guide did), on ``--naive-sample`` records and scaled linearly to all of
     them (say ``--naive-sample 10000`` to run it whole: about 10 minutes at 50 ms).
It prints API calls, records sent, wall time and the ratios against the naive way.

    .venv/bin/python benchmarks/salesforce_sync.py --first-sync 600000

A first sync of that many Accounts through Bulk API 2.0 with the default upload limit (100 MB
of CSV per job): the emulator runs in its own process, the sync in another, so the peak RSS
printed is the sync's own. Prints calls, jobs, upload sizes, wall time and peak RSS.
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


def make_accounts(database_url: str, n: int, wide: bool = False) -> list[str]:
    """Insert ``n`` Accounts with every mapped field filled; returns their Ids. ``wide``: longer
    names and websites (~185 bytes of CSV a record, the size the issue measured on real data)."""
    from sqlalchemy import insert

    from hotcrm.crm.db import session_scope
    from hotcrm.crm.models import Account, new_id, utcnow

    now = utcnow()
    ids = []
    with session_scope(database_url) as session:
        for start in range(0, n, 2000):
            rows = [
                {
                    "id": new_id(),
                    "name": f"Account {i:05d}" + (" Holdings International Trading Company Ltd" if wide else ""),
                    "industry": ("Retail", "Energy", "Banking", "Media")[i % 4],
                    "annual_revenue": 1000 * i,
                    "phone": f"+1512555{i:04d}",
                    "website": f"https://a{i}.example" + ("/about-us/our-company/contact" if wide else ""),
                    "billing_city": "Austin",
                    "billing_state": "TX",
                    "billing_country": "US",
                    "created_date": now,
                    "last_modified_date": now,
                }
                for i in range(start, min(n, start + 2000))
            ]
            session.execute(insert(Account), rows)
            ids.extend(r["id"] for r in rows)
    return ids


EMULATOR_PROCESS = """
import sys, threading
sys.path[:0] = [{include!r}, {root!r}]
from tests.fakes.salesforce.server import start_emulator
emulator = start_emulator(daily_limit=10_000_000)
emulator.faults.bulk_background = True  # jobs processed while the client polls, as an org does
print(emulator.base_url, emulator.ca_path, emulator.issue_token(), flush=True)
sys.stdin.read()  # serve until the parent closes our stdin
emulator.stop()
"""

SYNC_PROCESS = """
import json, resource, sys, time
sys.path[:0] = [{include!r}, {root!r}]
from hotcrm.salesforce.client import SalesforceClient
from hotcrm.salesforce.sync import SyncOptions, run_sync
base_url, ca_path, token = sys.argv[1:4]
client = SalesforceClient(base_url, token, verify=ca_path, poll_interval=0.5)
started = time.perf_counter()
result = run_sync({db!r}, client, SyncOptions(objects=("Account",), run_id="first-sync", transport="bulk"))
wall = time.perf_counter() - started
calls = client.api_calls  # the sync's own, before the check below
count = client.request("GET", "/query", params={{"q": "SELECT COUNT() FROM Account"}}).json()["totalSize"]
print(json.dumps({{"result": result, "wall": wall, "calls": calls,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "org_count": count}}))
"""


def first_sync(n: int, wide: bool = False) -> int:
    """A first sync of ``n`` Accounts through Bulk API 2.0, sync and emulator in their own processes."""
    import json
    import subprocess

    from sqlalchemy import select

    from hotcrm.crm import migrate
    from hotcrm.crm.db import dispose_engine, session_scope
    from hotcrm.salesforce.models import BulkJob

    work = Path(tempfile.mkdtemp(prefix="sf-bench-big-"))
    db = f"sqlite:///{work / 'big.db'}"
    paths = {"include": str(ROOT / "include"), "root": str(ROOT)}
    try:
        migrate.upgrade(db)
        started = time.perf_counter()
        make_accounts(db, n, wide=wide)
        dispose_engine(db)
        print(f"{n} Accounts written in {time.perf_counter() - started:.1f}s", flush=True)
        emulator = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_PROCESS.format(**paths)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            base_url, ca_path, token = emulator.stdout.readline().split()
            done = subprocess.run(
                [sys.executable, "-c", SYNC_PROCESS.format(db=db, **paths), base_url, ca_path, token],
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            emulator.stdin.close()
            emulator.wait(timeout=60)
        out = json.loads(done.stdout.strip().splitlines()[-1])
        with session_scope(db) as session:
            jobs = [(j.records, j.upload_bytes) for j in session.execute(select(BulkJob)).scalars()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    account = out["result"]["objects"]["Account"]
    print(f"\nSalesforce sync: first sync of {n} Accounts through Bulk API 2.0 (default 100 MB per upload)\n")
    print(
        f"outcome {out['result']['outcome']}: created {account['created']}, failed {account['failed']}, "
        f"pending {account['pending']}; the org holds {out['org_count']} Accounts"
    )
    print(
        f"API calls {out['calls']}, jobs {len(jobs)}: " + ", ".join(f"{r} records / {b / 1e6:.1f} MB" for r, b in jobs)
    )
    print(
        f"wall {out['wall']:.1f}s, {n / out['wall']:.0f} records/s; peak RSS of the sync process "
        f"{out['peak_rss_mb']:.0f} MB"
    )
    return 0


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
    parser.add_argument("--first-sync", type=int, default=0, help="run only the big first sync, of this many")
    parser.add_argument("--wide", action="store_true", help="first sync: ~185 bytes of CSV per Account")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.first_sync:
        return first_sync(args.first_sync, wide=args.wide)

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
