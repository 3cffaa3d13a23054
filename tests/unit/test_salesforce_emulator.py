"""The emulator answers like Salesforce's REST API documentation says (no sockets here)."""

from __future__ import annotations

import json

import pytest

from tests.fakes.salesforce.emulator import SalesforceEmulator

V = "/services/data/v60.0"


@pytest.fixture
def org():
    emulator = SalesforceEmulator()
    emulator.base_url = "https://127.0.0.1:1"
    token = emulator.issue_token()

    def call(method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        response = emulator.handle(method, V + path, {"authorization": f"Bearer {token}"}, data)
        return response.status, (
            json.loads(response.payload())
            if response.payload() and response.content_type == "application/json"
            else response.payload().decode()
        )

    emulator.call = call
    return emulator


def test_upsert_by_external_id_201_then_200_then_300(org):
    status, body = org.call("PATCH", "/sobjects/Account/HotCRM_Id__c/x1", {"Name": "Acme"})
    assert status == 201 and body["created"] is True and body["id"].startswith("001")
    status, body = org.call("PATCH", "/sobjects/Account/HotCRM_Id__c/x1", {"Name": "Acme 2"})
    assert status == 200 and body["created"] is False
    org.insert("Account", {"Name": "dup", "HotCRM_Id__c": "x1"})
    status, body = org.call("PATCH", "/sobjects/Account/HotCRM_Id__c/x1", {"Name": "Acme 3"})
    assert status == 300 and body[0]["errorCode"] == "MULTIPLE_CHOICES"


def test_rest_create_get_update(org):
    status, body = org.call("POST", "/sobjects/Account", {"Name": "A"})
    assert status == 201 and body["success"] is True
    assert org.call("PATCH", f"/sobjects/Account/{body['id']}", {"Phone": "1"})[0] == 204
    status, record = org.call("GET", f"/sobjects/Account/{body['id']}")
    assert record["Phone"] == "1" and record["attributes"]["type"] == "Account"
    assert org.call("GET", "/sobjects/Account/001XXXXXXXXXXXXAAA")[1][0]["errorCode"] == "NOT_FOUND"


def test_validation_error_shapes(org):
    assert org.call("POST", "/sobjects/Account", {"Phone": "1"})[1] == [
        {"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Name"]}
    ]
    assert org.call("POST", "/sobjects/Account", {"Name": "A", "Revenue": 1})[1][0]["errorCode"] == "INVALID_FIELD"
    assert org.call("POST", "/sobjects/Account", {"Name": "x" * 256})[1][0]["errorCode"] == "STRING_TOO_LONG"
    status, body = org.call("PATCH", "/sobjects/Account/Name/x", {"Phone": "1"})
    assert status == 404 and body[0]["errorCode"] == "NOT_FOUND"
    assert org.call("POST", "/sobjects/Nope", {})[1][0]["errorCode"] == "NOT_FOUND"


def test_collections_upsert_per_record_results_and_duplicates(org):
    records = [
        {"attributes": {"type": "Account"}, "Name": "A", "HotCRM_Id__c": "1"},
        {"attributes": {"type": "Account"}, "HotCRM_Id__c": "2"},
        {"attributes": {"type": "Account"}, "Name": "C", "HotCRM_Id__c": "3"},
        {"attributes": {"type": "Account"}, "Name": "C again", "HotCRM_Id__c": "3"},
    ]
    status, results = org.call(
        "PATCH", "/composite/sobjects/Account/HotCRM_Id__c", {"allOrNone": False, "records": records}
    )
    assert status == 200
    assert [r["success"] for r in results] == [True, False, False, False]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert results[2]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"
    assert len(org.find("Account")) == 1
    too_many = [{"attributes": {"type": "Account"}, "Name": "A", "HotCRM_Id__c": str(i)} for i in range(201)]
    assert (
        org.call("PATCH", "/composite/sobjects/Account/HotCRM_Id__c", {"records": too_many})[1][0]["errorCode"]
        == "EXCEEDED_ID_LIMIT"
    )


def test_collections_all_or_none_rolls_back(org):
    records = [{"attributes": {"type": "Account"}, "Name": "A"}, {"attributes": {"type": "Account"}}]
    status, results = org.call("POST", "/composite/sobjects", {"allOrNone": True, "records": records})
    assert status == 200 and not any(r["success"] for r in results)
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert org.find("Account") == []


