"""import_lead_file on SQLite and PostgreSQL: validation, duplicates, updates, quality gate,
file-level failures, the ledger, the outbox event, reports and the accounting check."""

from __future__ import annotations

import csv
import io
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Contact, Lead, OutboxEvent
from hotcrm.leads import importer, loader
from hotcrm.leads.ledger import AccountingError
from hotcrm.leads.models import ImportFile, ImportIssue
from hotcrm.leads.reader import Mapping
from hotcrm.leads.reports import neutralize
from tests.support.lead_files import drop, run

HEADER = "First Name,Last Name,Company,Email,Phone,Lead Source,Status,Estimated Value\n"


def leads(db_url) -> dict[str, Lead]:
    with session_scope(db_url) as session:
        return {lead.email: lead for lead in session.scalars(select(Lead))}


def rejects(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def good_rows(n: int, start: int = 0) -> str:
    return "".join(f"First{i},Last{i},Company {i},person{i}@example.com,,,,\n" for i in range(start, start + n))


def test_rows_are_validated_normalized_and_loaded(db_url, bucket):
    path = drop(
        bucket,
        "leads.csv",
        HEADER
        + "Ada,Lovelace,Engines,ADA@Example.COM,(415) 555-0132,,,1200.5\n"
        + "Bad,Email,Co,not-an-email,,,,\n"
        + "Bad,Phone,Co,bad.phone@example.com,12,,,\n"
        + f"{'x' * 41},Long,Co,long@example.com,,,,\n"
        + ",NoFirst,Co,nofirst@example.com,,,,\n"
        + "Grace,Hopper,Navy,grace@example.com,+44 20 7946 0018,Web,Working,\n",
    )
    outcome = run(bucket, db_url, path)

    assert outcome.status == "imported"
    assert (outcome.rows_read, outcome.inserted, outcome.updated, outcome.duplicates, outcome.rejected) == (
        6,
        2,
        0,
        0,
        4,
    )
    rows = leads(db_url)
    ada, grace = rows["ada@example.com"], rows["grace@example.com"]
    assert (ada.phone, ada.lead_source, ada.status, ada.estimated_value) == (
        "+14155550132",
        "Import",
        "New",
        Decimal("1200.50"),
    )
    assert (grace.phone, grace.lead_source, grace.status) == ("+442079460018", "Web", "Working")
    report = {r["line"]: r for r in rejects(bucket["processed"] / "leads.csv.rejects.csv")}
    assert set(report) == {"3", "4", "5", "6"}
    assert "Email: 'not-an-email' is not a valid email address" in report["3"]["reason"]
    assert "Phone: '12' is not a possible phone number" in report["4"]["reason"]
    assert "FirstName: is 41 characters long; the limit is 40" in report["5"]["reason"]
    assert report["6"]["reason"] == "FirstName: is required"
    assert report["3"]["Email"] == "not-an-email" and report["4"]["kind"] == "rejected"


def test_imported_leads_get_distinct_uuid7_ids_that_count_up_in_email_order(db_url, bucket):
    run(bucket, db_url, drop(bucket, "first.csv", HEADER + good_rows(30)))
    run(bucket, db_url, drop(bucket, "second.csv", HEADER + good_rows(30, start=30)))

    rows = leads(db_url)
    ids = [uuid.UUID(rows[email].id) for email in sorted(rows)]
    assert len(set(ids)) == 60
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert all(str(i) == rows[email].id for i, email in zip(ids, sorted(rows), strict=True))
    by_file = {}
    for email, i in zip(sorted(rows), ids, strict=True):
        by_file.setdefault(int(email[len("person") :].split("@")[0]) // 30, []).append(i)
    for file_ids in by_file.values():  # one prefix per import, the counter in email order
        assert len({str(i)[:28] for i in file_ids}) == 1
        assert [int(str(i)[28:], 16) for i in file_ids] == list(range(1, 31))
    assert {str(i)[:28] for i in by_file[0]} != {str(i)[:28] for i in by_file[1]}


def test_loader_id_prefix_is_the_head_of_a_uuid7_at_the_given_millisecond():
    from datetime import UTC, datetime

    now = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=UTC)
    prefix = loader.id_prefix(now)
    value = uuid.UUID(prefix + "0000002a")
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert value.int >> 80 == int(now.timestamp() * 1000)
    assert value.int & 0xFFFF_FFFF == 42
    assert loader.id_prefix(now) != prefix  # random bits besides the time


def test_same_email_twice_later_row_wins_earlier_is_a_duplicate(db_url, bucket):
    path = drop(
        bucket,
        "dups.csv",
        HEADER
        + "Old,Name,Old Co,dup@example.com,,,,\n"
        + "Other,Person,Co,other@example.com,,,,\n"
        + "New,Name,New Co,DUP@example.com,,,,\n"
        + good_rows(5),
    )
    outcome = run(bucket, db_url, path)
    assert (outcome.inserted, outcome.duplicates, outcome.rejected) == (7, 1, 0)
    assert leads(db_url)["dup@example.com"].company == "New Co"
    [dup] = rejects(bucket["processed"] / "dups.csv.rejects.csv")
    assert dup["line"] == "2" and dup["kind"] == "duplicate" and "same email as line 4" in dup["reason"]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_repeats_in_a_direct_load_are_staged_and_the_later_line_replaces_the_loaded_one(
    db_url, bucket, monkeypatch, direct
):
    # A direct load keeps loading past a repeated email: the repeat is staged, and the merge
    # weighs it against the line loaded directly. Line 7 takes the per-row rules (a no-break
    # space), so it is checked after line 8 of the same batch, which is loaded first.
    monkeypatch.setattr(importer, "DIRECT_LOAD", direct)
    path = drop(
        bucket,
        "repeats.csv",
        HEADER
        + 'Old,Name,"Old, Co",dup@example.com,(415) 555-0132,Web,Working,100\n'
        + "Other,Person,Co,other@example.com,,,,\n"
        + "New,Name,New Co,DUP@example.com,,,,\n"
        + "Third,Row,Co,thrice@example.com,,,,\n"
        + "Fourth,Row,Co, THRICE@example.com ,,,,\n"
        + "Per\u00a0Row,Early,Co,late@example.com,,,,\n"
        + "Plain,Late,Co,LATE@example.com,,,,\n"
        + "Fifth,Row,Co,Thrice@Example.com,,Partner,,\n"
        + good_rows(3),
    )
    progress: list[str] = []
    outcome = run(bucket, db_url, path, progress=progress.append)

    assert (outcome.rows_read, outcome.inserted, outcome.updated, outcome.duplicates) == (11, 7, 0, 4)
    assert not any("reading it again" in m for m in progress), progress
    by_email = leads(db_url)
    dup = by_email["dup@example.com"]  # line 4's values only: not merged with line 2's
    assert (dup.first_name, dup.company, dup.phone, dup.lead_source, dup.status) == (
        "New",
        "New Co",
        None,
        "Import",
        "New",
    )
    assert dup.estimated_value is None
    assert (by_email["thrice@example.com"].first_name, by_email["thrice@example.com"].lead_source) == (
        "Fifth",
        "Partner",
    )
    assert by_email["late@example.com"].first_name == "Plain"
    found = {int(r["line"]): r for r in rejects(bucket["processed"] / "repeats.csv.rejects.csv")}
    assert {line: r["kind"] for line, r in found.items()} == dict.fromkeys((2, 5, 6, 7), "duplicate")
    assert "same email as line 4," in found[2]["reason"] and found[2]["Company"] == "Old, Co"
    assert found[2]["Phone"] == "(415) 555-0132" and found[2]["Estimated Value"] == "100"
    assert "same email as line 9," in found[5]["reason"] and "same email as line 9," in found[6]["reason"]
    assert found[6]["Email"] == " THRICE@example.com "
    assert "same email as line 8," in found[7]["reason"] and found[7]["First Name"] == "Per\u00a0Row"
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 7


def test_existing_lead_is_updated_contact_and_converted_lead_are_reported(db_url, bucket):
    with session_scope(db_url) as session:
        session.add(
            Lead(
                first_name="Was",
                last_name="Here",
                company="Old",
                email="lead@example.com",
                phone="+15550000000",
                status="Working",
                lead_source="Web",
            )
        )
        session.add(
            Lead(first_name="Con", last_name="Verted", company="C", email="conv@example.com", status="Converted")
        )
        session.add(Contact(first_name="Is", last_name="Contact", email="Contact@Example.com"))
    path = drop(
        bucket,
        "mixed.csv",
        HEADER
        + "Now,Updated,New Co,lead@example.com,,,,\n"
        + "Try,Again,X,conv@example.com,,,,\n"
        + "Not,ALead,Y,contact@example.com,,,,\n"
        + "Brand,New,Z,new@example.com,,,,\n",
    )
    outcome = run(bucket, db_url, path)

    assert (outcome.rows_read, outcome.inserted, outcome.updated, outcome.duplicates, outcome.rejected) == (
        4,
        1,
        1,
        0,
        2,
    )
    rows = leads(db_url)
    updated = rows["lead@example.com"]
    # Given cells overwrite; absent cells (phone, source, status) keep the CRM's values.
    assert (updated.first_name, updated.company, updated.phone, updated.status, updated.lead_source) == (
        "Now",
        "New Co",
        "+15550000000",
        "Working",
        "Web",
    )
    assert rows["conv@example.com"].first_name == "Con" and "contact@example.com" not in rows
    reasons = {r["line"]: r["reason"] for r in rejects(bucket["processed"] / "mixed.csv.rejects.csv")}
    assert "converted Lead" in reasons["3"] and "Contact" in reasons["4"]


def shifted_rows(n: int, start: int = 0) -> str:
    """Rows whose first-name cell holds an email: the columns of the export are shifted."""
    rows = (f"shift{i}@example.com,Last{i},Company {i},person{i}@example.com,,,,\n" for i in range(start, start + n))
    return "".join(rows)


def test_file_failing_the_quality_suite_loads_nothing_and_counts_every_row(db_url, bucket):
    with session_scope(db_url) as session:  # the merge would report this row, and update the Lead
        session.add(Contact(first_name="Con", last_name="Tact", email="person1@example.com"))
        session.add(Lead(first_name="Old", last_name="Lead", company="Co", email="person2@example.com"))
    path = drop(
        bucket,
        "junk.csv",
        HEADER + "A,B,C,nope,,,,\nD,E,F,also-nope,,,,\nG,H,I,nope-again,,,,\n" + shifted_rows(60) + shifted_rows(1),
    )
    outcome = run(bucket, db_url, path)

    assert outcome.status == "failed" and "quality checks" in outcome.error and "ShiftedColumn" in outcome.error
    assert (outcome.rows_read, outcome.inserted, outcome.updated, outcome.duplicates) == (64, 0, 0, 0)
    assert (outcome.rejected, outcome.not_loaded) == (3, 61)
    assert set(leads(db_url)) == {"person2@example.com"} and leads(db_url)["person2@example.com"].first_name == "Old"
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(ImportIssue)) == 0
        ledger = session.get(ImportFile, outcome.file_id)
        assert (ledger.status, ledger.rows_read, ledger.rejected, ledger.not_loaded) == ("failed", 64, 3, 61)
        assert (ledger.inserted, ledger.updated, ledger.duplicates) == (0, 0, 0)
    assert (bucket["failed"] / "junk.csv").exists() and not path.exists()
    html = (bucket["failed"] / "junk.csv.report.html").read_text()
    assert "FAILED" in html and "expect_column_mean_to_be_between" in html and "not loaded" in html
    report = json.loads((bucket["failed"] / "junk.csv.report.json").read_text())
    assert report["rows_read"] == report["rejected"] + report["not_loaded"] == 64
    # Only the rows the rules rejected: the duplicate and the Contact's email are the merge's, which never happened.
    assert [r["kind"] for r in rejects(bucket["failed"] / "junk.csv.rejects.csv")] == ["rejected"] * 3


