"""What running on several machines needs from the code, without a cluster (the cluster itself
is tests/distributed): the bucket rule, no ledger row left ``processing`` by a failed task,
inbox claims that name the Airflow worker and task instance, and a dead worker's claims
taken over within the lease by a drain that is still running."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from hotcrm.crm.db import session_scope
from hotcrm.webhooks.inbox import DEFAULT_LEASE, claim_batch
from hotcrm.webhooks.models import WebhookInbox
from hotcrm.webhooks.processing import default_worker_name, process_inbox
from hotcrm.webhooks.samples import payment_event
from tests.integration.test_webhook_processing import _row, _seed, _store
from tests.support.lead_files import drop

AIRFLOW_CTX = {
    "AIRFLOW_CTX_DAG_ID": "webhook_inbox",
    "AIRFLOW_CTX_DAG_RUN_ID": "scheduled__2026-12-06T02:41:00.123456+00:00",
    "AIRFLOW_CTX_TASK_ID": "process_inbox",
    "AIRFLOW_CTX_TRY_NUMBER": "2",
}


# --- the bucket ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "executor", ["CeleryExecutor", "KubernetesExecutor", "LocalExecutor,CeleryExecutor", "my.module.EdgeExecutor"]
)
def test_a_file_bucket_is_refused_under_an_executor_whose_workers_share_no_disk(tmp_path, monkeypatch, executor):
    from hotcrm.airflow.storage import BucketNotSharedError, bucket_root

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    monkeypatch.delenv("HOTCRM_BUCKET_SHARED_DISK", raising=False)
    url = (tmp_path / "bucket").as_uri()
    with pytest.raises(BucketNotSharedError) as refused:
        bucket_root(url)
    message = str(refused.value)
    assert "HOTCRM_BUCKET_URL=s3://" in message and url in message and executor.split(",")[-1] in message
    assert not (tmp_path / "bucket").exists()  # refused before anything is written


def test_a_file_bucket_is_fine_locally_or_on_a_disk_every_worker_mounts(tmp_path, monkeypatch):
    from hotcrm.airflow.storage import bucket_root

    url = (tmp_path / "bucket").as_uri()
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert bucket_root(url).exists()
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("HOTCRM_BUCKET_SHARED_DISK", "true")
    assert bucket_root(url).exists()


def test_the_lead_import_task_refuses_a_file_bucket_under_celery(hotcrm_env, monkeypatch):
    from hotcrm.airflow.leads import list_incoming
    from hotcrm.airflow.storage import BucketNotSharedError

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    with pytest.raises(BucketNotSharedError, match="HOTCRM_BUCKET_URL=s3://"):
        list_incoming()


# --- the ledger ------------------------------------------------------------------------


def test_a_failed_import_task_leaves_no_ledger_row_processing_and_a_retry_finishes_it(hotcrm_env, monkeypatch):
    from hotcrm.airflow.leads import import_incoming_file, lead_folders
    from hotcrm.leads import importer
    from hotcrm.leads.models import ImportFile

    db = hotcrm_env["database_url"]
    drop(
        lead_folders(),
        "leads.csv",
        "First Name,Last Name,Company,Email\nAda,Lovelace,Acme,ada@acme.example\n",
    )

    def lost_database(*args, **kwargs):
        raise ConnectionError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(importer, "_load", lost_database)  # the database goes away mid-import
        with pytest.raises(ConnectionError):
            import_incoming_file("leads.csv", db)
    with session_scope(db) as session:
        (row,) = session.scalars(select(ImportFile)).all()
        assert row.status == "failed"
        assert "ConnectionError" in row.error and "server closed the connection" in row.error
        assert row.finished_at is not None
    assert (lead_folders()["incoming"] / "leads.csv").exists()  # left for the retry

    result = import_incoming_file("leads.csv", db)  # the task's retry
    assert (result["status"], result["inserted"]) == ("imported", 1)
    with session_scope(db) as session:
        (row,) = session.scalars(select(ImportFile)).all()  # the same row, reused
        assert (row.status, row.error) == ("imported", None)


# --- inbox claims ----------------------------------------------------------------------


def test_the_claim_names_the_worker_host_and_the_airflow_task_instance(monkeypatch):
    import socket

    for name, value in AIRFLOW_CTX.items():
        monkeypatch.setenv(name, value)
    name = default_worker_name()
    assert name == (
        f"{socket.gethostname()} webhook_inbox/scheduled__2026-12-06T02:41:00.123456+00:00/process_inbox/try2"
    )
    for name_ in AIRFLOW_CTX:
        monkeypatch.delenv(name_)
    outside = default_worker_name()
    assert outside.startswith(f"{socket.gethostname()} pid{os.getpid()} ") and outside != default_worker_name()


def test_a_long_claim_owner_fits_the_column(db_url, monkeypatch):
    for name, value in AIRFLOW_CTX.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("socket.gethostname", lambda: "w" * 63 + ".cluster.internal")
    _seed(db_url)
    _store(db_url, payment_event("payment.succeeded", "txn_0", event_id="e1"))
    owner = default_worker_name() + "#15"
    assert len(owner) > 64  # what the column held before migration 0017d
    assert claim_batch(db_url, owner, 10) != []
    with session_scope(db_url) as session:
        assert session.scalar(select(WebhookInbox.claimed_by)) == owner


def test_the_lease_is_well_under_a_minute():
    assert timedelta(seconds=30) >= DEFAULT_LEASE


def test_a_running_drain_takes_over_a_dead_workers_claims_when_their_lease_ends(db_url):
    _seed(db_url, 3)
    for i in range(3):
        _store(db_url, payment_event("payment.succeeded", f"txn_{i}", event_id=f"e{i}"))
    lease = timedelta(seconds=2)
    assert len(claim_batch(db_url, "dead-worker", 2, lease=lease)) == 2  # then it dies
    started = time.monotonic()
    result = process_inbox(db_url, worker="survivor", max_seconds=20)
    took = time.monotonic() - started
    assert result.processed == 3
    assert 1.0 <= took < 10, took  # it waited for the lease, not for the next run
    for i in range(3):
        row = _row(db_url, f"e{i}")
        assert (row.status, row.claimed_by, row.locked_until) == ("done", None, None)


def test_a_drain_without_a_budget_does_not_wait_for_other_claims(db_url):
    _seed(db_url, 2)
    for i in range(2):
        _store(db_url, payment_event("payment.succeeded", f"txn_{i}", event_id=f"e{i}"))
    claim_batch(db_url, "busy-sibling", 1)
    started = time.monotonic()
    assert process_inbox(db_url, worker="me").processed == 1
    assert time.monotonic() - started < 5


def test_a_sibling_still_at_work_keeps_its_rows(db_url):
    """Waiting for leases must not steal rows a live worker is applying (it finishes first)."""
    _seed(db_url, 4)
    for i in range(4):
        _store(db_url, payment_event("payment.succeeded", f"txn_{i}", event_id=f"e{i}"))
    results = []
    threads = [
        threading.Thread(
            target=lambda n=n: results.append(process_inbox(db_url, worker=n, batch_size=1, max_seconds=5))
        )
        for n in ("w1", "w2")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.processed for r in results) == 4


class _KilledTry:
    """What Airflow's DAG processor hands the failure callback of a try whose worker died:
    the task instance (``xcom_pull`` reads find_files' list through the API server)."""

    task_id = "import_file"

    def __init__(self, map_index: int, files: list[str]) -> None:
        self.map_index, self.files = map_index, files

    def xcom_pull(self, task_ids: str, map_indexes: int):
        assert (task_ids, map_indexes) == ("find_files", -1)
        return self.files


def test_the_failure_callback_closes_the_ledger_row_of_a_killed_try(hotcrm_env, monkeypatch):
    from hotcrm.airflow.leads import close_ledger_on_failure, import_incoming_file, lead_folders
    from hotcrm.leads import importer
    from hotcrm.leads.models import ImportFile

    db = hotcrm_env["database_url"]
    for name in ("a.csv", "b.csv"):
        drop(lead_folders(), name, f"First Name,Last Name,Company,Email\nAda,L,Acme,{name}@acme.example\n")

    class Killed(BaseException):  # nothing of the task runs after it: no except clause, as with SIGKILL
        pass

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(importer, "_load", killed)
        patch.setattr("hotcrm.leads.ledger.close_unfinished", lambda *args: None)  # the process is gone
        with pytest.raises(Killed):
            import_incoming_file("b.csv", db)
    with session_scope(db) as session:
        assert [r.status for r in session.scalars(select(ImportFile))] == ["processing"]

    close_ledger_on_failure({"ti": _KilledTry(1, ["a.csv", "b.csv"])})
    with session_scope(db) as session:
        (row,) = session.scalars(select(ImportFile)).all()
        assert (row.file_name, row.status) == ("b.csv", "failed")
        assert "no heartbeat" in row.error
    assert import_incoming_file("b.csv", db)["status"] == "imported"  # the next run reuses the row


def test_the_lead_import_dag_closes_the_ledger_of_a_failed_try(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from hotcrm.airflow.leads import close_ledger_on_failure
    from tests.conftest import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER / "lead_import.py")).get_dag("lead_import")
    callbacks = dag.get_task("import_file").on_failure_callback
    assert close_ledger_on_failure in (callbacks if isinstance(callbacks, list) else [callbacks])
