"""What every router of the HTTP app shares: the one error shape and the app's database URL.

Routers (the webhook receiver, the REST API, the quote pages, the HotCRM pages) import these
from here, never from :mod:`hotcrm.api.app`: the app imports the routers, so a router that
imported the app would make an import cycle.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


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


def database_url(request: Request) -> str:
    """The CRM database URL of the app serving ``request`` (resolved once, on first use)."""
    state = request.app.state
    if callable(state.database_url):
        state.database_url = state.database_url()
    return state.database_url
