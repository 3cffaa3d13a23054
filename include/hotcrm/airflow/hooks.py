"""Hooks that turn the project's Airflow connections into the plain settings the core takes.

Each hook carries the class attributes of a provider hook (``conn_name_attr``,
``default_conn_name``, ``conn_type``, ``hook_name``) and declares its connection form once, as
data (:mod:`hotcrm.airflow.connection_forms`, in the ``provider.yaml`` format). Airflow 3.2+
reads that declaration from :func:`hotcrm.airflow.provider.get_provider_info` without
importing the hook; older Airflow
versions (and anyone who asks) get the same form from ``get_connection_form_widgets`` /
``get_ui_field_behaviour``, which import flask_appbuilder and wtforms only when called.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from hotcrm.airflow import connection_forms as forms
from hotcrm.settings import DATABASE_CONN_TYPE, connection_url, default_database_url, strip_extra_prefix

log = logging.getLogger(__name__)


class ConnectionForm:
    """The connection form of a hook, declared as data and served both ways Airflow reads it."""

    conn_type: ClassVar[str]
    #: Extra fields, in ``provider.yaml``'s ``conn-fields`` format (label, JSON schema, description).
    conn_fields: ClassVar[dict[str, dict[str, Any]]] = {}
    #: ``provider.yaml``'s ``ui-field-behaviour`` (``hidden-fields``, ``relabeling``, ``placeholders``).
    field_behaviour: ClassVar[dict[str, Any]] = {}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields as wtforms fields (for Airflow before 3.2, which asks the hook)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, PasswordField, StringField
        from wtforms.validators import Optional

        widgets: dict[str, Any] = {}
        for name, field in cls.conn_fields.items():
            schema, label = field["schema"], lazy_gettext(field["label"])
            kwargs = {"description": field.get("description", ""), "validators": [Optional()]}
            if schema.get("format") == "password":
                widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), **kwargs)
            elif "integer" in schema["type"]:
                widgets[name] = IntegerField(label, widget=BS3TextFieldWidget(), **kwargs)
            else:  # strings, and numbers (wtforms' FloatField is not a field Airflow's form accepts)
                widgets[name] = StringField(label, widget=BS3TextFieldWidget(), **kwargs)
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The standard fields' behaviour (hidden, relabeled, placeholders), in the hook method's format."""
        behaviour = cls.field_behaviour
        return {
            "hidden_fields": list(behaviour.get("hidden-fields", [])),
            "relabeling": dict(behaviour.get("relabeling", {})),
            "placeholders": dict(behaviour.get("placeholders", {})),
        }


class HotCrmDatabaseHook(ConnectionForm, BaseHook):
    """The CRM database, from the ``hotcrm_db`` connection.

    Connection types: ``hotcrm_db`` (this hook's form: ``backend`` ``postgresql`` or
    ``sqlite``), ``postgres`` (host, port, login, password, schema = database name) or
    ``sqlite`` (host = path of the database file). Without a ``hotcrm_db`` connection the
    embedded default (``HOTCRM_DATABASE_URL`` or the SQLite file in the data folder) is used,
    so the demo runs with no set-up. The URL carries the password: hand it to :mod:`hotcrm`
    code, never to a log.
    """

    conn_name_attr = "hotcrm_db_conn_id"
    default_conn_name = "hotcrm_db"
    conn_type = DATABASE_CONN_TYPE
    hook_name = "HotCRM database"
    conn_fields = forms.DATABASE_FIELDS
    field_behaviour = forms.DATABASE_BEHAVIOUR

    def __init__(self, hotcrm_db_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hotcrm_db_conn_id = hotcrm_db_conn_id

    def get_database_url(self) -> str:
        """The SQLAlchemy URL of the CRM database (contains the password, if any)."""
        try:
            conn = self.get_connection(self.hotcrm_db_conn_id)
        except AirflowNotFoundException:
            log.info("No %r connection: using the embedded default database", self.hotcrm_db_conn_id)
            return default_database_url()
        return connection_to_url(conn)

    def get_conn(self) -> str:
        """The database URL (the core opens its own engines from it)."""
        return self.get_database_url()


def connection_to_url(conn: Any) -> str:
    """An Airflow connection (``hotcrm_db``, ``postgres`` or ``sqlite``) as a SQLAlchemy URL string
    (:func:`hotcrm.settings.connection_url`, which the command line uses too)."""
    fields = {name: getattr(conn, name) for name in ("conn_type", "host", "login", "password", "port", "schema")}
    return connection_url({**fields, "extra": conn.extra_dejson}, conn.conn_id)


class HotCrmBucketHook(BaseHook):
    """The bucket root (``HOTCRM_BUCKET_URL``) as an ``ObjectStoragePath``, with the ``hotcrm_bucket``
    connection's credentials for ``s3://``.

    That connection is an Amazon Web Services connection (type ``aws``: access key as login,
    secret as password or an instance role, ``endpoint_url`` in the extra), read by the Amazon
    provider's object-storage support, which expects that type; so this hook declares ``aws``
    honestly and registers no connection form of its own (the Amazon provider's form applies).
    """

    conn_name_attr = "bucket_conn_id"
    default_conn_name = "hotcrm_bucket"
    conn_type = "aws"
    hook_name = "HotCRM bucket"

    def __init__(self, bucket_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bucket_conn_id = bucket_conn_id

    def get_root(self, url: str | None = None):
        """The bucket root (``url``, else ``HOTCRM_BUCKET_URL``)."""
        from hotcrm.airflow.storage import bucket_root

        return bucket_root(url, conn_id=self.bucket_conn_id)

    def get_conn(self):
        """The bucket root."""
        return self.get_root()


class HotCrmWebhookSourceHook(ConnectionForm, BaseHook):
    """A webhook source's settings (:class:`hotcrm.webhooks.config.SourceConfig`) from its
    connection ``hotcrm_webhook_<source>``: the secret(s) in the password, the rest in the extra."""

    conn_name_attr = "webhook_conn_id"
    default_conn_name = "hotcrm_webhook_payment"
    conn_type = "hotcrm_webhook"
    hook_name = "HotCRM webhook source"
    conn_fields = forms.WEBHOOK_FIELDS
    field_behaviour = forms.WEBHOOK_BEHAVIOUR

    def __init__(self, webhook_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webhook_conn_id = webhook_conn_id

    @property
    def source(self) -> str:
        """The source name: the connection id without its ``hotcrm_webhook_`` prefix."""
        from hotcrm.webhooks.config import CONN_ID_PREFIX

        return self.webhook_conn_id.removeprefix(CONN_ID_PREFIX)

    def get_source_config(self):
        """The source's :class:`~hotcrm.webhooks.config.SourceConfig` (raises ``SourceConfigError``
        naming the connection and the field when it cannot be used)."""
        from hotcrm.webhooks.config import config_from_connection

        conn = self.get_connection(self.webhook_conn_id)
        extra = strip_extra_prefix(conn.extra_dejson, self.conn_type)
        return config_from_connection(self.source, conn.password, extra, where=f"connection {self.webhook_conn_id!r}")

    def get_conn(self):
        """The source's config."""
        return self.get_source_config()