def test_query_relationships_and_paging(org):
    org.call("PATCH", "/sobjects/Account/HotCRM_Id__c/a1", {"Name": "Acme"})
    org.call("PATCH", "/sobjects/Contact/HotCRM_Id__c/c1", {"LastName": "L", "Account": {"HotCRM_Id__c": "a1"}})
    status, body = org.call(
        "GET", "/query?q=" + "SELECT+Id,+LastName,+Account.HotCRM_Id__c+FROM+Contact+WHERE+HotCRM_Id__c+IN+('c1','c9')"
    )
    assert status == 200 and body["totalSize"] == 1
    assert body["records"][0]["Account"]["HotCRM_Id__c"] == "a1"
    for i in range(2500):
        org.insert("Account", {"Name": f"n{i}"})
    body = org.call("GET", "/query?q=SELECT+Id+FROM+Account")[1]
    assert body["done"] is False and len(body["records"]) == 2000
    more = org.call("GET", body["nextRecordsUrl"].removeprefix(V))[1]
    assert more["done"] is True and len(more["records"]) == 501
    assert org.call("GET", "/query?q=SELECT+Nope+FROM+Account")[1][0]["errorCode"] == "INVALID_FIELD"


def test_limits_header_counts_every_call(org):
    response = org.handle("GET", V + "/limits", {"authorization": "Bearer " + org.issue_token()}, b"")
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert json.loads(response.payload())["DailyApiRequests"] == {"Max": 15000, "Remaining": 14999}
    assert org.handle("GET", V + "/limits", {"authorization": "Bearer nope"}, b"").status == 401


def test_faults(org):
    org.faults.rate_limit_after = 0
    status, body = org.call("GET", "/limits")
    assert status == 403 and body[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    org.faults.rate_limit_after = None
    org.faults.server_errors = 1
    assert org.call("GET", "/limits")[0] == 503
    assert org.call("GET", "/limits")[0] == 200
    org.faults.lock_share = 1.0
    results = org.call(
        "PATCH",
        "/composite/sobjects/Account/HotCRM_Id__c",
        {"records": [{"attributes": {"type": "Account"}, "Name": "A", "HotCRM_Id__c": "1"}]},
    )[1]
    assert results[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    org.expire_sessions()
    assert org.call("GET", "/limits")[1][0]["errorCode"] == "INVALID_SESSION_ID"


def test_bulk_ingest_job(org):
    job = org.call(
        "POST",
        "/jobs/ingest",
        {"object": "Account", "operation": "upsert", "externalIdFieldName": "HotCRM_Id__c", "contentType": "CSV"},
    )[1]
    assert job["state"] == "Open"
    assert org.call("PUT", f"/jobs/ingest/{job['id']}/batches", raw=b"Name,HotCRM_Id__c\nA,1\n#N/A,2\n")[0] == 201
    assert org.call("PATCH", f"/jobs/ingest/{job['id']}", {"state": "UploadComplete"})[1]["state"] == "UploadComplete"
    assert org.call("GET", f"/jobs/ingest/{job['id']}")[1]["state"] == "InProgress"
    info = org.call("GET", f"/jobs/ingest/{job['id']}")[1]
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 2, 1)
    ok = org.call("GET", f"/jobs/ingest/{job['id']}/successfulResults")[1].splitlines()
    assert ok[0] == "sf__Id,sf__Created,Name,HotCRM_Id__c" and ok[1].endswith(",true,A,1")
    failed = org.call("GET", f"/jobs/ingest/{job['id']}/failedResults")[1].splitlines()
    assert failed[1].startswith(",REQUIRED_FIELD_MISSING:")


def test_oauth_grants(org):
    def token(form):
        body = "&".join(f"{k}={v}" for k, v in form.items()).encode()
        response = org.handle("POST", "/services/oauth2/token", {}, body)
        return response.status, json.loads(response.payload())

    creds = {"client_id": org.client_id, "client_secret": org.client_secret}
    status, body = token(
        {"grant_type": "password", "username": org.username, "password": org.password + org.security_token, **creds}
    )
    assert status == 200 and body["instance_url"] == org.base_url and body["token_type"] == "Bearer"
    assert token({"grant_type": "password", "username": org.username, "password": "x", **creds})[1]["error"] == (
        "invalid_grant"
    )
    assert token({"grant_type": "client_credentials", **creds})[0] == 200
    assert token({"grant_type": "client_credentials", "client_id": org.client_id, "client_secret": "no"})[0] == 400
    assert token({"grant_type": "refresh_token", "refresh_token": "nope", **creds})[1]["error"] == "invalid_grant"
    assert token({"grant_type": "magic"})[1]["error"] == "unsupported_grant_type"
