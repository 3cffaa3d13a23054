"""Micro-benchmark of the lead import's column-wise phones, against an earlier revision.

    .venv/bin/python benchmarks/lead_phones.py --rows 100000 --against e4d1600

Generates a realistic file (:func:`lead_import.generate_realistic`) and times, for this
checkout's ``hotcrm.leads.columnar`` and the one at ``--against`` (read with ``git show``),
``ColumnarRules.apply`` over its Email, Phone and Country columns in batches of 20,000 rows
(the import's), ``_phone`` alone, and how many phones each leaves to the per-row
``rules.normalize_phone``. Both in one process, one after the other; the best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from benchmarks.lead_import import generate_realistic  # noqa: E402
from hotcrm.leads import columnar, loader  # noqa: E402

BATCH = 20_000


def load_revision(revision: str, folder: Path):
    """``hotcrm.leads.columnar`` as it was at ``revision`` (with today's other modules)."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:include/hotcrm/leads/columnar.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = folder / f"columnar_{revision}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"hotcrm.leads._columnar_{revision}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def measure(module, batches, repeat: int) -> tuple[float, float, int]:
    """(best apply seconds, best _phone seconds, phones left to the per-row rules)."""
    rules_c = module.ColumnarRules({"Email": 0, "Phone": 1, "Country": 2}, loader.LEAD_COLUMNS)
    inputs = []
    for cells in batches:
        phone = pc.utf8_trim(cells[1], " ")
        inputs.append((phone, pc.greater(pc.binary_length(phone), 0), rules_c._regions(cells[2])))
    per_row = 0
    original = module._phone_or_none

    def counted(value, region):
        nonlocal per_row
        per_row += 1
        return original(value, region)

    module._phone_or_none = counted
    for cells in batches:
        rules_c.apply(cells, raw=False)
    module._phone_or_none = original
    best_apply = best_phone = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for cells in batches:
            rules_c.apply(cells, raw=False)
        best_apply = min(best_apply, time.perf_counter() - start)
        start = time.perf_counter()
        for phone in inputs:
            rules_c._phone(*phone)
        best_phone = min(best_phone, time.perf_counter() - start)
    return best_apply, best_phone, per_row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--against", default=None, help="a git revision to compare with")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "realistic.csv"
        generate_realistic(path, args.rows)
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            data = [row for row in reader if len(row) == len(header)]
        columns = [header.index(name) for name in ("Email", "Phone", "Country")]
        batches = [
            [pa.array([row[i] for row in data[start : start + BATCH]], pa.string()) for i in columns]
            for start in range(0, len(data), BATCH)
        ]
        modules = {"this checkout": columnar}
        if args.against:
            modules[args.against] = load_revision(args.against, Path(folder))
        phones = sum(1 for row in data if row[columns[1]].strip())
        print(f"{len(data):,} rows of the header's width, {phones:,} with a phone")
        for name, module in modules.items():
            apply, phone, per_row = measure(module, batches, args.repeat)
            print(
                f"{name:>14}: apply {apply * 1e3:7.1f} ms ({apply / len(data) * 1e6:.2f} us/row), "
                f"_phone {phone * 1e3:6.1f} ms, per-row phones {per_row:,} ({per_row / phones:.1%})"
            )


if __name__ == "__main__":
    main()
