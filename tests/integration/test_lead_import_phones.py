"""National phone numbers are read in the row's Country (issue 13c), through the whole import
on SQLite and PostgreSQL: a French ``06 12 34 56 78`` is +33612345678, never +10612345678; a
row whose Country is not recognised falls back to the mapping's ``phone_region``."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Lead
from hotcrm.leads.importer import import_lead_file

ROWS = [
    ("FR", "06 12 34 56 78", "+33612345678"),
    ("France", "01 23 45 67 89", "+33123456789"),
    ("DE", "030 1234567", "+49301234567"),
    ("Deutschland", "(089) 12345678", "+498912345678"),
    ("GB", "020 7946 0958", "+442079460958"),
    ("United Kingdom", "07700 900123", "+447700900123"),
    ("US", "(415) 555-0132", "+14155550132"),
    ("United States", "212.555.0199", "+12125550199"),
    ("FR", "+44 20 7946 0018", "+442079460018"),  # international: the Country does not matter
    ("Narnia", "(415) 555-0133", "+14155550133"),  # unrecognised: the mapping's phone_region (US)
    ("", "415-555-0134", "+14155550134"),
]


def test_national_phones_are_stored_in_e164_of_the_rows_country(db_url, tmp_path):
    folders = {name: tmp_path / name for name in ("incoming", "processed", "failed")}
    for folder in folders.values():
        folder.mkdir()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["First Name", "Last Name", "Company", "Email", "Phone", "Country"])
    for i, (country, phone, _) in enumerate(ROWS):
        writer.writerow([f"F{i}", f"L{i}", f"Co {i}", f"p{i}@example.com", phone, country])
    path = folders["incoming"] / "world.csv"
    path.write_text(out.getvalue(), encoding="utf-8")

    outcome = import_lead_file(path, db_url, processed_dir=folders["processed"], failed_dir=folders["failed"])

    assert outcome.status == "imported", outcome.error
    assert (outcome.inserted, outcome.rejected) == (len(ROWS), 0)
    with session_scope(db_url) as session:
        phones = {lead.email: lead.phone for lead in session.scalars(select(Lead))}
    assert [phones[f"p{i}@example.com"] for i in range(len(ROWS))] == [e164 for _, _, e164 in ROWS]
