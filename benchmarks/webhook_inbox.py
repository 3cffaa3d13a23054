"""Webhook inbox benchmark: the receiver under load, then the processing rate.

For each database (SQLite file, PostgreSQL started on loopback with the tests' helper):
1. migrate, seed one Payment per event;
2. start the receiver (``uvicorn hotcrm.api.standalone:app``) in a separate process;
3. a load generator (asyncio, raw HTTP/1.1 keep-alive, ``--concurrency`` connections) sends
   ``--count`` Stripe-signed deliveries, 10% of them repeats of earlier ones; it prints
   accepted deliveries/s and p50/p99 latency, beside a baseline: the same load on the app's
   no-op ``GET /hotcrm/health``;
4. drains the inbox with ``process_inbox`` and prints events/s, beside a baseline of the same
   processor one event per transaction (``batch_size=1``).

Then (PostgreSQL, unless ``--no-peer``) the peer phase: the same signed deliveries (the original
partner spec's payload, hex HMAC-SHA256 in ``X-Payment-Signature``, an ``Idempotency-Key``,
10% repeats) at the same concurrency, to HotCRM's receiver (``POST
/hotcrm/webhooks/payment/notification``, a source with nothing but its secret) and to
``airflow-provider-inbound-webhooks`` (its FastAPI app under uvicorn, one ``hmac_json``
webhook recording an asset event a Dag schedules on, Airflow's metadata database on the same
PostgreSQL server). The peer is installed with ``pip install --no-deps --target`` into a cache
directory (``benchmarks/requirements-peer.txt``) and only the peer's server sees it.

    .venv/bin/python benchmarks/webhook_inbox.py --count 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR / "include"), str(PROJECT_DIR)]

from hotcrm.crm import migrate  # noqa: E402
from hotcrm.crm.db import dispose_engine, get_engine, session_scope  # noqa: E402
from hotcrm.crm.models import Account, Payment, utcnow  # noqa: E402
from hotcrm.settings import database_env  # noqa: E402
from hotcrm.webhooks.config import connection_json, env_var  # noqa: E402
from hotcrm.webhooks.inbox import status_counts  # noqa: E402
from hotcrm.webhooks.models import WebhookInbox  # noqa: E402
from hotcrm.webhooks.processing import process_inbox  # noqa: E402
from hotcrm.webhooks.samples import encode, partner_notification, payment_event  # noqa: E402
from hotcrm.webhooks.signatures import sign  # noqa: E402
from tests.support.postgres import PostgresServer, free_port  # noqa: E402

SECRET = "whsec_benchmark_secret"
HOST = "127.0.0.1"


def seed(url: str, count: int) -> None:
    """One Account and ``count`` pending Payments ``txn_bench_<i>``."""
    engine = get_engine(url)
    now = utcnow()
    with session_scope(url) as session:
        account = Account(name="Benchmark Inc")
        session.add(account)
        session.flush()
        account_id = account.id
    rows = [
        {
            "id": f"p{i:035d}",
            "account_id": account_id,
            "transaction_id": f"txn_bench_{i}",
            "amount": Decimal("100.00"),
            "currency": "USD",
            "status": "Pending",
            "created_date": now,
            "last_modified_date": now,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(Payment.__table__.insert(), rows)


def build_requests(port: int, count: int, duplicates: float) -> list[bytes]:
    """``count`` signed POSTs: (1 - duplicates) unique events, the rest repeats, shuffled in."""
    unique = int(count * (1 - duplicates))
    now = int(time.time())
    requests = []
    for i in range(unique):
        event = payment_event("payment.succeeded", f"txn_bench_{i}", "100.00", event_id=f"evt_bench_{i}", created=now)
        requests.append(_request(port, encode(event), now))
    rng = random.Random(7)
    for _ in range(count - unique):
        # A repeat goes after its original, as a provider's retry does.
        index = rng.randrange(unique)
        requests.insert(rng.randrange(index + 1, len(requests) + 1), requests[index])
    return requests


def _request(port: int, body: bytes, timestamp: int) -> bytes:
    headers = sign("stripe", SECRET, body, timestamp=timestamp)
    head = (
        f"POST /hotcrm/webhooks/payment HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    return head.encode() + body


def health_requests(port: int, count: int) -> list[bytes]:
    """``count`` GETs of the app's no-op health route (the baseline)."""
    return [f"GET /hotcrm/health HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()] * count


async def _connection(port: int, requests: list[bytes], cursor: list[int], results: list[tuple[int, float]]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while cursor[0] < len(requests):
            request = requests[cursor[0]]
            cursor[0] += 1
            started = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            results.append((status, time.perf_counter() - started))
    finally:
        writer.close()


def load(port: int, requests: list[bytes], concurrency: int) -> dict:
    """Send ``requests`` over ``concurrency`` keep-alive connections; rate and latency."""

    async def main():
        results: list[tuple[int, float]] = []
        cursor = [0]
        started = time.perf_counter()
        await asyncio.gather(*(_connection(port, requests, cursor, results) for _ in range(concurrency)))
        return results, time.perf_counter() - started

    try:  # the load generator shares the CPUs with the receiver: keep it lean
        import uvloop

        results, seconds = uvloop.run(main())
    except ImportError:
        results, seconds = asyncio.run(main())
    latencies = sorted(r[1] for r in results)
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    accepted = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "requests": len(results),
        "statuses": statuses,
        "per_second": accepted / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "seconds": seconds,
    }


def start_receiver(url: str, workers: int) -> tuple[subprocess.Popen, int]:
    """The standalone app under uvicorn in its own process, on a free port."""
    port = free_port()
    env = {
        **os.environ,
        **database_env(url),
        env_var("payment"): connection_json("stripe", [SECRET]),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR)]),
    }
    command = [sys.executable, "-m", "uvicorn", "hotcrm.api.standalone:app", "--host", HOST, "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log", "--workers", str(workers)]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            load(port, health_requests(port, 1), 1)
            return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the receiver did not start") from None
            time.sleep(0.2)


