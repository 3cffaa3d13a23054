"""Kill the import (a separate process, SIGKILL) partway; the re-run leaves exactly one copy of every lead.

Three places: while rows stream into the staging table, after the leads are merged but
before the commit, and after the commit but before the file is moved out of incoming/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Lead, OutboxEvent
from hotcrm.leads.importer import import_lead_file
from hotcrm.leads.models import ImportFile

ROWS = 6_000

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from hotcrm.leads import importer, loader

    where, url, source, processed, failed = sys.argv[1:6]
    loader.STAGE_BATCH_ROWS = 500
    importer.PROGRESS_EVERY = 500

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "after_merge":
        real_merge = loader.merge
        def merge(*args, **kwargs):
            real_merge(*args, **kwargs)
            die()
        loader.merge = merge
    if where == "before_move":
        importer._move = lambda *args: die()

    def progress(message):
        print(message, flush=True)
        if where == "streaming" and "3,000 rows read" in message:
            die()

    importer.import_lead_file(
        Path(source), url, processed_dir=Path(processed), failed_dir=Path(failed), progress=progress
    )
    print("finished without being killed", flush=True)
    """
)


@pytest.mark.parametrize("where", ["streaming", "after_merge", "before_move"])
def test_sigkill_partway_then_rerun_gives_one_copy_of_every_lead(db_url, tmp_path, where):
    folders = {n: tmp_path / n for n in ("incoming", "processed", "failed")}
    for folder in folders.values():
        folder.mkdir()
    source = folders["incoming"] / "big.csv"
    lines = ["First Name,Last Name,Company,Email"] + [f"F{i},L{i},C{i},lead{i}@example.com" for i in range(ROWS)]
    source.write_text("\n".join(lines) + "\n")
    with session_scope(db_url) as session:  # one lead the file will update
        session.add(Lead(first_name="Old", last_name="L0", company="C0", email="lead0@example.com"))

    child = subprocess.run(
        [sys.executable, "-c", CHILD, where, db_url, str(source), str(folders["processed"]), str(folders["failed"])],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert "finished without being killed" not in child.stdout
    assert source.exists()

    with session_scope(db_url) as session:
        count = session.scalar(select(func.count()).select_from(Lead))
        # Killed before the commit: nothing of the file is there. After it: all of it.
        assert count == (ROWS if where == "before_move" else 1)

    outcome = import_lead_file(source, db_url, processed_dir=folders["processed"], failed_dir=folders["failed"])

    assert outcome.status == "imported" and not source.exists()
    assert (folders["processed"] / "big.csv").exists() and (folders["processed"] / "big.csv.report.html").exists()
    assert (outcome.rows_read, outcome.inserted + outcome.updated) == (ROWS, ROWS)
    with session_scope(db_url) as session:
        emails = session.scalars(select(Lead.email)).all()
        assert len(emails) == ROWS and set(emails) == {f"lead{i}@example.com" for i in range(ROWS)}
        assert session.scalar(select(Lead.first_name).where(Lead.email == "lead0@example.com")) == "F0"
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1
        ledger = session.scalars(select(ImportFile)).all()
        assert [(r.status, r.rows_read, r.inserted, r.updated) for r in ledger] == [("imported", ROWS, ROWS - 1, 1)]
