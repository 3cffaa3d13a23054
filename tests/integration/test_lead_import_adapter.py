"""hotcrm.airflow.leads: listing incoming/, the file_name param, and a retried task after the move."""

from __future__ import annotations

import pytest

from hotcrm.airflow.leads import import_incoming_file, lead_folders, list_incoming

HEADER = "First Name,Last Name,Company,Email\n"


@pytest.fixture
def root(tmp_path):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath((tmp_path / "bucket").as_uri())


def _drop(root, name, text):
    with (lead_folders(root)["incoming"] / name).open("wb") as f:
        f.write(text.encode())


def test_listing_skips_reports_hidden_and_partial_files(root):
    for name in ("b.csv", "a.txt", ".hidden.csv", "x.csv.part", "old.csv.report.html"):
        _drop(root, name, HEADER)
    assert list_incoming(root=root) == ["a.txt", "b.csv"]
    assert list_incoming("b.csv", root=root) == ["b.csv"]


def test_a_named_file_that_is_not_there_says_what_is(root):
    _drop(root, "b.csv", HEADER)
    with pytest.raises(FileNotFoundError, match=r"'nope.csv' is not in .*incoming; files waiting there: \['b.csv'\]"):
        list_incoming("nope.csv", root=root)
    with pytest.raises(ValueError, match="not a path"):
        list_incoming("../processed/b.csv", root=root)


def test_a_retry_after_the_file_moved_returns_the_ledger_record(root, db_url):
    _drop(root, "leads.csv", HEADER + "".join(f"F{i},L{i},C{i},p{i}@example.com\n" for i in range(5)))
    first = import_incoming_file("leads.csv", db_url, root=root)
    assert first["status"] == "imported" and first["inserted"] == 5
    assert (lead_folders(root)["processed"] / "leads.csv").exists()
    again = import_incoming_file("leads.csv", db_url, root=root)
    assert {k: again[k] for k in ("file_id", "status", "inserted")} == {
        k: first[k] for k in ("file_id", "status", "inserted")
    }
    with pytest.raises(FileNotFoundError, match="the ledger has no record of it"):
        import_incoming_file("never.csv", db_url, root=root)


def test_a_failed_file_fails_the_task_after_its_summary_is_queued_and_counts_every_row(root, db_url):
    from airflow.sdk.exceptions import AirflowFailException
    from sqlalchemy import select

    from hotcrm.crm.db import session_scope
    from hotcrm.email.models import EmailOutbox
    from hotcrm.leads.models import ImportFile

    shifted = "".join(f"x{i}@example.com,L{i},C{i},p{i}@example.com\n" for i in range(60))
    _drop(root, "shifted.csv", HEADER + shifted + "A,B,C,not-an-email\n")
    with pytest.raises(AirflowFailException, match=r"shifted.csv was not imported: .*61 rows read, 1 rejected, 60 not"):
        import_incoming_file("shifted.csv", db_url, root=root)
    assert (lead_folders(root)["failed"] / "shifted.csv").exists()
    with session_scope(db_url) as session:
        ledger = session.scalars(select(ImportFile)).one()
        assert (ledger.status, ledger.rows_read, ledger.rejected, ledger.not_loaded) == ("failed", 61, 1, 60)
        [queued] = session.scalars(select(EmailOutbox)).all()
    # The uploader's summary was queued before the task failed.
    assert "shifted.csv: failed" in queued.subject and "60 not loaded" in queued.text_body
    # A retry finds the file gone and fails the same way.
    with pytest.raises(AirflowFailException, match="shifted.csv was not imported"):
        import_incoming_file("shifted.csv", db_url, root=root)


def test_symlinks_and_special_files_are_listed_and_refused_unread(root, db_url, tmp_path):
    import os

    outside = tmp_path / "outside.csv"
    outside.write_text(HEADER + "A,B,C,a@example.com\n")
    incoming = lead_folders(root)["incoming"]
    link = tmp_path / "bucket" / "imports" / "leads" / "incoming" / "link.csv"
    link.symlink_to(outside)
    os.mkfifo(link.parent / "pipe.csv")
    (link.parent / "subfolder").mkdir()
    assert list_incoming(root=root) == ["link.csv", "pipe.csv"]
    from airflow.sdk.exceptions import AirflowFailException

    for name, what in (("link.csv", "symbolic link"), ("pipe.csv", "named pipe")):
        with pytest.raises(AirflowFailException, match=what):
            import_incoming_file(name, db_url, root=root)
    assert not (incoming / "link.csv").exists() and outside.read_text().startswith(HEADER)
