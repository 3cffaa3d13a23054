"""The HotCRM connection types' forms, declared as data in ``provider.yaml``'s format
(``conn-fields``: label, JSON schema, description; ``ui-field-behaviour``).

No Airflow import here: Airflow calls :func:`hotcrm.airflow.provider.get_provider_info` while
it configures itself (on the first ``airflow.sdk`` import of a process), so that function reads
this module and nothing that imports Airflow. The hooks take their forms from here.
"""

from __future__ import annotations

from typing import Any

AUTH_TYPES = ("password", "client_credentials", "jwt_bearer", "session", "refresh_token")


def _text(label: str, description: str | None = None, *, secret: bool = False, **schema: Any) -> dict[str, Any]:
    """One ``conn-fields`` entry: an optional text (or password) field."""
    field: dict[str, Any] = {"label": label, "schema": {"type": ["string", "null"], **schema}}
    if secret:
        field["schema"]["format"] = "password"
    if description:
        field["description"] = description
    return field


def _number(label: str, description: str | None = None, *, integer: bool = True, **schema: Any) -> dict[str, Any]:
    field: dict[str, Any] = {"label": label, "schema": {"type": ["integer" if integer else "number", "null"], **schema}}
    if description:
        field["description"] = description
    return field


# --- hotcrm_db ---------------------------------------------------------------------------------

DATABASE_FIELDS: dict[str, dict[str, Any]] = {
    "backend": _text(
        "Backend",
        "postgresql (host, port, login, password, database) or sqlite (the database file's path as host)",
        enum=["postgresql", "sqlite", None],
        default="postgresql",
    ),
    "sslmode": _text("SSL mode (PostgreSQL)", "libpq's sslmode, e.g. require or verify-full"),
    "application_name": _text("Application name (PostgreSQL)"),
}
DATABASE_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["extra"],
    "relabeling": {"schema": "Database", "host": "Host (PostgreSQL) or database file path (SQLite)"},
    "placeholders": {"host": "db.internal or /srv/hotcrm/hotcrm.db", "port": "5432", "schema": "hotcrm"},
}


# --- hotcrm_salesforce -------------------------------------------------------------------------

SALESFORCE_FIELDS: dict[str, dict[str, Any]] = {
    "auth_type": _text(
        "Auth type",
        "the login flow (see the README's Salesforce section)",
        enum=[*AUTH_TYPES, None],
        default="password",
    ),  # fmt: skip
    "token_url": _text("Token URL", "OAuth 2.0 token endpoint, when not login/test.salesforce.com"),
    "domain": _text("Domain", "login, test or the org's My Domain (e.g. acme.my)"),
    "version": _text("API version", "REST API version, e.g. 62.0"),
    "api_budget_share": _number(
        "API budget share",
        "stop sending past this share of the daily API limit",
        integer=False,
        minimum=0,
        maximum=1,
        default=0.9,
    ),  # fmt: skip
    "consumer_key": _text("Consumer key"),
    "consumer_secret": _text("Consumer secret", secret=True),
    "security_token": _text("Security token", secret=True),
    "private_key": _text("Private key (jwt_bearer)", secret=True),
    "private_key_file_path": _text("Private key file path (jwt_bearer)"),
    "audience": _text("JWT audience (jwt_bearer)"),
    "instance_url": _text("Instance URL (session)"),
    "ca_bundle": _text("CA bundle", "PEM file to verify the server with"),
    "token_encryption_key": _text("Refresh token key (refresh_token)", secret=True),
}
SALESFORCE_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "host", "extra"],
    "relabeling": {"login": "Username", "password": "Password (or access / refresh token)"},
}


# --- hotcrm_webhook ----------------------------------------------------------------------------

WEBHOOK_FIELDS: dict[str, dict[str, Any]] = {
    "scheme": _text(
        "Signature scheme",
        "hmac-sha256 (header with the body's HMAC), standard-webhooks or stripe",
        enum=["hmac-sha256", "standard-webhooks", "stripe", None],
        default="hmac-sha256",
    ),
    "secrets": _text("More secrets", "older secrets still accepted while you rotate, space-separated", secret=True),
    "tolerance_seconds": _number("Timestamp tolerance (s)", "how old a signed timestamp may be", default=300),
    "max_body_bytes": _number("Body limit (bytes)", "larger deliveries get HTTP 413", default=262144),
    "read_timeout_seconds": _number("Body read timeout (s)", default=10),
    "header": _text("Signature header (hmac-sha256)", default="X-Payment-Signature"),
    "event_id_path": _text("Event id path", "dotted path in the JSON body, or header:<name>"),
    "event_type_path": _text("Event type path", "dotted path in the JSON body (default: type, else event)"),
    "event_time_path": _text("Event time path", "dotted path in the JSON body (default: created, else timestamp)"),
    "payment_path": _text("Payment reference path", default="data.object.metadata.transaction_id"),
}
WEBHOOK_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["host", "schema", "login", "port", "extra"],
    "relabeling": {"password": "Secret (newest first; several space-separated)"},
}


# conn_type -> (hook class path, hook name, fields, behaviour): the provider's connection types.
CONNECTION_TYPES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "hotcrm_db": ("hotcrm.airflow.hooks.HotCrmDatabaseHook", "HotCRM database", DATABASE_FIELDS, DATABASE_BEHAVIOUR),
    "hotcrm_salesforce": (
        "hotcrm.airflow.salesforce.HotCrmSalesforceHook",
        "HotCRM Salesforce",
        SALESFORCE_FIELDS,
        SALESFORCE_BEHAVIOUR,
    ),
    "hotcrm_webhook": (
        "hotcrm.airflow.hooks.HotCrmWebhookSourceHook",
        "HotCRM webhook source",
        WEBHOOK_FIELDS,
        WEBHOOK_BEHAVIOUR,
    ),
}


def connection_type_info(conn_type: str) -> dict[str, Any]:
    """One ``connection-types`` entry of the provider info."""
    hook_class, hook_name, fields, behaviour = CONNECTION_TYPES[conn_type]
    return {
        "hook-class-name": hook_class,
        "hook-name": hook_name,
        "connection-type": conn_type,
        "conn-fields": fields,
        "ui-field-behaviour": behaviour,
    }
