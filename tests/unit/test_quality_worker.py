"""The quality worker: a suite run in a child process gives what the in-process run gives,
and a child that dies, fails or is not needed is reported clearly and reaped."""

from __future__ import annotations

import operator
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

from hotcrm.errors import PermanentError, TransientError
from hotcrm.quality import validate_dataframe
from hotcrm.quality.worker import QualitySuiteError, QualityWorker, QualityWorkerError

EXPECTATIONS = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "Email", "mostly": 0.9}},
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "Flag", "max_value": 0.1}},
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
]


def assert_reaped(pid: int) -> None:
    """The child is neither running nor a zombie: it was waited for (so it is no child any more)."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def frame(bad: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Email": [None if i < bad else f"p{i}@example.com" for i in range(100)],
            "Flag": np.array([1 if i < bad else 0 for i in range(100)], dtype=np.int8),
        }
    )


@pytest.mark.parametrize("bad", [0, 30], ids=["passing", "failing"])
def test_the_worker_gives_the_in_process_result(bad):
    df = frame(bad)
    expected = validate_dataframe(df, "leads", EXPECTATIONS)
    with QualityWorker() as worker:
        pid = worker.pid
        result = worker.validate(df, "leads", EXPECTATIONS)
    assert result.to_dict() == expected.to_dict()
    assert result.success is (bad == 0)
    assert_reaped(pid)


def test_columns_as_arrays_become_the_same_frame_in_the_child():
    df = frame(30)
    columns = {"Email": df["Email"].to_numpy(), "Flag": df["Flag"].to_numpy()}
    worker = QualityWorker()
    result = worker.validate(columns, "leads", EXPECTATIONS)
    assert result.to_dict() == validate_dataframe(df, "leads", EXPECTATIONS).to_dict()
    assert worker.pid is None  # spent: closed by validate


def test_the_child_finds_hotcrm_without_pythonpath(monkeypatch, tmp_path):
    # The package is on sys.path only (not installed): the worker puts its folder on the child's path.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(tmp_path)
    with QualityWorker() as worker:
        assert worker.validate(frame(0), "leads", EXPECTATIONS).success


def test_a_killed_child_is_a_clear_retryable_error_naming_the_suite():
    worker = QualityWorker()
    pid = worker.pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(QualityWorkerError, match=r"quality suite 'leads' did not run: .* killed by signal 9") as exc:
        worker.validate(frame(0), "leads", EXPECTATIONS)
    assert isinstance(exc.value, TransientError)
    assert_reaped(pid)


class _Explodes:
    """Unpickles in the child as 1 / 0: an unexpected error inside the worker."""

    def __reduce__(self):
        return operator.truediv, (1, 0)


def test_an_error_inside_the_child_names_the_suite_and_the_error():
    worker = QualityWorker()
    pid = worker.pid
    with pytest.raises(QualityWorkerError, match="quality suite 'leads' failed in its worker process: ZeroDivision"):
        worker.validate(_Explodes(), "leads", EXPECTATIONS)
    assert_reaped(pid)


def test_a_bad_suite_is_a_permanent_error_as_in_process():
    with QualityWorker() as worker:
        pid = worker.pid
        with pytest.raises(QualitySuiteError, match="quality suite 'x' could not run: .*'expect_magic'") as exc:
            worker.validate(frame(0), "x", [{"type": "expect_magic"}])
    assert isinstance(exc.value, PermanentError)
    assert_reaped(pid)


def test_a_worker_not_needed_is_stopped_and_reaped():
    worker = QualityWorker()
    pid = worker.pid
    worker.close()
    assert_reaped(pid)
    worker.close()  # idempotent
    with pytest.raises(QualityWorkerError, match="closed already"):
        worker.validate(frame(0), "leads", EXPECTATIONS)


def test_a_worker_whose_parent_is_gone_exits_without_finishing_its_imports():
    # The parent's end of stdin closes (as when the parent is killed): the child ends at once,
    # not after the seconds GX takes to import.
    worker = QualityWorker()
    process = worker._process
    started = time.monotonic()
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    assert time.monotonic() - started < 2.0
    worker.close()


def test_the_context_manager_reaps_on_an_exception():
    with pytest.raises(RuntimeError), QualityWorker() as worker:
        pid = worker.pid
        raise RuntimeError("the import failed before the check")
    assert_reaped(pid)


def test_a_background_worker_imports_at_a_lower_priority_and_a_default_one_does_not():
    """For a long import, the worker's imports take the CPU the import leaves (nice + 10)."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    with QualityWorker(background=True) as background, QualityWorker() as default:
        assert os.getpriority(os.PRIO_PROCESS, background.pid) == min(ours + 10, 19)
        assert os.getpriority(os.PRIO_PROCESS, default.pid) == ours
