"""Retention benchmark: the maintenance purge on a large webhook inbox (PostgreSQL), and what it
does to the receiver meanwhile.

1. PostgreSQL is started on loopback with the tests' helper and migrated; ``--rows`` inbox rows
   are generated server-side: 90% done (processed over the last 60 days, so about half are past
   the 30-day age), 5% dead (over 120 days: about a quarter past 90 days), 5% pending (of any
   age: never removed), bodies of ``--body-bytes``.
2. A receiver process inserts one inbound webhook per transaction (the receiver's
   ``INSERT ... ON CONFLICT DO NOTHING``) for ``--baseline-seconds`` alone: the baseline latency.
3. The purge runs (``hotcrm.maintenance.retention.purge``, inbox rules, the project's batch
   size) while the receiver keeps inserting; printed: rows removed, seconds, rows/s,
   batches, and the receiver's p50/p99/max latency during the purge beside the baseline.

    .venv/bin/python benchmarks/retention.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR / "include"), str(PROJECT_DIR)]

import psycopg  # noqa: E402

from hotcrm.crm import migrate  # noqa: E402
from hotcrm.crm.db import dispose_engine  # noqa: E402
from hotcrm.crm.models import utcnow  # noqa: E402
from hotcrm.maintenance.retention import load_config, purge  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

FILL = """
INSERT INTO webhook_inbox (source, event_id, event_type, event_time, received_at, body, headers, status,
                           attempts, next_attempt_at, processed_at, result)
SELECT 'stripe', 'evt_' || g, 'payment_intent.succeeded', t, t, repeat('x', %(body)s), '{}',
       s, 1, t, CASE WHEN s = 'pending' THEN NULL ELSE t + interval '1 second' END,
       CASE WHEN s = 'done' THEN 'payment P-' || g || ' marked Paid' END
FROM (
  SELECT g,
         CASE WHEN g %% 20 = 0 THEN 'pending' WHEN g %% 20 = 1 THEN 'dead' ELSE 'done' END AS s,
         %(now)s::timestamptz - (CASE WHEN g %% 20 = 1 THEN interval '120 days' ELSE interval '60 days' END)
           * ((%(rows)s - g)::float8 / %(rows)s) AS t
  FROM generate_series(%(start)s, %(stop)s) AS g
) AS rows
"""

RECEIVE = (
    "INSERT INTO webhook_inbox (source, event_id, event_type, received_at, body, headers, status, attempts, "
    "next_attempt_at) VALUES ('stripe', %s, 'payment_intent.succeeded', now(), %s, '{}', 'pending', 0, now()) "
    "ON CONFLICT (source, event_id) DO NOTHING"
)


def receive(dsn: str, body: str, phase, stop, results) -> None:
    """Insert one inbound webhook per transaction (~400/s offered: a steady receiver, not a second
    load test) until ``stop``; put each phase's latencies in ``results``. A separate process, as
    the real receiver is (a thread would measure this process's GIL, not the database)."""
    by_phase: dict[str, list[float]] = {"baseline": [], "purge": []}
    with psycopg.connect(dsn, autocommit=True) as connection:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            connection.execute(RECEIVE, (f"live_{n}", body))
            by_phase["purge" if phase.is_set() else "baseline"].append(time.perf_counter() - started)
            time.sleep(0.002)
    results.put(by_phase)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def main() -> int:
    """Fill, measure the receiver alone, purge while it inserts, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--body-bytes", type=int, default=200)
    parser.add_argument("--baseline-seconds", type=float, default=20)
    parser.add_argument("--batch-size", type=int, default=0, help="rows per delete batch (0: the config file's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the purge's progress lines
    server = PostgresServer().start()
    try:
        name = server.create_database(name="hotcrm_retention")
        url = server.url(name)
        dsn = server.dsn(name)
        migrate.upgrade(url)
        now = utcnow()
        started = time.perf_counter()
        chunk = 1_000_000
        with psycopg.connect(dsn, autocommit=True) as connection:
            for start in range(1, args.rows + 1, chunk):
                stop = min(args.rows, start + chunk - 1)
                connection.execute(FILL, {"body": args.body_bytes, "now": now, "rows": args.rows, "start": start,
                                          "stop": stop})  # fmt: skip
                print(f"filled {stop:,} / {args.rows:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
            connection.execute("VACUUM ANALYZE webhook_inbox")
            size = connection.execute("SELECT pg_size_pretty(pg_total_relation_size('webhook_inbox'))").fetchone()[0]
            counts = dict(connection.execute("SELECT status, count(*) FROM webhook_inbox GROUP BY status").fetchall())
        fill_seconds = time.perf_counter() - started
        print(f"inbox: {sum(counts.values()):,} rows {counts}, {size} with indexes; filled in {fill_seconds:.0f} s")

        config = load_config()
        if args.batch_size:
            config = replace(config, batch_size=args.batch_size)
        config = replace(config, time_budget_seconds=24 * 3600)
        phase, stop, results = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Queue()
        receiver = multiprocessing.Process(target=receive, args=(dsn, "x" * args.body_bytes, phase, stop, results))
        receiver.start()
        time.sleep(args.baseline_seconds)
        phase.set()
        purge_started = time.perf_counter()
        summary = purge(url, config, now=now, only=["webhook_inbox.done", "webhook_inbox.dead"])
        purge_seconds = time.perf_counter() - purge_started
        stop.set()
        latencies = results.get(timeout=60)
        receiver.join()
        with psycopg.connect(dsn, autocommit=True) as connection:
            left = dict(connection.execute("SELECT status, count(*) FROM webhook_inbox GROUP BY status").fetchall())
        removed = summary["total_removed"]
        result = {
            "rows": args.rows,
            "table_size": size,
            "fill_seconds": round(fill_seconds, 1),
            "removed": summary["removed"],
            "purge_seconds": round(purge_seconds, 1),
            "rows_per_second": round(removed / purge_seconds),
            "batches": summary["batches"],
            "batch_size": config.batch_size,
            "left": left,
            "receiver_baseline": percentiles(latencies["baseline"]),
            "receiver_during_purge": percentiles(latencies["purge"]),
        }
        base, during = result["receiver_baseline"], result["receiver_during_purge"]
        print(
            f"purge: removed {removed:,} rows ({summary['removed']}) in {purge_seconds:.1f} s = "
            f"{result['rows_per_second']:,} rows/s, {summary['batches']} batches of {config.batch_size}"
        )
        print(f"left: {left}")
        print(f"receiver alone:        {base}")
        print(f"receiver during purge: {during}  (p99 ratio {during['p99_ms'] / base['p99_ms']:.2f})")
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        dispose_engine(url)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
