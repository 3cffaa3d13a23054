"""CRM rule errors and their HTTP answers: every kind has a status, and the most specific wins."""

from __future__ import annotations

import pytest

from hotcrm.api.errors import CRM_ERROR_STATUS, from_crm_error
from hotcrm.crm import errors, services


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.LeadNotFound("x"), 404, "LEAD_NOT_FOUND"),
        (errors.LeadAlreadyConverted("x", "a", "c", None), 400, "ALREADY_CONVERTED"),
        (services.NotFoundError("Account 'x' not found"), 404, "NOT_FOUND"),
        (services.FilterError("filter #1: unknown field"), 400, "INVALID_FILTER"),
        (errors.DuplicateRecord("a lead has this email"), 409, "DUPLICATE"),
        (errors.InvalidState("closed"), 409, "INVALID_STATE"),
        (errors.ContactExists("C1"), 409, "CONTACT_EXISTS"),
        (errors.ConvertedLeadExists("L1"), 409, "LEAD_ALREADY_CONVERTED"),
        (errors.LeadBeingCreated(), 409, "DUPLICATE_LEAD"),
    ],
)
def test_each_crm_error_becomes_its_api_answer(error, status, code):
    answer = from_crm_error(error)
    assert (answer.status, answer.code, answer.message, answer.details) == (status, code, error.message, error.details)


def test_every_crm_error_class_has_a_status_and_a_code():
    for cls in _all_subclasses(errors.CrmError):
        assert any(base in CRM_ERROR_STATUS for base in cls.__mro__), cls
        assert cls.code and cls.code != errors.CrmError.code, cls


def test_already_converted_details_name_the_records():
    error = errors.LeadAlreadyConverted("L1", "A1", "C1", None)
    assert error.details == {"accountId": "A1", "contactId": "C1", "opportunityId": None}
    assert str(error) == "Lead 'L1' is already converted"


def test_crm_errors_keep_their_python_kinds():
    # Callers that caught ValueError / LookupError before still catch them.
    assert issubclass(services.FilterError, ValueError) and issubclass(services.NotFoundError, LookupError)
