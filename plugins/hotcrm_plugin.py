"""Mounts the HotCRM HTTP app (webhook receiver, REST API, the HotCRM pages) in the Airflow API
server at /hotcrm, and adds the pages to the UI's navigation."""

from airflow.plugins_manager import AirflowPlugin

import hotcrm.airflow  # noqa: F401 (the core's secret settings come from Airflow's secrets backend)
from hotcrm.airflow.ui import AirflowUiBackend
from hotcrm.api.app import PrefixNotFoundMiddleware, create_app


def _database_url() -> str:
    # Resolved on the first request, so loading the plugin stays cheap.
    from hotcrm.airflow.hooks import HotCrmDatabaseHook

    return HotCrmDatabaseHook().get_database_url()


class _WebhookSources:
    """Webhook sources from Airflow connections ``hotcrm_webhook_<source>`` (built on first use)."""

    def __init__(self) -> None:
        self._registry = None

    def __call__(self, source: str):
        if self._registry is None:
            from hotcrm.airflow.webhooks import AirflowSourceRegistry

            self._registry = AirflowSourceRegistry()
        return self._registry(source)


_app = create_app(_database_url)
_app.state.webhook_registry = _WebhookSources()
_app.state.ui_backend = AirflowUiBackend()


class HotCrmPlugin(AirflowPlugin):
    """The project's plugin: the HTTP app, nothing heavy."""

    name = "hotcrm"
    fastapi_apps = [{"app": _app, "url_prefix": "/hotcrm", "name": "HotCRM"}]
    # Paths under /hotcrm the mount cannot match (a newline in them) still get {error, code}.
    fastapi_root_middlewares = [
        {"middleware": PrefixNotFoundMiddleware, "args": [], "kwargs": {"prefix": "/hotcrm"}, "name": "HotCRM 404"}
    ]
    # The pages, framed in the Airflow UI at /plugin/hotcrm (they check the Airflow login).
    external_views = [
        {"name": "HotCRM", "href": "/hotcrm/ui/imports", "destination": "nav", "url_route": "hotcrm"},
        # A tab on each DAG run's page: that DAG's HotCRM page (a sync run: its own history).
        {
            "name": "HotCRM",
            "href": "/hotcrm/ui/runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "hotcrm-run",
        },
    ]
