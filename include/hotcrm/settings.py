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
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_DIR / "include" / "config"
SAMPLE_DATA_DIR = PROJECT_DIR / "include" / "sample_data"


def data_dir() -> Path:
    """The local data folder holding the embedded defaults (SQLite database, file:// bucket)."""
    return Path(os.environ.get("HOTCRM_DATA_DIR", PROJECT_DIR / "data")).resolve()


def airflow_task_context() -> dict[str, str | None]:
    """The task instance this process runs, from the ``AIRFLOW_CTX_*`` variables Airflow's task
    runner exports (``DAG_ID``, ``DAG_RUN_ID``, ``TASK_ID``, ``TRY_NUMBER``; None outside a task)."""
    return {key: os.environ.get(f"AIRFLOW_CTX_{key}") for key in ("DAG_ID", "DAG_RUN_ID", "TASK_ID", "TRY_NUMBER")}


def child_environment(**values: str) -> dict[str, str]:
    """The environment for a Python child process of the core: this process's, with the folder
    holding the ``hotcrm`` package first on ``PYTHONPATH`` (the package may be on ``sys.path``
    only, not installed) and ``values`` set."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env.update(values)
    return env


# --- the CRM database ----------------------------------------------------------------------
#
# One source of truth: the ``hotcrm_db`` Airflow connection. Airflow reads it from any
# secrets backend (the hook, :class:`hotcrm.airflow.hooks.HotCrmDatabaseHook`); outside
# Airflow (the command line, ``make api``) :func:`database_url` reads its environment form,
# ``AIRFLOW_CONN_HOTCRM_DB``. ``HOTCRM_DATABASE_URL`` (a SQLAlchemy URL) is only the fallback
# when no connection is defined, then the embedded SQLite file.

DATABASE_CONN_ID = "hotcrm_db"
DATABASE_CONN_TYPE = "hotcrm_db"  # the provider's connection type (its form has a ``backend`` field)
DATABASE_CONN_ENV = "AIRFLOW_CONN_HOTCRM_DB"
DATABASE_URL_ENV = "HOTCRM_DATABASE_URL"


def database_url(env: Mapping[str, str] | None = None) -> str:
    """The CRM database URL (SQLAlchemy), the one place it is read: the ``hotcrm_db``
    connection's environment form ``AIRFLOW_CONN_HOTCRM_DB`` (JSON or URI, as Airflow takes it),
    else ``HOTCRM_DATABASE_URL``, else the embedded SQLite file in the data folder."""
    env = os.environ if env is None else env
    conn = env.get(DATABASE_CONN_ENV)
    if conn:
        return connection_url(parse_connection(conn, DATABASE_CONN_ENV), DATABASE_CONN_ID)
    url = env.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{data_dir() / 'hotcrm.db'}"


# The name the callers have always used; the same function.
default_database_url = database_url


def database_connection_json(url: str) -> str:
    """The ``hotcrm_db`` connection (Airflow's JSON form) for a SQLAlchemy database URL."""
    import json

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return json.dumps({"conn_type": "sqlite", "host": parsed.database})
    fields = {"conn_type": "postgres", "host": parsed.host, "port": parsed.port, "login": parsed.username,
              "password": parsed.password, "schema": parsed.database}  # fmt: skip
    extra = {k: v for k, v in parsed.query.items() if k in ("sslmode", "application_name")}
    return json.dumps({**fields, **({"extra": extra} if extra else {})})


def database_env(url: str) -> dict[str, str]:
    """The environment that points a process (a server, the command line) at ``url``."""
    return {DATABASE_CONN_ENV: database_connection_json(url)}


def parse_connection(value: str, where: str) -> dict[str, Any]:
    """An Airflow connection in its environment form, JSON (``{"conn_type": ...}``) or URI
    (``postgres://user:pass@host:5432/db?sslmode=require``), as ``conn_type``, ``host``,
    ``login``, ``password``, ``port``, ``schema`` and ``extra`` (a dict)."""
    import json
    from urllib.parse import parse_qsl, unquote, urlsplit

    text = value.strip()
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None
        extra = raw.get("extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except json.JSONDecodeError:
                raise ValueError(f"{where}: extra must be a JSON object") from None
        if not isinstance(extra, dict):
            raise ValueError(f"{where}: extra must be a JSON object")
        return {
            "conn_type": raw.get("conn_type"), "host": raw.get("host"), "login": raw.get("login"),
            "password": raw.get("password"), "port": raw.get("port"), "schema": raw.get("schema"), "extra": extra,
        }  # fmt: skip
    if "://" not in text:
        raise ValueError(f"{where}: not a connection; give a URI (postgres://user:password@host:5432/db) or JSON")
    parts = urlsplit(text)
    conn_type = parts.scheme.replace("-", "_")
    extra = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        extra = json.loads(extra["__extra__"])
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{where}: the port is not a number") from None
    return {
        "conn_type": "postgres" if conn_type == "postgresql" else conn_type,
        "host": unquote(parts.hostname or "") if parts.hostname else None,
        "login": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "port": port,
        "schema": unquote(parts.path[1:]) if parts.path else None,
        "extra": extra,
    }


def strip_extra_prefix(extra: Mapping[str, Any] | None, *conn_types: str) -> dict[str, Any]:
    """A connection's extra with the old form's ``extra__<conn_type>__`` prefixes removed (and empty
    values dropped): forms before Airflow 2.3 stored the fields that way."""
    result: dict[str, Any] = {}
    for key, value in (extra or {}).items():
        for conn_type in conn_types:
            key = key.removeprefix(f"extra__{conn_type}__")
        if value not in (None, ""):
            result[key] = value
    return result


def connection_url(conn: Mapping[str, Any], conn_id: str = DATABASE_CONN_ID) -> str:
    """A ``hotcrm_db`` (with its ``backend``), ``postgres`` or ``sqlite`` connection (fields as
    :func:`parse_connection` gives them) as a SQLAlchemy URL string, the one conversion the
    command line and the Airflow hook share; it carries the password: never log it."""
    from sqlalchemy.engine import URL

    conn_type = (conn.get("conn_type") or "").lower()
    extra = strip_extra_prefix(conn.get("extra"), DATABASE_CONN_TYPE)
    if conn_type == DATABASE_CONN_TYPE:
        backend = str(extra.get("backend") or "postgresql").lower()
        if backend not in ("postgresql", "sqlite"):
            raise ValueError(
                f"connection {conn_id!r}: backend {backend!r} is not supported; use 'postgresql' or 'sqlite'"
            )
        conn_type = backend
    if conn_type == "sqlite":
        path = conn.get("host") or conn.get("schema")
        if not path:
            raise ValueError(f"connection {conn_id!r}: a sqlite connection needs the file path as host")
        return f"sqlite:///{path}"
    if conn_type in ("postgres", "postgresql"):
        url = URL.create(
            "postgresql+psycopg",
            username=conn.get("login") or None,
            password=conn.get("password") or None,
            host=conn.get("host") or None,
            port=conn.get("port") or None,
            database=conn.get("schema") or None,
            query={k: str(v) for k, v in extra.items() if k in ("sslmode", "application_name")},
        )
        return url.render_as_string(hide_password=False)
    raise ValueError(
        f"connection {conn_id!r} has type {conn.get('conn_type')!r}; use 'postgres' or 'sqlite' "
        f"(or {DATABASE_CONN_TYPE!r} with its backend)"
    )


def bucket_url() -> str:
    """The bucket root URL: ``HOTCRM_BUCKET_URL`` or a ``file://`` folder in the data folder."""
    url = os.environ.get("HOTCRM_BUCKET_URL")
    if url:
        return url.rstrip("/")
    return (data_dir() / "bucket").as_uri()


# --- numbers from the environment ----------------------------------------------------------


def env_number(
    name: str, default: float, *, kind: type = int, minimum: float = 0, env: Mapping[str, str] | None = None
) -> Any:
    """The number setting ``name`` (``kind``: int or float), or ``default`` when unset; a value
    that is not a number or is below ``minimum`` is a ValueError naming the setting."""
    env = os.environ if env is None else env
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name}: {raw!r} is not {what}") from None
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {value}")
    return value


# --- JSON config files ------------------------------------------------------------------


def read_json_file(
    path: str | Path, what: str, *, error: type[Exception] = ValueError, hint: str = "", expect: type | None = dict
) -> Any:
    """The content of a JSON config file (a mapping, a quality suite, a settings file), the one
    way config files are read. A missing file, a file that cannot be read, bad JSON (with its
    line and column) or a top-level value that is not ``expect`` is ``error``, naming the file
    and ``what`` it should be (``hint``: how to fix a missing file)."""
    import json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found" + (f"; {hint}" if hint else "")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} ({exc})") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})") from None
    if expect is not None and not isinstance(content, expect):
        kind = "a JSON object" if expect is dict else f"a JSON {expect.__name__}"
        raise error(f"{path}: the {what} must be {kind}, not {type(content).__name__}")
    return content


def config_path(path: str | Path | None, env_var: str, default_path: Path) -> Path:
    """Which config file to read: ``path`` if given, else the one ``env_var`` names, else ``default_path``."""
    return Path(path or os.environ.get(env_var) or default_path)


def read_settings_file(
    path: str | Path | None, env_var: str, default_path: Path, known: set[str], what: str
) -> tuple[Path, dict]:
    """A JSON settings file: ``path``, else the file named by ``env_var``, else ``default_path``.

    Returns the path and the known keys' values; keys starting with ``_`` are comments. A
    missing file, bad JSON (with its line) and unknown keys (with the known ones) are
    ValueErrors that name the file.
    """
    path = config_path(path, env_var, default_path)
    raw = read_json_file(path, what, hint=f"set {env_var} to an existing file")
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
