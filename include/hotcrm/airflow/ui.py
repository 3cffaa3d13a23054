"""The HotCRM pages' view of Airflow: who the user is (Airflow's auth manager, from the JWT the
Airflow UI holds in its ``_token`` cookie or a bearer token), what they may do, and the trigger
of a DAG run. Imported by the plugin only; runs inside the Airflow API server."""

from __future__ import annotations

from fastapi import HTTPException, Request

from hotcrm.ui.auth import UiAuthError

# The resource name the auth manager is asked about (``is_authorized_custom_view``).
RESOURCE_NAME = "HotCRM"


class AirflowUiBackend:
    """A :class:`hotcrm.ui.auth.UiBackend` on Airflow's auth manager.

    Reading a page needs access to the ``HotCRM`` custom view; an action also needs the right
    to edit (PUT) the DAG whose work it changes (``webhook_inbox`` for a requeue, ...), and a
    dry-run trigger the right to create runs of ``salesforce_sync``."""

    def credential(self, request: Request) -> str | None:
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip() or None
        return request.cookies.get(COOKIE_NAME_JWT_TOKEN)

    async def authorize(self, request: Request, *, write: bool, dag_id: str | None) -> str:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
        from airflow.api_fastapi.core_api.security import resolve_user_from_token

        try:
            user = await resolve_user_from_token(self.credential(request))
        except HTTPException as exc:
            raise UiAuthError(exc.status_code, f"log in to Airflow first ({exc.detail})") from None
        manager = get_auth_manager()
        method = "POST" if write else "GET"
        if not manager.is_authorized_custom_view(method=method, resource_name=RESOURCE_NAME, user=user):
            raise UiAuthError(403, f"{user.get_name()} may not {'act on' if write else 'see'} the HotCRM pages")
        if write and dag_id:
            allowed = manager.is_authorized_dag(method="PUT", details=DagDetails(id=dag_id), user=user)
            if dag_id == "salesforce_sync":
                allowed = allowed and manager.is_authorized_dag(
                    method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
                )
            if not allowed:
                raise UiAuthError(403, f"{user.get_name()} may not change the work of the {dag_id} DAG")
        return user.get_name()

    def login_url(self, next_url: str) -> str:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)

    def read_file(self, path: str) -> bytes:
        """A report file from the bucket: ``s3://`` with the ``hotcrm_bucket`` connection."""
        from hotcrm.airflow.storage import BUCKET_CONN_ID
        from hotcrm.ui.views import read_report_file

        if path.startswith("file://") or "://" not in path:
            return read_report_file(path)
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(path, conn_id=BUCKET_CONN_ID).read_bytes()

    def trigger_dag(self, dag_id: str, conf: dict, user: str) -> str:
        """What ``airflow dags trigger DAG_ID --conf JSON`` does."""
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagNotFound
        from airflow.utils.types import DagRunTriggeredByType

        try:
            run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=user, conf=conf)
        except DagNotFound as exc:
            raise LookupError(f"{exc}: is the DAG processor running (make airflow)?") from None
        return run.run_id if run is not None else "(not created)"