def test_thresholds_and_min_rows_come_from_the_suite_file(db_url, bucket):
    suite = importer.load_suite()
    for spec in suite["expectations"]:
        if spec["kwargs"].get("column") == "ShiftedColumn":
            spec["kwargs"]["max_value"] = 0.6
    path = drop(bucket, "junk.csv", HEADER + shifted_rows(55) + good_rows(45))
    assert run(bucket, db_url, path, suite=suite).status == "imported"
    # Below min_rows the file-level checks do not run: its rows are judged one by one.
    suite["min_rows"] = 1_000
    suite["expectations"][0]["kwargs"]["max_value"] = 0.0
    outcome = run(bucket, db_url, drop(bucket, "small.csv", HEADER + shifted_rows(10, start=100)), suite=suite)
    assert outcome.status == "imported" and outcome.inserted == 10
    assert "apply from 1000" in outcome.quality["statistics"]["skipped"]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_new_leads_get_the_mapping_files_defaults(db_url, bucket, monkeypatch, direct):
    monkeypatch.setattr(importer, "DIRECT_LOAD", direct)
    mapping = Mapping.load()
    mapping.defaults = {"LeadSource": "Trade show", "Status": "Open"}
    content = "First Name,Last Name,Company,Email,Lead Source\n" + "A,B,C,a@example.com,\nD,E,F,d@example.com,Web\n"
    assert run(bucket, db_url, drop(bucket, "fair.csv", content), mapping=mapping).inserted == 2
    rows = leads(db_url)
    assert (rows["a@example.com"].lead_source, rows["a@example.com"].status) == ("Trade show", "Open")
    assert (rows["d@example.com"].lead_source, rows["d@example.com"].status) == ("Web", "Open")


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_when_email_is_not_required_rows_without_one_are_each_a_new_lead(db_url, bucket, monkeypatch, direct):
    monkeypatch.setattr(importer, "DIRECT_LOAD", direct)
    mapping = Mapping.load()
    mapping.required = ["FirstName", "LastName", "Company"]
    rows = good_rows(10).replace(",,,,\n", "\n")
    content = "First Name,Last Name,Company,Email\nA,B,C,\nD,E,F,\n" + rows + "Z,Y,X,person0@example.com\n"
    outcome = run(bucket, db_url, drop(bucket, "no-email.csv", content), mapping=mapping)
    # No email matches nothing: not a duplicate of each other, not an update (the repeated email
    # makes the staged merge run its duplicate pass).
    assert (outcome.inserted, outcome.duplicates, outcome.rejected) == (12, 1, 0)
    assert {lead.first_name for lead in leads_list(db_url) if lead.email is None} == {"A", "D"}


