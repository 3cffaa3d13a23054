"""``hotcrm leads check|import FILE`` against a real database (SQLite and PostgreSQL), and the
``hotcrm`` console script's declaration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from sqlalchemy import func, select

from hotcrm.cli import main
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Lead
from hotcrm.leads.models import ImportFile, ImportIssue
from hotcrm.settings import database_env

ROOT = Path(__file__).resolve().parents[2]
UNCLOSED_QUOTE = (
    "FirstName,LastName,Company,Email,Notes\n"
    'Alice,Q,Co,aq@example.com,"Started import yesterday\n'
    "Bob,Q,Co,bq@example.com,Valid row\n"
)
REPEATS = "FirstName,LastName,Company,Email\nAnn,One,Co,ann@example.com\nAnn,Two,Co,ann@example.com\n"


def counts(db_url) -> tuple[int, int, int]:
    with session_scope(db_url) as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model)) for model in (Lead, ImportFile, ImportIssue)
        )


def test_check_judges_every_row_writes_the_reports_and_loads_nothing(db_url, tmp_path, capsys):
    with session_scope(db_url) as session:
        session.add(Lead(first_name="Old", last_name="Lead", company="Co", email="bq@example.com"))
    path = tmp_path / "notes.csv"
    path.write_text(UNCLOSED_QUOTE)
    assert main(["--database-url", db_url, "leads", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "notes.csv: would be imported (nothing loaded)" in out
    assert "encoding: utf-8, delimiter: comma" in out and "unknown columns (ignored): Notes" in out
    assert "rows read 2, inserted 0, updated 1, duplicates 0, rejected 1, not loaded 0" in out
    assert "line 2 (rejected): line 2 has an unbalanced quote" in out
    report = json.loads((tmp_path / "notes.csv.report.json").read_text())
    assert (report["status"], report["columns"]["Email"], report["updated"]) == ("checked", 3, 1)
    assert (tmp_path / "notes.csv.report.html").exists() and (tmp_path / "notes.csv.rejects.csv").exists()
    assert counts(db_url) == (1, 0, 0) and path.exists()  # nothing loaded, nothing recorded, nothing moved
    with session_scope(db_url) as session:
        assert session.scalars(select(Lead)).one().first_name == "Old"


def test_check_lists_duplicates_and_says_when_a_file_would_fail(db_url, tmp_path, capsys):
    path = tmp_path / "repeats.csv"
    path.write_text(REPEATS)
    reports = tmp_path / "reports"
    assert main(["--database-url", db_url, "leads", "check", str(path), "--report-dir", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "inserted 1" in out and "duplicates 1" in out and "line 2 (duplicate)" in out
    assert (reports / "repeats.csv.report.html").exists()
    shifted = tmp_path / "shifted.csv"
    rows = "".join(f"x{i}@example.com,L,Co,p{i}@example.com\n" for i in range(60))
    shifted.write_text("FirstName,LastName,Company,Email\n" + rows)
    assert main(["--database-url", db_url, "leads", "check", str(shifted)]) == 1
    out = capsys.readouterr().out
    assert "shifted.csv: failed" in out and "not loaded 60" in out and "quality suite: FAILED" in out
    missing = tmp_path / "missing.csv"
    missing.write_text("Name,Phone\nx,1\n")
    assert main(["--database-url", db_url, "leads", "check", str(missing)]) == 1
    assert "missing required column(s)" in capsys.readouterr().out
    assert counts(db_url) == (0, 0, 0)


def test_check_refuses_a_link(db_url, tmp_path, capsys):
    (tmp_path / "real.csv").write_text(REPEATS)
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    assert main(["--database-url", db_url, "leads", "check", str(tmp_path / "link.csv")]) == 2
    assert "symbolic link" in capsys.readouterr().err


def test_import_puts_the_file_in_the_bucket_and_imports_it_as_the_dag_does(db_url, tmp_path, capsys):
    path = tmp_path / "notes.csv"
    path.write_text(UNCLOSED_QUOTE)
    bucket = tmp_path / "bucket"
    args = ["--database-url", db_url, "leads", "import", str(path), "--bucket-url", bucket.as_uri()]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "notes.csv: imported" in out and "line 2 (rejected)" in out
    processed = bucket / "imports" / "leads" / "processed"
    assert (processed / "notes.csv").exists() and (processed / "notes.csv.report.html").exists()
    assert path.exists()  # the original stays; its copy went through the bucket
    assert counts(db_url) == (1, 1, 1)
    assert main(args) == 1  # the same content again: a duplicate, not imported
    assert "already imported" in capsys.readouterr().out
    failing = tmp_path / "bad.csv"
    failing.write_text("Name,Phone\nx,1\n")
    assert main(["--database-url", db_url, "leads", "import", str(failing), "--bucket-url", bucket.as_uri()]) == 1
    assert (bucket / "imports" / "leads" / "failed" / "bad.csv.report.html").exists()


def test_python_m_hotcrm_runs_the_command(sqlite_url, tmp_path):
    path = tmp_path / "repeats.csv"
    path.write_text(REPEATS)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), **database_env(sqlite_url)}
    done = subprocess.run(
        [sys.executable, "-m", "hotcrm", "leads", "check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "repeats.csv: would be imported" in done.stdout and "line 2 (duplicate)" in done.stdout


def test_the_console_script_is_declared_and_installed_by_make_setup():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["project"]["scripts"]["hotcrm"] == "hotcrm.cli:main"
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["include"]
    module, _, name = project["project"]["scripts"]["hotcrm"].partition(":")
    assert callable(getattr(__import__(module, fromlist=[name]), name))
    makefile = (ROOT / "Makefile").read_text()
    assert "$(VENV)/bin/pip install --quiet --no-deps -e ." in makefile
