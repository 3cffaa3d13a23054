"""import_lead_file on files from the field (issue 13), on SQLite and PostgreSQL: nothing
silently lost, row-level judgement, UTF-16 and mixed encodings, NUL bytes, links and
special files, limits. Every physical line of a file ends loaded, a duplicate, rejected, or
named by the file's error."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Lead
from hotcrm.leads import importer, reader
from hotcrm.leads.models import ImportFile, ImportIssue
from hotcrm.leads.reader import Limits, Mapping
from tests.support.lead_files import drop, run

# The exact files of the issue.
UNCLOSED_QUOTE = (
    "FirstName,LastName,Company,Email,Notes\n"
    'Alice,Q,Co,aq@example.com,"Started import yesterday\n'
    "Bob,Q,Co,bq@example.com,Valid row\n"
)
FOUR_ROWS_TWO_REPEATS = (
    "FirstName,LastName,Company,Email\n"
    "Ann,One,Co,ann@example.com\n"
    "Ben,One,Co,ben@example.com\n"
    "Ann,Two,Co,ANN@example.com\n"
    "Ben,Two,Co,ben@example.com\n"
)
EIGHT_ROWS_ONE_VALID = (
    "FirstName,LastName,Company,Email,Phone\n"
    "Val,Id,Co,valid@example.com,\n"
    "No,Email,Co,,\n"
    "Bad,Email,Co,not-an-email,\n"
    ",NoFirst,Co,nofirst@example.com,\n"
    "NoCompany,X,,nocompany@example.com,\n"
    "Bad,Phone,Co,badphone@example.com,12\n"
    "Too,Few,Co\n"
    "Too,Many,Co,many@example.com,,extra\n"
)


def lead_emails(db_url) -> set[str]:
    with session_scope(db_url) as session:
        return set(session.scalars(select(Lead.email)))


def issues(db_url, file_id) -> list[tuple[int, str, str]]:
    with session_scope(db_url) as session:
        rows = session.execute(
            select(ImportIssue.line_number, ImportIssue.kind, ImportIssue.reason)
            .where(ImportIssue.file_id == file_id)
            .order_by(ImportIssue.line_number)
        )
        return [tuple(r) for r in rows]


def rejects(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def assert_counts_add_up(outcome) -> None:
    assert outcome.rows_read == (
        outcome.inserted + outcome.updated + outcome.duplicates + outcome.rejected + outcome.not_loaded
    )


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_the_issues_unclosed_quote_file_rejects_alice_at_line_2_and_loads_bob(db_url, bucket, monkeypatch, direct):
    monkeypatch.setattr(importer, "DIRECT_LOAD", direct)
    outcome = run(bucket, db_url, drop(bucket, "notes.csv", UNCLOSED_QUOTE))
    assert (outcome.status, outcome.rows_read, outcome.inserted, outcome.rejected) == ("imported", 2, 1, 1)
    assert lead_emails(db_url) == {"bq@example.com"}
    [(line, kind, reason)] = issues(db_url, outcome.file_id)
    assert (line, kind) == (2, "rejected") and "unbalanced quote" in reason and "the file ends inside it" in reason
    [row] = rejects(bucket["processed"] / "notes.csv.rejects.csv")
    assert row["line"] == "2" and row["FirstName"] == "Alice"


def _line_by_line_file(rows_before: int, rows_after: int) -> tuple[str, dict[int, str]]:
    """A file whose quote-free lines (Arrow's path) surround quoted records (the csv module's) and
    quotes that never close; returns it and each physical line's email (or None)."""
    lines = ["FirstName,LastName,Company,Email,Notes"]
    emails: dict[int, str | None] = {}

    def add(text: str, email: str | None) -> None:
        lines.append(text)
        emails[len(lines)] = email

    for i in range(rows_before):
        add(f"A{i},B,C,a{i}@example.com,plain", f"a{i}@example.com")
    add('Quoted,Q,"Co, Ltd",quoted@example.com,"fine"', "quoted@example.com")
    add('Open,Q,Co,open@example.com,"note that never closes', None)  # rejected at this line
    for i in range(rows_after):
        add(f"D{i},E,F,d{i}@example.com,plain", f"d{i}@example.com")
    add('Closer,Q,Co,closer@example.com,"closed" late', "closer@example.com")  # a loose quote, as csv reads it
    add('Multi,Q,Co,multi@example.com,"two', "multi@example.com")
    add('lines",', None)  # the continuation of line before
    add('Last,Q,Co,last@example.com,"open at the end', None)
    return "\n".join(lines) + "\n", emails


