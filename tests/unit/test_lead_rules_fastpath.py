"""The fast paths of normalize_email / normalize_phone give exactly what the full validators give."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email

from hotcrm.leads import rules


def slow_email(value: str):
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def fast_email(value: str):
    try:
        return rules.normalize_email(value)
    except ValueError:
        return None


EMAILS = [
    "Ada.Lovelace@Example.COM",
    "a+tag@sub.example.co.uk",
    "o'brien@example.ie",
    "x@example.localhost",
    "x@foo.test",
    "x@foo.invalid",
    "x@my.local",
    "x@example.onion",
    "x@1.2.3.4",
    "x@example.c0m",
    "x@example.123",
    "x@ab--cd.com",
    "x@xn--bcher-kva.example",
    "x@-bad.com",
    "x@bad-.com",
    "x..y@example.com",
    ".x@example.com",
    "x.@example.com",
    "x@example..com",
    "x@example",
    "x@.example.com",
    "user@exa_mple.com",
    "#!$%&'*+-/=?^_`{}|~@example.org",
    '"quoted"@example.com',
    "zoë@example.com",
    "x@bücher.de",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "x@" + "a" * 63 + ".com",
    "x@" + "a" * 64 + ".com",
    "x@" + ".".join(["a" * 60] * 4) + ".com",
    "x@EXAMPLE.COM",
    "x@example.c",
    "x @example.com",
    "x@exam ple.com",
    "x@@example.com",
    "@example.com",
    "x@",
]


@pytest.mark.parametrize("value", EMAILS)
def test_email_fast_path_agrees_with_email_validator(value):
    assert fast_email(value) == slow_email(value)


def test_email_fast_path_agrees_on_random_addresses():
    rnd = random.Random(3)
    alphabet = "abcXYZ019.-_+'@!"
    for _ in range(3000):
        local = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 8)))
        domain = "".join(rnd.choice("abZ09.-") for _ in range(rnd.randint(1, 10)))
        value = f"{local}@{domain}.{rnd.choice(['com', 'io', 'test', 'c1', 'org', 'x'])}"
        assert fast_email(value) == slow_email(value), value


def slow_phone(value: str, region: str = "US"):
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted if rules.E164.match(formatted) else None


def fast_phone(value: str, region: str = "US"):
    try:
        return rules.normalize_phone(value, region)
    except ValueError:
        return None


PHONES = [
    "(415) 555-0132",
    "415.555.0132",
    "415-555-0132",
    "4155550132",
    "14155550132",
    "1 415 555 0132",
    "+1 415 555 0132",
    "+1 (415) 555-0132",
    "+14155550132",
    "+44 20 7946 0018",
    "020 7946 0018",
    "0123456789",
    "1234567890",
    "555-0132",
    "12",
    "+1 415 555 01321",
    "415 555 0132 ext 12",
    "+1+4155550132",
    "(415) 155-0132",
    "+1 (815) 555-0000",
]


@pytest.mark.parametrize("region", ["US", "CA", "GB"])
@pytest.mark.parametrize("value", PHONES)
def test_phone_fast_path_agrees_with_phonenumbers(value, region):
    assert fast_phone(value, region) == slow_phone(value, region)


def test_phone_fast_path_agrees_on_random_numbers():
    rnd = random.Random(5)
    for _ in range(3000):
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(7, 12)))
        fmt = rnd.choice(["{}", "+{}", "({}) {}-{}", "{}.{}.{}", "+1 {} {} {}"])
        parts = [digits[:3], digits[3:6], digits[6:]]
        value = fmt.format(*parts) if fmt.count("{}") == 3 else fmt.format(digits)
        assert fast_phone(value) == slow_phone(value), value
