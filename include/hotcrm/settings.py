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


def read_settings_file(
    path: str | Path | None, env_var: str, default_path: Path, known: set[str], what: str
) -> tuple[Path, dict]:
    """A JSON settings file: ``path``, else the file named by ``env_var``, else ``default_path``.

    Returns the path and the known keys' values; keys starting with ``_`` are comments. A
    missing file, bad JSON (with its line) and unknown keys (with the known ones) are
    ValueErrors that name the file.
    """
    import json

    path = Path(path or os.environ.get(env_var) or default_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} file not found; set {env_var} to an existing file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: {what} must be a JSON object")
    unknown = sorted(k for k in raw if k not in known and not k.startswith("_"))
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return path, {k: v for k, v in raw.items() if k in known}
