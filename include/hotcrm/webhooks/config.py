"""A webhook source's settings, and where they come from (a pluggable :data:`SourceRegistry`).

A source ``payment`` is configured by the Airflow connection ``hotcrm_webhook_payment``. The
default registry reads it from the environment variable ``AIRFLOW_CONN_HOTCRM_WEBHOOK_PAYMENT``
in the format of Airflow's environment secrets backend, so the same variable *is* the
Airflow connection on the DAG side::

    {"conn_type": "generic",
     "password": "<secret> [<older secret> ...]",
     "extra": {"scheme": "standard-webhooks", "tolerance_seconds": 300,
               "event_id_path": "id", "event_type_path": "type", "event_time_path": "created",
               "max_body_bytes": 262144, "read_timeout_seconds": 10, "header": "X-Payment-Signature",
               "payment_path": "data.object.metadata.transaction_id",
               "secrets": ["<more secrets, for rotation>"]}}

Only the secret is required. Without ``event_id_path`` an event is identified as the original
partner spec's senders expect (see :func:`derive_event_id`); without ``event_type_path`` the
type is ``type``, else ``event``; without ``event_time_path`` the time is ``created``, else
``timestamp``, else the receipt time.

The URI form (``generic://:<secret>@/?scheme=stripe``) works too. The HTTP app takes any
callable ``source -> SourceConfig | None``; the Airflow plugin passes one that asks Airflow's
connection lookup (:func:`hotcrm.airflow.webhooks.airflow_source_registry`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hotcrm.settings import parse_connection
from hotcrm.webhooks.signatures import DEFAULT_HMAC_HEADER, DEFAULT_TOLERANCE_SECONDS, SCHEMES, STANDARD_WEBHOOKS

SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
CONN_ID_PREFIX = "hotcrm_webhook_"
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_READ_TIMEOUT_SECONDS = 10
# Where a Stripe event names its Payment (the Payment's TransactionId), before the object's id.
DEFAULT_PAYMENT_PATH = "data.object.metadata.transaction_id"
# A sender's own idempotency key, in the order they are looked for when the body has no id.
IDEMPOTENCY_HEADERS = ("idempotency-key", "webhook-id", "x-request-id")
DEFAULT_EVENT_TYPE_PATHS = ("type", "event")
DEFAULT_EVENT_TIME_PATHS = ("created", "timestamp")


class SourceConfigError(ValueError):
    """A webhook source's connection that cannot be used (names the connection and the fix)."""


@dataclass(frozen=True)
class SourceConfig:
    """How deliveries from one source are verified and read."""

    source: str
    scheme: str
    secrets: tuple[str, ...] = field(repr=False)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    header: str = DEFAULT_HMAC_HEADER
    # "header:<name>" reads a header; anything else is a dotted path into the JSON body.
    # None: the defaults, with the fallbacks the original partner spec needs (see the module doc).
    event_id_path: str | None = None
    event_type_path: str | None = None
    event_time_path: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    payment_path: str = DEFAULT_PAYMENT_PATH

    def __repr__(self) -> str:  # never print secrets
        return f"SourceConfig(source={self.source!r}, scheme={self.scheme!r}, secrets=<{len(self.secrets)} hidden>)"


SourceRegistry = Callable[[str], "SourceConfig | None"]
"""A source name -> its config, or ``None`` when the source is unknown."""


def conn_id(source: str) -> str:
    """The Airflow connection id of a source (``payment`` -> ``hotcrm_webhook_payment``)."""
    return CONN_ID_PREFIX + source


def env_var(source: str) -> str:
    """The environment variable holding a source's connection."""
    return "AIRFLOW_CONN_" + conn_id(source).upper()