def leads_list(db_url) -> list[Lead]:
    with session_scope(db_url) as session:
        return list(session.scalars(select(Lead)))


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty"),
        (HEADER, "header row but no leads"),
        ("First Name,Last Name,Company,Email,E-mail\nA,B,C,d@example.com,e@example.com\n", "duplicate column names"),
        ("First Name,Last Name,Company\nA,B,C\n", "missing required column(s): Email"),
        (b"PK\x03\x04binary", "ZIP archive"),
        (b"First,Last\n\x00\x00\x00", "binary"),
    ],
)
def test_files_that_cannot_be_read_go_to_failed_with_a_report(db_url, bucket, content, message):
    path = drop(bucket, "bad.csv", content)
    outcome = run(bucket, db_url, path)
    assert outcome.status == "failed" and message in outcome.error
    assert (bucket["failed"] / "bad.csv").exists() and not path.exists()
    report = json.loads((bucket["failed"] / "bad.csv.report.json").read_text())
    assert report["status"] == "failed" and message in report["error"]
    with session_scope(db_url) as session:
        assert session.get(ImportFile, outcome.file_id).status == "failed"
        assert session.scalar(select(func.count()).select_from(Lead)) == 0


def test_same_content_is_not_imported_twice_under_any_name(db_url, bucket):
    content = HEADER + good_rows(3)
    first = run(bucket, db_url, drop(bucket, "monday.csv", content))
    second = run(bucket, db_url, drop(bucket, "monday (1).csv", content))
    assert first.status == "imported" and second.status == "duplicate"
    assert "already imported from 'monday.csv'" in second.error and first.file_id in second.error
    assert len(leads(db_url)) == 3
    assert (bucket["failed"] / "monday (1).csv.report.html").exists()
    # The very same file dropped again under its old name: also a duplicate, the archive untouched.
    again = run(bucket, db_url, drop(bucket, "monday.csv", content))
    assert again.status == "duplicate" and again.file_id != first.file_id
    assert (bucket["failed"] / "monday.csv").exists() and (bucket["processed"] / "monday.csv").exists()
    # A different file with the same name is kept apart, not overwritten.
    third = run(bucket, db_url, drop(bucket, "monday.csv", HEADER + good_rows(2, start=10)))
    assert third.status == "imported" and Path(third.archived_path).name == f"monday.{third.file_id[:8]}.csv"
    with session_scope(db_url) as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "lead.imported")).all()
        assert sorted(e.payload["data"]["file_name"] for e in events) == ["monday.csv", "monday.csv"]
        assert {e.id for e in events} == {importer.event_id_for(first.sha256), importer.event_id_for(third.sha256)}