@pytest.mark.parametrize("block_chars", [64, 1 << 20], ids=["tiny-blocks", "one-block"])
def test_every_physical_line_is_loaded_or_rejected_with_its_number(db_url, bucket, monkeypatch, block_chars):
    monkeypatch.setattr(reader, "BLOCK_CHARS", block_chars)
    content, emails = _line_by_line_file(300, 300)
    outcome = run(bucket, db_url, drop(bucket, "mixed.csv", content))
    assert outcome.status == "imported"
    assert_counts_add_up(outcome)
    loaded = lead_emails(db_url)
    rejected = {line: reason for line, kind, reason in issues(db_url, outcome.file_id) if kind == "rejected"}
    physical = content.count("\n")
    continuation = {n for n in emails if emails[n] is None and n - 1 in emails and emails[n - 1] == "multi@example.com"}
    for number in range(2, physical + 1):
        if number in continuation:
            continue
        email = emails[number]
        assert (email in loaded) != (number in rejected), (number, email)
    unclosed = [n for n, r in rejected.items() if "unbalanced quote" in r]
    assert len(unclosed) == 3 and loaded >= {f"d{i}@example.com" for i in range(300)}


def test_the_issues_four_row_file_loads_two_and_reports_two_duplicates(db_url, bucket):
    outcome = run(bucket, db_url, drop(bucket, "repeats.csv", FOUR_ROWS_TWO_REPEATS))
    assert (outcome.status, outcome.rows_read, outcome.inserted, outcome.duplicates, outcome.rejected) == (
        "imported",
        4,
        2,
        2,
        0,
    )
    with session_scope(db_url) as session:
        names = {lead.email: lead.last_name for lead in session.scalars(select(Lead))}
    assert names == {"ann@example.com": "Two", "ben@example.com": "Two"}  # the later row wins
    assert [(line, kind) for line, kind, _ in issues(db_url, outcome.file_id)] == [(2, "duplicate"), (3, "duplicate")]


def test_the_issues_eight_row_file_loads_the_valid_row_and_rejects_seven(db_url, bucket):
    outcome = run(bucket, db_url, drop(bucket, "mostly-bad.csv", EIGHT_ROWS_ONE_VALID))
    assert (outcome.status, outcome.rows_read, outcome.inserted, outcome.rejected, outcome.not_loaded) == (
        "imported",
        8,
        1,
        7,
        0,
    )
    assert lead_emails(db_url) == {"valid@example.com"}
    assert [line for line, _, _ in issues(db_url, outcome.file_id)] == list(range(3, 10))
    assert outcome.quality["success"] and "apply from 50" in outcome.quality["statistics"]["skipped"]


def test_many_bad_rows_never_fail_a_file_above_min_rows(db_url, bucket):
    good = "".join(f"G{i},L,Co,g{i}@example.com,\n" for i in range(60))
    bad = "".join(f"B{i},L,Co,bad-{i},\n" for i in range(540)) + "".join("R,L,Co,g1@example.com,\n" for _ in range(100))
    outcome = run(bucket, db_url, drop(bucket, "bad.csv", "FirstName,LastName,Company,Email,Phone\n" + good + bad))
    assert outcome.status == "imported" and outcome.quality["statistics"]["evaluated_expectations"] == 2
    assert (outcome.inserted, outcome.rejected, outcome.duplicates) == (60, 540, 100)


