"""The lead bucket layout in core (:mod:`hotcrm.leads.bucket`, :mod:`hotcrm.storage`), without
Airflow: the command line's way to the bucket, on a local folder and on S3 (moto)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from hotcrm.leads import bucket
from hotcrm.storage import bucket_root, is_local

HEADER = "First Name,Last Name,Company,Email\n"
ROWS = "".join(f"F{i},L{i},C{i},b{i}@example.com\n" for i in range(3))


def _drop(root, name: str, text: str) -> None:
    with (bucket.lead_folders(root)["incoming"] / name).open("wb") as f:
        f.write(text.encode())


def test_a_local_bucket_gets_its_lead_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTCRM_BUCKET_URL", (tmp_path / "bucket").as_uri())
    folders = bucket.lead_folders()
    assert {name: folder.path for name, folder in folders.items()} == {
        name: str(tmp_path / "bucket" / "imports" / "leads" / name) for name in ("incoming", "processed", "failed")
    }
    assert all(folder.is_dir() and is_local(folder) for folder in folders.values())


def test_a_failed_file_is_an_outcome_not_an_exception(db_url, tmp_path):
    # The core reports; only the Airflow adapter turns a failed file into a failed task.
    root = bucket_root((tmp_path / "bucket").as_uri())
    _drop(root, "good.csv", HEADER + ROWS)
    # Emails in the name column: the columns are shifted, the file fails as a whole.
    _drop(root, "shifted.csv", HEADER + "".join(f"x{i}@example.com,L{i},C{i},p{i}@example.com\n" for i in range(60)))
    assert bucket.list_incoming(root=root) == ["good.csv", "shifted.csv"]
    assert bucket.import_incoming_file("good.csv", db_url, root)["inserted"] == 3
    failed = bucket.import_incoming_file("shifted.csv", db_url, root)
    assert failed["status"] == "failed"
    assert bucket.failure_message(failed).startswith("shifted.csv was not imported: ")
    assert "60 rows read, 0 rejected, 60 not loaded); report: " in bucket.failure_message(failed)
    assert (bucket.lead_folders(root)["failed"] / "shifted.csv").exists()
    assert bucket.list_incoming(root=root) == []


def test_an_s3_bucket_with_the_environments_credentials(s3_server, db_url, monkeypatch):
    # Outside Airflow, s3:// takes the standard AWS settings (no hotcrm_bucket connection).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    url = s3_server.create_bucket(f"core-{uuid.uuid4().hex[:8]}")
    root = bucket_root(url)
    assert not is_local(root)
    _drop(root, "leads.csv", HEADER + ROWS)
    assert bucket.list_incoming(root=root) == ["leads.csv"]
    assert bucket.import_incoming_file("leads.csv", db_url, root)["status"] == "imported"
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=url[5:])["Contents"]}
    assert "imports/leads/processed/leads.csv" in keys


@pytest.mark.parametrize(
    "code",
    [
        "import hotcrm.leads.bucket, hotcrm.storage",
        # every capability's commands, and the HTTP app as `make api` serves it
        "from hotcrm.cli import build_parser; build_parser()",
        "import hotcrm.api.standalone",
    ],
)
def test_core_entry_points_load_no_airflow(code):
    check = f"import sys; {code}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
