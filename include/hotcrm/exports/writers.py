"""Streaming serializers for exports: each turns batches of rows into bytes, never the whole table.

A writer gets the field names once, then ``header()``, any number of ``batch(rows)`` calls
(rows are tuples in field order) and ``footer()``; each returns the bytes to append. The
caller writes, hashes and counts them, so memory is one batch at a time.

Values: ``None`` is JSON ``null`` / an empty CSV cell; ``Decimal`` keeps its exact digits
(a JSON number, never a float round-trip); datetimes are UTC ISO 8601 with ``Z`` (SQLite
returns naive UTC datetimes, PostgreSQL aware ones: both print the same).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from decimal import Decimal
from functools import partial
from itertools import repeat
from typing import Any

import orjson

from hotcrm.spreadsheet import FORMULA_PREFIXES, neutralize

# The name the export tests and callers have used; the one escaper of hotcrm.spreadsheet.
neutralize_cell = neutralize

_JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
_NEWLINE = orjson.Fragment(b"\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value.is_finite():
            # A pre-serialized fragment keeps every digit of large amounts exact.
            return orjson.Fragment(str(value).encode())
        return str(value)  # NaN / Infinity are not JSON numbers
    raise TypeError(f"cannot export a value of type {type(value).__name__}")


def format_timestamp(value: dt.datetime) -> str:
    """A datetime as UTC ISO 8601 with ``Z`` (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def csv_cell(value: Any) -> str:
    """One value as spreadsheet-safe CSV text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralize(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    # Numbers (int, Decimal) are data, not formulas: a negative amount keeps its sign.
    return str(value)


class ExportWriter:
    """Base class: bytes for the start, each batch, and the end of an export."""

    extension = ""
    content_type = "application/octet-stream"

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)

    def header(self) -> bytes:
        """Bytes before the first record."""
        return b""

    def batch(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """Bytes for a batch of rows (tuples in field order)."""
        raise NotImplementedError

    def footer(self) -> bytes:
        """Bytes after the last record."""
        return b""


class JsonWriter(ExportWriter):
    """The CRM's documented shape ``{"exportDate": ..., "recordCount": N, "data": [...]}``, streamed.

    ``recordCount`` comes first, so it is the count taken in the same database snapshot as
    the rows; the exporter checks that the stream delivered exactly that many.
    """

    extension = "json"
    content_type = "application/json"

    def __init__(self, fields: Sequence[str], *, export_date: str, record_count: int) -> None:
        super().__init__(fields)
        self.export_date = export_date
        self.record_count = record_count
        self._first = True

    def header(self) -> bytes:
        """The opening object up to the ``data`` array."""
        return (
            b'{"exportDate":'
            + orjson.dumps(self.export_date)
            + b',"recordCount":'
            + str(int(self.record_count)).encode()
            + b',"data":['
        )

    def batch(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """The batch's records, comma-joined to what came before."""
        if not rows:
            return b""
        # One orjson call per batch: a list of dicts (built by map, without a Python loop), brackets stripped.
        records = list(map(dict, map(partial(zip, self.fields, strict=True), rows)))
        body = orjson.dumps(records, default=_json_default, option=_JSON_OPTIONS)[1:-1]
        if self._first:
            self._first = False
            return body
        return b"," + body

    def footer(self) -> bytes:
        """Closes the array and the object."""
        return b"]}\n"


class NdjsonWriter(ExportWriter):
    """One JSON object per line (``application/x-ndjson``)."""

    extension = "ndjson"
    content_type = "application/x-ndjson"

    def batch(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """One line per row.

        One ``orjson.dumps`` per row costs several times more than one per batch, so the batch
        is dumped as one list with a raw newline fragment between records, and the
        ``,<newline>,`` around each fragment becomes the line break. orjson escapes every
        newline inside strings, so a raw newline byte can only be one of ours.
        """
        if not rows:
            return b""
        records = list(map(dict, map(partial(zip, self.fields, strict=True), rows)))
        items = [_NEWLINE] * (2 * len(records) - 1)
        items[::2] = records
        body = orjson.dumps(items, default=_json_default, option=_JSON_OPTIONS)[1:-1]
        return body.replace(b",\n,", b"\n") + b"\n"


class CsvWriter(ExportWriter):
    """RFC 4180 CSV in UTF-8 with a header row and spreadsheet-safe cells."""

    extension = "csv"
    content_type = "text/csv"

    def header(self) -> bytes:
        """The header row (field names)."""
        return self._rows([self.fields])

    def batch(self, rows: Sequence[Sequence[Any]]) -> bytes:
        """The batch's rows, converted column by column (a column holds one type, or None)."""
        if not rows:
            return b""
        columns = []
        for column in zip(*rows, strict=True):
            sample = next((v for v in column if v is not None), None)
            if isinstance(sample, str):
                prefixes = FORMULA_PREFIXES
                # Scan in C (map/filter, no Python frame per value); rebuild only a column that needs it.
                if any(map(str.startswith, filter(None, column), repeat(prefixes))):
                    column = [("'" + v) if v and v.startswith(prefixes) else v for v in column]
            elif isinstance(sample, bool) or not isinstance(sample, int | Decimal | None):
                column = list(map(csv_cell, column))
            # else: numbers and None, which the csv module writes as str(value) and an empty cell
            columns.append(column)
        return self._rows(zip(*columns, strict=True))

    @staticmethod
    def _rows(rows) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        return buffer.getvalue().encode("utf-8")


def make_writer(fmt: str, fields: Sequence[str], *, export_date: str, record_count: int) -> ExportWriter:
    """The writer for ``fmt`` (``json``, ``ndjson`` or ``csv``)."""
    if fmt == "json":
        return JsonWriter(fields, export_date=export_date, record_count=record_count)
    if fmt == "ndjson":
        return NdjsonWriter(fields)
    if fmt == "csv":
        return CsvWriter(fields)
    raise ValueError(f"unknown export format {fmt!r}; allowed formats: json, ndjson, csv")
