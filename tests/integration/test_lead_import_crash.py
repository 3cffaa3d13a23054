"""Kill the import (a separate process, SIGKILL) partway; the re-run leaves exactly one copy of every lead.

Three places: while rows stream into the database, after the leads are loaded (merged, or
loaded directly) but before the commit, and after the commit but before the file is moved
out of incoming/. Each for a file that updates a Lead (loaded staged) and for one of new
Leads only (loaded directly).
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
    from hotcrm.leads import archive, importer, loader, staging

    from hotcrm.leads import reader

    where, url, source, processed, failed = sys.argv[1:6]
    loader.STAGE_BATCH_ROWS = 500
    staging.PROGRESS_EVERY = 500
    staging.TEXT_BATCH_CHARS = 10_000  # many batches, so the kill lands between two
    reader.BLOCK_CHARS = 4_096

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "after_load":
        real_merge, real_check = loader.merge, loader.Stager.check_direct
        def merge(*args, **kwargs):
            real_merge(*args, **kwargs)
            die()
        def check_direct(self):
            real_check(self)
            die()
        loader.merge = merge
        loader.Stager.check_direct = check_direct
    if where == "before_move":
        archive.move = lambda *args: die()

    def progress(message):
        print(message, flush=True)
        if where == "streaming" and " rows read " in message:
            if int(message.split(": ")[1].split(" rows read")[0].replace(",", "")) >= 3_000:
                die()

    importer.import_lead_file(
        Path(source), url, processed_dir=Path(processed), failed_dir=Path(failed), progress=progress
    )
    print("finished without being killed", flush=True)
    """
)


@pytest.mark.parametrize("updates", [True, False], ids=["staged", "direct"])
@pytest.mark.parametrize("where", ["streaming", "after_load", "before_move"])
def test_sigkill_partway_then_rerun_gives_one_copy_of_every_lead(db_url, tmp_path, where, updates):
    folders = {n: tmp_path / n for n in ("incoming", "processed", "failed")}
    for folder in folders.values():
        folder.mkdir()
    source = folders["incoming"] / "big.csv"
    lines = ["First Name,Last Name,Company,Email"] + [f"F{i},L{i},C{i},lead{i}@example.com" for i in range(ROWS)]
    source.write_text("\n".join(lines) + "\n")
    if updates:
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
    # The Lead to update abandons the direct load at once: the file is staged and merged.
    assert ("reading it again to load it through the staging table" in child.stdout) == updates
    assert source.exists()

    with session_scope(db_url) as session:
        count = session.scalar(select(func.count()).select_from(Lead))
        # Killed before the commit: nothing of the file is there. After it: all of it.
        assert count == (ROWS if where == "before_move" else int(updates))

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
        expected = (ROWS - 1, 1) if updates else (ROWS, 0)
        assert [(r.status, r.rows_read, r.inserted, r.updated) for r in ledger] == [("imported", ROWS, *expected)]
