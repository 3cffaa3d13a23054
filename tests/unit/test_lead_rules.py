"""The lead form rules shared by the file import and the REST API."""

from decimal import Decimal

import pytest

from hotcrm.leads.rules import normalize_email, normalize_lead, normalize_phone

VALID = {"FirstName": " Ada ", "LastName": "Lovelace", "Company": "Engines", "Email": "Ada@Example.COM"}


def test_a_valid_lead_is_trimmed_lower_cased_and_defaulted():
    clean, errors = normalize_lead(VALID)
    assert errors == []
    assert clean["FirstName"] == "Ada"
    assert clean["Email"] == "ada@example.com"
    assert clean["LeadSource"] == "Import"
    assert clean["Status"] == "New"


def test_every_problem_is_reported_at_once():
    _, errors = normalize_lead({"FirstName": "", "Email": "not-an-email", "Phone": "call me", "Nickname": "x"})
    fields = sorted(e.field for e in errors)
    assert fields == ["Company", "Email", "FirstName", "LastName", "Nickname", "Phone"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("(415) 555-0123", "+14155550123"), ("+44 20 7946 0000", "+442079460000"), ("+1-415-555-0123", "+14155550123")],
)
def test_phones_go_to_e164(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["12", "phone", "+999 1234"])
def test_unreadable_phones_are_rejected(raw):
    with pytest.raises(ValueError):
        normalize_phone(raw)


def test_lengths_are_checked_against_the_columns():
    _, errors = normalize_lead({**VALID, "FirstName": "x" * 41})
    assert [str(e) for e in errors] == ["FirstName: is 41 characters long; the limit is 40"]


def test_amounts_are_parsed_and_bad_ones_reported():
    clean, errors = normalize_lead({**VALID, "EstimatedValue": "12,500.5"})
    assert clean["EstimatedValue"] == Decimal("12500.50") and errors == []
    _, errors = normalize_lead({**VALID, "EstimatedValue": "lots"})
    assert errors[0].field == "EstimatedValue"


def test_email_normalization_rejects_bad_syntax():
    assert normalize_email("A.B@Example.org") == "a.b@example.org"
    with pytest.raises(ValueError):
        normalize_email("a@@b")
