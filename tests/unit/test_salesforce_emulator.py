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


# --- conformance: each test names the Salesforce documentation page it checks ----------------------

DOC_CSV_ROWS = (
    "https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_bulk_v2/datafiles_csv_valid_record_rows.htm"
)
DOC_PREPARE_CSV = (
    "https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/datafiles_prepare_csv.htm"
)
DOC_UPLOAD = "https://developer.salesforce.com/docs/platform/api-asynch/guide/upload-job-data.md"
DOC_RELATIONSHIP = "https://developer.salesforce.com/docs/platform/api-asynch/guide/datafiles-prepare-data.html"
DOC_UPSERT = "https://developer.salesforce.com/docs/platform/api-rest/guide/resources-sobject-upsert-patch.md"
DOC_APEX_UPSERT = (
    "https://developer.salesforce.com/docs/atlas.en-us.apexcode.meta/apexcode/langCon_apex_dml_examples_upsert.htm"
)
DOC_STATE_COUNTRY = (
    "https://help.salesforce.com/apex/HTViewHelpDoc?id=xcloud.admin_state_country_picklists_standard_countries.htm"
)


def bulk_job(org, data: bytes, **spec):
    """Create an upsert job on Account, upload ``data``, close it; returns the job id."""
    job = org.call(
        "POST",
        "/jobs/ingest",
        {"object": "Account", "operation": "upsert", "externalIdFieldName": "HotCRM_Id__c", **spec},
    )[1]
    assert org.call("PUT", f"/jobs/ingest/{job['id']}/batches", raw=data)[0] == 201
    org.call("PATCH", f"/jobs/ingest/{job['id']}", {"state": "UploadComplete"})
    return job["id"]


def finish(org, job_id, polls=10):
    for _ in range(polls):
        info = org.call("GET", f"/jobs/ingest/{job_id}")[1]
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return info
    return info


def test_bulk_empty_cell_is_ignored_and_na_sets_null(org):
    """DOC_CSV_ROWS: "Empty field values are ignored when you update records. To set a field
    value to null, use a field value of #N/A." """
    finish(org, bulk_job(org, b"HotCRM_Id__c,Name,BillingCity,Phone\nx1,Acme,Paris,123\n"))
    finish(org, bulk_job(org, b"HotCRM_Id__c,Name,BillingCity,Phone\nx1,Acme,,#N/A\n"))
    record = org.find("Account", HotCRM_Id__c="x1")[0]
    assert record["BillingCity"] == "Paris" and record["Phone"] is None


def test_bulk_csv_quoting_per_the_rules(org):
    """DOC_CSV_ROWS: values with a comma, a line break or a double quote are enclosed in double
    quotes, inner quotes doubled; values are not trimmed; a space before or after a quote is an
    error for the row."""
    data = b'HotCRM_Id__c,Name,BillingCity\nq1,"Acme, ""the best""", Lyon \nq2,"two\nlines",x\n'
    info = finish(org, bulk_job(org, data))
    assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 0)
    assert org.find("Account", HotCRM_Id__c="q1")[0]["Name"] == 'Acme, "the best"'
    assert org.find("Account", HotCRM_Id__c="q1")[0]["BillingCity"] == " Lyon "
    assert org.find("Account", HotCRM_Id__c="q2")[0]["Name"] == "two\nlines"
    bad = finish(org, bulk_job(org, b'HotCRM_Id__c,Name\nq3,"Acme" \n'))
    assert bad["state"] == "Failed" and "line 2" in bad["errorMessage"]


def test_bulk_line_ending_and_delimiter_are_the_jobs(org):
    """DOC_PREPARE_CSV: the delimiter is the job's columnDelimiter, the line ending its
    lineEnding (LF or CRLF); a CSV written with another line ending keeps the stray CR."""
    info = finish(
        org,
        bulk_job(
            org, b"HotCRM_Id__c;Name;BillingCity\r\nd1;A, Inc;Paris\r\n", columnDelimiter="SEMICOLON", lineEnding="CRLF"
        ),
    )
    assert info["state"] == "JobComplete"
    assert org.find("Account", HotCRM_Id__c="d1")[0]["Name"] == "A, Inc"
    # declared LF, written CRLF: the CR stays in the last header cell, which names no field
    mismatch = finish(org, bulk_job(org, b"HotCRM_Id__c,Name,BillingCity\r\nd2,B,Paris\r\n"))
    assert mismatch["numberRecordsFailed"] == 1 and not org.find("Account", HotCRM_Id__c="d2")
    tab = finish(org, bulk_job(org, b"HotCRM_Id__c\tName\nd3\tC, Inc\n", columnDelimiter="TAB"))
    assert tab["numberRecordsFailed"] == 0 and org.find("Account", HotCRM_Id__c="d3")[0]["Name"] == "C, Inc"


