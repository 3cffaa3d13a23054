"""Benchmark the Account export against PostgreSQL's own JSON dump, at 100,000 and N rows.

    .venv/bin/python benchmarks/account_export.py              # N = 1,000,000
    .venv/bin/python benchmarks/account_export.py --rows 200000
    .venv/bin/python benchmarks/account_export.py --database-url postgresql+psycopg://...  # your server

Without ``--database-url`` it starts a throwaway PostgreSQL server on loopback (the test
suite's ``tests.support.postgres``). For each size it fills ``accounts`` with generated rows,
then runs every measurement in its own subprocess so peak RSS figures never mix:

- ``baseline``: ``COPY (SELECT row_to_json(t) FROM (... ORDER BY id) t) TO STDOUT`` into a
  file through psycopg (the same columns and order as the export);
- ``json``, ``ndjson``, ``csv``: :func:`hotcrm.exports.accounts.write_export` (server-side
  cursor, serialization, sha256, stats) plus the publishing rename, default fields;
- ``check``: the Great Expectations suite on the json export's statistics (the DAG runs it
  as its own task, so its memory is not the streaming task's).

Peak RSS is the child's ``ru_maxrss`` (the kernel's high-water mark, not a sample). Each
measurement runs ``--repeat`` times (default 3): the fastest run counts (the machine is
shared; the minimum is the least disturbed), and the largest peak RSS. It prints rows/s,
peak RSS, and the ratio of each export's rows/s to the baseline's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
for _path in (PROJECT_DIR / "include", PROJECT_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

KINDS = ("baseline", "json", "ndjson", "csv", "check")
BASELINE_SQL = """
COPY (SELECT row_to_json(t) FROM (
    SELECT id AS "Id", name AS "Name", type AS "Type", industry AS "Industry",
           annual_revenue AS "AnnualRevenue", phone AS "Phone", email AS "Email", website AS "Website"
    FROM accounts ORDER BY id) t) TO STDOUT
"""
FILL_SQL = """
INSERT INTO accounts (id, name, type, industry, annual_revenue, phone, email, website, billing_city,
                      description, created_date, last_modified_date)
SELECT md5(i::text)::uuid::text,
       'Account ' || i || ' "Holdings", Ltd',
       (ARRAY['Prospect', 'Customer', 'Partner'])[1 + i % 3],
       (ARRAY['Retail', 'Technology', 'Energy', 'Healthcare', 'Manufacturing'])[1 + i % 5],
       CASE WHEN i % 10 = 0 THEN NULL ELSE (i::numeric * 37.25) % 100000000 END,
       '+1512555' || lpad((i % 10000)::text, 4, '0'),
       'info' || i || '@example.com',
       'https://account' || i || '.example',
       'Austin',
       CASE WHEN i % 7 = 0 THEN '=formula-like ' || i ELSE NULL END,
       timestamptz '2026-01-01' + (i % 365) * interval '1 day',
       timestamptz '2026-01-01' + (i % 365) * interval '1 day'
