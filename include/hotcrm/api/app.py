"""The HotCRM HTTP app (FastAPI).

``create_app()`` builds the app whose routes are relative to the ``/hotcrm`` prefix: the
Airflow plugin mounts it there in the API server, and :mod:`hotcrm.api.standalone` mounts
it there under uvicorn. Capability routers (webhooks, REST API) are included here.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hotcrm.settings import default_database_url

API_TITLE = "HotCRM integration API"


def error_response(status: int, code: str, message: str, details=None, headers=None) -> JSONResponse:
    """The one error shape every client sees: ``{"error", "code", "details"?}``."""
    body = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (no route: 404, wrong method: 405) in the one error shape."""
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


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


def database_url(request: Request) -> str:
    """The CRM database URL of the app serving ``request`` (resolved once, on first use)."""
    state = request.app.state
    if callable(state.database_url):
        state.database_url = state.database_url()
    return state.database_url


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

    from hotcrm.webhooks.receiver import router as webhooks_router  # here: the router imports this module

    app.include_router(webhooks_router)
    from hotcrm.api.routes import router as rest_api_router  # here: the router imports this module

    app.include_router(rest_api_router)
    from hotcrm.email.pages import router as quote_pages_router  # here: the router imports this module

    app.include_router(quote_pages_router)
    _serve_docs(app)
    from hotcrm.ui.routes import include_ui  # the HotCRM pages (need an Airflow login, see hotcrm.ui)

    include_ui(app)
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
