"""Access control of the HotCRM pages in the real Airflow API server, with Airflow's simple
auth manager: the plugin's backend reads the UI's JWT (cookie or bearer) and asks the auth
manager; the webhook receiver and the REST API's docs stay public."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import httpx

from hotcrm.ui.auth import csrf_token
from hotcrm.webhooks.inbox import status_counts

PAGES = ["/ui/imports", "/ui/webhooks", "/ui/deliveries", "/ui/email", "/ui/salesforce"]


def _actions(ids):
    return [
        "/ui/webhooks/requeue",
        "/ui/webhooks/process",
        "/ui/deliveries/replay",
        f"/ui/deliveries/{ids['subscription']}/disable",
        f"/ui/deliveries/{ids['subscription']}/enable",
        f"/ui/email/{ids['email']}/requeue",
        "/ui/salesforce/dry-run",
    ]


def test_pages_and_actions_need_an_airflow_login_and_the_right_role(airflow_ui):
    server, ids, db = airflow_ui
    base = f"{server.base_url}/hotcrm"
    before = status_counts(db)
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        for page in [*PAGES, f"/ui/imports/{ids['file_id']}", f"/ui/imports/{ids['file_id']}/html", "/ui/runs/a/b"]:
            response = anonymous.get(page)
            assert response.status_code == 303, page
            assert response.headers["location"].startswith("/auth/login?next=%2Fhotcrm%2Fui%2F"), page
        for action in _actions(ids):
            assert anonymous.post(action, data={"csrf": "x"}).status_code == 401, action
        forged = anonymous.get("/ui/imports", cookies={"_token": "not-a-jwt"})
        assert forged.status_code == 403
        # Public: the receiver's health, the API docs (from local assets).
        assert anonymous.get("/webhooks/health").status_code == 200
        docs = anonymous.get("/api/v1/docs")
        assert docs.status_code == 200 and "/hotcrm/api/v1/docs/assets/swagger-ui-bundle.js" in docs.text
        assert anonymous.get("/api/v1/docs/assets/swagger-ui-bundle.js").status_code == 200

    viewer_token = server.token("viewer")
    with httpx.Client(base_url=base, timeout=30, cookies={"_token": viewer_token}) as viewer:
        for page in PAGES:
            assert viewer.get(page).status_code == 200, page
        for action in _actions(ids):
            response = viewer.post(action, data={"csrf": csrf_token(viewer_token)})
            assert response.status_code == 403 and "viewer may not change" in response.json()["error"], action

    admin_token = server.token("admin")
    with httpx.Client(base_url=base, timeout=30, cookies={"_token": admin_token}) as admin:
        page = admin.get("/ui/webhooks")
        assert page.status_code == 200 and ">admin<" in page.text
        assert admin.post("/ui/webhooks/requeue", data={}).status_code == 403  # no CSRF token
        cross = admin.post(
            "/ui/webhooks/requeue", data={"csrf": csrf_token(admin_token)}, headers={"Origin": "http://evil.example"}
        )
        assert cross.status_code == 403
        assert status_counts(db) == before  # nothing refused was done
    # A bearer token works too (scripts), with the token derived from it.
    with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {admin_token}"}) as script:
        assert script.get("/ui/email").status_code == 200


def test_a_dry_run_trigger_creates_a_salesforce_sync_run_with_dry_run(airflow_ui):
    server, _ids, _db = airflow_ui
    token = server.token("admin")
    with httpx.Client(base_url=f"{server.base_url}/hotcrm", timeout=30, cookies={"_token": token}) as admin:
        response = admin.post("/ui/salesforce/dry-run", data={"csrf": csrf_token(token)})
    assert response.status_code == 303
    message = unquote_plus(response.headers["location"])
    run_id = re.search(r"triggered salesforce_sync run (\S+) with dry_run", message).group(1)
    runs = httpx.get(
        f"{server.base_url}/api/v2/dags/salesforce_sync/dagRuns/{run_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert runs.status_code == 200, runs.text
    assert runs.json()["conf"] == {"dry_run": True} and runs.json()["triggering_user_name"] == "admin"
