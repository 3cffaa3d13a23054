"""The HotCRM pages, under ``/hotcrm/ui``: server-rendered (Jinja2, autoescaped), one CSS file
served by the app itself. Every GET needs a user who may read, every POST a user who may act
on the page's DAG, a same-origin request and the session's CSRF token."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hotcrm.ui import views
from hotcrm.ui.auth import UiAuthError, backend, check_csrf, csrf_token
from hotcrm.web.responses import database_url

HERE = Path(__file__).parent
_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
)
_templates.filters["ts"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else ""

PAGES = [
    ("imports", "Lead imports"),
    ("webhooks", "Webhook inbox"),
    ("deliveries", "Deliveries"),
    ("email", "Email outbox"),
    ("salesforce", "Salesforce sync"),
]

router = APIRouter(prefix="/ui", include_in_schema=False)


class _Page:
    """Dependency: the reader of page ``name`` (GET) or the actor on its DAG (POST)."""

    def __init__(self, name: str, write: bool = False) -> None:
        self.name, self.write = name, write

    async def __call__(self, request: Request) -> str:
        ui = backend(request)
        user = await ui.authorize(request, write=self.write, dag_id=views.DAG_OF_PAGE.get(self.name))
        if self.write:
            token = (await request.form()).get("csrf")
            check_csrf(request, ui, token if isinstance(token, str) else None)
        return user


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/") + "/ui"


def _render(
    request: Request, template: str, user: str, page: str, http_status: int = 200, **context: Any
) -> HTMLResponse:
    credential = backend(request).credential(request) or ""
    html = _templates.get_template(template).render(
        base=_base(request),
        pages=PAGES,
        page=page,
        user=user,
        csrf=csrf_token(credential) if credential else "",
        message=_flash(request, "msg", credential),
        error=_flash(request, "err", credential),
        **context,
    )
    return HTMLResponse(html, status_code=http_status)


def _signature(credential: str, kind: str, text: str) -> str:
    return hmac.new(csrf_token(credential).encode(), f"{kind}:{text}".encode(), hashlib.sha256).hexdigest()[:32]


def _flash(request: Request, kind: str, credential: str) -> str | None:
    """The outcome message of the action that redirected here. It is signed for the session,
    so a link made elsewhere cannot put its own words in these pages."""
    text, signature = request.query_params.get(kind), request.query_params.get(f"{kind}_sig", "")
    if not text or not credential or not hmac.compare_digest(signature, _signature(credential, kind, text)):
        return None
    return text


def _back(request: Request, page: str, *, msg: str | None = None, err: str | None = None) -> RedirectResponse:
    credential = backend(request).credential(request) or ""
    params = {}
    for kind, text in (("msg", msg), ("err", err)):
        if text:
            params.update({kind: text, f"{kind}_sig": _signature(credential, kind, text)})
    query = urlencode(params)
    return RedirectResponse(f"{_base(request)}/{page}" + (f"?{query}" if query else ""), status_code=303)


def _act(request: Request, page: str, action) -> RedirectResponse:
    """Run an action; its error (bad id, nothing to do) is shown on the page, not as a 500."""
    try:
        return _back(request, page, msg=action())
    except (ValueError, LookupError) as exc:
        return _back(request, page, err=str(exc))


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, user: Annotated[str, Depends(_Page("home"))]) -> Response:
    return RedirectResponse(f"{_base(request)}/imports", status_code=303)


# --- lead imports ------------------------------------------------------------------------


@router.get("/imports", response_class=HTMLResponse)
def imports_page(request: Request, user: Annotated[str, Depends(_Page("imports"))]) -> Response:
    files = views.import_files(database_url(request))
    return _render(request, "imports.html", user, "imports", files=files)


@router.get("/imports/{file_id}", response_class=HTMLResponse)
def import_page(request: Request, file_id: str, user: Annotated[str, Depends(_Page("imports"))]) -> Response:
    try:
        file, issues = views.import_file(database_url(request), file_id)
    except LookupError as exc:
        return _render(request, "error.html", user, "imports", http_status=404, detail=str(exc))
    reports = views.report_files(file["report_path"])
    return _render(request, "import.html", user, "imports", file=file, issues=issues, reports=reports)


_REPORT_TYPES = {"html": "text/html; charset=utf-8", "json": "application/json", "rejects": "text/csv; charset=utf-8"}


@router.get("/imports/{file_id}/{kind}")
def import_report(request: Request, file_id: str, kind: str, user: Annotated[str, Depends(_Page("imports"))]):
    """A report file of a ledger file (only files the ledger names are ever read)."""
    try:
        file, _ = views.import_file(database_url(request), file_id, limit=0)
        path = views.report_files(file["report_path"])[kind]
        body = backend(request).read_file(path)
    except (LookupError, KeyError, FileNotFoundError, OSError):
        return _render(
            request, "error.html", user, "imports", http_status=404, detail=f"no {kind} report for {file_id}"
        )
    name = quote(path.rsplit("/", 1)[-1])
    disposition = "inline" if kind == "html" else "attachment"
    # The report is the project's own HTML, but it quotes file contents: no script runs in it.
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{name}",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(body, media_type=_REPORT_TYPES[kind], headers=headers)


# --- a DAG run's tab ---------------------------------------------------------------------

# The page of each DAG's work; a run of salesforce_sync opens its own history.
PAGE_OF_DAG = {dag: page for page, dag in views.DAG_OF_PAGE.items()}


@router.get("/runs/{dag_id}/{run_id}")
def run_page(request: Request, dag_id: str, run_id: str, user: Annotated[str, Depends(_Page("home"))]) -> Response:
    """The HotCRM tab of a DAG run's page in the Airflow UI."""
    page = PAGE_OF_DAG.get(dag_id, "imports")
    query = f"?{urlencode({'run_id': run_id})}" if page == "salesforce" else ""
    return RedirectResponse(f"{_base(request)}/{page}{query}", status_code=303)


