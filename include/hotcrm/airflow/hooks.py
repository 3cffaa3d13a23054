"""Hooks that turn the project's Airflow connections into the plain settings the core takes."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from sqlalchemy.engine import URL

from hotcrm.settings import default_database_url

log = logging.getLogger(__name__)


class HotCrmDatabaseHook(BaseHook):
    """The CRM database, from the ``hotcrm_db`` connection.

    Connection types: ``postgres`` (host, port, login, password, schema = database name)
    or ``sqlite`` (host = path of the database file). Without a ``hotcrm_db`` connection
    the embedded default (``HOTCRM_DATABASE_URL`` or the SQLite file in the data folder)
    is used, so the demo runs with no set-up. The URL carries the password: hand it to
    :mod:`hotcrm` code, never to a log.
    """

    conn_name_attr = "hotcrm_db_conn_id"
    default_conn_name = "hotcrm_db"
    conn_type = "hotcrm_db"
    hook_name = "HotCRM database"

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


def connection_to_url(conn: Any) -> str:
    """An Airflow connection (postgres or sqlite) as a SQLAlchemy URL string."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ValueError(f"connection {conn.conn_id!r}: a sqlite connection needs the file path as host")
        return f"sqlite:///{path}"
    if conn_type in ("postgres", "postgresql"):
        url = URL.create(
            "postgresql+psycopg",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
            query={k: str(v) for k, v in (conn.extra_dejson or {}).items() if k in ("sslmode", "application_name")},
        )
        return url.render_as_string(hide_password=False)
    raise ValueError(f"connection {conn.conn_id!r} has type {conn.conn_type!r}; use 'postgres' or 'sqlite'")
