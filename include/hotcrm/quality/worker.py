"""A quality suite run in a child process that imports Great Expectations as soon as it starts.

Importing GX costs seconds of CPU and ~270 MB; in a thread it would hold the caller's GIL
while the caller reads its file. :class:`QualityWorker` starts ``python -m
hotcrm.quality.worker`` with :class:`subprocess.Popen` (not :mod:`multiprocessing`: a Celery
prefork worker is daemonic and may not have multiprocessing children), which imports GX on
another core, then waits on stdin for one request, runs
:func:`hotcrm.quality.validate_dataframe`, writes the :class:`~hotcrm.quality.QualityResult`
on stdout and exits. Requests and replies are pickles (our own parent and child).

The child's stderr is the parent's (GX warnings reach the task log). A worker that is not
needed is stopped and reaped by :meth:`QualityWorker.close` (or the ``with`` block).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
from typing import Any

from hotcrm.errors import PermanentError, TransientError
from hotcrm.settings import child_environment

# Exceptions inside the child that mean the suite itself is wrong (an unknown expectation type,
# bad arguments): retrying cannot help, as when the suite runs in-process.
_SUITE_ERRORS = (ValueError, TypeError, LookupError)


class QualityWorkerError(TransientError):
    """The quality worker died or could not run the suite: the task may pass on a retry."""


class QualitySuiteError(PermanentError):
    """The suite could not run on the data (a bad expectation or argument): fix the suite."""


class QualityWorker:
    """One child process that runs one suite; start it early, :meth:`validate` later."""

    def __init__(self, *, background: bool = False) -> None:
        """``background``: the caller has more work to do before it needs the result than the
        imports take; the child then runs at nice 10, on the CPU the caller (and its database)
        leave. Not for short work: the caller would wait for imports that had been starved."""
        self._process: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # inherited: the child's warnings and tracebacks reach the task log
            env=child_environment(GX_ANALYTICS_ENABLED="False"),  # GX must not phone home
        )
        if background:
            with contextlib.suppress(OSError):  # (lowering a child's priority needs no privilege)
                ours = os.getpriority(os.PRIO_PROCESS, 0)
                os.setpriority(os.PRIO_PROCESS, self._process.pid, min(ours + 10, 19))

    @property
    def pid(self) -> int | None:
        """The child's process id (``None`` once closed)."""
        return self._process.pid if self._process is not None else None

    def validate(self, data: Any, suite_name: str, expectations: list[dict[str, Any]]):
        """Run the suite in the child on ``data`` (a pandas DataFrame, or a mapping of column
        name to array, which the child turns into one: the caller need not import pandas) and
        return its :class:`~hotcrm.quality.QualityResult`. The worker is spent afterwards."""
        process = self._process
        if process is None:
            raise QualityWorkerError(f"quality suite {suite_name!r}: the worker process was closed already")
        try:
            try:
                process.stdin.write(pickle.dumps((data, suite_name, expectations), protocol=pickle.HIGHEST_PROTOCOL))
                process.stdin.close()
            except OSError:
                pass  # the child is gone: its exit status below says how
            reply = process.stdout.read()
            code = process.wait()
        finally:
            self.close()
        try:
            status, payload = pickle.loads(reply)  # noqa: S301 - from our own child
        except Exception:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise QualityWorkerError(
                f"quality suite {suite_name!r} did not run: its worker process (pid {process.pid}) {how} "
                "without a result (out of memory? see the log above for its error); the task may pass on a retry"
            ) from None
        if status == "ok":
            return payload
        kind, message = payload
        if status == "suite-error":
            raise QualitySuiteError(f"quality suite {suite_name!r} could not run: {kind}: {message}")
        raise QualityWorkerError(f"quality suite {suite_name!r} failed in its worker process: {kind}: {message}")

    def close(self) -> None:
        """Stop the child if it still runs and reap it (no zombie, no orphan). Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()  # it holds no state: only imports, or a suite whose result is not wanted
        for pipe in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        process.wait()

    def __enter__(self) -> QualityWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A worker dropped without close() (a bug) is still reaped, not left a zombie.
        if getattr(self, "_process", None) is not None:
            self.close()


def _serve() -> int:
    """The child: import GX now, then run the one request from stdin."""
    # Only the reply goes to the real stdout: whatever a library prints goes to stderr.
    reply_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # stdin is read beside the imports: an end of file with no request (the parent closed the
    # worker, or died) ends this process at once, not after seconds of importing.
    received: list[bytes] = []
    reader = threading.Thread(target=_read_request, args=(received,), name="request", daemon=True)
    reader.start()
    import logging

    import great_expectations  # noqa: F401 - the point of starting early
    import pandas as pd

    # GX logs its set-up at INFO; the task log should show the import's progress, not that.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    reader.join()
    request = received[0]
    from hotcrm.quality import validate_dataframe

    try:
        data, suite_name, expectations = pickle.loads(request)  # noqa: S301 - from our own parent
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        reply = ("ok", validate_dataframe(frame, suite_name, expectations))
    except _SUITE_ERRORS as exc:
        reply = ("suite-error", (type(exc).__name__, str(exc)))
    except Exception as exc:
        reply = ("error", (type(exc).__name__, str(exc)))
    try:
        reply_out.write(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        reply_out.close()
    except BrokenPipeError:
        return 1  # the parent is gone
    return 0


def _read_request(received: list[bytes]) -> None:
    request = sys.stdin.buffer.read()
    if not request:
        os._exit(0)  # the suite is not needed after all
    received.append(request)


if __name__ == "__main__":
    status = _serve()
    sys.stderr.flush()
    # No interpreter teardown: unloading GX's modules takes ~0.6 s that the parent would wait for.
    os._exit(status)
