"""A real Airflow on loopback for the lead-file watcher: api-server (the tasks' execution
API), scheduler (LocalExecutor), dag-processor and triggerer, each its own process group, in
a temporary ``AIRFLOW_HOME`` with a SQLite metadata database and only ``lead_import`` in its
DAG folder (unpaused at creation). Drop a file with :meth:`AirflowStack.drop` and time what
follows with :meth:`AirflowStack.pickup`.

Used by ``benchmarks/file_pickup.py`` and the slow test ``tests/e2e/test_lead_file_pickup.py``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.postgres import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
INCOMING = "imports/leads/incoming"
PROCESSED = "imports/leads/processed"
# Settings of the test session that must not reach a real deployment's processes.
_DROPPED = ("AIRFLOW__CORE__UNIT_TEST_MODE", "AIRFLOW_CONFIG", "AIRFLOW__CORE__DAGS_FOLDER")
LEAD_CSV = (
    "First Name,Last Name,Company,Email,Phone,Title,Industry,City,Country\n"
    "Ada,Lovelace,Analytical Engines,ada.{n}@example.com,,Countess,Technology,London,United Kingdom\n"
    "Grace,Hopper,Navy Computing,grace.{n}@example.com,,Rear Admiral,Technology,Arlington,USA\n"
)


class AirflowStack:
    """Airflow's four services for ``lead_import`` on one bucket (``file://`` or ``s3://``).

    ``hotcrm_env`` holds the project's settings for the processes (``HOTCRM_BUCKET_URL``,
    ``AIRFLOW_CONN_HOTCRM_DB``, ``AIRFLOW_CONN_HOTCRM_BUCKET``...); ``s3_client`` (boto3) is
    needed for an ``s3://`` bucket.
    """

    services = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(self, work: Path, hotcrm_env: dict[str, str], s3_client: Any = None) -> None:
        self.work = work
        self.home = work / "airflow-home"
        self.dags = work / "dags"
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags.mkdir(exist_ok=True)
        shutil.copy(PROJECT_DIR / "dags" / "lead_import.py", self.dags / "lead_import.py")
        self.bucket_url = hotcrm_env["HOTCRM_BUCKET_URL"]
        self.s3 = s3_client
        self.port = free_port()
        self.metadata_db = self.home / "airflow.db"
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        env.update(hotcrm_env)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.metadata_db}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(work / "no-plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR)]),
            }
        )
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []

    # --- life cycle ------------------------------------------------------------------

    def start(self, timeout: float = 240) -> AirflowStack:
        """Migrate the metadata database, start the services, wait until the watcher runs."""
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, capture_output=True, text=True
        )
        if migrate.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
        for service in self.services:
            log = (self.work / f"{service}.log").open("w")
            self._logs.append(log)
            args = [sys.executable, "-m", "airflow", service]
            if service == "api-server":
                args += ["--port", str(self.port), "--host", "127.0.0.1", "--workers", "1"]
            self.processes[service] = subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait(self._watcher_running, timeout, "the lead-file watcher to run in the triggerer")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every service's process group (SIGTERM, then SIGKILL)."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 2500) -> str:
        """The end of each service's log, for a failure message."""
        return "\n".join(
            f"--- {s}.log ---\n{(self.work / f'{s}.log').read_text(errors='replace')[-chars:]}"
            for s in self.services
            if (self.work / f"{s}.log").exists()
        )

    def _wait(self, check, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            for service, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {service} exited ({process.returncode})\n{self.log_tail()}")
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}\n{self.log_tail()}")
            time.sleep(0.2)

    # --- the metadata database -------------------------------------------------------

    def query(self, sql: str, *args) -> list[tuple]:
        """Rows of a read-only query on the metadata database ([] while it is not ready)."""
        if not self.metadata_db.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.metadata_db}?mode=ro", uri=True, timeout=5) as db:
                return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # not migrated yet, or locked for a moment
            return []

    def _watcher_running(self) -> bool:
        rows = self.query(
            "SELECT t.triggerer_id FROM trigger t JOIN asset_watcher w ON w.trigger_id = t.id "
            "WHERE t.classpath = 'hotcrm.airflow.watchers.LeadFilesTrigger'"
        )
        return bool(rows) and rows[0][0] is not None and "Watching" in self._triggerer_log()

    def _triggerer_log(self) -> str:
        path = self.work / "triggerer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- a drop and what follows -----------------------------------------------------

    def drop(self, name: str, content: str) -> float:
        """Write ``incoming/<name>`` (as an uploader would: whole, then visible) and return
        the wall-clock time (epoch seconds) the file appeared."""
        data = content.encode()
        if self.bucket_url.startswith("file://"):
            incoming = Path(self.bucket_url.removeprefix("file://")) / INCOMING
            incoming.mkdir(parents=True, exist_ok=True)
            temporary = incoming / f"{name}.part"
            temporary.write_bytes(data)
            temporary.rename(incoming / name)
            return time.time()
        bucket = self.bucket_url.removeprefix("s3://").split("/")[0]
        self.s3.put_object(Bucket=bucket, Key=f"{INCOMING}/{name}", Body=data)
        return time.time()

    def processed(self, name: str) -> bool:
        """True once ``processed/<name>`` exists."""
        if self.bucket_url.startswith("file://"):
            return (Path(self.bucket_url.removeprefix("file://")) / PROCESSED / name).exists()
        bucket = self.bucket_url.removeprefix("s3://").split("/")[0]
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=f"{PROCESSED}/{name}")
        return any(o["Key"] == f"{PROCESSED}/{name}" for o in listed.get("Contents", []))

    def pickup(self, name: str, dropped_at: float, timeout: float = 180) -> dict[str, float]:
        """Wait until ``name`` is in ``processed/``; seconds from the drop to each step:
        the asset event (the watcher fired), the DAG run, the file's ``import_file`` task
        started, the file in ``processed/``."""
        done = self._wait(lambda: self.processed(name) and time.time(), timeout, f"{name} in processed/")
        started = self._wait(lambda: self._task_started(name), 30, f"{name}'s import_file start in the database")
        event = self.query(
            "SELECT e.timestamp FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = 'hotcrm_lead_files' AND e.extra LIKE ? ORDER BY e.timestamp LIMIT 1",
            f'%"{name}"%',
        )
        run = self.query(
            "SELECT r.start_date FROM dag_run r JOIN task_instance ti ON ti.run_id = r.run_id "
            "AND ti.dag_id = r.dag_id WHERE ti.task_id = 'import_file' AND ti.rendered_map_index = ?",
            name,
        )
        return {
            "event": _epoch(event[0][0]) - dropped_at if event else float("nan"),
            "run_started": _epoch(run[0][0]) - dropped_at if run and run[0][0] else float("nan"),
            "task_started": started - dropped_at,
            "processed": done - dropped_at,
        }

    def finished_runs(self, count: int, timeout: float = 120) -> list[tuple[str, str]]:
        """(run type, state) of ``lead_import``'s runs, once ``count`` of them have ended."""

        def ended():
            rows = self.query("SELECT run_type, state FROM dag_run WHERE dag_id = 'lead_import' ORDER BY id")
            return rows if sum(state in ("success", "failed") for _, state in rows) >= count else None

        return self._wait(ended, timeout, f"{count} lead_import run(s) to end")

    def _task_started(self, name: str) -> float | None:
        rows = self.query(
            "SELECT start_date FROM task_instance WHERE dag_id = 'lead_import' AND task_id = 'import_file' "
            "AND rendered_map_index = ? AND start_date IS NOT NULL",
            name,
        )
        return _epoch(rows[0][0]) if rows else None


def _epoch(value: str) -> float:
    """An Airflow timestamp as stored in SQLite (UTC, with or without an offset)."""
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
