"""A secrets backend for tests: Variables and Connections from its ``backend_kwargs``, as
HashiCorp Vault or AWS Secrets Manager would serve them (configured with
``AIRFLOW__SECRETS__BACKEND`` / ``AIRFLOW__SECRETS__BACKEND_KWARGS``)."""

from __future__ import annotations

from airflow.secrets import BaseSecretsBackend


class DictSecretsBackend(BaseSecretsBackend):
    """Answers from the ``variables`` mapping it is configured with."""

    def __init__(self, variables: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.variables = variables or {}

    def get_variable(self, key: str) -> str | None:
        """The variable ``key``, or None."""
        return self.variables.get(key)

    def get_conn_value(self, conn_id: str) -> str | None:
        """No connections here."""
        return None
