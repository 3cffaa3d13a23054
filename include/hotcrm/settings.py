"""Plain settings shared by the core packages, read from the environment.

Locations live here, and :func:`secret`, the one way the core reads a secret setting
(``HOTCRM_TOKEN_KEY``, ``HOTCRM_API_JWT_SECRET``, ``HOTCRM_SALESFORCE_CLIENT_SECRET``): from the
secret source :mod:`hotcrm.airflow` installs where Airflow runs (Airflow Variables, so any
configured secrets backend), else from the environment variable of that name. Other secrets
come from Airflow connections (through the hooks) or are passed in by the caller.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
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


# --- secrets -------------------------------------------------------------------------------

SecretSource = Callable[[str], "str | None"]
_secret_source: SecretSource | None = None
_source_cache: dict[str, tuple[float, str | None]] = {}
_source_lock = threading.Lock()
# How long a value read from the secret source is reused (a secrets backend may be remote).
SECRET_CACHE_SECONDS = 60.0


def set_secret_source(source: SecretSource | None) -> None:
    """Install (or remove, with None) where :func:`secret` looks first: a function from a setting
    name to its value or None. :mod:`hotcrm.airflow` installs Airflow's secrets backend."""
    global _secret_source
    with _source_lock:
        _secret_source = source
        _source_cache.clear()


def secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A secret setting: from the installed secret source (where Airflow runs), else the
    environment variable ``name``; None when neither has it. With an explicit ``env`` mapping
    only that mapping is read (callers that pass their own settings)."""
    if env is not None:
        return env.get(name) or None
    source = _secret_source
    if source is not None:
        now = time.monotonic()
        cached = _source_cache.get(name)
        if cached is not None and now - cached[0] < SECRET_CACHE_SECONDS:
            value = cached[1]
        else:
            value = source(name)
            with _source_lock:
                _source_cache[name] = (now, value)
        if value:
            return value
    return os.environ.get(name) or None
