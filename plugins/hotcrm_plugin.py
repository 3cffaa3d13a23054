"""Mounts the HotCRM HTTP app (webhook receiver, REST API) in the Airflow API server at /hotcrm."""

from airflow.plugins_manager import AirflowPlugin

from hotcrm.api.app import create_app


def _database_url() -> str:
    # Resolved on the first request, so loading the plugin stays cheap.
    from hotcrm.airflow.hooks import HotCrmDatabaseHook

    return HotCrmDatabaseHook().get_database_url()


class HotCrmPlugin(AirflowPlugin):
    """The project's plugin: the HTTP app, nothing heavy."""

    name = "hotcrm"
    fastapi_apps = [{"app": create_app(_database_url), "url_prefix": "/hotcrm", "name": "HotCRM"}]
