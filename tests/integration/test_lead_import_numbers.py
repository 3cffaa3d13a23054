"""Amounts in the number format of the file (issue 13, point 4), through the whole import on
SQLite and PostgreSQL: a German Excel export's ``12.500,00`` is 12,500, never 12.5; an amount
the file does not settle is rejected with its line and field; the mapping can fix the format."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Lead
from hotcrm.leads.importer import import_lead_file
from hotcrm.leads.reader import Mapping

NBSP, NNBSP = "\u00a0", "\u202f"


def run(bucket, db_url, name: str, content: str, mapping: Mapping | None = None):
    path = bucket["incoming"] / name
    path.write_bytes(content.encode("utf-8"))
    outcome = import_lead_file(
        path, db_url, processed_dir=bucket["processed"], failed_dir=bucket["failed"], mapping=mapping
    )
    folder = bucket["processed"] if outcome.status == "imported" else bucket["failed"]
    rejects = list(csv.DictReader(io.StringIO((folder / f"{name}.rejects.csv").read_text(encoding="utf-8-sig"))))
    return outcome, {r["line"]: r for r in rejects}


def amounts(db_url) -> dict[str, Decimal | None]:
    with session_scope(db_url) as session:
        return {lead.email: lead.estimated_value for lead in session.scalars(select(Lead))}


def rows(delimiter: str, values: list[str], who: str = "p") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["First Name", "Last Name", "Company", "E-Mail", "Budget"])
    for i, value in enumerate(values):
        writer.writerow([f"F{i}", f"L{i}", f"Co {i}", f"{who}{i}@example.com", value])
    return out.getvalue()


def test_a_german_excel_export_is_read_with_the_decimal_comma(db_url, bucket):
    values = ["12.500,00", "1.234,56", f"1{NBSP}234,56", f"1{NNBSP}234,56", "1 234,56", "1.200,-", "€ 1.200,50"]
    values += ["12.500", "7", "$1,200.50", "3,5"]
    outcome, rejects = run(bucket, db_url, "export.csv", rows(";", values))

    assert outcome.status == "imported", outcome.error
    assert (outcome.rows_read, outcome.inserted, outcome.rejected) == (11, 10, 1)
    assert outcome.number_format.startswith(
        "1.234,56 (8 amounts read only as 1.234,56, the first on line 2: '12.500,00'"
    )
    got = amounts(db_url)
    expected = ["12500.00", "1234.56", "1234.56", "1234.56", "1234.56", "1200.00", "1200.50", "12500.00", "7.00"]
    assert [got[f"p{i}@example.com"] for i in range(9)] == [Decimal(v) for v in expected]
    assert got["p10@example.com"] == Decimal("3.50")
    # A US-style amount in a file of decimal commas is not read as 1.2005 or 120050: it is rejected.
    assert set(rejects) == {"11"}
    assert rejects["11"]["reason"] == (
        "EstimatedValue: '$1,200.50' is not an amount in the file's number format 1.234,56 "
        "(8 amounts read only as 1.234,56, the first on line 2: '12.500,00'; 1 read only as 1,234.56)"
    )
    report = json.loads((bucket["processed"] / "export.csv.report.json").read_text())
    assert report["number_format"] == outcome.number_format


def test_a_us_file_is_read_with_the_decimal_point(db_url, bucket):
    outcome, rejects = run(bucket, db_url, "us.csv", rows(",", ["1,234.56", "$1,200.50", "12.500", "1,000", "USD 5"]))

    assert outcome.status == "imported" and outcome.rejected == 0, rejects
    got = amounts(db_url)
    expected = ["1234.56", "1200.50", "12.50", "1000.00", "5.00"]
    assert [got[f"p{i}@example.com"] for i in range(5)] == [Decimal(v) for v in expected]


def test_an_amount_the_file_does_not_settle_is_rejected_with_its_line_and_field(db_url, bucket):
    outcome, rejects = run(bucket, db_url, "round.csv", rows(";", ["250", "12.500", "", "1.000.000"]))

    assert outcome.status == "imported"
    # 1.000.000 has grouping dots only: it settles the file, so 12.500 is 12,500.
    assert amounts(db_url)["p1@example.com"] == Decimal("12500.00") and not rejects

    outcome, rejects = run(bucket, db_url, "alone.csv", rows(";", ["250", "12.500", "", "7"], who="q"))
    assert outcome.status == "imported" and (outcome.inserted, outcome.rejected) == (3, 1)
    assert set(rejects) == {"3"}  # the header is line 1
    reason = rejects["3"]["reason"]
    assert reason.startswith("EstimatedValue: '12.500' is ambiguous: 12.5 or 12,500? "), reason
    assert 'set "number_format" in include/config/lead_mapping.json' in reason
    assert "q1@example.com" not in amounts(db_url)  # never guessed, never rescaled


@pytest.mark.parametrize(("setting", "expected"), [("1.234,56", "12500.00"), ("1,234.56", "12.50")])
def test_the_mapping_file_can_fix_the_number_format(db_url, bucket, setting, expected):
    mapping = dataclasses.replace(Mapping.load(), number_format=setting)
    outcome, rejects = run(bucket, db_url, "fixed.csv", rows(";", ["12.500", "1"]), mapping=mapping)

    assert outcome.status == "imported" and not rejects
    assert amounts(db_url)["p0@example.com"] == Decimal(expected)
    assert outcome.number_format.startswith(f"{'1.234,56' if ',' in setting[-3:] else '1,234.56'} (number_format")


def test_an_unknown_number_format_in_the_mapping_file_is_refused(tmp_path):
    data = json.loads(Mapping.load.__defaults__[0].read_text())
    data["number_format"] = "1_234.56"
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"mapping.json: unknown number_format '1_234.56'; use 'auto' or one of"):
        Mapping.load(path)
