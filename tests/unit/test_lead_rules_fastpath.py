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


CELLS = {
    "FirstName": ["Ada", "  Ada  ", "", "   ", "x" * 40, "x" * 41, "Zoë"],
    "LastName": ["Lovelace", "", " L ", "y" * 81],
    "Company": ["Engines", "", "Co, Ltd", "z" * 256],
    "Email": ["ADA@Example.COM", " a@b.co ", "", "not-an-email", "zoë@example.com", "x@foo.test", "a" * 250 + "@x.com"],
    "Phone": ["", "(415) 555-0132", "+44 20 7946 0018", "12", "+1 212 555 0100 ext 5", "555-0100", "06 12 34 56 78"],
    "LeadSource": ["", "Web", " Partner ", "s" * 101],
    "Status": ["", "Working", "q" * 41],
    "EstimatedValue": ["", "1200.5", "1,000", "-3", "abc", "1e20", "NaN", " 7 "],
    "Title": ["", "CTO", "t" * 129],
    "Country": ["", "USA", "FR", "Germany", "United Kingdom", "Narnia"],
}


@pytest.mark.parametrize("seed", range(4))
def test_row_normalizer_gives_what_normalize_lead_gives(seed):
    rnd = random.Random(seed)
    for _ in range(300):
        fields = rnd.sample(sorted(CELLS), rnd.randint(1, len(CELLS)))
        width = len(fields) + rnd.randint(0, 2)
        positions = rnd.sample(range(width), len(fields))
        columns = list(zip(fields, positions, strict=True))
        required = rnd.sample(list(rules.REQUIRED_FIELDS), rnd.randint(0, 4))
        options = {"default_source": rnd.choice(["Import", "Trade show"]), "phone_region": rnd.choice(["US", "GB"])}
        normalize = rules.row_normalizer(columns, required=required, **options)
        for _ in range(5):
            cells = ["ignored"] * width
            for field, position in columns:
                cells[position] = rnd.choice(CELLS[field])
            expected = rules.normalize_lead({f: cells[i] for f, i in columns}, required=required, **options)
            clean, errors = normalize(cells)
            assert list(clean.items()) == list(expected[0].items()), (columns, cells)
            assert errors == expected[1], (columns, cells)


def test_row_normalizer_falls_back_for_unknown_or_repeated_fields():
    unknown = rules.row_normalizer([("FirstName", 0), ("Nickname", 1)], required=["FirstName"])
    assert unknown(["Ada", "A"]) == rules.normalize_lead({"FirstName": "Ada", "Nickname": "A"}, required=["FirstName"])
    repeated = rules.row_normalizer([("FirstName", 0), ("FirstName", 1)], required=[])
    assert repeated(["Ada", "Grace"])[0]["FirstName"] == "Grace"


def test_staged_cells_json_is_what_the_json_encoder_gives():
    from hotcrm.leads.columnar import _JSON_ESCAPED_RE, _encode_json
    from hotcrm.leads.columnar import cells_json as _cells_json

    rnd = random.Random(5)
    alphabet = ["a", '"', "\\", "\x00", "\x1f", "\x7f", "é", "\u2028", ",", " ", "\n", "\t", "'"]
    for _ in range(5_000):
        cells = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 4))) for _ in range(rnd.randint(0, 5))]
        assert _cells_json(cells) == _encode_json(cells), cells
    plain = ["Ada", "Lovelace", "Engines Ltd, London", "ada@example.com", "", "Zoë"]
    assert _cells_json(plain) == _encode_json(plain)
    assert _JSON_ESCAPED_RE.search("".join(plain)) is None  # the joined fast path is taken


INTERNATIONAL = [
    "+33 6 12 34 56 78",
    "+33 (0)1 23 45 67 89",
    "+49 (0)30 1234567",
    "+49 89 12345678",
    "+44 20 7946 0958",
    "+44 (0)20 7946 0958",
    "+44 7700 900123",
    "+34 612 34 56 78",
    "+48 12 345 67 89",
    "+46 8 123 456 78",
    "+41 44 123 45 67",
    "+55 11 91234-5678",
    "+45 32 12 34 56",
    "+39 06 1234 5678",
    "+7 (495) 123-45-67",
    "+7 8 495 123 45 67",
    "+86 10 1234 5678",
    "+800 1234 5678",
    "+999 1234",
    "+0 123 456",
    "+33",
    "+3",
    "+ 33 6 12",
    "+(33) 6-12-34-56-78",
    "+33 6 12 34 56 78 9",
    "+1 415 555 0132",
    "+4420 7946 0958",
    "+44 180020 1234",
]


@pytest.mark.parametrize("region", ["US", "GB", "DE"])
@pytest.mark.parametrize("value", INTERNATIONAL)
def test_international_fast_path_agrees_with_phonenumbers(value, region):
    assert fast_phone(value, region) == slow_phone(value, region)


