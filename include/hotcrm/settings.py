"""Plain settings shared by the core packages, read from the environment.

Only non-secret locations live here. Secrets come from Airflow connections (through the
hooks in :mod:`hotcrm.airflow`) or are passed in explicitly by the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_DIR / "include" / "config"
SAMPLE_DATA_DIR = PROJECT_DIR / "include" / "sample_data"


def data_dir() -> Path:
    """The local data folder holding the embedded defaults (SQLite database, file:// bucket)."""
    return Path(os.environ.get("HOTCRM_DATA_DIR", PROJECT_DIR / "data")).resolve()


def default_database_url() -> str:
    """The CRM database URL: ``HOTCRM_DATABASE_URL`` or the embedded SQLite file."""
    url = os.environ.get("HOTCRM_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{data_dir() / 'hotcrm.db'}"


def bucket_url() -> str:
    """The bucket root URL: ``HOTCRM_BUCKET_URL`` or a ``file://`` folder in the data folder."""
    url = os.environ.get("HOTCRM_BUCKET_URL")
    if url:
        return url.rstrip("/")
    return (data_dir() / "bucket").as_uri()
