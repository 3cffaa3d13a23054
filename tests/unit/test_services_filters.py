"""Filter and field validation of the service layer: the allowlist, operators and types."""

import pytest
from sqlalchemy.dialects import postgresql

from hotcrm.crm import services
from hotcrm.crm.models import Account, Lead, api_to_attr, attr_to_api


@pytest.mark.parametrize(
    ("api", "attr"),
    [("Id", "id"), ("AnnualRevenue", "annual_revenue"), ("ConvertedOpportunityId", "converted_opportunity_id")],
)
def test_api_names_map_to_columns_both_ways(api, attr):
    assert api_to_attr(api) == attr
    assert attr_to_api(attr) == api


def test_every_required_field_of_the_issue_exists():
    for name in [
        "Id",
        "FirstName",
        "LastName",
        "Company",
        "Email",
        "Phone",
        "Industry",
        "Website",
        "LeadSource",
        "Status",
        "EstimatedValue",
        "OwnerId",
        "ConvertedAccountId",
        "ConvertedContactId",
        "ConvertedOpportunityId",
        "ConvertedDate",
        "CreatedDate",
        "LastModifiedDate",
    ]:
        assert name in Lead.api_fields()


def _sql(conditions):
    return [str(c.compile(dialect=postgresql.dialect())) for c in conditions]


def test_values_become_bound_parameters_never_sql_text():
    hostile = "x'; DROP TABLE accounts; --"
    (condition,) = services.parse_filters(Account, [["Name", "=", hostile]])
    compiled = condition.compile(dialect=postgresql.dialect())
    assert hostile not in str(compiled)
    assert hostile in compiled.params.values()


def test_numbers_and_dates_are_coerced_to_the_column_type():
    (revenue, modified) = services.parse_filters(
        Account, [["AnnualRevenue", ">=", 1000000], ["LastModifiedDate", ">", "2026-01-01T00:00:00"]]
    )
    assert str(revenue.right.value) == "1000000"
    assert modified.right.value.tzinfo is not None


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ([["Nope", "=", 1]], "unknown field 'Nope'"),
        ([["Name", "~", "x"]], "unknown operator '~'"),
        ([["AnnualRevenue", ">=", "lots"]], "not a valid Decimal for field 'AnnualRevenue'"),
        ([["AnnualRevenue", ">=", True]], "not a valid Decimal"),
        ([["Name"]], "operator"),
        ([["Name", "in", []]], "non-empty list"),
        ([["Name", "in", "abc"]], "non-empty list"),
        (["Name = 'x'"], "expected [field, operator, value]"),
        ({"Name": "x"}, "must be a list"),
        ([["LastModifiedDate", ">", "yesterday"]], "not a valid datetime"),
        ([["Name", ">", None]], "null can only be compared"),
    ],
)
def test_bad_filters_name_the_entry_and_what_is_allowed(filters, message):
    with pytest.raises(services.FilterError) as error:
        services.parse_filters(Account, filters)
    assert message in str(error.value)


def test_unknown_field_error_lists_the_allowed_fields():
    with pytest.raises(services.FilterError, match="allowed fields: Id, Name, Type"):
        services.parse_filters(Account, [["Revenue", ">", 1]])


def test_fields_are_validated():
    assert services.parse_fields(Account, ["Name", "Industry"]) == ["Name", "Industry"]
    assert services.parse_fields(Account, None) == Account.api_fields()
    for bad in (["Name", "Name"], [], "Name", ["Secret"]):
        with pytest.raises(services.FilterError):
            services.parse_fields(Account, bad)
