"""The CRM's lead form rules, shared by the file import and the REST API.

:func:`normalize_lead` validates and normalizes one lead given by API field names and
returns every problem at once. :func:`match_existing` says which emails already belong to
a Lead, a converted Lead or a Contact, which decides update / report / create.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotcrm.crm.models import Contact, Lead, api_to_attr
from hotcrm.leads.numbers import DEFAULT as DEFAULT_AMOUNTS
from hotcrm.leads.numbers import AmountFormat

REQUIRED_FIELDS = ("FirstName", "LastName", "Company", "Email")
# Fields a lead may be created with, from files or the API.
WRITABLE_FIELDS = (
    "FirstName",
    "LastName",
    "Company",
    "Email",
    "Phone",
    "Title",
    "Industry",
    "Website",
    "City",
    "State",
    "Country",
    "LeadSource",
    "Status",
    "EstimatedValue",
    "OwnerId",
)
_WRITABLE = frozenset(WRITABLE_FIELDS)
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DEFAULT_PHONE_REGION = "US"

# Fast paths for the common, plain cases, which give exactly what the full validators give
# (tests/unit/test_lead_rules_fastpath.py checks them against each other): a file import
# validates millions of rows and the full validators cost ~100 microseconds a row.
# Plain ASCII dot-atom local part, plain LDH domain labels, an alphabetic TLD; anything
# else (quotes, Unicode, Punycode, "--", special-use names, long parts) takes the full path.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL_USE_SUFFIXES = ("arpa", "invalid", "local", "localhost", "onion", "test")
# A North American number written with digits, spaces, dots, dashes and parentheses only.
_NANP_CHARS = re.compile(r"\+?[0-9 ().-]+")
_NANP_NATIONAL = re.compile(r"[2-9][0-9]{2}[2-9][0-9]{6}")
_NANP_REGIONS = ("US", "CA")
_NON_DIGITS = re.compile(r"[^0-9]")
# An international number (a leading +) written with digits, spaces, dots, dashes and parentheses only.
_INTL_CHARS = re.compile(r"\+[0-9 ().-]+")
# A national number written the same way (no leading +).
_NATIONAL_CHARS = re.compile(r"[0-9 ().-]+")


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, worded for the person who can fix it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@functools.cache
def _max_length(field: str) -> int | None:
    column = Lead.__table__.columns[api_to_attr(field)]
    return getattr(column.type, "length", None)


def normalize_email(value: str) -> str:
    """A syntactically valid email, lower-cased; ValueError with the reason otherwise."""
    if _is_plain_email(value):
        return value.lower()
    try:
        # No DNS look-up: an import must not depend on the network.
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()


def _is_plain_email(value: str) -> bool:
    if len(value) > 254 or "--" in value or not _PLAIN_EMAIL.fullmatch(value):
        return False
    local, _, domain = value.rpartition("@")
    if len(local) > 64:
        return False
    tld = domain.rsplit(".", 1)[-1].lower()
    return tld not in _SPECIAL_USE_SUFFIXES


def _plain_nanp(value: str, region: str) -> str | None:
    """``+1XXXXXXXXXX`` for a plainly written North American number, else None (use phonenumbers)."""
    if not _NANP_CHARS.fullmatch(value) or "+" in value[1:]:
        return None
    digits = _NON_DIGITS.sub("", value)
    if value.startswith("+"):
        national = digits[1:] if len(digits) == 11 and digits[0] == "1" else None
    elif region in _NANP_REGIONS:
        national = digits if len(digits) == 10 else digits[1:] if len(digits) == 11 and digits[0] == "1" else None
    else:
        return None
    if national is None or not _NANP_NATIONAL.fullmatch(national):
        return None
    return "+1" + national


@functools.cache
def international_plans() -> tuple[frozenset[str], dict[str, tuple[tuple[str, ...], frozenset[int]]]]:
    """Every country calling code, and for those (but 1) whose numbers phonenumbers reads by
    the digits' lengths alone: code -> (national prefixes, possible national lengths).

    For ``+<code><national>``, phonenumbers takes the first 1-3 digits that are a calling code,
    strips the code's national prefix from the rest (``national_prefix_for_parsing``) when it
    starts with it, and checks the length against the code's metadata: with no prefix to
    strip (none, or literal prefixes such as ``0|180020`` the number does not start with) the
    E.164 form is the digits as written. Codes whose prefix is a pattern are left to phonenumbers.
    """
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

    plans: dict[str, tuple[tuple[str, ...], frozenset[int]]] = {}
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])
        if code == 1 or metadata is None or metadata.general_desc is None:
            continue
        prefix = metadata.national_prefix_for_parsing or ""
        lengths = metadata.general_desc.possible_length or (-1,)
        if not re.fullmatch(r"(?:[0-9]+(?:\|[0-9]+)*)?", prefix) or lengths[0] == -1:
            continue
        local = metadata.general_desc.possible_length_local_only or ()
        plans[str(code)] = (tuple(prefix.split("|")) if prefix else (), frozenset(lengths) | frozenset(local))
    return frozenset(str(code) for code in COUNTRY_CODE_TO_REGION_CODE), plans


@functools.cache
def _pattern_plans() -> dict[str, tuple[re.Pattern[str], frozenset[int]]]:
    """The calling codes (but 1) whose national prefix is a pattern (Brazil's, China's...):
    code -> (that pattern, possible national lengths). A number that does not start with a
    match of it has nothing stripped, so its lengths decide, as for the literal prefixes."""
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

    codes, plans = international_plans()
    patterns: dict[str, tuple[re.Pattern[str], frozenset[int]]] = {}
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])
        if code == 1 or str(code) in plans or metadata is None or metadata.general_desc is None:
            continue
        lengths = metadata.general_desc.possible_length or (-1,)
        if lengths[0] == -1 or not metadata.national_prefix_for_parsing:
            continue
        local = metadata.general_desc.possible_length_local_only or ()
        pattern = re.compile(metadata.national_prefix_for_parsing)
        patterns[str(code)] = (pattern, frozenset(lengths) | frozenset(local))
    return patterns


def _plain_international(value: str) -> str | None:
    """The E.164 form of a plainly written ``+<code> <number>`` that :func:`international_plans`
    covers (what phonenumbers gives, without it), else None (use phonenumbers)."""
    if not _INTL_CHARS.fullmatch(value):
        return None
    digits = _NON_DIGITS.sub("", value)
    codes, plans = international_plans()
    code = next((digits[:size] for size in (1, 2, 3) if digits[:size] in codes), None)
    if code is None or len(digits) < 3 or len(digits) > 15:
        return None
    national = digits[len(code) :]
    if code not in plans:
        pattern, lengths = _pattern_plans().get(code, (None, frozenset()))
        if pattern is None or pattern.match(national) or len(national) not in lengths or len(national) < 2:
            return None
        return "+" + digits
    prefixes, lengths = plans[code]
    if national.startswith(prefixes):  # "+49 (0)30 ...": strip the prefix as phonenumbers would
        national = _strip_national_prefix(code, national, prefixes)
        if national is None:
            return None
    if len(national) not in lengths or len(national) < 2 or len(code) + len(national) > 15:
        return None
    return "+" + code + national


@functools.cache
def _national_plan(region: str) -> tuple[str, re.Pattern[str] | None] | None:
    """For a region that is its calling code's main region (its metadata is the code's) and
    whose code :func:`international_plans` covers: (the code, the region's international
    dialling prefix as a pattern); else None."""
    from phonenumbers import PhoneMetadata, region_code_for_country_code

    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or not metadata.country_code or region_code_for_country_code(metadata.country_code) != region:
        return None
    code = str(metadata.country_code)
    if code not in international_plans()[1]:
        return None
    return code, (re.compile(metadata.international_prefix) if metadata.international_prefix else None)


def _plain_national(value: str, region: str) -> str | None:
    """The E.164 form of a plainly written national number of ``region`` (``06 12 34 56 78``
    in FR), else None (use phonenumbers). phonenumbers reads a national number as it reads
    ``+<the region's code><the digits>`` (the national prefix stripped the same way), unless
    the digits start with the region's international dialling prefix or its calling code (it
    may then read them as an international number): those are left to it."""
    if not _NATIONAL_CHARS.fullmatch(value):
        return None
    plan = _national_plan(region)
    if plan is None:
        return None
    code, international_prefix = plan
    digits = _NON_DIGITS.sub("", value)
    if digits.startswith(code) or (international_prefix is not None and international_prefix.match(digits)):
        return None
    return _plain_international(f"+{code}{digits}")


@functools.cache
def _code_metadata(code: str) -> Any:
    """phonenumbers' metadata for a calling code (its main region's)."""
    from phonenumbers import PhoneMetadata, region_code_for_country_code

    return PhoneMetadata.metadata_for_region_or_calling_code(int(code), region_code_for_country_code(int(code)))


def _strip_national_prefix(code: str, national: str, prefixes: tuple[str, ...]) -> str | None:
    """The national significant number phonenumbers makes of ``national`` (which starts with
    one of the code's literal national prefixes), with its own pattern and length checks; None
    when the code's metadata transforms the prefix (left to phonenumbers)."""
    from phonenumbers.phonenumberutil import ValidationResult, _match_national_number, _test_number_length

    metadata = _code_metadata(code)
    if metadata is None or metadata.national_prefix_transform_rule:
        return None
    prefix = next(p for p in prefixes if national.startswith(p))  # the alternation's first match
    general, stripped = metadata.general_desc, national[len(prefix) :]
    if _match_national_number(national, general, False) and not _match_national_number(stripped, general, False):
        return national
    short = (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY, ValidationResult.INVALID_LENGTH)
    return national if _test_number_length(stripped, metadata) in short else stripped


# Country names phonenumbers' locale data does not hold (it has "United Kingdom", "France"...).
_COUNTRY_ALIASES = {
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "usa": "US",
    "us": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "america": "US",
    "united states of america": "US",
}


def _locale_data() -> dict[str, dict[str, str]]:
    """phonenumbers' ``geodata.locale.LOCALE_DATA`` (region -> language -> country name), read
    from its module file alone: importing it as ``phonenumbers.geodata.locale`` first runs the
    ``geodata`` package, the geocoder's tables (~100 MB of memory and ~0.8 s per process, none
    of it needed here)."""
    import importlib.util
    from pathlib import Path

    path = Path(phonenumbers.__file__).parent / "geodata" / "locale.py"
    spec = importlib.util.spec_from_file_location("_hotcrm_phonenumbers_locale", path)
    if spec is None or spec.loader is None:  # another layout: the plain import
        from phonenumbers.geodata.locale import LOCALE_DATA

        return LOCALE_DATA
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "phonenumbers.geodata"  # its "from ..util import u" resolves without running geodata
    spec.loader.exec_module(module)
    return module.LOCALE_DATA


@functools.cache
def _country_names() -> dict[str, str]:
    """Lower-cased country name -> region code, from phonenumbers' locale data (every language
    it has, so native names such as "Deutschland" too); a name two regions share is left out."""
    found: dict[str, set[str]] = {}
    for region, names in _locale_data().items():
        if region not in phonenumbers.SUPPORTED_REGIONS:
            continue
        for name in names.values():
            # "*aa": the same as that language's name ("WS" has a "*zh" pointing to itself).
            for _ in range(3):
                if name.startswith("*"):
                    name = names.get(name[1:], "")
            if name and not name.startswith("*"):
                found.setdefault(name.casefold(), set()).add(region)
    table = {name: next(iter(regions)) for name, regions in found.items() if len(regions) == 1}
    table.update(_COUNTRY_ALIASES)
    return table


@functools.lru_cache(maxsize=4096)
def country_region(country: str) -> str | None:
    """The phonenumbers region of a Country value (an ISO 3166 alpha-2 code such as ``FR``, or a
    name such as ``France``, ``United Kingdom``, ``UK``, ``Deutschland``); None when not recognised."""
    text = " ".join(country.split())
    if len(text) == 2 and text.upper() in phonenumbers.SUPPORTED_REGIONS:
        return text.upper()
    return _country_names().get(text.casefold())


def phone_region_for(country: Any, default: str = DEFAULT_PHONE_REGION) -> str:
    """The region national phone numbers of a lead are read in: its Country's when recognised,
    else ``default`` (the mapping's ``phone_region``)."""
    if not isinstance(country, str) or not country:
        return default
    return country_region(country) or default


def normalize_phone(value: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """The phone number in E.164 (``+14155550123``); ValueError when it cannot be read as one.

    Numbers without a country code are read as ``region`` numbers. Plainly written North
    American and international numbers take fast paths that give what phonenumbers gives.
    """
    plain = _plain_nanp(value, region)
    if plain is None:
        plain = _plain_international(value) if value[:1] == "+" else _plain_national(value, region)
    if plain is not None:
        return plain
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValueError(
            f"{value!r} is not a possible phone number; write it with its country code, e.g. +44 20 7946 0000"
        )
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not E164.match(formatted):
        raise ValueError(f"{value!r} cannot be written in E.164")
    return formatted


def normalize_lead(
    values: Mapping[str, Any],
    *,
    default_source: str = "Import",
    phone_region: str = DEFAULT_PHONE_REGION,
    required: Iterable[str] = REQUIRED_FIELDS,
    amounts: AmountFormat = DEFAULT_AMOUNTS,
) -> tuple[dict[str, Any], list[FieldError]]:
    """Validate and normalize one lead given by API names.

    Strings are trimmed and empty strings become missing; Email is lower-cased; Phone goes
    to E.164 (a national number read in the Country's region when it is recognised, else in
    ``phone_region``); EstimatedValue is read in the ``amounts`` number format (a decimal point by
    default); lengths are checked against the columns; LeadSource defaults to
    ``default_source`` and Status to ``New``. Returns the clean values and every error
    (an empty list when the lead is valid). Unknown fields are errors.
    """
    clean: dict[str, Any] = {}
    errors: list[FieldError] = []
    for field, raw in values.items():
        if field not in _WRITABLE:
            errors.append(FieldError(field, f"unknown field; allowed: {', '.join(WRITABLE_FIELDS)}"))
            continue
        value = raw.strip() if isinstance(raw, str) else raw
        if value is None or value == "":
            continue
        clean[field] = value
    return _check_present(clean, errors, default_source, phone_region, required, amounts)


def row_normalizer(
    columns: Iterable[tuple[str, int]],
    *,
    default_source: str = "Import",
    phone_region: str = DEFAULT_PHONE_REGION,
    required: Iterable[str] = REQUIRED_FIELDS,
    amounts: AmountFormat = DEFAULT_AMOUNTS,
) -> Callable[[Sequence[str]], tuple[dict[str, Any], list[FieldError]]]:
    """:func:`normalize_lead` for the rows of one file, worked out once for its columns.

    ``columns`` are (API field, cell index) pairs; the returned function takes a row's cells
    (strings, as the csv module gives them) and gives what ``normalize_lead({field: cells[index] ...})`` gives, without
    building that dict or re-checking the field names for every row.
    """
    columns = tuple(columns)
    required = tuple(required)
    fields = [f for f, _ in columns]
    if len(set(fields)) != len(fields) or not _WRITABLE.issuperset(fields):

        def generic(cells: Sequence[str]) -> tuple[dict[str, Any], list[FieldError]]:
            values = {f: cells[i] for f, i in columns}
            return normalize_lead(
                values, default_source=default_source, phone_region=phone_region, required=required, amounts=amounts
            )

        return generic

    limits = _limits()
    specs = tuple((f, i, limits[f] or sys.maxsize) for f, i in columns)

    def normalize(cells: Sequence[str]) -> tuple[dict[str, Any], list[FieldError]]:
        clean: dict[str, Any] = {}
        short = True  # no value longer than its column (before Email and Phone are normalized)
        for field, index, limit in specs:
            value = cells[index].strip()
            if value:
                clean[field] = value
                if len(value) > limit:
                    short = False
        return _check_present(clean, [], default_source, phone_region, required, amounts, short)

    return normalize


@functools.cache
def _limits() -> dict[str, int]:
    return {field: _max_length(field) or 0 for field in WRITABLE_FIELDS}


def _check_present(
    clean: dict[str, Any],
    errors: list[FieldError],
    default_source: str,
    phone_region: str,
    required: Iterable[str],
    amounts: AmountFormat,
    short: bool = False,
) -> tuple[dict[str, Any], list[FieldError]]:
    """The rules on the fields present (trimmed, non-empty, known): the rest of :func:`normalize_lead`.

    ``short``: the caller checked that no value (all strings) is longer than its column, so
    only the normalized Email and Phone need their lengths checked again.
    """
    for field in required:
        if field not in clean:
            errors.append(FieldError(field, "is required"))
    if "Email" in clean:
        try:
            clean["Email"] = normalize_email(str(clean["Email"]))
        except ValueError as exc:
            errors.append(FieldError("Email", f"{clean.pop('Email')!r} is not a valid email address ({exc})"))
    if "Phone" in clean:
        try:
            region = phone_region_for(clean.get("Country"), phone_region)
            clean["Phone"] = normalize_phone(str(clean["Phone"]), region)
        except ValueError as exc:
            clean.pop("Phone")
            errors.append(FieldError("Phone", str(exc)))
    if "EstimatedValue" in clean:
        try:
            clean["EstimatedValue"] = parse_amount(clean["EstimatedValue"], amounts)
        except ValueError as exc:
            clean.pop("EstimatedValue")
            errors.append(FieldError("EstimatedValue", str(exc)))
    limits = _limits()
    if short and len(clean.get("Email", "")) <= limits["Email"] and len(clean.get("Phone", "")) <= limits["Phone"]:
        too_long = []
    else:
        too_long = [f for f, v in clean.items() if limits[f] and isinstance(v, str) and len(v) > limits[f]]
    for field in too_long:
        errors.append(FieldError(field, f"is {len(clean[field])} characters long; the limit is {limits[field]}"))
        clean.pop(field)
    clean.setdefault("LeadSource", default_source)
    clean.setdefault("Status", "New")
    return clean, errors


def parse_amount(value: Any, amounts: AmountFormat = DEFAULT_AMOUNTS) -> Decimal:
    """An amount to the cent: a string read in the ``amounts`` number format, a number as it
    is; ValueError with the reason otherwise."""
    if isinstance(value, str):
        return amounts.parse(value)
    try:
        amount = Decimal(str(value))
        if not amount.is_finite() or amount < 0 or amount >= Decimal("1e16"):
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise ValueError(f"{value!r} is not an amount") from None
    return amount.quantize(Decimal("0.01"))


@dataclass(frozen=True)
class ExistingMatch:
    """What an email already belongs to: ``lead`` (update it), ``converted_lead`` or
    ``contact`` (report, do not create)."""

    kind: str
    record_id: str


def match_existing(session: Session, emails: Iterable[str], chunk_size: int = 5_000) -> dict[str, ExistingMatch]:
    """For each (lower-cased) email that already exists, what it belongs to.

    A converted Lead or a Contact wins over an open Lead: those must not be re-created.
    """
    matches: dict[str, ExistingMatch] = {}
    pending = sorted({e for e in emails if e})
    for start in range(0, len(pending), chunk_size):
        chunk = pending[start : start + chunk_size]
        for lead_id, email, status in session.execute(
            select(Lead.id, Lead.email, Lead.status).where(Lead.email.in_(chunk))
        ):
            kind = "converted_lead" if status == "Converted" else "lead"
            matches[email] = ExistingMatch(kind, lead_id)
        for contact_id, email in session.execute(select(Contact.id, Contact.email).where(Contact.email.in_(chunk))):
            if email not in matches or matches[email].kind == "lead":
                matches[email] = ExistingMatch("contact", contact_id)
    return matches