def run_backend(name: str, url: str, args) -> dict:
    """Receiver and processing figures for one database."""
    migrate.upgrade(url)
    seed(url, args.count)
    process, port = start_receiver(url, args.workers)
    try:
        # Warm-up: imports, pools, and one stored delivery (an ignored type), after which the
        # receiver freezes its startup heap out of the GC; both measurements come after it.
        warmup = payment_event("benchmark.warmup", "none", event_id="evt_warmup")
        load(port, [_request(port, encode(warmup), int(time.time()))], 1)
        load(port, health_requests(port, 500), args.concurrency)
        baseline = load(port, health_requests(port, args.count), args.concurrency)
        requests = build_requests(port, args.count, args.duplicates)
        receiver = load(port, requests, args.concurrency)
    finally:
        process.terminate()
        process.wait(timeout=20)
    counts = status_counts(url)
    stored = counts["pending"] - 1  # without the warm-up delivery
    # Processing baseline: the same processor, one event per transaction, on a slice.
    baseline_n = min(1000, stored // 4)
    single = process_inbox(url, batch_size=1, max_batches=baseline_n)
    batched = process_inbox(url, batch_size=args.batch_size)
    with session_scope(url) as session:
        paid = session.query(Payment).filter(Payment.status == "Paid").count()
        done = session.query(WebhookInbox).filter(WebhookInbox.status == "done").count()
    dispose_engine(url)
    return {
        "backend": name,
        "receiver": receiver,
        "health_baseline": baseline,
        "stored": stored,
        "processing": {
            "events": batched.processed,
            "per_second": batched.processed / batched.seconds if batched.seconds else 0.0,
            "baseline_per_second": single.processed / single.seconds if single.seconds else 0.0,
        },
        "paid": paid,
        "done": done,
    }


def report(result: dict, args) -> None:
    """Print one backend's figures."""
    r, b, p = result["receiver"], result["health_baseline"], result["processing"]
    print(f"\n== {result['backend']}: {r['requests']} deliveries ({args.duplicates:.0%} repeats), ", end="")
    print(f"concurrency {args.concurrency}")
    print(
        f"receiver   {r['per_second']:8.0f} accepted/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms   "
        f"statuses {r['statuses']}"
    )
    print(f"baseline   {b['per_second']:8.0f} GET /health/s p50 {b['p50_ms']:6.1f} ms   p99 {b['p99_ms']:6.1f} ms")
    print(f"ratio      receiver / no-op route = {r['per_second'] / b['per_second']:.2f}")
    print(
        f"stored     {result['stored']} inbox rows (unique events); after processing: "
        f"{result['done']} done, {result['paid']} Payments Paid"
    )
    print(
        f"processing {p['per_second']:8.0f} events/s (batch {args.batch_size}); one per transaction: "
        f"{p['baseline_per_second']:.0f} events/s; ratio {p['per_second'] / max(p['baseline_per_second'], 1e-9):.1f}x"
    )


PEER_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hotcrm-bench" / "peer-site"
PEER_REQUIREMENTS = PROJECT_DIR / "benchmarks" / "requirements-peer.txt"
PEER_SECRET = "peer-benchmark-secret"
PEER_DAG = """
from airflow.sdk import Asset, dag, task
import pendulum


@dag(dag_id="payment_subscriber", schedule=[Asset(name="payment/payment.succeeded")],
     start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def payment_subscriber():
    @task
    def noop():
        pass

    noop()


payment_subscriber()
"""


def install_peer() -> Path:
    """The peer's package in its own directory (installed once, no dependencies)."""
    marker = PEER_CACHE / ".installed"
    if marker.exists() and marker.read_text() == PEER_REQUIREMENTS.read_text():
        return PEER_CACHE
    shutil.rmtree(PEER_CACHE, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(PEER_CACHE)]
    subprocess.run([*pip, "-r", str(PEER_REQUIREMENTS)], check=True)
    marker.write_text(PEER_REQUIREMENTS.read_text())
    return PEER_CACHE


def partner_requests(path: str, port: int, count: int, duplicates: float, run: int = 0) -> list[bytes]:
    """The original partner spec's signed deliveries (``Idempotency-Key``, 10% repeats), to ``path``;
    ``run`` keeps the events of different runs (warm-up, measured) apart."""
    unique = int(count * (1 - duplicates))
    requests = []
    for i in range(unique):
        body = json.dumps(partner_notification("payment.succeeded", f"txn_bench_{run}_{i}", 100.5)).encode()
        headers = {**sign("hmac-sha256", PEER_SECRET, body), "Idempotency-Key": str(uuid.UUID(int=run << 64 | i))}
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        )
        requests.append(head.encode() + body)
    rng = random.Random(7)
    for _ in range(count - unique):
        index = rng.randrange(unique)
        requests.insert(rng.randrange(index + 1, len(requests) + 1), requests[index])
    return requests


