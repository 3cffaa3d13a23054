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
