"""Great Expectations suites run on DataFrames and render to escaped HTML."""

import pandas as pd
import pytest

from hotcrm.quality import render_html, validate_dataframe

EXPECTATIONS = [
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "Email", "mostly": 0.9}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "Email"}},
]


def test_a_clean_frame_passes():
    df = pd.DataFrame({"Email": ["a@example.com", "b@example.com"]})
    result = validate_dataframe(df, "leads", EXPECTATIONS)
    assert result.success
    assert result.failures == []
    assert "passed" in result.summary()


def test_failures_are_named_with_what_was_observed():
    df = pd.DataFrame({"Email": ["a@example.com", "a@example.com", None]})
    result = validate_dataframe(df, "leads", EXPECTATIONS)
    assert not result.success
    failed = {o.type for o in result.failures}
    assert failed == {"expect_column_values_to_not_be_null", "expect_column_values_to_be_unique"}
    assert "unexpected_count=1" in result.summary()


def test_an_unknown_expectation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown expectation type 'expect_magic'"):
        validate_dataframe(pd.DataFrame({"a": [1]}), "x", [{"type": "expect_magic"}])


def test_html_report_escapes_values():
    df = pd.DataFrame({"<b>col</b>": [None]})
    result = validate_dataframe(
        df, "s<script>", [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "<b>col</b>"}}]
    )
    page = render_html(result)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>col</b>" not in page
