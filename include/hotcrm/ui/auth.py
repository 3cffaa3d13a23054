"""Who may see the HotCRM pages and act on them, and CSRF protection of their forms.

The pages ask a :class:`UiBackend` (set as ``app.state.ui_backend`` by the host) who the user
is; the Airflow plugin's backend asks Airflow's auth manager. No backend: no page (403).

A form carries a token derived from the user's session credential (the JWT cookie): a page
of another site cannot read that cookie, so it cannot forge the token. POSTs must also come
from the same origin when the browser says where they come from.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol
from urllib.parse import urlsplit

from fastapi import Request


class UiAuthError(Exception):
    """The user is not logged in (401) or may not do this (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UiBackend(Protocol):
    """What the host application provides to the pages."""

    async def authorize(self, request: Request, *, write: bool, dag_id: str | None) -> str:
        """The logged-in user's name, if they may read (``write=False``) or act on the work of
        ``dag_id``; raises :class:`UiAuthError` otherwise."""

    def credential(self, request: Request) -> str | None:
        """The session credential the request carries (CSRF tokens are derived from it)."""

    def login_url(self, next_url: str) -> str:
        """Where a browser logs in, coming back to ``next_url``."""

    def read_file(self, path: str) -> bytes:
        """A report file the ledger names (a local path or a bucket URL)."""

    def trigger_dag(self, dag_id: str, conf: dict, user: str) -> str:
        """Trigger a run of ``dag_id`` with ``conf``; returns the run id."""


def backend(request: Request) -> UiBackend:
    """The app's backend, or 403 when the app is served without one (e.g. under plain uvicorn)."""
    found = getattr(request.app.state, "ui_backend", None)
    if found is None:
        raise UiAuthError(403, "the HotCRM pages are served only inside the Airflow API server (make airflow)")
    return found


def csrf_token(credential: str) -> str:
    """The form token of a session: an HMAC keyed by its credential."""
    return hmac.new(credential.encode(), b"hotcrm-ui-csrf", hashlib.sha256).hexdigest()


def check_same_origin(request: Request) -> None:
    """Refuse a POST whose ``Origin`` (or, without one, ``Referer``) names another site."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        if claimed == "null":
            raise UiAuthError(403, "cross-origin form refused (Origin: null)")
        return
    host = request.headers.get("host", "")
    if urlsplit(claimed).netloc != host:
        raise UiAuthError(403, f"cross-origin form refused: {urlsplit(claimed).netloc!r} is not {host!r}")


def check_csrf(request: Request, ui: UiBackend, token: str | None) -> None:
    """The form's token must be the one of the caller's session."""
    check_same_origin(request)
    credential = ui.credential(request)
    if not credential or not token or not hmac.compare_digest(token, csrf_token(credential)):
        raise UiAuthError(403, "the form's CSRF token is missing or stale: reload the page and try again")
