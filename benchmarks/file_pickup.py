"""File-drop latency of ``lead_import`` through a real Airflow: drop -> import started, and
drop -> file in ``processed/``, for a ``file://`` and an ``s3://`` bucket.

    .venv/bin/python benchmarks/file_pickup.py                 # both buckets, 5 drops each
    .venv/bin/python benchmarks/file_pickup.py --bucket s3 --drops 3

For each bucket it starts Airflow's api-server, scheduler (LocalExecutor), dag-processor and
triggerer on loopback in a temporary AIRFLOW_HOME (:mod:`tests.support.airflow_stack`),
with a fresh SQLite CRM database; ``s3://`` is moto's S3 server on loopback. A first
(warm-up) drop is reported apart: it pays for the first task process's imports. Then each
drop waits for the previous file to be processed, and ``--gap`` seconds (a drop lands at
a random point of the watcher's 5-second listing interval). Prints, per drop and as
median/max: drop -> asset event (the watcher fired), -> DAG run started, -> ``import_file``
task started, -> file in ``processed/``. The issue's target: an import starts within 30 s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR / "include"), str(PROJECT_DIR)]

from tests.support.airflow_stack import LEAD_CSV, AirflowStack  # noqa: E402

STEPS = ("event", "run_started", "task_started", "processed")


def crm_database(work: Path) -> str:
    from hotcrm.crm import migrate
    from hotcrm.crm.db import dispose_engine

    url = f"sqlite:///{work / 'hotcrm.db'}"
    migrate.upgrade(url)
    dispose_engine(url)
    return url


def measure(kind: str, drops: int, gap: float, work: Path) -> list[dict[str, float]]:
    database_url = crm_database(work)
    env = {
        "AIRFLOW_CONN_HOTCRM_DB": json.dumps({"conn_type": "sqlite", "host": str(work / "hotcrm.db")}),
        "HOTCRM_DATABASE_URL": database_url,
        "HOTCRM_DATA_DIR": str(work / "data"),
    }
    server = client = None
    if kind == "file":
        env["HOTCRM_BUCKET_URL"] = (work / "bucket").as_uri()
    else:
        from tests.support.s3 import S3Server

        server = S3Server().start()
        env["HOTCRM_BUCKET_URL"] = server.create_bucket(f"hotcrm-{uuid.uuid4().hex[:10]}")
        env["AIRFLOW_CONN_HOTCRM_BUCKET"] = server.airflow_connection_json()
        client = server.client()
    rows = []
    try:
        began = time.monotonic()
        with AirflowStack(work / "airflow", env, client) as stack:
            print(f"[{kind}] Airflow up, watcher running after {time.monotonic() - began:.1f} s", flush=True)
            rnd = random.Random(7)
            for i in range(drops + 1):
                name = f"leads-{kind}-{i}.csv"
                dropped = stack.drop(name, LEAD_CSV.format(n=f"{kind}{i}"))
                row = stack.pickup(name, dropped)
                row["warmup"] = i == 0
                rows.append(row)
                label = "warm-up" if i == 0 else f"drop {i}"
                print(f"[{kind}] {label:8} " + "  ".join(f"{s} {row[s]:6.1f} s" for s in STEPS), flush=True)
                time.sleep(gap + rnd.uniform(0, 5))
    finally:
        if server is not None:
            server.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", choices=["file", "s3", "both"], default="both")
    parser.add_argument("--drops", type=int, default=5, help="measured drops per bucket (after one warm-up)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between a file's pickup and the next drop")
    args = parser.parse_args()
    kinds = ["file", "s3"] if args.bucket == "both" else [args.bucket]
    results = {}
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"hotcrm-pickup-{kind}-") as tmp:
            results[kind] = measure(kind, args.drops, args.gap, Path(tmp))
    print("\nseconds after the drop (median / max of the measured drops; warm-up apart)")
    print(f"| bucket | {' | '.join(STEPS)} | warm-up: task started / processed |")
    print(f"|---|{'---:|' * len(STEPS)}---:|")
    for kind, rows in results.items():
        measured = [r for r in rows if not r["warmup"]] or rows
        warm = rows[0]
        cells = [f"{statistics.median(r[s] for r in measured):.1f} / {max(r[s] for r in measured):.1f}" for s in STEPS]
        print(f"| {kind}:// | {' | '.join(cells)} | {warm['task_started']:.1f} / {warm['processed']:.1f} |")
    worst = max(r["task_started"] for rows in results.values() for r in rows if not r["warmup"])
    print(f"\nworst drop -> import started: {worst:.1f} s (target: 30 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
