"""The HotCRM pages in-process on SQLite and PostgreSQL, with a stand-in for Airflow's auth
manager: what each page shows, what each action changes (through the CLI's own functions),
and that nothing is served or done without a login, the right role and the form's token."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from hotcrm.api.app import create_app
from hotcrm.crm.db import session_scope
from hotcrm.delivery.models import PENDING, WebhookDelivery, WebhookSubscription
from hotcrm.email.models import EmailOutbox
from hotcrm.ui import views
from hotcrm.ui.auth import UiAuthError, csrf_token
from hotcrm.webhooks.inbox import status_counts
from tests.support.ui_data import DEAD_EVENT, seed_ui_data

SESSION = "session-jwt"

PAGES = ["/ui/imports", "/ui/webhooks", "/ui/deliveries", "/ui/email", "/ui/salesforce"]
ACTIONS = [
    "/ui/webhooks/requeue",
    "/ui/webhooks/process",
    "/ui/deliveries/replay",
    "/ui/deliveries/SUB/disable",
    "/ui/deliveries/SUB/enable",
    "/ui/email/EMAIL/requeue",
    "/ui/salesforce/dry-run",
]


class FakeBackend:
    """Users by session credential: ``session-jwt`` may act, ``viewer-jwt`` may only read."""

    def __init__(self) -> None:
        self.triggered: list[tuple[str, dict, str]] = []

    def credential(self, request: Request) -> str | None:
        return request.cookies.get("_token")

    async def authorize(self, request: Request, *, write: bool, dag_id: str | None) -> str:
        credential = self.credential(request)
        if credential not in (SESSION, "viewer-jwt"):
            raise UiAuthError(401, "log in to Airflow first")
        if write and credential == "viewer-jwt":
            raise UiAuthError(403, f"viewer may not change the work of the {dag_id} DAG")
        return "admin" if credential == SESSION else "viewer"

    def login_url(self, next_url: str) -> str:
        return f"/auth/login?next={next_url}"

    def read_file(self, path: str) -> bytes:
        return views.read_report_file(path)

    def trigger_dag(self, dag_id: str, conf: dict, user: str) -> str:
        self.triggered.append((dag_id, conf, user))
        return "manual__fake"


def _client(app, **kwargs) -> TestClient:
    """A client of ``app`` mounted at /hotcrm, as the plugin and uvicorn mount it."""
    outer = FastAPI()
    outer.mount("/hotcrm", app)
    return TestClient(outer, base_url="http://testserver/hotcrm", **kwargs)


@pytest.fixture
def ui(db_url, tmp_path):
    ids = seed_ui_data(db_url, tmp_path)
    app = create_app(db_url)
    app.state.ui_backend = FakeBackend()
    client = _client(app)
    client.cookies.set("_token", SESSION)
    return client, ids, db_url, app.state.ui_backend, app


def _post(client, path, data=None, **kwargs):
    body = {"csrf": csrf_token(SESSION), **(data or {})}
    return client.post(path, data=body, follow_redirects=False, **kwargs)


def _flash(response) -> str:
    assert response.status_code == 303, response.text
    return unquote_plus(response.headers["location"])


def test_every_page_renders_what_the_database_holds(ui):
    client, ids, _db, _backend, _app = ui
    imports = client.get("/ui/imports")
    assert (
        imports.status_code == 200
        and ids["file_name"] in imports.text
        and f"/hotcrm/ui/imports/{ids['file_id']}" in imports.text
    )
    detail = client.get(f"/ui/imports/{ids['file_id']}")
    assert "line 6 has 4 fields" in detail.text and "/rejects" in detail.text
    report = client.get(f"/ui/imports/{ids['file_id']}/html")
    assert report.status_code == 200 and "Quality checks" in report.text
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert "line 6 has 4 fields" in client.get(f"/ui/imports/{ids['file_id']}/rejects").text
    assert client.get("/ui/imports/nope").status_code == 404
    assert client.get(f"/ui/imports/{ids['file_id']}/passwd").status_code == 404

    webhooks = client.get("/ui/webhooks").text
    assert DEAD_EVENT in webhooks and "no Payment with TransactionId" in webhooks
    deliveries = client.get("/ui/deliveries").text
    assert "http://127.0.0.1:9/hooks" in deliveries and "HTTP 503 from subscriber" in deliveries
    assert "whsec_" not in deliveries  # the signing secret never reaches a page
    email = client.get("/ui/email").text
    # Autoescaped: the subject's markup is shown, not interpreted.
    assert "Import summary &lt;b&gt;" in email and "550 mailbox unavailable" in email
    salesforce = client.get("/ui/salesforce").text
    assert "REQUIRED_FIELD_MISSING" in salesforce and "Required fields are missing: [Name]" in salesforce
    one_run = client.get("/ui/salesforce", params={"run_id": "manual__ui_run"}).text
    assert "1 record refused" in one_run
    assert "1 record refused" not in client.get("/ui/salesforce", params={"run_id": "other"}).text
    run_tab = client.get("/ui/runs/salesforce_sync/manual__ui_run", follow_redirects=False)
    assert run_tab.headers["location"] == "/hotcrm/ui/salesforce?run_id=manual__ui_run"
    assert client.get("/ui/runs/webhook_inbox/r1", follow_redirects=False).headers["location"] == "/hotcrm/ui/webhooks"
    assert re.search(r'href="/hotcrm/ui/static/hotcrm.css"', salesforce) and "http" not in salesforce.split("<body>")[0]


def test_requeue_then_process_applies_the_dead_letter(ui):
    client, _ids, db, _backend, _app = ui
    # Only the outcome of an action is shown: a crafted link cannot put words in the page.
    crafted = client.get("/ui/webhooks", params={"err": "session expired: log in at evil.example", "err_sig": "0" * 32})
    assert "evil.example" not in crafted.text
    assert "Requeue its dead letters" in client.get("/ui/webhooks").text
    assert "requeued 0 dead letter" in _flash(_post(client, "/ui/webhooks/requeue", {"source": "other"}))
    assert "requeued 1 dead letter" in _flash(
        _post(client, "/ui/webhooks/requeue", {"event_id": DEAD_EVENT, "source": "payment"})
    )
    assert status_counts(db)["dead"] == 0 and status_counts(db)["pending"] == 1
    processed = _post(client, "/ui/webhooks/process")
    assert "processed" in _flash(processed)
    shown = client.get(processed.headers["location"].removeprefix("/hotcrm"))
    assert 'class="flash ok"' in shown.text and "processed: " in shown.text
    assert status_counts(db)["done"] == 1
    assert "no dead letters" in client.get("/ui/webhooks").text


def test_delivery_replay_toggle_and_email_requeue_change_the_rows(ui):
    client, ids, db, backend, app = ui
    sub = ids["subscription"]
    assert "subscription" in _flash(_post(client, f"/ui/deliveries/{sub}/disable", {"reason": "endpoint moved"}))
    with session_scope(db) as session:
        row = session.get(WebhookSubscription, sub)
        assert (row.active, row.disabled_reason) == (False, "endpoint moved")
    _flash(_post(client, f"/ui/deliveries/{sub}/enable"))
    with session_scope(db) as session:
        assert session.get(WebhookSubscription, sub).active
    assert "1 dead-lettered" in _flash(_post(client, "/ui/deliveries/replay", {"delivery_id": ids["delivery"]}))
    with session_scope(db) as session:
        assert session.get(WebhookDelivery, ids["delivery"]).status == PENDING
    # A bad id is shown on the page, not a 500.
    assert "err=" in _flash(_post(client, "/ui/deliveries/replay", {"delivery_id": "nope"}))
    assert "err=" in _flash(_post(client, "/ui/deliveries/nope/disable"))

    assert "queued" in _flash(_post(client, f"/ui/email/{ids['email']}/requeue"))
    with session_scope(db) as session:
        assert session.get(EmailOutbox, ids["email"]).status == "queued"
    assert "err=" in _flash(_post(client, "/ui/email/nope/requeue"))

    assert "manual__fake" in _flash(_post(client, "/ui/salesforce/dry-run"))
    assert backend.triggered == [("salesforce_sync", {"dry_run": True}, "admin")]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # access control: no database difference
def test_nothing_is_served_or_done_without_a_login_a_role_and_the_token(ui):
    client, ids, db, backend, app = ui
    actions = [a.replace("SUB", ids["subscription"]).replace("EMAIL", ids["email"]) for a in ACTIONS]
    anonymous = _client(app)
    pages = [*PAGES, "/ui/", f"/ui/imports/{ids['file_id']}", f"/ui/imports/{ids['file_id']}/html", "/ui/runs/d/r"]
    for page in pages:
        response = anonymous.get(page, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/auth/login"), page
    viewer = _client(app, cookies={"_token": "viewer-jwt"})
    for action in actions:
        assert anonymous.post(action, data={"csrf": csrf_token(SESSION)}).status_code == 401, action
        assert viewer.post(action, data={"csrf": csrf_token("viewer-jwt")}).status_code == 403, action
        assert client.post(action, data={}).status_code == 403, action  # no CSRF token
        assert client.post(action, data={"csrf": csrf_token("someone-else")}).status_code == 403, action
        cross = _post(client, action, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "cross-origin" in cross.json()["error"], action
    assert viewer.get("/ui/webhooks").status_code == 200
    assert status_counts(db)["dead"] == 1 and backend.triggered == []
    # Served without a backend (plain uvicorn): no page at all.
    bare = _client(create_app(db), cookies={"_token": SESSION})
    assert bare.get("/ui/imports").status_code == 403


def test_swagger_ui_is_served_from_the_app_itself(ui):
    client, *_ = ui
    docs = client.get("/api/v1/docs").text
    assert "/hotcrm/api/v1/docs/assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert "/hotcrm/api/v1/openapi.json" in docs
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/api/v1/docs/assets/{asset}").status_code == 200


def test_the_airflow_backend_reads_a_report_from_an_s3_bucket(s3_bucket, airflow_db):
    from hotcrm.airflow.storage import bucket_root
    from hotcrm.airflow.ui import AirflowUiBackend

    report = bucket_root() / "imports" / "leads" / "processed" / "x.csv.report.html"
    report.write_bytes(b"<h1>report</h1>")
    assert AirflowUiBackend().read_file(str(report)) == b"<h1>report</h1>"