def test_bulk_relationship_column_and_results(org):
    """DOC_RELATIONSHIP: RelationshipName.IndexedFieldName in a header links by external id."""
    finish(org, bulk_job(org, b"HotCRM_Id__c,Name\nacc-1,Acme\n"))
    job = org.call(
        "POST", "/jobs/ingest", {"object": "Contact", "operation": "upsert", "externalIdFieldName": "HotCRM_Id__c"}
    )[1]
    org.call(
        "PUT", f"/jobs/ingest/{job['id']}/batches", raw=b"HotCRM_Id__c,LastName,Account.HotCRM_Id__c\nc1,Li,ACC-1\n"
    )
    org.call("PATCH", f"/jobs/ingest/{job['id']}", {"state": "UploadComplete"})
    assert finish(org, job["id"])["numberRecordsFailed"] == 0
    account = org.find("Account", HotCRM_Id__c="acc-1")[0]
    assert org.find("Contact", HotCRM_Id__c="c1")[0]["AccountId"] == account["Id"]  # matched case-insensitively


def test_bulk_job_takes_several_polls_and_can_fail_or_be_aborted(org):
    """Bulk API 2.0 "Get Information About an Ingest Job": UploadComplete, InProgress, then
    JobComplete, Failed or Aborted; "Get Job Unprocessed Record Results" lists the rest."""
    org.faults.bulk_rows_per_poll = 1
    job_id = bulk_job(org, b"HotCRM_Id__c,Name\np1,A\np2,B\np3,C\n")
    states = [org.call("GET", f"/jobs/ingest/{job_id}")[1]["state"] for _ in range(3)]
    assert states == ["InProgress", "InProgress", "JobComplete"]
    org.faults.bulk_rows_per_poll = None
    org.faults.bulk_fail_after = 1
    failed = finish(org, bulk_job(org, b"HotCRM_Id__c,Name\nf1,A\nf2,B\n"))
    assert failed["state"] == "Failed" and failed["numberRecordsProcessed"] == 1
    unprocessed = org.call("GET", f"/jobs/ingest/{failed['id']}/unprocessedrecords")[1].splitlines()
    assert unprocessed == ["HotCRM_Id__c,Name", "f2,B"]
    org.faults.bulk_fail_after = None
    org.faults.bulk_hold = True
    held = bulk_job(org, b"HotCRM_Id__c,Name\nh1,A\n")
    assert finish(org, held)["state"] == "InProgress"
    assert org.call("PATCH", f"/jobs/ingest/{held}", {"state": "Aborted"})[1]["state"] == "Aborted"
    assert org.call("GET", f"/jobs/ingest/{held}/unprocessedrecords")[1].splitlines()[1] == "h1,A"


def test_bulk_failed_results_per_record(org):
    """Bulk API 2.0 "Get Job Failed Record Results": sf__Id, sf__Error, then the row as sent."""
    info = finish(org, bulk_job(org, b"HotCRM_Id__c,Name,Industry\ne1,A,Retail\ne2,B,Spaceflight\n"))
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 1)
    failed = org.call("GET", f"/jobs/ingest/{info['id']}/failedResults")[1].splitlines()
    assert failed[0] == "sf__Id,sf__Error,HotCRM_Id__c,Name,Industry"
    assert failed[1].startswith(",INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:") and failed[1].endswith(",e2,B,Spaceflight")


def test_bulk_upload_over_the_limit_is_refused(org):
    """DOC_UPLOAD: "A request can provide CSV data that does not in total exceed 150 MB of base64
    encoded content" (~100 MB of CSV)."""
    org.max_upload_base64_bytes = 400  # the same rule, at a test's scale
    job = org.call(
        "POST", "/jobs/ingest", {"object": "Account", "operation": "upsert", "externalIdFieldName": "HotCRM_Id__c"}
    )[1]
    assert org.call("PUT", f"/jobs/ingest/{job['id']}/batches", raw=b"x" * 300)[0] == 201  # 400 once encoded
    status, body = org.call("PUT", f"/jobs/ingest/{job['id']}/batches", raw=b"x")
    assert status == 400 and body[0]["errorCode"] == "INVALIDBATCH" and "base64" in body[0]["message"]