EXCEL_UNICODE_TEXT = (
    "First Name\tLast Name\tCompany\tEmail\tSociété\r\n"
    "Zoë\tMüller\tCafé Ltd\tzoe@example.com\tx\r\n"
    "Ana\tPeña\tAçaí SA\tana@example.com\ty\r\n"
)


@pytest.mark.parametrize(
    "data, encoding",
    [
        (codecs.BOM_UTF16_LE + EXCEL_UNICODE_TEXT.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + EXCEL_UNICODE_TEXT.encode("utf-16-be"), "utf-16-be"),
        (EXCEL_UNICODE_TEXT.encode("utf-16-le"), "utf-16-le (no BOM)"),
        (codecs.BOM_UTF16_LE + EXCEL_UNICODE_TEXT.encode("utf-8"), "utf-8 after a UTF-16 BOM"),
    ],
    ids=["excel-unicode-text", "utf-16-be", "utf-16-no-bom", "utf-8-mislabelled"],
)
def test_utf16_exports_import(db_url, bucket, data, encoding):
    outcome = run(bucket, db_url, drop(bucket, "unicode.txt", data))
    assert (outcome.status, outcome.encoding, outcome.delimiter, outcome.inserted) == ("imported", encoding, "\t", 2)
    assert outcome.unknown_columns == ["Société"]
    with session_scope(db_url) as session:
        names = {(lead.first_name, lead.last_name, lead.company) for lead in session.scalars(select(Lead))}
    assert names == {("Zoë", "Müller", "Café Ltd"), ("Ana", "Peña", "Açaí SA")}
    assert session_ledger(db_url, outcome.file_id).encoding == encoding


def session_ledger(db_url, file_id) -> ImportFile:
    with session_scope(db_url) as session:
        return session.get(ImportFile, file_id)


def test_a_utf8_header_over_cp1252_rows_has_no_mojibake(db_url, bucket):
    data = "Prénom;Nom;Société;E-mail;Unité\n".encode() + "Zoë;Müller;Café;zoe@example.com;x\n".encode("cp1252")
    mapping = Mapping.load()
    mapping.fields["FirstName"].append("Prénom")
    mapping.fields["LastName"].append("Nom")
    mapping.fields["Company"].append("Société")
    outcome = run(bucket, db_url, drop(bucket, "fr.csv", data), mapping=mapping)
    assert (outcome.status, outcome.inserted, outcome.unknown_columns) == ("imported", 1, ["Unité"])
    report = json.loads((bucket["processed"] / "fr.csv.report.json").read_text())
    assert report["header"] == ["Prénom", "Nom", "Société", "E-mail", "Unité"]
    with session_scope(db_url) as session:
        lead = session.scalars(select(Lead)).one()
        assert (lead.first_name, lead.last_name, lead.company) == ("Zoë", "Müller", "Café")


def test_a_nul_byte_rejects_its_row_only(db_url, bucket):
    rows = "".join(f"A{i},B,C,a{i}@example.com\n" for i in range(20))
    data = ("First Name,Last Name,Company,Email\n" + rows).encode() + b"N,U\x00L,C,nul@example.com\n"
    outcome = run(bucket, db_url, drop(bucket, "nul.csv", data + b"Z,Y,X,z@example.com\n"))
    assert (outcome.status, outcome.inserted, outcome.rejected) == ("imported", 21, 1)
    [(line, _, reason)] = issues(db_url, outcome.file_id)
    assert line == 22 and "NUL byte" in reason
    [row] = rejects(bucket["processed"] / "nul.csv.rejects.csv")
    assert row["Last Name"] == "U\ufffdL"


