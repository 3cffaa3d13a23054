"""The operators against real stores: the lead import of every waiting file (SQLite and
PostgreSQL), the data-quality operator on a file in an s3:// bucket, and its path checks."""

import shutil

import pytest
from airflow.sdk.exceptions import AirflowFailException

from hotcrm.airflow.operators import HotCrmDataQualityOperator, HotCrmLeadImportOperator
from hotcrm.settings import SAMPLE_DATA_DIR

CSV = "Id,Name\n001A,Acme\n001B,Globex\n001C,\n"


class _TI:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_lead_import_without_a_file_name_imports_every_waiting_file(hotcrm_env):
    incoming = hotcrm_env["bucket_dir"] / "imports" / "leads" / "incoming"
    incoming.mkdir(parents=True)
    samples = sorted(p for p in (SAMPLE_DATA_DIR / "leads").glob("*.csv"))[:2]
    for sample in samples:
        shutil.copy(sample, incoming / sample.name)
    op = HotCrmLeadImportOperator(task_id="import_leads")
    totals = op.execute({"ti": _TI()})
    assert totals["files"] == len(samples) and totals["by_status"] == {"imported": len(samples)}
    assert (
        totals["rows_read"]
        == totals["inserted"] + totals["updated"] + totals["duplicates"] + totals["rejected"] + totals["not_loaded"]
    )
    assert sorted(p.name for p in incoming.iterdir()) == []
    # A named file that is gone and was never imported is a permanent error, named.
    with pytest.raises(AirflowFailException, match="nope.csv is gone and the ledger has no record of it"):
        HotCrmLeadImportOperator(task_id="one", file_name="nope.csv").execute({})


def test_quality_on_a_csv_in_an_s3_bucket(hotcrm_env, s3_bucket, s3_server):
    bucket = s3_bucket[len("s3://") :]
    s3_server.client().put_object(Bucket=bucket, Key="reports/accounts.csv", Body=CSV.encode())
    ti = _TI()
    op = HotCrmDataQualityOperator(task_id="q", suite="account_file", file_path="reports/accounts.csv", policy="fail")
    with pytest.raises(AirflowFailException, match=r"accounts.csv: suite 'account_file' failed: .*not_be_null on Name"):
        op.execute({"ti": ti})
    summary = ti.pushed["return_value"]
    assert summary["rows"] == 3 and summary["source"] == f"{s3_bucket}/reports/accounts.csv"
    # The same file by its URL, under the warn policy: the task succeeds with the verdict.
    op = HotCrmDataQualityOperator(
        task_id="q", suite="account_file", file_path=f"{s3_bucket}/reports/accounts.csv", policy="warn"
    )
    assert op.execute({})["success"] is False


@pytest.mark.parametrize(
    ("file_path", "message"),
    [
        ("../outside.csv", "without '..'"),
        ("file:///etc/passwd", "is not in the bucket"),
        ("exports/none.csv", "no such file in the bucket"),
        ("notes.txt", "cannot read .txt"),
    ],
)
def test_quality_file_paths_stay_in_the_bucket(hotcrm_env, file_path, message):
    (hotcrm_env["bucket_dir"] / "notes.txt").write_text("x")
    op = HotCrmDataQualityOperator(task_id="q", suite="account_file", file_path=file_path)
    with pytest.raises(AirflowFailException, match=message):
        op.execute({})
