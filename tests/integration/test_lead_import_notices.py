"""The import summary email: queued once per file for the uploader's configured address,
naming the counts and the refused rows, and delivered over SMTP by the email outbox."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from hotcrm.airflow.leads import import_incoming_file, lead_folders
from hotcrm.crm.db import session_scope
from hotcrm.email.models import EmailOutbox
from hotcrm.email.outbox import send_due
from hotcrm.email.settings import EmailSettings
from hotcrm.email.smtp import SmtplibSender
from hotcrm.leads.notices import load_recipient_rules, recipients_for
from tests.support.smtp import start_smtp

HEADER = "First Name,Last Name,Company,Email\n"
RULES = [{"match": "tradeshow_*", "to": ["events@crm.example"]}, {"match": "*.csv", "to": ["ops@crm.example"]}]


@pytest.fixture
def root(tmp_path):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath((tmp_path / "bucket").as_uri())


@pytest.fixture
def smtp_server():
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture
def rules_file(tmp_path, monkeypatch):
    path = tmp_path / "notices.json"
    path.write_text(json.dumps({"recipients": RULES}))
    monkeypatch.setenv("HOTCRM_LEAD_IMPORT_NOTICES", str(path))
    return path


def _drop(root, name, text):
    with (lead_folders(root)["incoming"] / name).open("wb") as f:
        f.write(text.encode())


def _notices(url):
    with session_scope(url) as session:
        rows = session.scalars(select(EmailOutbox).where(EmailOutbox.kind == "import_summary")).all()
        return [(r.to_addr, r.subject, r.text_body) for r in rows]


def test_first_matching_rule_wins():
    assert recipients_for("tradeshow_2026.csv", RULES) == ["events@crm.example"]
    assert recipients_for("export.csv", RULES) == ["ops@crm.example"]
    assert recipients_for("export.xlsx", RULES) == []


def test_a_bad_rules_file_names_the_rule(tmp_path):
    path = tmp_path / "notices.json"
    path.write_text(json.dumps({"recipients": [{"match": "*", "to": ["not-an-address"]}]}))
    with pytest.raises(ValueError, match=r"notices.json: recipient rule #1: \['not-an-address'\]"):
        load_recipient_rules(path)


def test_the_shipped_rules_are_valid():
    assert recipients_for("anything.csv", load_recipient_rules())


def test_summary_is_queued_once_and_lists_the_refused_rows(root, db_url, rules_file, smtp_server):
    rows = ["Bad,Email,Nowhere,not-an-email", ",NoFirst,Co,nf@example.com"]
    rows += [f"Ada{i},Lovelace,Engines,ada{i}@example.com" for i in range(10)]
    _drop(root, "tradeshow_nov.csv", HEADER + "\n".join(rows) + "\n")
    outcome = import_incoming_file("tradeshow_nov.csv", db_url, root=root)
    assert outcome["inserted"] == 10 and outcome["rejected"] == 2

    import_incoming_file("tradeshow_nov.csv", db_url, root=root)  # a retried task: no second notice
    [(to, subject, text)] = _notices(db_url)
    assert to == "events@crm.example"
    assert subject == "Lead import tradeshow_nov.csv: 10 loaded, 2 refused"
    assert "Rows: 12 read, 10 inserted, 0 updated, 0 duplicates, 2 rejected" in text
    assert "line 2 (rejected): Email: 'not-an-email' is not a valid email address" in text
    assert "line 3 (rejected): FirstName: is required" in text
    assert outcome["report_path"] in text and outcome["rejects_path"] in text

    summary = send_due(db_url, SmtplibSender(smtp_server.host, smtp_server.port, timeout=5), EmailSettings())
    assert summary["sent"] == 1
    [accepted] = smtp_server.handler.accepted
    assert accepted.message["To"] == "events@crm.example"
    assert accepted.message["Subject"] == subject
    assert "line 2 (rejected)" in accepted.message.get_content()


def test_a_failed_file_says_why_and_a_file_without_a_rule_sends_nothing(root, db_url, rules_file):
    from airflow.sdk.exceptions import AirflowFailException

    _drop(root, "broken.csv", "Name,Phone\nx,1\n")
    with pytest.raises(AirflowFailException, match="broken.csv was not imported: missing required column") as failed:
        import_incoming_file("broken.csv", db_url, root=root)  # the task fails, after the summary is queued
    [(to, subject, text)] = _notices(db_url)
    assert to == "ops@crm.example" and subject == "Lead import broken.csv: failed, nothing loaded"
    assert "Why: missing required column(s)" in text and "Why:" not in str(failed.value)

    _drop(root, "leads.tsv", HEADER + "Ada,Lovelace,Engines,ada@example.com\n")
    assert import_incoming_file("leads.tsv", db_url, root=root)["inserted"] == 1
    assert len(_notices(db_url)) == 1