def _split_secrets(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    raise TypeError


def config_from_connection(
    source: str, password: str | None, extra: Mapping[str, Any] | None, *, where: str | None = None
) -> SourceConfig:
    """Build a source's config from a connection's password (secrets, whitespace-separated)
    and extra. Raises :class:`SourceConfigError` naming the connection and the field."""
    where = where or f"connection {conn_id(source)!r}"
    extra = dict(extra or {})
    scheme = str(extra.get("scheme") or "hmac-sha256").lower()
    if scheme not in SCHEMES:
        raise SourceConfigError(f"{where}: extra.scheme {scheme!r} is not supported; use one of {', '.join(SCHEMES)}")
    try:
        secrets = _split_secrets(password) + _split_secrets(extra.get("secrets"))
    except TypeError:
        raise SourceConfigError(f"{where}: extra.secrets must be a list of strings") from None
    if not secrets:
        raise SourceConfigError(f"{where}: no secret; put it in the password (or a list in extra.secrets)")
    if scheme == STANDARD_WEBHOOKS:
        from hotcrm.webhooks.signatures import standard_webhooks_key

        for index, secret in enumerate(secrets, 1):
            try:
                standard_webhooks_key(secret)
            except ValueError as exc:
                raise SourceConfigError(f"{where}: secret #{index}: {exc}") from None
    ints = {}
    for name, default in (
        ("tolerance_seconds", DEFAULT_TOLERANCE_SECONDS),
        ("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        ("read_timeout_seconds", DEFAULT_READ_TIMEOUT_SECONDS),
    ):
        try:
            ints[name] = int(extra.get(name, default))
        except (TypeError, ValueError):
            raise SourceConfigError(f"{where}: extra.{name} must be an integer, got {extra.get(name)!r}") from None
        if ints[name] <= 0:
            raise SourceConfigError(f"{where}: extra.{name} must be positive")
    default_id_path = "header:webhook-id" if scheme == STANDARD_WEBHOOKS else None
    return SourceConfig(
        source=source,
        scheme=scheme,
        secrets=tuple(dict.fromkeys(secrets)),
        tolerance_seconds=ints["tolerance_seconds"],
        header=str(extra.get("header") or DEFAULT_HMAC_HEADER),
        event_id_path=str(extra["event_id_path"]) if extra.get("event_id_path") else default_id_path,
        event_type_path=str(extra["event_type_path"]) if extra.get("event_type_path") else None,
        event_time_path=str(extra["event_time_path"]) if extra.get("event_time_path") else None,
        max_body_bytes=ints["max_body_bytes"],
        read_timeout_seconds=ints["read_timeout_seconds"],
        payment_path=str(extra.get("payment_path") or DEFAULT_PAYMENT_PATH),
    )


def parse_connection_value(source: str, value: str) -> SourceConfig:
    """A source's config from an ``AIRFLOW_CONN_...`` value (JSON or URI form)."""
    where = f"environment variable {env_var(source)}"
    try:
        conn = parse_connection(value, where)
    except ValueError as exc:
        raise SourceConfigError(str(exc)) from None
    extra = conn["extra"]
    if not value.strip().startswith("{") and "secrets" in extra:
        extra["secrets"] = extra["secrets"].split()  # URI form: space-separated in one parameter
    return config_from_connection(source, conn["password"], extra, where=where)


_env_cache: dict[tuple[str, str], SourceConfig] = {}


def env_source_registry(source: str) -> SourceConfig | None:
    """The default registry: the source's ``AIRFLOW_CONN_HOTCRM_WEBHOOK_<SOURCE>`` variable.

    Read on every call (a cheap lookup, parsed once per distinct value), so rotating a secret
    takes effect on the next delivery."""
    if not SOURCE_NAME.match(source):
        return None
    value = os.environ.get(env_var(source))
    if not value:
        return None
    key = (source, value)
    config = _env_cache.get(key)
    if config is None:
        config = parse_connection_value(source, value)
        if len(_env_cache) > 256:
            _env_cache.clear()
        _env_cache[key] = config
    return config


def connection_json(config_or_scheme: str, secrets: list[str] | str, **extra: Any) -> str:
    """The ``AIRFLOW_CONN_HOTCRM_WEBHOOK_<SOURCE>`` value for a scheme and secrets (demo, tests)."""
    secrets = [secrets] if isinstance(secrets, str) else secrets
    return json.dumps(
        {"conn_type": "generic", "password": " ".join(secrets), "extra": {"scheme": config_or_scheme, **extra}}
    )


def extract(payload: Any, path: str, headers: Mapping[str, str]) -> Any:
    """The value at ``path``: ``header:<name>`` (case-insensitive) or a dotted path in the JSON."""
    if path.startswith("header:"):
        name = path[len("header:") :].lower()
        return next((v for k, v in headers.items() if k.lower() == name), None)
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _first(payload: Any, paths: tuple[str, ...], headers: Mapping[str, str]) -> Any:
    for path in paths:
        value = extract(payload, path, headers)
        if value is not None:
            return value
    return None


def derive_event_id(payload: Any, headers: Mapping[str, str], body: bytes) -> str:
    """An event's id when the source names no ``event_id_path``: the body's ``id``, else the
    sender's idempotency header (``Idempotency-Key``, ``webhook-id``, ``X-Request-Id``), else
    ``sha256:<hex>`` of the exact body, so an exact retry is a duplicate and any other event
    (a refund after its success) is new."""
    value = extract(payload, "id", headers)
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    value = _first(payload, tuple("header:" + name for name in IDEMPOTENCY_HEADERS), headers)
    if isinstance(value, str) and value.strip():
        return value
    return "sha256:" + hashlib.sha256(body).hexdigest()


def event_identity(config: SourceConfig, payload: Any, headers: Mapping[str, str], body: bytes) -> tuple[Any, Any, Any]:
    """(event id, event type, event time value) of a delivery, as the source's paths say."""
    if config.event_id_path is None:
        event_id = derive_event_id(payload, headers, body)
    else:
        event_id = extract(payload, config.event_id_path, headers)
    type_paths = DEFAULT_EVENT_TYPE_PATHS if config.event_type_path is None else (config.event_type_path,)
    time_paths = DEFAULT_EVENT_TIME_PATHS if config.event_time_path is None else (config.event_time_path,)
    return event_id, _first(payload, type_paths, headers), _first(payload, time_paths, headers)
