"""The lead import runs its file-level suite in a quality worker (a child process started
before the file is read): the result is the in-process one, a dead worker fails the import as
a retryable error, and no worker is left running or unreaped after any path."""

from __future__ import annotations

import os
import signal
from array import array

import numpy as np
import pandas as pd
import pytest

from hotcrm.errors import TransientError
from hotcrm.leads import importer
from hotcrm.leads.quality import check_quality
from hotcrm.leads.reader import FileRejected
from hotcrm.quality import validate_dataframe
from hotcrm.quality.worker import QualityWorker, QualityWorkerError
from tests.integration.test_lead_import_core import HEADER, good_rows, shifted_rows
from tests.support.lead_files import drop, run
from tests.unit.test_quality_worker import assert_reaped


@pytest.fixture
def workers(monkeypatch) -> list[int]:
    """The pids of the quality workers started during the test."""
    started: list[int] = []
    real_init = QualityWorker.__init__

    def init(self, **kwargs) -> None:
        real_init(self, **kwargs)
        started.append(self.pid)

    monkeypatch.setattr(QualityWorker, "__init__", init)
    return started


def assert_all_reaped(pids: list[int], count: int = 1) -> None:
    assert len(pids) == count
    for pid in pids:
        assert_reaped(pid)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "staged"])
def test_import_runs_the_suite_in_a_worker_with_the_in_process_result(db_url, bucket, workers, monkeypatch, direct):
    monkeypatch.setattr(importer, "DIRECT_LOAD", direct)
    outcome = run(bucket, db_url, drop(bucket, "leads.csv", HEADER + shifted_rows(3) + good_rows(57, start=3)))
    assert outcome.status == "imported" and outcome.inserted == 60
    flags = pd.DataFrame({"ShiftedColumn": np.int8([1] * 3 + [0] * 57), "Mojibake": np.zeros(60, dtype=np.int8)})
    suite = importer.load_suite()
    assert outcome.quality == validate_dataframe(flags, suite["name"], suite["expectations"]).to_dict()
    assert outcome.quality["statistics"]["evaluated_expectations"] == 2
    assert_all_reaped(workers)


def test_a_file_failing_the_suite_leaves_no_worker(db_url, bucket, workers):
    outcome = run(bucket, db_url, drop(bucket, "junk.csv", HEADER + shifted_rows(60)))
    assert outcome.status == "failed" and "ShiftedColumn" in outcome.error
    assert_all_reaped(workers)


def test_a_file_below_min_rows_stops_its_worker_at_once(db_url, bucket, workers, monkeypatch):
    seen = []
    real_check = importer.check_quality

    def check(suite, shifted, mojibake, worker):
        result = real_check(suite, shifted, mojibake, worker)
        seen.append(worker.pid)  # None: closed by check_quality, before the merge and the reports
        return result

    monkeypatch.setattr(importer, "check_quality", check)
    outcome = run(bucket, db_url, drop(bucket, "small.csv", HEADER + good_rows(10)))
    assert outcome.status == "imported" and "not run" in outcome.quality["statistics"]["skipped"]
    assert seen == [None]
    assert_all_reaped(workers)


@pytest.mark.parametrize("error", [FileRejected("the file cannot be read"), RuntimeError("database gone")])
def test_an_import_failing_before_the_check_leaves_no_worker(db_url, bucket, workers, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(importer, "read_and_stage", fail)
    path = drop(bucket, "leads.csv", HEADER + good_rows(60))
    if isinstance(error, FileRejected):
        assert run(bucket, db_url, path).status == "failed"
    else:
        with pytest.raises(RuntimeError, match="database gone"):
            run(bucket, db_url, path)
    assert_all_reaped(workers)


def test_check_lead_file_leaves_no_worker(db_url, bucket, workers, tmp_path):
    path = drop(bucket, "leads.csv", HEADER + good_rows(60))
    outcome = importer.check_lead_file(path, db_url, report_dir=tmp_path)
    assert outcome.status == "checked" and outcome.quality["statistics"]["evaluated_expectations"] == 2
    assert_all_reaped(workers)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "merged"])
def test_a_killed_worker_fails_the_import_for_a_retry(db_url, bucket, workers, monkeypatch, direct):
    monkeypatch.setattr(importer, "DIRECT_LOAD", direct)
    real_init = QualityWorker.__init__  # the fixture's: it records the pid

    def init_then_die(self, **kwargs) -> None:
        real_init(self, **kwargs)
        os.kill(self.pid, signal.SIGKILL)  # e.g. the kernel's OOM killer

    monkeypatch.setattr(QualityWorker, "__init__", init_then_die)
    # Loaded directly, the suite runs after the load; with a repeated email, beside the merge.
    repeat = "" if direct else good_rows(1)
    path = drop(bucket, "leads.csv", HEADER + good_rows(60) + repeat)
    with pytest.raises(QualityWorkerError, match="quality suite 'lead_file' did not run") as exc:
        run(bucket, db_url, path)
    assert isinstance(exc.value, TransientError)
    assert path.exists()  # left in incoming/ for the retry
    assert_all_reaped(workers)

    monkeypatch.setattr(QualityWorker, "__init__", real_init)
    outcome = run(bucket, db_url, path)  # the retry
    assert (outcome.status, outcome.inserted, outcome.duplicates) == ("imported", 60, 0 if direct else 1)
    assert_all_reaped(workers, count=2)


def test_check_quality_starts_its_own_worker_when_given_none(workers):
    suite = importer.load_suite()
    flags = array("b", bytes(60))
    result = check_quality(suite, flags, flags)
    assert result["success"] and result["statistics"]["evaluated_expectations"] == 2
    assert_all_reaped(workers)


@pytest.mark.parametrize("threshold, background", [(1, True), (1 << 30, False)], ids=["large", "small"])
def test_a_file_larger_than_the_threshold_gets_a_background_worker(db_url, bucket, monkeypatch, threshold, background):
    """A file that takes longer to read than GX to import lets the worker import at a lower
    priority; a smaller one does not (it would wait for the starved imports at its end)."""
    seen: list[bool] = []
    real_init = QualityWorker.__init__

    def init(self, *, background: bool = False) -> None:
        seen.append(background)
        real_init(self, background=background)

    monkeypatch.setattr(QualityWorker, "__init__", init)
    monkeypatch.setattr(importer, "BACKGROUND_QUALITY_BYTES", threshold)
    outcome = run(bucket, db_url, drop(bucket, "leads.csv", HEADER + good_rows(60)))
    assert outcome.status == "imported" and seen == [background]
