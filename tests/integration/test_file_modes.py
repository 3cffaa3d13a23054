"""File modes and spool folders (issue 19, point 5): the CRM SQLite file is created 0600, lead
import reports and rejects and account exports 0640, and a killed import's spool folder is
removed by the next run (SQLite and PostgreSQL where a database is involved)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text
from upath import UPath

from hotcrm import files
from hotcrm.crm import migrate
from hotcrm.crm.db import dispose_engine, get_engine
from hotcrm.exports.accounts import build_spec, run_export
from hotcrm.leads.importer import import_lead_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _usual_umask():
    previous = os.umask(0o022)  # the common default, under which files were 0644
    yield
    os.umask(previous)


def test_the_sqlite_database_and_its_wal_are_created_0600(tmp_path):
    path = tmp_path / "data" / "hotcrm.db"
    url = f"sqlite:///{path}"
    try:
        migrate.upgrade(url)
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
            assert mode(path) == 0o600
            assert mode(Path(f"{path}-wal")) == 0o600
    finally:
        dispose_engine(url)


def _bucket(tmp_path: Path) -> dict[str, Path]:
    folders = {name: tmp_path / "bucket" / name for name in ("incoming", "processed", "failed")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    return folders


def test_lead_import_reports_and_rejects_are_0640(db_url, tmp_path):
    bucket = _bucket(tmp_path)
    source = bucket["incoming"] / "leads.csv"
    source.write_text(
        "First Name,Last Name,Company,Email\nAda,Lovelace,Engines,ada@example.com\nBad,Row,X,not-an-email\n"
    )
    outcome = import_lead_file(source, db_url, processed_dir=bucket["processed"], failed_dir=bucket["failed"],
                               work_dir=tmp_path)  # fmt: skip
    written = [Path(outcome.report_path), Path(outcome.report_path[: -len(".html")] + ".json")]
    written.append(Path(outcome.rejects_path))
    assert outcome.rejected == 1
    assert {p.name: mode(p) for p in written} == {p.name: 0o640 for p in written}


def test_exports_and_manifests_are_0640(db_url, tmp_path):
    root = UPath((tmp_path / "bucket").as_uri())
    root.mkdir(parents=True)
    run_export(db_url, root, build_spec(["Name"], None, "json"), "all.json")
    folder = tmp_path / "bucket" / "exports" / "accounts"
    assert {p.name: mode(p) for p in folder.iterdir() if p.is_file()} == {
        "all.json": 0o640,
        "all.json.manifest.json": 0o640,
    }


def test_a_killed_runs_spool_folder_is_removed_by_the_next_run(db_url, tmp_path):
    prefix = "hotcrm-lead-import-"
    # A run killed mid-import: it made its spool folder and a copy of the file, and never cleaned up.
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os
            from hotcrm import files
            spool = files.work_dir({prefix!r}, {str(tmp_path)!r})
            folder = spool.name
            open(os.path.join(folder, "source"), "w").write("First Name,Email\\n")
            print(folder, flush=True)
            os._exit(137)
            """)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    leftover = Path(killed.stdout.strip())
    assert killed.returncode == 137 and (leftover / "source").exists()
    # A folder of a run still going on this host is left alone.
    ours = files.work_dir(prefix, tmp_path)  # (this process: a concurrent import)
    running = Path(ours.name)
    alive = tmp_path / f"{prefix}{os.getppid()}-busy"
    alive.mkdir()

    bucket = _bucket(tmp_path)
    source = bucket["incoming"] / "leads.csv"
    source.write_text("First Name,Last Name,Company,Email\nAda,Lovelace,Engines,ada@example.com\n")
    outcome = import_lead_file(source, db_url, processed_dir=bucket["processed"], failed_dir=bucket["failed"],
                               work_dir=tmp_path)  # fmt: skip
    assert outcome.inserted == 1
    assert not leftover.exists()
    assert alive.exists() and running.exists()
    # Nothing of this run is left either.
    assert sorted(p.name for p in tmp_path.glob(f"{prefix}*")) == sorted([alive.name, running.name])
    ours.cleanup()
