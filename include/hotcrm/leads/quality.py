"""The file-level quality suite of a lead file: shape problems, not row-level ones.

Each row that passed the row checks gives two indicators (an "@" in a name or company: a
shifted column; mojibake in a text column: text decoded wrongly); the suite
(``include/config/quality/lead_file.json``) runs on those, from its ``min_rows``.
"""

from __future__ import annotations

import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

SUITE_NAME = "lead_file"
# The suite's default: it applies from this many rows that passed the row checks.
MIN_ROWS = 50
# Signs of text decoded with the wrong encoding somewhere upstream: a replacement character,
# or UTF-8 read as Windows-1252 ("Ã©" for "é", "â€™" for "’", "Â " for a no-break space).
MOJIBAKE = (
    "\ufffd|\u00e2\u20ac|\u00c2[\u00a0-\u00bf]"
    "|\u00c3[\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]"
)
MOJIBAKE_RE = re.compile(MOJIBAKE)
# Columns whose values hold no "@" unless the columns are shifted (an email in a name).
_NAME_ATTRS = ("first_name", "last_name", "company")
_TEXT_ATTRS = ("first_name", "last_name", "company", "title", "city")


def load_suite(path: Path | None = None) -> dict[str, Any]:
    """The file-level quality suite (``include/config/quality/lead_file.json`` by default)."""
    from hotcrm import quality

    if path is None:
        return quality.load_suite(SUITE_NAME)
    return quality.load_suite(Path(path).stem, config_dir=Path(path).parent)


def shape_flags(values: dict[str, pa.Array], count: int) -> tuple[np.ndarray, np.ndarray]:
    """The suite's indicators for a batch of plain rows (int8 arrays): an "@" in a name or
    company (a shifted column), mojibake in a text column. Each column's UTF-8 bytes are
    searched at once first (memchr speed); only a column where a sign occurs is checked row by
    row, with Arrow kernels."""
    import pyarrow.compute as pc

    shifted = np.zeros(count, dtype=bool)
    mojibake = np.zeros(count, dtype=bool)
    for attr in _TEXT_ATTRS:
        column = values.get(attr)
        if column is None or column.null_count == count:
            continue
        data = column.buffers()[2]
        octets = data.to_pybytes() if data is not None else b""
        if attr in _NAME_ATTRS and b"@" in octets:
            shifted |= pc.fill_null(pc.match_substring(column, "@"), False).to_numpy(zero_copy_only=False)
        if not octets.isascii() and _may_be_mojibake(octets):
            found = pc.fill_null(pc.match_substring_regex(column, MOJIBAKE), False)
            mojibake |= found.to_numpy(zero_copy_only=False)
    return shifted.astype(np.int8), mojibake.astype(np.int8)


def _may_be_mojibake(octets: bytes) -> bool:
    """True when UTF-8 bytes hold U+FFFD, or "Ã", "Â" or "â" (C3 83, C3 82, C3 A2): the lead
    characters of UTF-8 read as Windows-1252. A memchr, then element-wise numpy (accented
    names have many other C3 pairs; Python's search for a 2-byte needle is slower)."""
    if b"\xef" in octets and b"\xef\xbf\xbd" in octets:
        return True
    codes = np.frombuffer(octets, dtype=np.uint8)
    lead, after = codes[:-1] == 0xC3, codes[1:]
    return bool((lead & ((after == 0x83) | (after == 0x82) | (after == 0xA2))).any())


def check_quality(suite: dict[str, Any], shifted: array, mojibake: array, worker=None) -> dict[str, Any]:
    """Run the file-level suite on per-row indicators of the rows that passed the row checks
    (compact arrays, not the file's text); skipped, and passed, below the suite's ``min_rows``.

    The suite runs in ``worker`` (a :class:`hotcrm.quality.worker.QualityWorker` started
    before the file was read, so GX was imported meanwhile), or in one started here; the
    worker is spent or stopped on return, whatever happens."""
    from hotcrm.quality.worker import QualityWorker

    rows, min_rows = len(shifted), int(suite.get("min_rows", MIN_ROWS))
    if rows < min_rows:
        if worker is not None:
            worker.close()
        note = (
            f"not run: {rows} row(s) passed the row checks, and the file-level checks apply from {min_rows} "
            "(min_rows in the suite); the rows were judged one by one"
        )
        statistics = {"evaluated_expectations": 0, "successful_expectations": 0, "skipped": note}
        return {"suite": suite.get("name", SUITE_NAME), "success": True, "outcomes": [], "statistics": statistics}
    columns = {
        "ShiftedColumn": np.frombuffer(shifted, dtype=np.int8),
        "Mojibake": np.frombuffer(mojibake, dtype=np.int8),
    }
    with worker or QualityWorker() as running:
        result = running.validate(columns, suite.get("name", SUITE_NAME), suite["expectations"])
    return result.to_dict()


def quality_summary(quality: dict[str, Any]) -> str:
    parts = []
    for o in quality["outcomes"]:
        if not o["success"]:
            target = f" on {o['kwargs'].get('column')}" if o["kwargs"].get("column") else ""
            limits = {k: v for k, v in o["kwargs"].items() if k != "column"}
            parts.append(f"{o['type']}{target} expected {limits}, observed {o['observed'].get('observed_value')}")
    return "; ".join(parts)
