"""Secret settings through Airflow's secrets backend.

Where Airflow runs (tasks, the API server that mounts the HTTP app, the DAG processor) the core's
secret settings (:func:`hotcrm.settings.secret`: ``HOTCRM_TOKEN_KEY``, ``HOTCRM_API_JWT_SECRET``,
``HOTCRM_SALESFORCE_CLIENT_SECRET``) are read as Airflow Variables named after them in lower
case (``hotcrm_token_key``...), so through whatever secrets backend is configured (HashiCorp
Vault, AWS Secrets Manager, ``AIRFLOW_VAR_*`` environment variables, the metastore). The
environment variable of the setting's own name stays the fallback. Installed by importing
:mod:`hotcrm.airflow`.
"""

from __future__ import annotations

import logging

from hotcrm.settings import set_secret_source

log = logging.getLogger(__name__)


def variable_name(setting: str) -> str:
    """The Airflow Variable that holds ``setting`` (``HOTCRM_TOKEN_KEY`` -> ``hotcrm_token_key``)."""
    return setting.lower()


def airflow_secret(setting: str) -> str | None:
    """The value of ``setting`` from Airflow's secrets backends, or None when none has it."""
    from airflow.sdk import Variable

    try:
        value = Variable.get(variable_name(setting), default=None)
    except Exception as exc:  # a backend that refuses or fails: the environment still applies
        log.warning("could not read Airflow Variable %r (%s); using the environment", variable_name(setting),
                    type(exc).__name__)  # fmt: skip
        return None
    return str(value) if value else None


def install() -> None:
    """Make :func:`hotcrm.settings.secret` read Airflow's secrets backend first."""
    set_secret_source(airflow_secret)