def _wait_for(port: int, path: str, process: subprocess.Popen, what: str) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    deadline = time.monotonic() + 60
    while True:
        try:
            load(port, [request], 1)
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.3)


def start_peer(server: PostgresServer, workdir: Path, workers: int) -> tuple[subprocess.Popen, int]:
    """The peer's app under uvicorn, its Airflow metadata database migrated, a Dag subscribed."""
    site = install_peer()
    url = server.url(server.create_database(name="airflow_peer"))
    home = workdir / "airflow-peer"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "payment_subscriber.py").write_text(PEER_DAG)
    extra = {
        "source_type": "hmac_json",
        "signature_header": "X-Payment-Signature",
        "signature_prefix": "sha256=",
        "event_field": "event",
        "delivery_id_header": "Idempotency-Key",
    }
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": url,
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__INBOUND_WEBHOOKS__WEBHOOK_NAMES": "payment",
        "AIRFLOW_CONN_WEBHOOK_PAYMENT": json.dumps(
            {"conn_type": "inbound_webhook", "password": PEER_SECRET, "extra": extra}
        ),
        "PYTHONPATH": str(site),
    }
    for command in (["db", "migrate"], ["dags", "reserialize"], ["dags", "unpause", "payment_subscriber"]):
        subprocess.run([sys.executable, "-m", "airflow", *command], env=env, check=True, capture_output=True)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "airflow_inbound_webhooks.app:build_app"]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen([*command, "--workers", str(workers)], env=env)
    _wait_for(port, "/_health", process, "the peer")
    return process, port


