"""A local import bucket for lead-import tests: its folders (the ``bucket`` fixture of
``tests/integration/conftest.py``), dropping a file, importing it."""

from __future__ import annotations

from pathlib import Path

from hotcrm.leads.importer import import_lead_file


def make_bucket(tmp_path: Path) -> dict[str, Path]:
    """``incoming/``, ``processed/`` and ``failed/`` under ``tmp_path``."""
    folders = {name: tmp_path / "bucket" / name for name in ("incoming", "processed", "failed")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    return folders


def drop(bucket, name: str, content: str | bytes) -> Path:
    path = bucket["incoming"] / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def run(bucket, db_url, path, **kwargs):
    return import_lead_file(path, db_url, processed_dir=bucket["processed"], failed_dir=bucket["failed"], **kwargs)