def test_collections_empty_string_is_stored_as_null(org):
    """REST API (JSON): an empty string for a text field is stored as null."""
    upsert = "/composite/sobjects/Account/HotCRM_Id__c"
    org.call(
        "PATCH",
        upsert,
        {"records": [{"attributes": {"type": "Account"}, "HotCRM_Id__c": "n1", "Name": "A", "BillingCity": "Paris"}]},
    )
    org.call(
        "PATCH", upsert, {"records": [{"attributes": {"type": "Account"}, "HotCRM_Id__c": "n1", "BillingCity": ""}]}
    )
    assert org.find("Account", HotCRM_Id__c="n1")[0]["BillingCity"] is None


def test_several_matches_is_duplicate_external_id_per_record(org):
    """DOC_UPSERT: several matches answer 300 for one record by URL; in a Collections or Bulk
    upsert the record fails with DUPLICATE_EXTERNAL_ID and the others go on."""
    org.insert("Account", {"Name": "one", "HotCRM_Id__c": "dup"})
    org.insert("Account", {"Name": "two", "HotCRM_Id__c": "DUP"})  # case-insensitive: the same value
    assert org.call("PATCH", "/sobjects/Account/HotCRM_Id__c/dup", {"Name": "x"})[0] == 300
    results = org.call(
        "PATCH",
        "/composite/sobjects/Account/HotCRM_Id__c",
        {
            "records": [
                {"attributes": {"type": "Account"}, "HotCRM_Id__c": "dup", "Name": "x"},
                {"attributes": {"type": "Account"}, "HotCRM_Id__c": "ok", "Name": "y"},
            ]
        },
    )[1]
    assert results[0]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID" and results[1]["success"]
    info = finish(org, bulk_job(org, b"HotCRM_Id__c,Name\nDup,z\n"))
    assert info["numberRecordsFailed"] == 1
    assert ",DUPLICATE_EXTERNAL_ID:" in org.call("GET", f"/jobs/ingest/{info['id']}/failedResults")[1]


def test_text_external_id_matches_case_insensitively(org):
    """DOC_APEX_UPSERT: matching is case-insensitive for a Unique external id that treats "ABC"
    and "abc" as duplicates (how HotCRM_Id__c is defined in this org)."""
    status, first = org.call("PATCH", "/sobjects/Account/HotCRM_Id__c/AbC-1", {"Name": "A"})
    status2, second = org.call("PATCH", "/sobjects/Account/HotCRM_Id__c/abc-1", {"Name": "B"})
    assert (status, status2) == (201, 200) and first["id"] == second["id"]
    assert len(org.find("Account")) == 1


def test_restricted_picklist_and_state_country_picklists(org):
    """Restricted picklists refuse unknown values (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST);
    with State and Country/Territory Picklists (DOC_STATE_COUNTRY) an unknown country code is
    refused and a state that is not one of the country's is FIELD_INTEGRITY_EXCEPTION."""

    def create(values):
        return org.call("POST", "/sobjects/Account", {"Name": "A", **values})

    assert create({"Industry": "Spaceflight"})[1][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert create({"Industry": "Retail"})[0] == 201
    assert create({"BillingCountryCode": "XX"})[1][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    bad_state = create({"BillingCountryCode": "US", "BillingStateCode": "ON"})[1][0]
    assert bad_state["errorCode"] == "FIELD_INTEGRITY_EXCEPTION" and "state" in bad_state["message"]
    assert create({"BillingCountry": "Atlantis"})[1][0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    status, body = create({"BillingCountryCode": "CA", "BillingStateCode": "ON"})
    record = org.call("GET", f"/sobjects/Account/{body['id']}")[1]
    assert (record["BillingCountry"], record["BillingState"]) == ("Canada", "ON")


def test_currency_precision(org):
    """AnnualRevenue is a currency(18, 0): rounded half-up to the field's scale; more digits
    than the precision is NUMBER_OUTSIDE_VALID_RANGE."""
    status, body = org.call("POST", "/sobjects/Account", {"Name": "A", "AnnualRevenue": 1234.5})
    assert org.call("GET", f"/sobjects/Account/{body['id']}")[1]["AnnualRevenue"] == 1235.0
    big = org.call("POST", "/sobjects/Account", {"Name": "A", "AnnualRevenue": 10**18})[1][0]
    assert big["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"
    info = finish(org, bulk_job(org, b"HotCRM_Id__c,Name,AnnualRevenue\nr1,A,1.5E3\nr2,B,abc\n"))
    assert org.find("Account", HotCRM_Id__c="r1")[0]["AnnualRevenue"] == 1500.0
    assert info["numberRecordsFailed"] == 1
