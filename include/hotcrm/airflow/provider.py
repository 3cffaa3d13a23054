"""The HotCRM Airflow provider's metadata, registered through the ``apache_airflow_provider``
entry point (``pyproject.toml``), so ``airflow providers list`` shows it and the UI's connection
form knows its connection types and their fields.

Only :mod:`hotcrm.airflow.connection_forms` is read here (the forms as data, no Airflow import):
Airflow calls this in every component while configuring itself, so it must stay cheap.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

PACKAGE_NAME = "hotcrm-pipelines"


def _version() -> str:
    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:  # run from a checkout without installing it
        return "0.0.0.dev0"


def get_provider_info() -> dict[str, Any]:
    """The provider info, in the format of Airflow's ``provider_info.schema.json``."""
    # Only the forms' data: Airflow calls this while it configures itself, before airflow.sdk
    # can be imported (importing a hook here would be a circular import).
    from hotcrm.airflow.connection_forms import CONNECTION_TYPES, connection_type_info

    return {
        "package-name": PACKAGE_NAME,
        "name": "HotCRM",
        "description": "HotCRM Pipelines: operators, hooks and triggers of the HotCRM CRM's integration layer "
        "(lead import, account export, Salesforce sync, webhooks, email, data quality).",
        "versions": [_version()],
        "integrations": [
            {
                "integration-name": "HotCRM",
                "external-doc-url": "https://github.com/hotcrm/hotcrm-pipelines#readme",
                "tags": ["service"],
            }
        ],
        "operators": [{"integration-name": "HotCRM", "python-modules": ["hotcrm.airflow.operators"]}],
        "hooks": [
            {
                "integration-name": "HotCRM",
                "python-modules": ["hotcrm.airflow.hooks", "hotcrm.airflow.salesforce"],
            }
        ],
        "triggers": [{"integration-name": "HotCRM", "python-modules": ["hotcrm.airflow.triggers"]}],
        # The bucket hook is left out: its connection is of the Amazon provider's type "aws".
        "connection-types": [connection_type_info(conn_type) for conn_type in CONNECTION_TYPES],
    }