# --- webhook inbox -----------------------------------------------------------------------


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, user: Annotated[str, Depends(_Page("webhooks"))]) -> Response:
    return _render(request, "webhooks.html", user, "webhooks", **views.inbox_overview(database_url(request)))


@router.post("/webhooks/requeue")
def webhooks_requeue(
    request: Request,
    user: Annotated[str, Depends(_Page("webhooks", write=True))],
    source: Annotated[str | None, Form()] = None,
    event_id: Annotated[str | None, Form()] = None,
) -> Response:
    def action() -> str:
        count = views.requeue_webhooks(database_url(request), source=source, event_ids=[event_id] if event_id else None)
        return f"requeued {count} dead letter(s); the next webhook_inbox run (or 'Process due now') applies them"

    return _act(request, "webhooks", action)


@router.post("/webhooks/process")
def webhooks_process(request: Request, user: Annotated[str, Depends(_Page("webhooks", write=True))]) -> Response:
    def action() -> str:
        result = views.process_webhooks(database_url(request))
        return "processed: " + ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, int))

    return _act(request, "webhooks", action)


# --- outbound deliveries -----------------------------------------------------------------


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(request: Request, user: Annotated[str, Depends(_Page("deliveries"))]) -> Response:
    return _render(request, "deliveries.html", user, "deliveries", **views.deliveries_overview(database_url(request)))


@router.post("/deliveries/replay")
def deliveries_replay(
    request: Request,
    user: Annotated[str, Depends(_Page("deliveries", write=True))],
    delivery_id: Annotated[str | None, Form()] = None,
) -> Response:
    def action() -> str:
        count = views.replay_deliveries(database_url(request), [delivery_id] if delivery_id else None)
        return f"{count} dead-lettered deliveries are due again; the next webhook_delivery run sends them"

    return _act(request, "deliveries", action)


@router.post("/deliveries/{subscription_id}/{state}")
def deliveries_toggle(
    request: Request,
    subscription_id: str,
    state: str,
    user: Annotated[str, Depends(_Page("deliveries", write=True))],
    reason: Annotated[str | None, Form()] = None,
) -> Response:
    def action() -> str:
        if state not in ("enable", "disable"):
            raise ValueError(f"unknown action {state!r}: enable or disable")
        active = state == "enable"
        reason_text = (reason or "").strip() or f"disabled by {user} in the Airflow UI"
        views.set_subscription_active(database_url(request), subscription_id, active, reason_text)
        return f"subscription {subscription_id} {state}d"

    return _act(request, "deliveries", action)


# --- email outbox ------------------------------------------------------------------------


@router.get("/email", response_class=HTMLResponse)
def email_page(request: Request, user: Annotated[str, Depends(_Page("email"))], status: str | None = None) -> Response:
    overview = views.email_overview(database_url(request), status or None)
    return _render(request, "email.html", user, "email", status=status, **overview)


@router.post("/email/{message_id}/requeue")
def email_requeue(
    request: Request, message_id: str, user: Annotated[str, Depends(_Page("email", write=True))]
) -> Response:
    def action() -> str:
        return f"email {message_id}: {views.requeue_email(database_url(request), message_id)}"

    return _act(request, "email", action)


# --- Salesforce sync ---------------------------------------------------------------------


@router.get("/salesforce", response_class=HTMLResponse)
def salesforce_page(
    request: Request, user: Annotated[str, Depends(_Page("salesforce"))], run_id: str | None = None
) -> Response:
    overview = views.salesforce_overview(database_url(request), run_id or None)
    return _render(request, "salesforce.html", user, "salesforce", run_id=run_id, **overview)


@router.post("/salesforce/dry-run")
def salesforce_dry_run(request: Request, user: Annotated[str, Depends(_Page("salesforce", write=True))]) -> Response:
    def action() -> str:
        run_id = backend(request).trigger_dag("salesforce_sync", {"dry_run": True}, user)
        return f"triggered salesforce_sync run {run_id} with dry_run: its summary appears here when it finishes"

    return _act(request, "salesforce", action)


# --- wiring ------------------------------------------------------------------------------


def include_ui(app: FastAPI) -> None:
    """Add the pages, their stylesheet and the answer to a refused request to ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="hotcrm-ui-static")

    @app.exception_handler(UiAuthError)
    async def _refused(request: Request, exc: UiAuthError) -> Response:
        ui = getattr(request.app.state, "ui_backend", None)
        if exc.status == 401 and ui is not None and request.method == "GET":
            return RedirectResponse(ui.login_url(str(request.url.path)), status_code=303)
        return JSONResponse({"error": exc.message, "code": "UI_FORBIDDEN" if exc.status == 403 else "UI_LOGIN"},
                            status_code=exc.status)  # fmt: skip
