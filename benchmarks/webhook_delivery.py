"""Benchmark of webhook delivery: N due deliveries to a local subscriber that answers in 50 ms.

    .venv/bin/python benchmarks/webhook_delivery.py                          # 10,000, SQLite
    .venv/bin/python benchmarks/webhook_delivery.py --deliveries 1000 --baseline 100
    .venv/bin/python benchmarks/webhook_delivery.py --backend postgresql     # a throwaway PostgreSQL

The subscriber (a minimal asyncio HTTP server answering 200 after 50 ms) runs in its own
process so it does not share the GIL with the sender. Both measurements go through the same code
(:func:`hotcrm.delivery.service.deliver_due`: claim a batch, sign, POST, record attempts and
states), from the project's delivery settings (batch 500):

- ``baseline``: one request at a time (``concurrency=1``) over ``--baseline`` deliveries
  (10,000 x 50 ms would take 9 minutes; the rate is what matters);
- ``concurrent``: ``--concurrency`` requests in flight (default: the config's 100) over
  ``--deliveries``.

Prints deliveries/s of each and the ratio. Every delivery must end ``succeeded``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
for _path in (PROJECT_DIR / "include", PROJECT_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# A minimal asyncio HTTP/1.1 server (keep-alive, answers 200 after 50 ms): cheap enough that
# the figures measure the sender, not a thread-per-connection test server.
SUBSCRIBER = """
import asyncio

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            for line in head.split(b"\\r\\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":")[1]))
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nContent-Type: application/json\\r\\n\\r\\n{}")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def start_subscriber_process() -> tuple[subprocess.Popen, int]:
    """The 50 ms subscriber in a child process; returns it and its port."""
    proc = subprocess.Popen([sys.executable, "-c", SUBSCRIBER], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


def fill(url: str, target: str, count: int) -> None:
    """``count`` outbox events fanned out to one subscription: ``count`` due deliveries."""
    from sqlalchemy import insert

    from hotcrm.crm.db import session_scope
    from hotcrm.crm.models import OutboxEvent, new_id, utcnow
    from hotcrm.delivery.service import add_subscription, fan_out

    with session_scope(url) as session:
        add_subscription(session, target, ["*"], allow_private=("127.0.0.1/32",))
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "event_type": "lead.converted",
            "payload": {"event": "lead.converted", "timestamp": now.isoformat(), "data": {"LeadId": f"L-{i}", "n": i}},
            "created_at": now,
        }
        for i in range(count)
    ]
    with session_scope(url) as session:
        session.execute(insert(OutboxEvent), rows)
    created = 0
    while created < count:
        with session_scope(url) as session:
            n = fan_out(session)
        if not n:
            break
        created += n
    assert created == count, (created, count)


def measure(url: str, config, count: int) -> dict:
    """Deliver everything due; returns the summary with the rate."""
    from sqlalchemy import func, select

    from hotcrm.crm.db import session_scope
    from hotcrm.delivery.models import SUCCEEDED, WebhookDelivery
    from hotcrm.delivery.service import deliver_due

    t0 = time.perf_counter()
    summary = deliver_due(url, config, time_budget=3600)
    seconds = time.perf_counter() - t0
    with session_scope(url) as session:
        ok = session.scalar(select(func.count()).where(WebhookDelivery.status == SUCCEEDED))
    if ok != count:
        raise SystemExit(f"only {ok} of {count} deliveries succeeded: {summary}")
    return {"count": count, "seconds": seconds, "per_second": count / seconds}


def database(backend: str, tmp: Path, name: str, pg):
    """A fresh migrated database URL."""
    from hotcrm.crm import migrate

    url = f"sqlite:///{tmp / name}.db" if backend == "sqlite" else pg.url(pg.create_database(name=name))
    migrate.upgrade(url)
    return url


def main() -> int:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=200, help="deliveries in the sequential baseline")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()

    from hotcrm.delivery.config import load_config

    pg = None
    if args.backend == "postgresql":
        from tests.support.postgres import PostgresServer

        pg = PostgresServer().start()
    proc, port = start_subscriber_process()
    target = f"http://127.0.0.1:{port}/hook"
    config = replace(load_config(), allow_private_destinations=("127.0.0.1/32",), operator_emails=())
    if args.concurrency:
        config = replace(config, concurrency=args.concurrency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base_url = database(args.backend, Path(tmp), "baseline", pg)
            fill(base_url, target, args.baseline)
            baseline = measure(base_url, replace(config, concurrency=1), args.baseline)
            conc_url = database(args.backend, Path(tmp), "concurrent", pg)
            fill(conc_url, target, args.deliveries)
            concurrent = measure(conc_url, config, args.deliveries)
    finally:
        proc.terminate()
        proc.wait()
        if pg is not None:
            pg.stop()
    print(f"webhook delivery, subscriber answering in 50 ms, {args.backend}, batch {config.batch_size}")
    print(
        f"  baseline   (1 in flight):   {baseline['count']:>6} deliveries in {baseline['seconds']:7.2f}s "
        f"= {baseline['per_second']:8.1f}/s"
    )
    print(
        f"  concurrent ({config.concurrency} in flight): {concurrent['count']:>6} deliveries in "
        f"{concurrent['seconds']:7.2f}s = {concurrent['per_second']:8.1f}/s"
    )
    print(f"  ratio: {concurrent['per_second'] / baseline['per_second']:.1f}x the sequential baseline (target >= 20x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
