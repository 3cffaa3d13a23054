"""Mapping file checks, payloads, hashing and batching of the Salesforce sync."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest

from hotcrm.salesforce.client import RetryPolicy, _collection_result
from hotcrm.salesforce.mapping import (
    MappingError,
    chunks,
    group_by_parent,
    load_mapping,
    parse_mapping,
    payload_hash,
    to_payload,
)


@pytest.fixture(scope="module")
def mapping():
    return load_mapping()


def test_the_shipped_mapping(mapping):
    assert mapping.external_id_field == "HotCRM_Id__c"
    assert list(mapping.objects["Account"].fields) == [
        "Name",
        "Industry",
        "AnnualRevenue",
        "Phone",
        "Website",
        "BillingCity",
        "BillingState",
        "BillingCountry",
    ]
    assert list(mapping.objects["Contact"].fields) == ["FirstName", "LastName", "Email", "Phone"]
    rel = mapping.objects["Contact"].relationships[0]
    assert (rel.hotcrm_field, rel.target_object, rel.relationship_name, rel.salesforce_field) == (
        "AccountId",
        "Account",
        "Account",
        "AccountId",
    )


def test_account_payload(mapping):
    record = {
        "Id": "a-1",
        "Name": "Acme",
        "AnnualRevenue": Decimal("1200000.00"),
        "Industry": None,
        "Phone": "1",
        "Website": None,
        "BillingCity": "Austin",
        "BillingState": None,
        "BillingCountry": "US",
    }
    payload = to_payload(mapping, mapping.objects["Account"], record)
    assert payload["HotCRM_Id__c"] == "a-1"
    assert payload["AnnualRevenue"] == 1200000 and isinstance(payload["AnnualRevenue"], int)
    assert payload["Industry"] is None  # an emptied field is cleared in Salesforce too
    assert (
        to_payload(mapping, mapping.objects["Account"], {**record, "AnnualRevenue": Decimal("1.5")})["AnnualRevenue"]
        == 1.5
    )


def test_contact_payload_references_the_account_by_external_id(mapping):
    contact = mapping.objects["Contact"]
    record = {"Id": "c-1", "FirstName": "Ada", "LastName": "L", "Email": "a@x.io", "Phone": None, "AccountId": "a-1"}
    assert to_payload(mapping, contact, record)["Account"] == {"HotCRM_Id__c": "a-1"}
    orphan = to_payload(mapping, contact, {**record, "AccountId": None})
    assert orphan["AccountId"] is None and "Account" not in orphan


def test_hash_is_stable_and_sensitive(mapping):
    a = {"Name": "Acme", "AnnualRevenue": 5, "HotCRM_Id__c": "x"}
    assert payload_hash(a) == payload_hash(dict(reversed(list(a.items()))))
    assert payload_hash(a) != payload_hash({**a, "Name": "Acme "})
    assert payload_hash(a) != payload_hash({**a, "AnnualRevenue": None})
    assert len(payload_hash(a)) == 64


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a JSON object"),
        ({"external_id_field": "HotCRM_Id", "objects": {}}, "must name a custom field"),
        ({"objects": {}}, "'objects' must map"),
        ({"objects": {"Lead": {"fields": {"Company": "Company"}}}}, "objects.Lead: unknown object"),
        ({"objects": {"Account": {"fields": {"Revenue": "AnnualRevenue"}}}}, "objects.Account.fields.Revenue: unknown"),
        ({"objects": {"Account": {"fields": {"Name": "Bad Name"}}}}, "not a Salesforce field name"),
        ({"objects": {"Account": {"fields": {"Name": "HotCRM_Id__c"}}}}, "holds the HotCRM Id"),
        ({"objects": {"Account": {"fields": {"Name": "Name", "Phone": "Name"}}}}, "same Salesforce field"),
        (
            {
                "objects": {
                    "Contact": {
                        "fields": {"LastName": "LastName"},
                        "relationships": {"AccountId": {"object": "Account", "relationship": "Account"}},
                    }
                }
            },
            "target object Account is not in the mapping",
        ),
    ],
)
def test_bad_mappings_name_the_entry_and_the_fix(doc, message):
    with pytest.raises(MappingError, match=message) as info:
        parse_mapping(doc, source="salesforce_mapping.json")
    assert str(info.value).startswith("salesforce_mapping.json")


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{\n  "objects": {\n    "Account": ,\n}')
    with pytest.raises(MappingError, match=r"m.json, line 3, column 16: invalid JSON"):
        load_mapping(path)
    with pytest.raises(MappingError, match="mapping file not found"):
        load_mapping(tmp_path / "missing.json")
    path.write_text(json.dumps({"objects": {"Account": {"fields": {"Name": "Name"}}}}))
    assert load_mapping(path).objects["Account"].fields == {"Name": "Name"}


def test_chunks():
    assert [len(c) for c in chunks(list(range(401)), 200)] == [200, 200, 1]
    assert list(chunks([], 200)) == []
    with pytest.raises(ValueError):
        list(chunks([1], 0))


def test_group_by_parent_keeps_children_of_one_account_together():
    rows = [{"Id": str(i), "AccountId": random.Random(i).choice(["a", "b", None])} for i in range(50)]
    grouped = group_by_parent(rows, "AccountId")
    parents = [r["AccountId"] for r in grouped]
    # each parent forms one contiguous run, orphans last
    runs = [p for n, p in enumerate(parents) if n == 0 or parents[n - 1] != p]
    assert len(runs) == len(set(parents)) and runs[-1] is None


def test_backoff_grows_and_is_jittered_and_capped():
    policy, rng = RetryPolicy(base_delay=1.0, max_delay=8.0), random.Random(3)
    delays = [[policy.delay(attempt, rng) for _ in range(200)] for attempt in (1, 2, 3, 6)]
    assert all(0 <= d <= cap for ds, cap in zip(delays, (1, 2, 4, 8), strict=True) for d in ds)
    assert max(delays[3]) > 4 > max(delays[0])  # grows, up to the cap
    assert len({round(d, 6) for d in delays[0]}) > 100  # jitter


def test_collection_results_are_parsed():
    ok = _collection_result({"id": "001", "success": True, "errors": [], "created": True})
    assert (ok.success, ok.salesforce_id, ok.created) == (True, "001", True)
    bad = _collection_result(
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": "Required fields are missing: [Name]",
                    "fields": ["Name"],
                }
            ],
        }
    )
    assert bad.error_code == "REQUIRED_FIELD_MISSING" and bad.error_message.endswith("(fields: Name)")


def test_blank_text_maps_to_null(mapping):
    payload = to_payload(mapping, mapping.objects["Account"], {"Id": "a1", "Name": "A", "BillingCity": ""})
    assert payload["BillingCity"] is None


def test_bulk_rows_null_relationship_and_literal_na():
    from hotcrm.salesforce.client import LiteralNullMarker, bulk_row

    columns, cells = bulk_row({"HotCRM_Id__c": "c1", "LastName": "Li", "Account": {"HotCRM_Id__c": "a1"}})
    assert columns == ("HotCRM_Id__c", "LastName", "Account.HotCRM_Id__c") and cells == ["c1", "Li", "a1"]
    columns, cells = bulk_row({"HotCRM_Id__c": "c2", "Phone": None, "AccountId": None, "Active": True})
    assert cells == ["c2", "#N/A", "#N/A", "true"]
    with pytest.raises(LiteralNullMarker, match="BillingCity holds the text '#N/A'"):
        bulk_row({"HotCRM_Id__c": "a1", "BillingCity": "#N/A"})


def test_bulk_writer_splits_by_column_set_and_size():
    from hotcrm.salesforce.client import BulkCsvWriter

    writer = BulkCsvWriter(max_bytes=120)
    full = [
        writer.add({"HotCRM_Id__c": f"c{i}", "LastName": 'Li, "Jr"', "Account": {"HotCRM_Id__c": "a1"}})
        for i in range(6)
    ]
    writer.add({"HotCRM_Id__c": "c9", "LastName": "Alone", "AccountId": None})
    parts = [p for p in full if p] + writer.flush()
    assert all(len(p.data) <= 120 for p in parts) and sum(p.records for p in parts) == 7
    assert {p.columns for p in parts} == {
        ("HotCRM_Id__c", "LastName", "Account.HotCRM_Id__c"),
        ("HotCRM_Id__c", "LastName", "AccountId"),
    }
    first = bytes(parts[0].data).decode()
    assert first.startswith('HotCRM_Id__c,LastName,Account.HotCRM_Id__c\nc0,"Li, ""Jr""",a1\n')
    with pytest.raises(ValueError, match="at most 150000000"):
        BulkCsvWriter(max_bytes=200_000_000)


def test_bulk_error_text_is_split_into_code_and_message():
    from hotcrm.salesforce.client import parse_bulk_error

    assert parse_bulk_error("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --") == (
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [Name]:Name",
    )
    assert parse_bulk_error("") == ("UNKNOWN_EXCEPTION", "")
