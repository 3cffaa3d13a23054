"""Parse cost of each DAG file: median wall time of running it in a fresh process after
``airflow.sdk`` is imported (what a DAG file adds to a parse), against a baseline folder.

    .venv/bin/python benchmarks/dag_parse.py [--baseline OTHER_CHECKOUT] [--repeat 3]

Also times one ``Asset`` with a ``hotcrm://`` and an ``x-hotcrm://`` URI: Airflow normalizes a
URI whose scheme does not start with ``x-`` through the providers' URI handlers, which loads
every provider's metadata in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
RUN_FILE = (
    "import time, runpy, sys, airflow.sdk; t = time.perf_counter(); runpy.run_path(sys.argv[1]); "
    "print('T', time.perf_counter() - t)"
)
ASSET = (
    "import time, sys; from airflow.sdk import Asset; t = time.perf_counter(); Asset(name='a', uri=sys.argv[1]); "
    "print('T', time.perf_counter() - t)"
)


def _median_ms(code: str, arg: str, checkout: Path, repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": f"{checkout / 'include'}{os.pathsep}{checkout}"}
    times = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, env=env).stdout
        times += [float(line.split()[1]) for line in out.splitlines() if line.startswith("T ")]
    return round(statistics.median(times) * 1000, 1) if times else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout whose dags/ to time the same way")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(p.name for p in (PROJECT / "dags").glob("*.py"))
    print(f"{'DAG file':22} {'this (ms)':>10} {'baseline':>10}")
    for name in files:
        ours = _median_ms(RUN_FILE, str(PROJECT / "dags" / name), PROJECT, args.repeat)
        base = args.baseline and _median_ms(RUN_FILE, str(args.baseline / "dags" / name), args.baseline, args.repeat)
        print(f"{name:22} {ours:>10} {base or '':>10}")
    for uri in ("hotcrm://crm/leads", "x-hotcrm://crm/leads"):
        print(f"Asset({uri!r}): {_median_ms(ASSET, uri, PROJECT, args.repeat)} ms")


if __name__ == "__main__":
    main()
