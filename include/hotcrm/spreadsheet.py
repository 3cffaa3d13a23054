"""The one CSV formula escaper: cells a person opens in a spreadsheet (exports, rejects files).

A cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR would be run as a formula by Excel,
LibreOffice or Google Sheets (OWASP "CSV injection"); it gets a leading apostrophe, which the
spreadsheet shows as text. Numbers are not text: callers write them as they are (a negative
amount keeps its sign).
"""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> str:
    """``value`` as text a spreadsheet shows as text: None is empty, a formula start gets ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
