"""Benchmark of the REST API: lead creation and lead conversion at concurrency 16 on
PostgreSQL, against a trivial endpoint of the same app (``GET /hotcrm/health``) as the
framework baseline.

    .venv/bin/python benchmarks/api.py                      # 3,000 requests per scenario
    .venv/bin/python benchmarks/api.py --requests 500       # a quick look
    .venv/bin/python benchmarks/api.py --database-url postgresql+psycopg://...   # your server

Without ``--database-url`` it starts a throwaway PostgreSQL server on loopback (the test
suite's ``tests.support.postgres``: ``fsync=off``). The app runs as it does in production
alone: ``uvicorn hotcrm.api.standalone:app`` in its own process (``--workers``, default 1),
with an API key that has every lead scope and a rate limit high enough not to interfere
(every request still counts against it: the counter update is part of what is measured).

The load generator is a small asyncio HTTP/1.1 client over keep-alive connections (one per
concurrent caller), so the client costs little of the machine's two cores. Each scenario has
a warm-up, then ``--requests`` timed requests; every response status is checked. Besides
creation and conversion it times ``GET /crm/leads/{id}``: the cost of authentication, the
rate-limit count and one primary-key read, between the baseline and creation. Prints
requests/s, p50 and p99 latency, and each scenario's requests/s as a ratio of the baseline's.
Target (issue 8): lead creation >= 0.3x the baseline's requests/s with p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
for _path in (PROJECT_DIR / "include", PROJECT_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

CONCURRENCY = 16


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads its response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; returns (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    def close(self) -> None:
        """Close the socket."""
        if self.writer is not None:
            self.writer.close()


async def run_scenario(host: str, port: int, requests: list[tuple[str, str, dict, bytes, int]]) -> dict:
    """Send ``requests`` (method, path, headers, body, expected status) over CONCURRENCY connections."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    failures: list[str] = []
    connections = [Connection(host, port) for _ in range(CONCURRENCY)]

    async def worker(connection: Connection) -> None:
        while queue:
            method, path, headers, body, expected = queue.pop()
            started = time.perf_counter()
            status, payload = await connection.request(method, path, headers, body)
            latencies.append(time.perf_counter() - started)
            if status != expected:
                failures.append(f"{method} {path}: HTTP {status} {payload[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    if failures:
        raise RuntimeError(f"{len(failures)} unexpected responses, e.g. {failures[0]}")
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per scenario")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests before each scenario")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--keys", type=int, default=1, help="API keys the requests rotate over (1: one partner)")
    parser.add_argument("--database-url", help="a PostgreSQL database to use (default: a throwaway server)")
    args = parser.parse_args()

    from hotcrm.api import auth
    from hotcrm.crm import migrate
    from hotcrm.settings import database_env
    from tests.support.api_server import ProcessServer

    server = None
    url = args.database_url
    if url is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer().start()
        url = server.url(server.create_database(name="hotcrm_api_bench"))
    try:
        migrate.upgrade(url)
        keys = [
            auth.create_api_key(url, f"benchmark {n}", ["leads:read", "leads:write", "leads:convert"]).key
            for n in range(args.keys)
        ]
        env = {**database_env(url), "HOTCRM_API_RATE_LIMIT": "100000000/60"}
        with ProcessServer(env, workers=args.workers) as api:
            port = api.port
            headers = [{"X-API-Key": key, "Content-Type": "application/json"} for key in keys]
            run_id = int(time.time())

            def lead_requests(prefix: str, count: int) -> list:
                return [
                    (
                        "POST",
                        "/hotcrm/api/v1/crm/leads",
                        headers[i % len(headers)],
                        json.dumps(
                            {
                                "firstName": "Bench",
                                "lastName": f"Lead {i}",
                                "company": f"Company {i}",
                                "email": f"{prefix}-{run_id}-{i}@example.com",
                                "phone": "+14155550123",
                                "estimatedValue": 1000 + i,
                            }  # fmt: skip
                        ).encode(),
                        201,
                    )
                    for i in range(count)
                ]

            def run(requests: list) -> dict:
                return asyncio.run(run_scenario("127.0.0.1", port, requests))

            health = ("GET", "/hotcrm/health", {}, b"", 200)
            results = {}
            run([health] * args.warmup)
            results["baseline GET /hotcrm/health"] = run([health] * args.requests)
            run(lead_requests("warm", args.warmup))
            results["POST /crm/leads (create)"] = run(lead_requests("lead", args.requests))

            # Leads to convert, created through the API (not timed).
            from sqlalchemy import select

            from hotcrm.crm.db import session_scope
            from hotcrm.crm.models import Lead

            with session_scope(url) as session:
                ids = list(session.scalars(select(Lead.id).where(Lead.status == "New").order_by(Lead.id)))
            reads = [
                ("GET", f"/hotcrm/api/v1/crm/leads/{ids[n % len(ids)]}", headers[n % len(headers)], b"", 200)
                for n in range(args.requests)
            ]
            run(reads[: args.warmup])
            results["GET /crm/leads/{id} (read)"] = run(reads)
            convert_body = json.dumps({"createOpportunity": True}).encode()
            converts = [
                ("POST", f"/hotcrm/api/v1/crm/leads/{lead_id}/convert", headers[n % len(headers)], convert_body, 200)
                for n, lead_id in enumerate(ids)
            ]
            run(converts[: args.warmup])
            results["POST /crm/leads/{id}/convert"] = run(converts[args.warmup : args.warmup + args.requests])
    finally:
        if server is not None:
            server.stop()

    baseline = results["baseline GET /hotcrm/health"]["rps"]
    print(f"\nREST API, concurrency {CONCURRENCY}, {args.workers} uvicorn worker(s), PostgreSQL")
    print(f"{'scenario':34} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x baseline':>10}")
    for name, figures in results.items():
        print(
            f"{name:34} {figures['requests']:>8} {figures['rps']:>8.0f} {figures['p50_ms']:>8.1f} "
            f"{figures['p99_ms']:>8.1f} {figures['rps'] / baseline:>10.2f}"
        )
    create = results["POST /crm/leads (create)"]
    met = create["rps"] >= 0.3 * baseline and create["p99_ms"] <= 50
    print(
        f"target: lead creation >= 0.3x baseline req/s and p99 <= 50 ms: "
        f"{create['rps'] / baseline:.2f}x, p99 {create['p99_ms']:.1f} ms -> {'met' if met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
