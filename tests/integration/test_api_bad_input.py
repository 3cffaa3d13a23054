"""Client mistakes the REST API answers in its one error shape, never a 500 or a reset
connection (SQLite and PostgreSQL): bodies nested too deep, bodies that are not UTF-8, and
paths under /hotcrm that match nothing (the standalone app, as served under uvicorn)."""

from __future__ import annotations

import httpx
import pytest

from hotcrm.api import auth
from hotcrm.api.standalone import create_standalone_app
from hotcrm.web.jsonbody import MAX_JSON_DEPTH, depth_exceeds
from tests.integration.test_api import ALL, SETTINGS, assert_error
from tests.support.api_server import ThreadServer


@pytest.fixture
def client(db_url):
    app = create_standalone_app(db_url)
    inner = next(route.app for route in app.routes if getattr(route, "path", "") == "/hotcrm")
    inner.state.api_settings = SETTINGS
    server = ThreadServer(app).start()
    key = auth.create_api_key(db_url, "bad input", ALL).key
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    with httpx.Client(base_url=server.base_url, timeout=10, headers=headers) as http:
        yield http
    server.stop()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 956, 5000])
def test_create_with_a_body_nested_too_deep_is_400_invalid_json(client, depth):
    for body in (b"[" * depth, b'{"firstName": ' + b"[" * depth + b"]" * depth + b"}"):
        response = client.post("/hotcrm/api/v1/crm/leads", content=body)
        error = assert_error(response, 400, "INVALID_JSON")
        assert f"{MAX_JSON_DEPTH} levels" in error["error"]
        assert "RateLimit-Remaining" in response.headers
    # The kept-alive connection was not reset.
    assert client.get("/hotcrm/health").status_code == 200


def test_convert_with_a_body_that_is_not_utf8_or_too_deep_gets_the_error_shape_and_rate_headers(client):
    lead = client.post(
        "/hotcrm/api/v1/crm/leads", json={"firstName": "Ada", "lastName": "L", "company": "C", "email": "a@x.example"}
    ).json()["data"]
    for body in (b'{"createOpportunity": true, "note": "\xff\xfe"}', b'{"createOpportunity": ' + b"[" * 2000 + b"}"):
        response = client.post(f"/hotcrm/api/v1/crm/leads/{lead['Id']}/convert", content=body)
        assert_error(response, 400, "INVALID_JSON")
        assert all(name in response.headers for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))


def test_create_with_a_body_that_is_not_utf8_is_400_invalid_json_with_rate_headers(client):
    for body in (b'{"firstName": "Ad\xe9", "lastName": "L", "company": "C"}', "{}".encode("utf-16")):
        response = client.post("/hotcrm/api/v1/crm/leads", content=body)
        assert "UTF-8" in assert_error(response, 400, "INVALID_JSON")["error"]
        assert "RateLimit-Remaining" in response.headers


@pytest.mark.parametrize(
    "path", ["/hotcrm/nothing", "/hotcrm/api/v1/nothing", "/hotcrm%0A", "/hotcrm/webhooks/a%0Ab", "/hotcrm/x%0A/y"]
)
def test_a_path_under_hotcrm_that_matches_nothing_gets_the_error_shape(client, path):
    assert_error(client.get(path), 404, "NOT_FOUND")


def test_the_depth_check_ignores_brackets_in_strings_and_counts_nesting_not_totals():
    assert not depth_exceeds(b'{"a": "' + b"[" * 500 + b'"}')
    assert not depth_exceeds(b"[" + b"[]," * 500 + b"[]]")
    assert not depth_exceeds(b'["\\"' + b"[" * 100 + b'"]')
    assert depth_exceeds(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not depth_exceeds(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)


def test_a_server_that_mounts_the_app_answers_unmatchable_paths_in_the_error_shape(db_url):
    """As the Airflow API server mounts it: an outer app of its own, with the plugin's middleware."""
    from fastapi import FastAPI

    from hotcrm.api.app import PrefixNotFoundMiddleware, create_app

    outer = FastAPI()
    outer.mount("/hotcrm", create_app(db_url))
    outer.add_middleware(PrefixNotFoundMiddleware, prefix="/hotcrm")
    server = ThreadServer(outer).start()
    try:
        for path in ("/hotcrm/webhooks/a%0Ab", "/hotcrm%0A", "/hotcrm/x%0D"):
            assert_error(httpx.get(server.base_url + path), 404, "NOT_FOUND")
        assert httpx.get(server.base_url + "/hotcrm/health").json() == {"status": "ok"}
        assert httpx.get(server.base_url + "/elsewhere%0A").json() == {"detail": "Not Found"}  # not ours
    finally:
        server.stop()
