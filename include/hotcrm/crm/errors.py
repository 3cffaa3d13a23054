"""The CRM's own errors: a rule of the CRM said no.

Each has a stable ``code``, a message for a person and optional ``details``. They know nothing
of HTTP: the REST API answers each kind with its status (:mod:`hotcrm.api.errors`), the command
line prints the message.
"""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    """A request the CRM's rules refuse; the caller can fix it. ``code`` is stable for programs."""

    code = "CRM_ERROR"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class RecordNotFound(CrmError):
    """No record has the id asked for."""

    code = "NOT_FOUND"


class InvalidState(CrmError):
    """The record exists but its state forbids the change (a converted lead converted again)."""

    code = "INVALID_STATE"


class DuplicateRecord(CrmError):
    """The change would create a record that already exists (a lead or contact with that email)."""

    code = "DUPLICATE"


class LeadNotFound(RecordNotFound):
    code = "LEAD_NOT_FOUND"

    def __init__(self, lead_id: str) -> None:
        super().__init__(f"No lead with id {lead_id!r}")
        self.lead_id = lead_id


class LeadAlreadyConverted(InvalidState):
    code = "ALREADY_CONVERTED"

    def __init__(self, lead_id: str, account_id: Any, contact_id: Any, opportunity_id: Any) -> None:
        super().__init__(
            f"Lead {lead_id!r} is already converted",
            {"accountId": account_id, "contactId": contact_id, "opportunityId": opportunity_id},
        )


class ContactExists(DuplicateRecord):
    """A new lead's email belongs to a Contact: the person is a customer already."""

    code = "CONTACT_EXISTS"

    def __init__(self, contact_id: str) -> None:
        super().__init__(
            "A contact with this email already exists; the person is already a customer contact",
            {"field": "email", "contactId": contact_id},
        )


class ConvertedLeadExists(DuplicateRecord):
    """A new lead's email belongs to a converted Lead: it is not created again."""

    code = "LEAD_ALREADY_CONVERTED"

    def __init__(self, lead_id: str) -> None:
        super().__init__(
            "A converted lead has this email; it is not created again", {"field": "email", "leadId": lead_id}
        )


class LeadBeingCreated(DuplicateRecord):
    """Two requests create a lead with the same email at the same moment; the other one won."""

    code = "DUPLICATE_LEAD"

    def __init__(self) -> None:
        super().__init__("A lead with this email is being created right now")
