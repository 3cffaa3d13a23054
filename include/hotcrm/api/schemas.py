"""Request and response bodies of the REST API (they make the OpenAPI document).

Request bodies are camelCase (``firstName``) and refuse unknown fields; CRM records in
responses go by the CRM's API names (``FirstName``), like every other boundary of HotCRM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from hotcrm.crm.models import Lead, api_to_attr

# camelCase body field -> the CRM's API name.
LEAD_BODY_FIELDS = {
    "firstName": "FirstName",
    "lastName": "LastName",
    "company": "Company",
    "email": "Email",
    "phone": "Phone",
    "title": "Title",
    "industry": "Industry",
    "website": "Website",
    "city": "City",
    "state": "State",
    "country": "Country",
    "leadSource": "LeadSource",
    "estimatedValue": "EstimatedValue",
    "ownerId": "OwnerId",
}
API_TO_BODY = {api: body for body, api in LEAD_BODY_FIELDS.items()}
E164_PATTERN = r"^\+?[1-9]\d{1,14}$"


def _length(api_name: str) -> int:
    return Lead.__table__.columns[api_to_attr(api_name)].type.length


class LeadCreate(BaseModel):
    """A new lead. firstName, lastName and company are required; email must be valid; phone
    is normalized to E.164 (numbers without a country code are read as US numbers)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    firstName: StrictStr = Field(max_length=_length("FirstName"))
    lastName: StrictStr = Field(max_length=_length("LastName"))
    company: StrictStr = Field(max_length=_length("Company"))
    email: StrictStr | None = Field(default=None, max_length=_length("Email"), examples=["ada@example.com"])
    phone: StrictStr | None = Field(
        default=None,
        max_length=_length("Phone"),
        description=f"normalized to E.164, which must match {E164_PATTERN}",
        examples=["+14155550123"],
    )
    title: StrictStr | None = Field(default=None, max_length=_length("Title"))
    industry: StrictStr | None = Field(default=None, max_length=_length("Industry"))
    website: StrictStr | None = Field(default=None, max_length=_length("Website"))
    city: StrictStr | None = Field(default=None, max_length=_length("City"))
    state: StrictStr | None = Field(default=None, max_length=_length("State"))
    country: StrictStr | None = Field(default=None, max_length=_length("Country"))
    leadSource: StrictStr | None = Field(default=None, max_length=_length("LeadSource"), description="default: API")
    estimatedValue: StrictFloat | StrictInt | None = Field(default=None, ge=0)
    ownerId: StrictStr | None = Field(default=None, max_length=_length("OwnerId"))


class ConvertRequest(BaseModel):
    """Options of a lead conversion."""

    model_config = ConfigDict(extra="forbid")

    createOpportunity: StrictBool = False


class ErrorBody(BaseModel):
    """Every error: a message for a person, a stable code for a program, optional details."""

    error: str
    code: str
    details: Any = None


class FieldProblem(BaseModel):
    """One failing field of a request body."""

    field: str
    message: str


class LeadRecord(BaseModel):
    """A Lead, by the CRM's API names."""

    Id: str
    FirstName: str | None
    LastName: str
    Company: str
    Email: str | None
    Phone: str | None
    Title: str | None
    Industry: str | None
    Website: str | None
    City: str | None
    State: str | None
    Country: str | None
    LeadSource: str
    Status: str
    EstimatedValue: float | None
    OwnerId: str | None
    ConvertedAccountId: str | None
    ConvertedContactId: str | None
    ConvertedOpportunityId: str | None
    ConvertedDate: datetime | None
    CreatedDate: datetime
    LastModifiedDate: datetime


class LeadResponse(BaseModel):
    """A lead; ``action`` says whether this request created it or updated the open lead with that email."""

    success: Literal[True] = True
    action: Literal["created", "updated", "read"]
    data: LeadRecord


class AccountRecord(BaseModel):
    """The Account a conversion created."""

    Id: str
    Name: str
    Industry: str | None
    Phone: str | None
    Website: str | None
    OwnerId: str | None


class ContactRecord(BaseModel):
    """The Contact a conversion created."""

    Id: str
    FirstName: str | None
    LastName: str
    Email: str | None
    Phone: str | None
    AccountId: str | None
    OwnerId: str | None


class OpportunityRecord(BaseModel):
    """The Opportunity a conversion created."""

    Id: str
    Name: str
    Stage: str
    Amount: float | None
    AccountId: str | None
    ContactId: str | None
    OwnerId: str | None


class ConversionData(BaseModel):
    """What a conversion created; ``opportunity`` is null unless it was asked for."""

    account: AccountRecord
    contact: ContactRecord
    opportunity: OpportunityRecord | None


class ConvertResponse(BaseModel):
    """A successful conversion."""

    success: Literal[True] = True
    data: ConversionData


class ImportStatus(BaseModel):
    """One lead import file: where it is in the pipeline and its row counts."""

    fileId: str
    fileName: str
    status: str
    rowsRead: int
    inserted: int
    updated: int
    duplicates: int
    rejected: int
    notLoaded: int = 0  # rows of a failed file not loaded (beside those rejected)
    error: str | None
    createdAt: datetime
    startedAt: datetime | None
    finishedAt: datetime | None


class ImportResponse(BaseModel):
    """An import file's status."""

    success: Literal[True] = True
    data: ImportStatus


class TokenResponse(BaseModel):
    """RFC 6749 access token response."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class SalesforceConnected(BaseModel):
    """The Salesforce org is connected (the tokens themselves are never returned)."""

    success: Literal[True] = True
    data: dict[str, Any]