def test_international_fast_path_agrees_for_every_calling_code():
    """Random numbers for each calling code: lengths around the possible ones, a national
    prefix or not, the way people group them."""
    rnd = random.Random(13)
    codes, plans = rules.international_plans()
    taken, taken_with_pattern = 0, 0
    for code in sorted(codes):
        prefixes = plans.get(code, ((), frozenset()))[0]
        for _ in range(40):
            national = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 16)))
            if prefixes and rnd.random() < 0.3:
                national = rnd.choice(prefixes) + national
            cut = rnd.randint(0, len(national))
            value = rnd.choice(["+{}{}{}", "+{} {} {}", "+{} ({}) {}", "+{}-{}.{}", "+{} {}-{}"]).format(
                code, national[:cut], national[cut:]
            )
            fast = rules._plain_international(value) is not None
            taken += fast
            taken_with_pattern += fast and code in rules._pattern_plans()
            assert fast_phone(value) == slow_phone(value), value
    assert taken > 1_000 and taken_with_pattern > 20  # the fast paths were exercised, not only the fallback


def test_national_fast_path_agrees_for_every_region():
    """Random national numbers for each region phonenumbers knows, written as people do: with
    the national prefix or not, the international dialling prefix or the calling code in
    front (left to phonenumbers), grouped."""
    from phonenumbers import SUPPORTED_REGIONS

    rnd = random.Random(17)
    taken = 0
    for region in sorted(SUPPORTED_REGIONS):
        plan = rules._national_plan(region)
        prefixes = rules.international_plans()[1].get(plan[0], ((),))[0] if plan else ()
        for _ in range(40):
            national = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 16)))
            head = rnd.random()
            if prefixes and head < 0.4:
                national = rnd.choice(prefixes) + national
            elif plan and head < 0.5:
                national = plan[0] + national
            elif head < 0.6:
                national = "00" + national
            cut = rnd.randint(0, len(national))
            value = rnd.choice(["{}{}", "{} {}", "({}) {}", "{}-{}", "{}.{}"]).format(national[:cut], national[cut:])
            taken += rules._plain_national(value, region) is not None
            assert fast_phone(value, region) == slow_phone(value, region), (value, region)
    assert taken > 800  # the fast path was exercised, not only the fallback
    examples = [("06 12 34 56 78", "FR"), ("030 1234567", "DE"), ("020 7946 0958", "GB"), ("06 1234 5678", "IT")]
    assert all(rules._plain_national(value, region) == slow_phone(value, region) for value, region in examples)


@pytest.mark.parametrize(
    ("country", "phone", "expected"),
    [
        ("FR", "06 12 34 56 78", "+33612345678"),
        ("France", "06 12 34 56 78", "+33612345678"),
        (" fr ", "06 12 34 56 78", "+33612345678"),
        ("DE", "030 1234567", "+49301234567"),
        ("Deutschland", "030 1234567", "+49301234567"),
        ("Germany", "(030) 12345678", "+493012345678"),
        ("GB", "020 7946 0958", "+442079460958"),
        ("United Kingdom", "020 7946 0958", "+442079460958"),
        ("UK", "07700 900123", "+447700900123"),
        ("USA", "(415) 555-0132", "+14155550132"),
        ("United States", "415.555.0132", "+14155550132"),
        ("FR", "+1 415 555 0132", "+14155550132"),  # international: the Country does not matter
        ("Narnia", "(415) 555-0132", "+14155550132"),  # unrecognised: phone_region
        ("", "(415) 555-0132", "+14155550132"),
    ],
)
def test_national_phones_are_read_in_the_rows_country(country, phone, expected):
    lead = {"FirstName": "A", "LastName": "B", "Company": "C", "Email": "a@example.com", "Phone": phone}
    clean, errors = rules.normalize_lead({**lead, "Country": country}, phone_region="US")
    assert errors == []
    assert clean["Phone"] == expected
    normalize = rules.row_normalizer([(f, i) for i, f in enumerate([*lead, "Country"])], phone_region="US")
    assert normalize([*lead.values(), country])[0]["Phone"] == expected


def test_country_names_come_from_phonenumbers_locale_data_without_its_geocoder_tables():
    import subprocess
    import sys

    # A fresh interpreter (tests/conftest.py puts include/ on its PYTHONPATH): reading the
    # names leaves phonenumbers' geodata package (the geocoder's ~100 MB of tables) unloaded.
    code = (
        "import sys; from hotcrm.leads import rules; "
        "assert rules.country_region('Deutschland') == 'DE' and rules.country_region('Royaume-Uni') == 'GB'; "
        "assert 'phonenumbers.geodata' not in sys.modules, 'geodata loaded'; "
        "from phonenumbers.geodata.locale import LOCALE_DATA; "
        "assert rules._locale_data() == LOCALE_DATA"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_country_region_reads_codes_and_names_and_nothing_else():
    assert [rules.country_region(c) for c in ("fr", "GB", "Frankreich", "Royaume-Uni", "U.S.A.")] == [
        "FR",
        "GB",
        "FR",
        "GB",
        "US",
    ]
    assert rules.country_region("Narnia") is None and rules.country_region("XX") is None
    assert rules.phone_region_for("Narnia", "CA") == "CA" and rules.phone_region_for(None, "GB") == "GB"
    # Without a Country the mapping's region decides, as before: a French national number is refused as US.
    assert rules.normalize_lead({"Phone": "020 7946 0958"}, required=())[1]
