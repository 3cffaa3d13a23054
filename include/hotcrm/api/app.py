"""The HotCRM HTTP app (FastAPI).

``create_app()`` builds the app whose routes are relative to the ``/hotcrm`` prefix: the
Airflow plugin mounts it there in the API server, and :mod:`hotcrm.api.standalone` mounts
it there under uvicorn. Capability routers (webhooks, REST API, quote pages, HotCRM pages) are included here;
what they share with the app is in :mod:`hotcrm.web.responses`, so none of them imports this module.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hotcrm.api.routes import router as rest_api_router
from hotcrm.email.pages import router as quote_pages_router
from hotcrm.settings import default_database_url
from hotcrm.ui.routes import include_ui
from hotcrm.web.responses import error_response, http_error_response
from hotcrm.webhooks.receiver import router as webhooks_router

API_TITLE = "HotCRM integration API"


class PrefixNotFoundMiddleware:
    """For the server the app is mounted in (the Airflow API server): a path under ``prefix``
    that the mount cannot match gets the app's 404 shape rather than the server's.

    Starlette's mount pattern (``^/hotcrm/(?P<path>.*)$``) stops at a newline, so
    ``/hotcrm/webhooks/a%0Ab`` never reaches the app and would get ``{"detail": "Not Found"}``.
    """

    def __init__(self, app, prefix: str = "/hotcrm") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(self.prefix) and ("\n" in path or "\r" in path):
            await error_response(404, "NOT_FOUND", "Not Found")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(database_url: str | Callable[[], str] | None = None) -> FastAPI:
    """The HTTP app, bound to the CRM database at ``database_url``: a URL, a function that
    returns one on first use (the plugin resolves the ``hotcrm_db`` connection that way), or
    ``None`` for the embedded default."""
    # The docs page is served below from the app's own copy of Swagger UI (no CDN).
    app = FastAPI(title=API_TITLE, version="1.0.0", docs_url=None, openapi_url="/api/v1/openapi.json")
    app.state.database_url = database_url or default_database_url

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        return http_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        details = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "message": err.get("msg")}
            for err in exc.errors()
        ]
        return error_response(400, "VALIDATION_ERROR", "The request is not valid", details)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exc: Exception):
        # Never a trace or an internal message to a client; the server log has the details.
        return error_response(500, "INTERNAL_ERROR", "Internal server error")

    @app.get("/health", tags=["health"])
    def health() -> dict:
        """Liveness of the HTTP app."""
        return {"status": "ok"}

    app.include_router(webhooks_router)
    app.include_router(rest_api_router)
    app.include_router(quote_pages_router)
    _serve_docs(app)
    include_ui(app)  # the HotCRM pages (need an Airflow login, see hotcrm.ui)
    return app


def _serve_docs(app: FastAPI) -> None:
    """Swagger UI at ``/api/v1/docs`` from the Swagger UI 5 files ``fastapi-offline`` ships
    (the app's document is OpenAPI 3.1, which Swagger UI 4 cannot render)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = str(files("fastapi_offline") / "static")
    app.mount("/api/v1/docs/assets", StaticFiles(directory=assets), name="swagger-ui-assets")

    @app.get("/api/v1/docs", include_in_schema=False)
    def docs(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{API_TITLE} - docs",
            swagger_js_url=f"{root}/api/v1/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/api/v1/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/api/v1/docs/assets/favicon.png",
        )