def test_ledger_holds_counts_and_timestamps(db_url, bucket):
    outcome = run(bucket, db_url, drop(bucket, "ok.csv", HEADER + good_rows(5)))
    with session_scope(db_url) as session:
        row = session.get(ImportFile, outcome.file_id)
        assert (row.status, row.rows_read, row.inserted, row.encoding, row.delimiter) == (
            "imported",
            5,
            5,
            "utf-8",
            ",",
        )
        assert row.size == len(HEADER + good_rows(5)) and len(row.sha256) == 64
        assert row.started_at <= row.finished_at and row.report_path.endswith("ok.csv.report.html")


def test_rejects_file_neutralizes_formulas(db_url, bucket):
    path = drop(bucket, "evil.csv", HEADER + '=1+1,@SUM(A1),-2,"=HYPERLINK(""http://x"")",,,,\n' + good_rows(4))
    run(bucket, db_url, path)
    [row] = rejects(bucket["processed"] / "evil.csv.rejects.csv")
    assert (row["First Name"], row["Last Name"], row["Company"]) == ("'=1+1", "'@SUM(A1)", "'-2")
    assert row["Email"].startswith("'=HYPERLINK")
    assert [neutralize(v) for v in ("+1", "\tx", "\rx", "ok", None)] == ["'+1", "'\tx", "'\rx", "ok", ""]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_accounting_mismatch_fails_loudly_and_loads_nothing(db_url, bucket, monkeypatch, direct):
    monkeypatch.setattr(importer, "DIRECT_LOAD", direct)
    real_merge, real_count = loader.merge, loader.Stager._count

    def lossy_merge(conn, file_id, now, **kwargs):
        counts = real_merge(conn, file_id, now, **kwargs)
        counts.inserted -= 1  # as if a row had vanished
        return counts

    def lossy_count(self, rows):
        real_count(self, rows - 1)

    monkeypatch.setattr(loader, "merge", lossy_merge)
    monkeypatch.setattr(loader.Stager, "_count", lossy_count)
    path = drop(bucket, "count.csv", HEADER + good_rows(3))
    with pytest.raises(AccountingError, match=r"rows read 3 != inserted 2 \+ updated 0"):
        run(bucket, db_url, path)
    assert leads(db_url) == {} and path.exists()
    with session_scope(db_url) as session:
        row = session.scalar(select(ImportFile))
        assert row.status == "failed" and "rows read 3" in row.error
    monkeypatch.setattr(loader, "merge", real_merge)
    monkeypatch.setattr(loader.Stager, "_count", real_count)
    assert run(bucket, db_url, path).inserted == 3  # the retry reuses the ledger row
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(ImportFile)) == 1


def test_many_ragged_rows_are_all_reported(db_url, bucket):
    # More than one batch of issues (5,000) from rows the reader rejects: flushed as they come, none lost.
    ragged = "".join(f"F{i},L{i}\n" for i in range(6_100))
    outcome = run(bucket, db_url, drop(bucket, "ragged.csv", HEADER + ragged + good_rows(5)))

    assert (outcome.status, outcome.rows_read, outcome.inserted, outcome.rejected) == ("imported", 6_105, 5, 6_100)
    with session_scope(db_url) as session:
        assert session.scalar(select(func.count()).select_from(ImportIssue)) == 6_100
    assert len(rejects(bucket["processed"] / "ragged.csv.rejects.csv")) == 6_100