def test_a_symlink_in_incoming_is_refused_and_its_target_never_read(db_url, bucket, tmp_path):
    outside = tmp_path / "outside" / "passwd.csv"
    outside.parent.mkdir()
    outside.write_text("root:x:0:0:root:/root:/bin/bash\nFirst Name,Last Name,Company,Email\nA,B,C,a@example.com\n")
    link = bucket["incoming"] / "leads.csv"
    link.symlink_to(outside)
    outcome = run(bucket, db_url, link)
    assert outcome.status == "failed" and "symbolic link" in outcome.error
    assert lead_emails(db_url) == set() and outcome.sha256 is None
    archived = bucket["failed"] / "leads.csv"
    assert archived.is_symlink() and not link.exists() and outside.exists()  # the link moved, the target not
    for report in ("leads.csv.report.html", "leads.csv.report.json"):
        text = (bucket["failed"] / report).read_text()
        assert "root:x" not in text and str(outside) not in text
    assert session_ledger(db_url, outcome.file_id).status == "failed"


def test_a_fifo_in_incoming_is_refused_without_blocking(db_url, bucket):
    fifo = bucket["incoming"] / "leads.csv"
    os.mkfifo(fifo)
    outcome = run(bucket, db_url, fifo)
    assert outcome.status == "failed" and "named pipe" in outcome.error


def test_a_header_past_the_column_limit_is_refused_and_a_wide_row_rejected_with_its_cells_cut(db_url, bucket):
    mapping = Mapping.load()
    mapping.limits = Limits(max_columns=50)
    wide = ",".join(["First Name", "Last Name", "Company", "Email", *(f"c{i}" for i in range(60))])
    outcome = run(bucket, db_url, drop(bucket, "wide.csv", wide + "\nA,B,C,a@example.com\n"), mapping=mapping)
    assert outcome.status == "failed" and "64 columns, more than the 50 allowed" in outcome.error
    data = "First Name,Last Name,Company,Email\nA,B,C,a@example.com\n" + ",".join(["x"] * 500) + "\n"
    outcome = run(bucket, db_url, drop(bucket, "row.csv", data), mapping=mapping)
    assert (outcome.status, outcome.inserted, outcome.rejected) == ("imported", 1, 1)
    [(line, _, reason)] = issues(db_url, outcome.file_id)
    assert line == 3 and "has 500 fields" in reason and "only the first 4 are kept" in reason


def test_a_line_past_the_limit_refuses_the_file_before_reading_rows(db_url, bucket):
    mapping = Mapping.load()
    mapping.limits = Limits(max_line_bytes=10_000)
    data = "First Name,Last Name,Company,Email\nA,B,C,a@example.com\nA,B,C," + "x" * 20_000 + "\n"
    outcome = run(bucket, db_url, drop(bucket, "long.csv", data), mapping=mapping)
    assert outcome.status == "failed" and "line 3 is longer than 10,000 bytes" in outcome.error
    assert lead_emails(db_url) == set()


@pytest.mark.parametrize("amount", [False, True], ids=["column-wise", "per-row"])
def test_text_decoded_wrongly_upstream_fails_the_file_but_real_accents_do_not(db_url, bucket, amount):
    header = "First Name,Last Name,Company,Email,City" + (",Estimated Value" if amount else "") + "\n"
    tail = ",10" if amount else ""
    mojibake = "".join(f"JoÃ£o,MÃ¼ller,CafÃ© {i},j{i}@example.com,SÃ£o Paulo{tail}\n" for i in range(60))
    outcome = run(bucket, db_url, drop(bucket, "mojibake.csv", header + mojibake))
    assert outcome.status == "failed" and "Mojibake" in outcome.error and outcome.not_loaded == 60
    accents = "".join(f"JOÃO,Müller,Café {i},a{i}@example.com,SÃO PAULO{tail}\n" for i in range(60))
    outcome = run(bucket, db_url, drop(bucket, "accents.csv", header + accents))
    assert (outcome.status, outcome.inserted) == ("imported", 60)
    assert outcome.quality["statistics"]["evaluated_expectations"] == 2