def run_peer_phase(server: PostgresServer, workdir: Path, args) -> dict:
    """HotCRM's receiver and the peer's, the same deliveries and concurrency, one after the other."""
    url = server.url(server.create_database(name="hotcrm_peer_phase"))
    migrate.upgrade(url)
    port = free_port()
    env = {
        **os.environ,
        **database_env(url),
        env_var("payment"): json.dumps({"conn_type": "generic", "password": PEER_SECRET}),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR)]),
    }
    command = [sys.executable, "-m", "uvicorn", "hotcrm.api.standalone:app", "--host", HOST, "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log", "--workers", str(args.workers)]
    results = {}
    for name in ("hotcrm", "peer"):
        if name == "hotcrm":
            process = subprocess.Popen(command, env=env)
            _wait_for(port, "/hotcrm/health", process, "the receiver")
            path, target = "/hotcrm/webhooks/payment/notification", port
        else:
            process, target = start_peer(server, workdir, args.workers)
            path = "/payment"
        try:
            # Warm-up on other events (imports, pools, caches), then the measured run.
            load(target, partner_requests(path, target, 500, 0.0, run=1), args.concurrency)
            results[name] = load(target, partner_requests(path, target, args.count, args.duplicates), args.concurrency)
        finally:
            process.terminate()
            process.wait(timeout=30)
    dispose_engine(url)
    return results


def report_peer(results: dict, args) -> None:
    """Print the peer comparison."""
    ours, peer = results["hotcrm"], results["peer"]
    print(f"\n== peer: {args.count} original-spec deliveries ({args.duplicates:.0%} repeats), ", end="")
    print(f"concurrency {args.concurrency}")
    for name, r in (("HotCRM", ours), ("inbound-webhooks 0.2.0", peer)):
        print(
            f"{name:24s} {r['per_second']:8.0f} accepted/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms   "
            f"statuses {r['statuses']}"
        )
    print(
        f"ratio      HotCRM / peer = {ours['per_second'] / max(peer['per_second'], 1e-9):.2f}x deliveries/s, "
        f"p99 {ours['p99_ms']:.1f} vs {peer['p99_ms']:.1f} ms"
    )


def main() -> int:
    """Run the benchmark on the chosen databases and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="deliveries sent per database")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the receiver")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    parser.add_argument("--no-peer", action="store_true", help="skip the airflow-provider-inbound-webhooks phase")
    args = parser.parse_args()
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="hotcrm-bench-webhooks-"))
    try:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                result = run_backend("SQLite", f"sqlite:///{workdir / 'hotcrm.db'}", args)
            else:
                server = PostgresServer().start()
                try:
                    url = server.url(server.create_database(name="hotcrm_bench"))
                    result = run_backend("PostgreSQL", url, args)
                    if not args.no_peer:
                        peer = run_peer_phase(server, workdir, args)
                finally:
                    server.stop()
            report(result, args)
            results.append(result)
            if backend != "sqlite" and not args.no_peer:
                report_peer(peer, args)
                results.append({"peer_phase": peer})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
