"""Files built to exhaust a worker's memory (issue 13, point 7) are refused early: the import
of each runs in a subprocess whose peak RSS must stay under 512 MB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PEAK_RSS_LIMIT = 512 * 1024 * 1024
# Peak RSS as VmHWM (this process's address space only): ru_maxrss would count the forked
# pytest worker's pages from before the exec.
CHILD = """
import json, re, sys
from pathlib import Path
from hotcrm.leads.importer import import_lead_file

source, url, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
outcome = import_lead_file(source, url, processed_dir=out / "processed", failed_dir=out / "failed")
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
print(json.dumps({**outcome.to_dict(), "peak_rss": peak}))
"""


def import_in_subprocess(path: Path, db_url: str, tmp_path: Path) -> dict:
    for name in ("processed", "failed"):
        (tmp_path / name).mkdir(exist_ok=True)
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{root / 'include'}:{root}", "PATH": "/usr/bin:/bin", "GX_ANALYTICS_ENABLED": "False"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), db_url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_wide(path: Path, columns: int) -> None:
    with path.open("w") as f:
        f.write(",".join(f"c{i}" for i in range(columns)) + "\n")
        f.write(",".join("x" for _ in range(columns)) + "\n")


@pytest.mark.slow
def test_a_million_columns_in_the_header_is_refused_in_bounded_memory(db_url, tmp_path):
    path = tmp_path / "wide.csv"
    write_wide(path, 1_000_000)
    assert path.stat().st_size > 8_800_000
    result = import_in_subprocess(path, db_url, tmp_path)
    assert result["status"] == "failed" and "1,000,000 columns, more than the 4,096 allowed" in result["error"]
    print(f"peak RSS {result['peak_rss'] / 2**20:.0f} MiB")
    assert result["peak_rss"] < PEAK_RSS_LIMIT, result["peak_rss"]


@pytest.mark.slow
def test_a_million_fields_in_a_data_row_rejects_that_row_in_bounded_memory(db_url, tmp_path):
    path = tmp_path / "wide-row.csv"
    with path.open("w") as f:
        f.write("First Name,Last Name,Company,Email\nA,B,C,a@example.com\n")
        f.write(",".join("x" for _ in range(1_000_000)) + "\n")
        f.write("D,E,F,d@example.com\n")
    result = import_in_subprocess(path, db_url, tmp_path)
    assert (result["status"], result["inserted"], result["rejected"]) == ("imported", 2, 1)
    print(f"peak RSS {result['peak_rss'] / 2**20:.0f} MiB")
    assert result["peak_rss"] < PEAK_RSS_LIMIT, result["peak_rss"]


@pytest.mark.slow
@pytest.mark.parametrize("quoted", [False, True], ids=["bare", "quoted"])
def test_a_100_mb_field_is_refused_in_bounded_memory(db_url, tmp_path, quoted):
    path = tmp_path / "huge.csv"
    with path.open("w") as f:
        f.write("First Name,Last Name,Company,Email,Notes\nA,B,C,a@example.com,")
        f.write('"' if quoted else "")
        for _ in range(100):
            f.write("x" * 1_000_000)
        f.write('"\n' if quoted else "\n")
    result = import_in_subprocess(path, db_url, tmp_path)
    assert result["status"] == "failed" and "line 2 is longer than 16,777,216 bytes" in result["error"]
    print(f"peak RSS {result['peak_rss'] / 2**20:.0f} MiB")
    assert result["peak_rss"] < PEAK_RSS_LIMIT, result["peak_rss"]
