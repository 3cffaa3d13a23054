"""The REST API's client errors: raised anywhere in a request, answered as
``{"error", "code", "details"?}`` by the API's route class. The CRM's own rule errors
(:mod:`hotcrm.crm.errors`) become one with :func:`from_crm_error`."""

from __future__ import annotations

from typing import Any

from hotcrm.crm.errors import CrmError, DuplicateRecord, InvalidState, LeadAlreadyConverted, RecordNotFound


class ApiError(Exception):
    """An error a client caused and can fix: HTTP status, stable code, message, details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


# The HTTP answer to each kind of CRM rule error (the most specific class listed wins).
# ALREADY_CONVERTED stays a 400, as the API has always answered it.
CRM_ERROR_STATUS: dict[type[CrmError], int] = {
    RecordNotFound: 404,
    LeadAlreadyConverted: 400,
    InvalidState: 409,
    DuplicateRecord: 409,
    CrmError: 400,
}


def from_crm_error(exc: CrmError) -> ApiError:
    """The client's answer to a CRM rule error: its status (:data:`CRM_ERROR_STATUS`), code, message and details."""
    status = next(CRM_ERROR_STATUS[cls] for cls in type(exc).__mro__ if cls in CRM_ERROR_STATUS)
    return ApiError(status, exc.code, exc.message, exc.details)