FROM generate_series(CAST(:start AS integer), CAST(:stop AS integer)) AS i
"""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- children: one measurement each ------------------------------------------------------------


def child(kind: str, database_url: str, out_dir: Path, batch_size: int) -> dict:
    """Run one measurement in this (fresh) process; returns rows, seconds and peak RSS."""
    if kind == "baseline":
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        started = time.perf_counter()
        rows = 0
        connect = {"host": url.host, "port": url.port, "user": url.username, "dbname": url.database}
        with (
            psycopg.connect(**connect, password=url.password) as conn,
            conn.cursor() as cursor,
            cursor.copy(BASELINE_SQL) as copy,
            open(out_dir / "baseline.ndjson", "wb") as handle,
        ):
            for block in copy:
                handle.write(block)
                rows += bytes(block).count(b"\n")
        return {"rows": rows, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}
    if kind == "check":
        from hotcrm.exports.accounts import WrittenExport, check_export

        written = WrittenExport.from_dict(json.loads((out_dir / "written-json.json").read_text()))
        started = time.perf_counter()
        result = check_export(written)
        assert result.success, result.summary()
        return {"rows": written.record_count, "seconds": time.perf_counter() - started, "peak_rss_mb": _peak_rss_mb()}

    from upath import UPath

    from hotcrm.exports.accounts import build_spec, write_export

    root = UPath((out_dir / "bucket").as_uri())
    spec = build_spec(None, None, kind)
    started = time.perf_counter()
    written = write_export(database_url, root, spec, f"bench.{kind}", batch_size=batch_size)
    root.fs.mv(written.temp_path, written.published_path)  # the publishing rename
    seconds = time.perf_counter() - started
    (out_dir / f"written-{kind}.json").write_text(json.dumps(written.to_dict()))
    assert written.record_count == written.database_count
    return {"rows": written.record_count, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def _measure(kind: str, database_url: str, out_dir: Path, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--database-url", database_url, "--out", str(out_dir)]
    command += ["--batch-size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- parent: fill, measure, report -------------------------------------------------------------


def _fill(database_url: str, rows: int) -> None:
    from sqlalchemy import text

    from hotcrm.crm.db import get_engine

    engine = get_engine(database_url)
    with engine.begin() as conn:
        current = conn.execute(text("SELECT count(*) FROM accounts")).scalar_one()
        if current > rows:
            conn.execute(text("TRUNCATE accounts CASCADE"))
            current = 0
        step = 250_000
        for start in range(current + 1, rows + 1, step):
            conn.execute(
                text(FILL_SQL),
                {"start": start, "stop": min(start + step - 1, rows)},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE accounts"))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="N, the large size (default 1,000,000)")
    parser.add_argument("--small", type=int, default=100_000, help="the small size (default 100,000)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL (default: a throwaway server)")
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement; the fastest counts, peak RSS is the largest"
    )
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.database_url, args.out, args.batch_size)))
        return 0

    from hotcrm.crm import migrate

    server = None
    database_url = args.database_url
    if database_url is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer().start()
        database_url = server.url(server.create_database())
    try:
        migrate.upgrade(database_url)
        results: dict[int, dict[str, dict]] = {}
        for size in sorted({args.small, args.rows}):
            print(f"filling {size:,} accounts ...", flush=True)
            _fill(database_url, size)
            results[size] = {}
            with tempfile.TemporaryDirectory(prefix="hotcrm-export-bench-") as out:
                for kind in KINDS:
                    runs = [_measure(kind, database_url, Path(out), args.batch_size) for _ in range(args.repeat)]
                    figures = min(runs, key=lambda r: r["seconds"])
                    figures["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
                    results[size][kind] = figures
                    assert figures["rows"] == size, f"{kind} exported {figures['rows']} of {size} rows"
                    figures["rows_per_s"] = figures["rows"] / figures["seconds"]
                    print(
                        f"  {kind:8} {figures['seconds']:7.2f} s  {figures['rows_per_s']:10,.0f} rows/s  "
                        f"peak RSS {figures['peak_rss_mb']:6.1f} MB",
                        flush=True,
                    )
        _report(results, args.small, args.rows)
    finally:
        if server is not None:
            server.stop()
    return 0


def _report(results: dict[int, dict[str, dict]], small: int, large: int) -> None:
    print()
    print("| rows | measurement | seconds | rows/s | × baseline rows/s | peak RSS MB |")
    print("|---:|---|---:|---:|---:|---:|")
    for size, by_kind in results.items():
        base = by_kind["baseline"]["rows_per_s"]
        for kind, f in by_kind.items():
            ratio = f"{f['rows_per_s'] / base:.2f}" if kind != "check" else "–"
            figures = f"{f['seconds']:.2f} | {f['rows_per_s']:,.0f} | {ratio} | {f['peak_rss_mb']:.0f}"
            print(f"| {size:,} | {kind} | {figures} |")
    if small != large:
        print()
        for kind in ("json", "ndjson", "csv"):
            growth = results[large][kind]["peak_rss_mb"] / results[small][kind]["peak_rss_mb"]
            print(f"{kind}: peak RSS {large:,} / {small:,} rows = {growth:.2f}× (target ≤ 1.2×)")
    json_ratio = results[large]["json"]["rows_per_s"] / results[large]["baseline"]["rows_per_s"]
    peak = max(results[s][k]["peak_rss_mb"] for s in results for k in ("json", "ndjson", "csv"))
    print(f"json at {large:,} rows: {json_ratio:.2f}× the baseline's rows/s (target ≥ 0.5×)")
    print(f"largest export peak RSS: {peak:.0f} MB (target ≤ 256 MB)")


if __name__ == "__main__":
    sys.exit(main())
