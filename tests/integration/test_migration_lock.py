"""Two components that start at once may both run ``hotcrm db upgrade`` on an empty database
(issue 17: the compose stack and the Helm job). The second waits for the first, then finds
nothing to do: on PostgreSQL through an advisory lock, on SQLite through its write lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect

from hotcrm.crm import migrate
from hotcrm.crm.db import get_engine

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Imports first, then every process starts its upgrade at the same instant.
RACER = """
import sys, time
from hotcrm.crm import migrate
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
migrate.upgrade(sys.argv[1])
print("upgraded")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR)])}


@pytest.mark.slow
def test_concurrent_upgrades_of_an_empty_database_all_succeed(empty_db_url):
    start_at = f"{time.time() + 6:.3f}"
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, empty_db_url, start_at], env=_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]  # fmt: skip
    results = [(racer.wait(timeout=120), *racer.communicate()) for racer in racers]
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert out.strip() == "upgraded"
    assert migrate.is_up_to_date(empty_db_url)
    assert "leads" in inspect(get_engine(empty_db_url)).get_table_names()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_an_upgrade_waits_while_another_holds_the_migration_lock(empty_pg_url):
    with psycopg.connect(_libpq(empty_pg_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate.MIGRATION_LOCK_ID,))
        errors: list[BaseException] = []

        def run():
            try:
                migrate.upgrade(empty_pg_url)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        waiter = threading.Thread(target=run)
        waiter.start()
        waiter.join(timeout=2)
        assert waiter.is_alive(), "the upgrade did not wait for the lock"
        assert "alembic_version" not in inspect(get_engine(empty_pg_url)).get_table_names()
        holder.execute("SELECT pg_advisory_unlock(%s)", (migrate.MIGRATION_LOCK_ID,))
        waiter.join(timeout=60)
    assert not waiter.is_alive() and not errors, errors
    assert migrate.is_up_to_date(empty_pg_url)


def test_a_lock_held_too_long_fails_clearly(empty_pg_url):
    with psycopg.connect(_libpq(empty_pg_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate.MIGRATION_LOCK_ID,))
        holder_pid = holder.info.backend_pid
        started = time.monotonic()
        with pytest.raises(migrate.MigrationLockTimeout) as caught:
            migrate.upgrade(empty_pg_url, lock_timeout=1)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "another `hotcrm db upgrade`" in message and "1 s" in message
    assert f"pid {holder_pid}" in message
    assert "alembic_version" not in inspect(get_engine(empty_pg_url)).get_table_names()
