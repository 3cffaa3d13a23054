"""Load the demo's sample CRM records (``include/sample_data/crm_seed.json``), idempotently."""

from __future__ import annotations

from pathlib import Path

from hotcrm.crm import services
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import CRM_OBJECTS
from hotcrm.settings import SAMPLE_DATA_DIR, read_json_file

SEED_FILE = SAMPLE_DATA_DIR / "crm_seed.json"
# Parents before children, so foreign keys hold.
LOAD_ORDER = ("Account", "Contact", "Lead", "Quote", "Payment")


def load_seed(database_url: str, seed_file: Path = SEED_FILE) -> dict[str, int]:
    """Upsert the sample records on their Ids; returns how many of each object were sent."""
    data = read_json_file(seed_file, "seed data")
    counts = {}
    with session_scope(database_url) as session:
        for object_name in LOAD_ORDER:
            rows = data.get(object_name, [])
            counts[object_name] = services.upsert(session, CRM_OBJECTS[object_name], rows, key="Id")
    return counts
