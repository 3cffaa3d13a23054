"""Each export format, read back with an independent reader: quotes, unicode, NULLs, large
numbers, dates, formula-like strings."""

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from hotcrm.exports.writers import CsvWriter, JsonWriter, NdjsonWriter, csv_cell, make_writer, neutralize_cell

FIELDS = ["Id", "Name", "AnnualRevenue", "LastModifiedDate", "CloseDate", "Description"]
ROWS = [
    ("id-1", 'O\'Brien "Quoted", Ltd', Decimal("9999999999999999.99"), dt.datetime(2026, 1, 2, 3, 4, 5), None, None),
    (
        "id-2",
        "Ünïcödé 株式会社 🚀",
        Decimal("-12.50"),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.date(2026, 2, 28),
        "line1\nline2\r\nline3",
    ),
    ("id-3", '=HYPERLINK("http://evil")', Decimal("0.00"), None, None, "+cmd|' /C calc'!A0"),
    ("id-4", "@SUM(1)", None, None, None, "-2+3"),
    ("id-5", "\tTabbed", Decimal("1E+3"), None, None, "\rCR"),
]


def _render(writer, batches):
    return writer.header() + b"".join(writer.batch(b) for b in batches) + writer.footer()


def test_json_is_the_documented_shape_and_round_trips_exactly():
    writer = JsonWriter(FIELDS, export_date="2026-01-03T00:00:00Z", record_count=len(ROWS))
    data = _render(writer, [ROWS[:2], [], ROWS[2:]])
    document = json.loads(data, parse_float=Decimal)
    assert list(document) == ["exportDate", "recordCount", "data"]
    assert document["exportDate"] == "2026-01-03T00:00:00Z"
    assert document["recordCount"] == 5 == len(document["data"])
    first, second = document["data"][0], document["data"][1]
    assert first == {
        "Id": "id-1",
        "Name": 'O\'Brien "Quoted", Ltd',
        "AnnualRevenue": Decimal("9999999999999999.99"),  # every digit kept: no float round-trip
        "LastModifiedDate": "2026-01-02T03:04:05Z",  # naive datetimes are UTC
        "CloseDate": None,
        "Description": None,
    }
    assert second["Name"] == "Ünïcödé 株式会社 🚀"
    assert second["LastModifiedDate"] == "2026-01-02T03:04:05Z"
    assert second["CloseDate"] == "2026-02-28"
    assert second["Description"] == "line1\nline2\r\nline3"
    assert document["data"][2]["Name"] == '=HYPERLINK("http://evil")'  # JSON consumers get the raw value
    assert document["data"][4]["AnnualRevenue"] == Decimal("1E+3")


def test_json_with_no_rows_is_still_valid():
    writer = JsonWriter(FIELDS, export_date="2026-01-03T00:00:00Z", record_count=0)
    assert json.loads(_render(writer, [])) == {"exportDate": "2026-01-03T00:00:00Z", "recordCount": 0, "data": []}


def test_ndjson_has_one_record_per_line():
    data = _render(NdjsonWriter(FIELDS), [ROWS[:3], ROWS[3:]])
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == ""  # the file ends with a newline
    records = [json.loads(line, parse_float=Decimal) for line in lines[:-1]]
    assert [r["Id"] for r in records] == ["id-1", "id-2", "id-3", "id-4", "id-5"]
    assert records[1]["Description"] == "line1\nline2\r\nline3"  # newlines escaped, not line breaks
    assert records[0]["AnnualRevenue"] == Decimal("9999999999999999.99")
    assert records[3]["AnnualRevenue"] is None


def test_csv_has_a_header_and_spreadsheet_safe_cells():
    data = _render(CsvWriter(FIELDS), [ROWS])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[0] == FIELDS
    by_id = {r[0]: dict(zip(FIELDS, r, strict=True)) for r in rows[1:]}
    assert by_id["id-1"]["Name"] == 'O\'Brien "Quoted", Ltd'
    assert by_id["id-1"]["AnnualRevenue"] == "9999999999999999.99"
    assert by_id["id-1"]["LastModifiedDate"] == "2026-01-02T03:04:05Z"
    assert by_id["id-1"]["CloseDate"] == "" and by_id["id-1"]["Description"] == ""
    assert by_id["id-2"]["Name"] == "Ünïcödé 株式会社 🚀"
    assert by_id["id-2"]["Description"] == "line1\nline2\r\nline3"
    assert by_id["id-2"]["AnnualRevenue"] == "-12.50"  # numbers are not formulas
    assert by_id["id-3"]["Name"] == '\'=HYPERLINK("http://evil")'
    assert by_id["id-3"]["Description"] == "'+cmd|' /C calc'!A0"
    assert by_id["id-4"]["Name"] == "'@SUM(1)"
    assert by_id["id-4"]["Description"] == "'-2+3"
    assert by_id["id-5"]["Name"] == "'\tTabbed"
    assert by_id["id-5"]["Description"] == "'\rCR"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1 555", "'+1 555"),
        ("-x", "'-x"),
        ("@a", "'@a"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_neutralize_cell(text, expected):
    assert neutralize_cell(text) == expected


def test_csv_cell_types():
    assert csv_cell(None) == ""
    assert csv_cell(True) == "true"
    assert csv_cell(12345678901234567890) == "12345678901234567890"
    assert csv_cell(dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == "2026-01-01T10:00:00Z"


def test_unknown_format_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed formats: json, ndjson, csv"):
        make_writer("xml", FIELDS, export_date="x", record_count=0)
