"""Export parameters are validated before any database access, with messages naming the bad entry."""

import datetime as dt

import pytest

from hotcrm.exports.accounts import FilterError, account_query, build_spec, export_name
from hotcrm.exports.options import DEFAULT_FIELDS

DAY = (dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 2, tzinfo=dt.UTC))


def test_defaults_put_id_first():
    spec = build_spec()
    assert spec.fields == ("Id", *DEFAULT_FIELDS)
    assert spec.format == "json" and spec.filters == () and spec.changed_since is None


def test_fields_as_a_comma_separated_string_and_id_not_repeated():
    assert build_spec("Name, Id ,Industry").fields == ("Id", "Name", "Industry")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": ["Name", "Revenue"]}, "unknown field 'Revenue' for Account; allowed fields: Id, Name"),
        ({"fields": ["Name", "Name"]}, "lists a field twice"),
        ({"filters": [["Revenue", ">", 1]]}, r"filter #1 \['Revenue', '>', 1\]: unknown field 'Revenue'"),
        ({"filters": [["Industry", "~", "x"]]}, "unknown operator '~'; allowed operators: =, !="),
        (
            {"filters": [["AnnualRevenue", ">=", "lots"]]},
            "value 'lots' is not a valid Decimal for field 'AnnualRevenue'",
        ),
        (
            {"filters": [["Name", "=", "a"], ["Industry"]]},
            r"filter #2 \['Industry'\]: expected \[field, operator, value\]",
        ),
        ({"filters": {"Industry": "Retail"}}, "filters must be a list of \\[field, operator, value\\]"),
        ({"filters": '[["Industry", "="'}, "filters is not valid JSON"),
        ({"filters": [["LastModifiedDate", ">", "yesterday"]]}, "not a valid datetime"),
        ({"fmt": "xml"}, "format 'xml' is not supported; allowed formats: json, ndjson, csv"),
        ({"changed_since": "last week"}, "changed_since 'last week' is not an ISO 8601 timestamp"),
        ({"changed_since": 12}, "changed_since must be an ISO 8601 timestamp string"),
    ],
)
def test_bad_params_name_the_entry(kwargs, message):
    with pytest.raises(FilterError, match=message):
        build_spec(**kwargs)


def test_filters_as_json_text_and_changed_since_become_query_filters():
    spec = build_spec(None, '[["Industry", "=", "Retail"]]', "NDJSON", "2026-01-31T00:00:00")
    assert spec.format == "ndjson"
    assert spec.changed_since == "2026-01-31T00:00:00+00:00"
    assert spec.query_filters == [["Industry", "=", "Retail"], ["LastModifiedDate", ">", "2026-01-31T00:00:00+00:00"]]


def test_query_binds_values_and_selects_only_the_asked_columns():
    spec = build_spec(["Name"], [["Name", "=", "x'); DROP TABLE accounts; --"]])
    query = account_query(spec)
    sql = str(query)
    assert "DROP TABLE" not in sql  # the value is a bound parameter
    assert [c.name for c in query.selected_columns] == ["Id", "Name"]
    assert "ORDER BY accounts.id" in sql


def test_names_follow_the_data_interval_and_differ_for_other_params():
    scheduled = export_name(build_spec(), *DAY)
    assert scheduled == "accounts_20260301T000000Z_20260302T000000Z.json"
    assert export_name(build_spec(fmt="csv"), *DAY) == "accounts_20260301T000000Z_20260302T000000Z.csv"
    retail = export_name(build_spec(filters=[["Industry", "=", "Retail"]]), *DAY)
    assert retail.startswith("accounts_20260301T000000Z_20260302T000000Z_") and retail != scheduled
    assert retail == export_name(build_spec(filters=[["Industry", "=", "Retail"]]), *DAY)  # stable on retries
    assert export_name(build_spec(), None, DAY[1]) == "accounts_20260302T000000Z.json"
