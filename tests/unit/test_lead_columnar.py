"""The column-wise lead rules, Arrow's parsing of quote-free lines, and the email-hash set give
exactly what their per-row counterparts give."""

from __future__ import annotations

import csv
import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hotcrm.leads import loader, numbers, rules
from hotcrm.leads.columnar import _UNUSUAL_CLASS, ColumnarRules, _phone_characters, _scan, cells_from_rows, parse_text
from hotcrm.leads.columnar import cells_json as _cells_json
from hotcrm.leads.keys import EmailKeys
from hotcrm.leads.reader import HeaderMap
from hotcrm.leads.staging import stage_plan, stage_row

# Cells per field: plain ones, and every kind the per-row rules must decide.
CELLS = {
    "FirstName": [
        "Ada",
        "José",
        "Łukasz",
        "Søren",
        "  Ada  ",
        "",
        "   ",
        "x" * 40,
        "x" * 41,
        "Zoë",
        "\u00a0Ada",
        "Ada\u3000",
        "A\x1cda",
        "\tAda\v",
    ],
    "LastName": ["Lovelace", "", " L ", "y" * 80, "y" * 81, "O'Brien", 'Say "hi"', "back\\slash", "Ünal"],
    "Company": ["Engines", "", "Co, Ltd", "z" * 255, "z" * 256, "Line\nBreak", "Tab\there", "\ufeffBOM"],
    "Email": [
        "ADA@Example.COM",
        " a@b.co ",
        "",
        "not-an-email",
        "zoë@example.com",
        "x@foo.test",
        "x@Foo.TEST",
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "x@ab--cd.com",
        "x@example.c0m",
        '"q"@example.com',
        "a.b+c@sub.example.org",
    ],
    "Phone": [
        "",
        "(415) 555-0132",
        "+1 (415) 555-0132",
        "1-415-555-0132",
        "+44 20 7946 0018",
        "12",
        "555-0100",
        "415.555.0132",
        "+1 115 555 0132",
        "4155550132 ",
        "+14155550132",
        "(415) 155-0132",
        # International and foreign national numbers, as the realistic benchmark file writes them.
        "+33 6 12 34 56 78",
        "+33 (0)1 23 45 67 89",
        "+49 (0)30 1234567",
        "+49 89 12345678",
        "+44 20 7946 0958",
        "+44 7700 900123",
        "+44 180020 1234",
        "+34 612 34 56 78",
        "+48 12 345 67 89",
        "+55 11 91234-5678",
        "+7 8 495 123 45 67",
        "+999 1234",
        "+0 12 34",
        "06 12 34 56 78",
        "030 1234567",
        "020 7946 0958",
        # National numbers of many regions (read in the row's Country), "(0)" forms, prefixes
        # phonenumbers keeps, the international prefix or the calling code in front.
        "07700 900123",
        "(030) 12345678",
        "089 12345678",
        "612 34 56 78",
        "06 1234 5678",
        "12 345 67 89",
        "08-123 456 78",
        "044 123 45 67",
        "32 12 34 56",
        "(11) 91234-5678",
        "011 91234 5678",
        "010 1234 5678",
        "03-1234-5678",
        "(02) 9876 5432",
        "098765 43210",
        "0",
        "01",
        "00 33 6 12 34 56 78",
        "0033612345678",
        "33 6 12 34 56 78",
        "49 30 1234567",
        "+44 (0)20 7946 0958",
        "+34 (0)612 34 56 78",
        "+55 (11) 91234-5678",
        "+55 0 11 91234 5678",
        "+86 10 1234 5678",
        "+86 010 1234 5678",
        "+81 3 1234 5678",
        "+61 2 9876 5432",
        "+91 98765 43210",
        "+39 06 1234 5678",
        "+46 (0)8 123 456 78",
        "+49 (0)30",
        "+33 0",
        "+44 180020",
        "06 12 34 56 78 90 12",
        "+33 6 12 34 56 78 90 12 34",
        "０６ 12 34 56 78",  # full-width digits: phonenumbers reads them, the fast paths do not
        "+33 ６ 12 34 56 78",
        "+",
        "()",
    ],
    "LeadSource": ["", "Web", " Partner ", "s" * 101],
    "Status": ["", "Working", "q" * 41],
    "Title": ["", "CTO", "t" * 129],
    "Website": ["", "https://example.com"],
    "State": ["", "CA"],
    # National numbers are read in the Country's region when it is recognised.
    "Country": [
        *("", "FR", "France", "DE", "Deutschland", "GB", "United Kingdom", "UK", " fr ", "US", "CA", "Narnia"),
        *("ES", "Italia", "PL", "Sweden", "CH", "DK", "Brazil", "CN", "JP", "AU", "India", "AR", "NL", "Schweiz"),
    ],
    "OwnerId": ["", "owner-1"],
    "EstimatedValue": ["", "1200.5", "1,000", "12.500", "1.234,56", "€ 1.200,-", "1\u00a0234,56", "-3", "abc", " 7 "],
}


def staged_by_rows(columns: dict[str, int], width: int, cells: list[str], **options) -> list | None:
    """What the per-row path stages for a row (None when it is rejected)."""
    normalize = rules.row_normalizer(columns.items(), **options)
    clean, errors = normalize(cells)
    if errors:
        return None
    plan = stage_plan(HeaderMap([f"c{i}" for i in range(width)], dict(columns), [], []))
    return stage_row(7, clean, plan, cells)


@pytest.mark.parametrize("seed", range(16))
def test_plain_rows_get_what_the_per_row_rules_give_and_the_rest_is_left_to_them(seed):
    rnd = random.Random(seed)
    for _ in range(40):
        fields = ["Email", *rnd.sample([f for f in CELLS if f != "Email"], rnd.randint(2, len(CELLS) - 1))]
        width = len(fields) + rnd.randint(0, 2)
        positions = rnd.sample(range(width), len(fields))
        columns = dict(zip(fields, positions, strict=True))
        required = [f for f in rules.REQUIRED_FIELDS if f in columns]
        region = rnd.choice(["US", "US", "CA", "GB", "FR", "DE", "BR", "CN", "JP", "IN", "AU"])
        amounts = rnd.choice([numbers.DEFAULT, numbers.AmountFormat(","), numbers.AmountFormat(None)])
        rows = []
        for _ in range(60):
            cells = [rnd.choice(["", "extra", 'q"uote', "ctl\x01"]) for _ in range(width)]
            for field, position in columns.items():
                pool = CELLS[field]
                cells[position] = pool[0] if rnd.random() < 0.5 else rnd.choice(pool)  # plenty of plain rows
            rows.append(cells)
        rules_c = ColumnarRules(columns, loader.LEAD_COLUMNS, phone_region=region, required=required, amounts=amounts)
        result = rules_c.apply(cells_from_rows(rows, width))
        assert len(result.plain) == len(rows)
        plain_rows = [row for row, plain in zip(rows, result.plain, strict=True) if plain]
        assert len(result.emails) == len(plain_rows)
        staged = {c: result.values[c].to_pylist() for c in loader.LEAD_COLUMNS}
        for i, cells in enumerate(plain_rows):
            expected = staged_by_rows(columns, width, cells, phone_region=region, required=required, amounts=amounts)
            assert expected is not None, (columns, cells)  # a plain row is a valid row
            got = [7, *(staged[c][i] for c in loader.LEAD_COLUMNS), result.raw[i].as_py()]
            assert got == expected, (columns, cells)
            assert result.raw[i].as_py() == _cells_json(cells)
        for row, plain in zip(rows, result.plain, strict=True):  # plain-looking rows do take the fast path
            if all(row[p] == CELLS[f][0] for f, p in columns.items()):
                assert plain, (columns, row)


def test_plain_looking_rows_are_plain_and_amounts_are_read_in_the_files_format():
    columns = {"FirstName": 0, "LastName": 1, "Company": 2, "Email": 3, "Phone": 4}
    rows = [["Ada", "Lovelace", "Engines", f"ada{i}@Example.com", "(415) 555-0132"] for i in range(5)]
    result = ColumnarRules(columns, loader.LEAD_COLUMNS).apply(cells_from_rows(rows, 5))
    assert result.plain.all() and result.emails[0] == "ada0@example.com"
    assert result.values["phone"].to_pylist()[0] == "+14155550132"
    german = ColumnarRules({**columns, "EstimatedValue": 5}, loader.LEAD_COLUMNS, amounts=numbers.AmountFormat(","))
    amounts = ["12.500,00", "", "1.200,-", "$1,200.50", "12.500"]
    result = german.apply(cells_from_rows([[*row, a] for row, a in zip(rows, amounts, strict=True)], 6))
    assert result.plain.tolist() == [True, True, True, False, True]  # the US amount: per row, rejected there
    assert result.values["estimated_value"].to_pylist() == ["12500.00", None, "1200.00", "12500.00"]


# The reference for the byte scan: what a text block's cells may hold that the column checks must see.
_TEXT_TO_CHECK = re.compile(f'[{_UNUSUAL_CLASS}\\x0b\\x0c"\\\\]')
_UNUSUAL_RE = re.compile(f"[{_UNUSUAL_CLASS}]")


def has_unusual(text: str, delimiter: str) -> bool:
    """True when quote-free ``text`` holds an unusual character, or one JSON escapes (line ends
    aside; a tab unless it is the delimiter)."""
    if delimiter != "\t" and "\t" in text:
        return True
    return _TEXT_TO_CHECK.search(text) is not None


def test_the_byte_scan_finds_every_character_the_column_checks_would():
    rnd = random.Random(3)
    odd = ["\u00a0", "\x1c", "\u3000", "\ufeff", "\x01", "\x0b", "\x0c", "\\", '"', "\u2028", "\x85", "\t"]
    for _ in range(2_000):
        text = "".join(rnd.choice(["a", ",", "é", " ", "\n", *odd]) for _ in range(rnd.randint(0, 12)))
        needs = any(c in text for c in odd)
        assert _scan(text.encode(), ",")[1] == needs, repr(text)
        assert has_unusual(text, ",") == needs, repr(text)
        # The characters the column checks look for (the others only ask for escaping).
        assert _scan(text.encode(), ",")[0] == (_UNUSUAL_RE.search(text) is not None), repr(text)
    assert not any(_scan(b"a\tb\n", "\t")[:2])  # the delimiter itself


@pytest.mark.parametrize("seed", range(5))
def test_arrow_parses_quote_free_lines_as_the_csv_module_does(seed):
    rnd = random.Random(seed)
    delimiter = rnd.choice([",", ";", "\t", "|"])
    width = rnd.randint(2, 5)
    pieces = ["Ada", "", "  ", "é", "x y", "\u00a0", "1.5"]
    lines = []
    for _ in range(300):
        kind = rnd.random()
        if kind < 0.05:
            lines.append("")
        elif kind < 0.08:
            lines.append("   ")
        else:
            count = width if kind < 0.85 else rnd.choice([1, width - 1, width + 1])
            lines.append(delimiter.join(rnd.choice(pieces) for _ in range(count)))
    text = "".join(line + rnd.choice(["\n", "\r\n", "\r"]) for line in lines)
    if rnd.random() < 0.5:
        text = text.rstrip("\r\n")
    physical = text.splitlines(keepends=True)  # the test's lines hold no other line breaks
    parsed = parse_text(text, 0, len(physical), delimiter, width)
    expected = list(csv.reader(physical, delimiter=delimiter))
    columns = [c.to_pylist() for c in parsed.cells]
    rows = list(zip(*columns, strict=True)) if columns and columns[0] else []
    assert len(rows) == len(parsed.lines)
    for offset, row in zip(parsed.lines.tolist(), rows, strict=True):
        if expected[offset]:  # a blank line comes out as a row of empty cells
            assert list(row) == expected[offset]
        else:
            assert not "".join(row)
    for offset, line in parsed.others:
        assert len(expected[offset]) not in (0, width) or line.strip() == ""
        assert next(csv.reader([line], delimiter=delimiter), []) == expected[offset]
    assert sorted([*parsed.lines.tolist(), *(o for o, _ in parsed.others)]) == list(range(len(physical)))


def test_email_keys_flag_each_repeat_and_keep_the_first_line_of_each_hash():
    rnd = random.Random(11)
    for _ in range(60):
        keys, first_line, line = EmailKeys(), {}, 0
        for _ in range(rnd.randint(1, 40)):
            batch = [rnd.randint(0, 300) for _ in range(rnd.randint(0, 8))]
            lines = list(range(line, line + len(batch)))
            line += len(batch)
            expected = []
            for key, number in zip(batch, lines, strict=True):
                expected.append(key in first_line)
                first_line.setdefault(key, number)
            repeat = keys.repeats(np.array(batch, dtype=np.int64), np.array(lines, dtype=np.int64))
            assert repeat.tolist() == expected
            assert keys.distinct == (len(first_line) == line)
            known = np.array(sorted(first_line), dtype=np.int64)
            assert keys.line_of(known).tolist() == [first_line[k] for k in known.tolist()]


def test_direct_load_ids_are_the_prefix_and_eight_hex_digits():
    numbers = np.array([1, 42, 0xABCDEF01, 2**32 - 1], dtype=np.uint32)
    assert loader.Stager.hex_numbers(numbers).to_pylist() == [f"{n:08x}" for n in numbers.tolist()]
    assert isinstance(loader.Stager.hex_numbers(numbers), pa.Array)


def test_the_byte_scan_of_a_text_block_agrees_with_has_unusual_and_sees_every_padded_cell():
    rnd = random.Random(17)
    odd = ["\u00a0", "\x1c", "\u3000", "\u2005", "\ufeff", "\x01", "\x0b", "\\", "\u2028", "\x85", "\t", "\x7f"]
    for delimiter in (",", "\t", ";"):
        for _ in range(1_500):
            pieces = ["a", "é", " ", delimiter, "\n", "\r\n", "ü", "x y", *odd]
            text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 14)))
            unusual, escapes, padded = _scan(text.encode(), delimiter)
            assert escapes == has_unusual(text, delimiter), repr(text)
            assert unusual == (_UNUSUAL_RE.search(text) is not None), repr(text)
            lines = re.split(r"\r\n|\r|\n", text)  # (str.splitlines also splits at \x85, \x1c...)
            cells = [c for row in csv.reader(lines, delimiter=delimiter) for c in row]
            if any(c != c.strip(" \t\v\f") for c in cells):
                assert padded, repr(text)


def fast_phone(value: str, region: str) -> str | None:
    """What ``rules.normalize_phone``'s fast paths give (None: it asks phonenumbers)."""
    plain = rules._plain_nanp(value, region)
    if plain is None:
        plain = rules._plain_international(value) if value[:1] == "+" else rules._plain_national(value, region)
    return plain


def random_phones(rnd: random.Random, region: str, count: int) -> list[str]:
    """Numbers as people write them for ``region``: national ones with or without the national
    prefix (literal or a pattern's), the international prefix or the calling code in front,
    ``+<code>`` with ``(0)``, other codes, lengths around the possible ones, odd characters."""
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

    plan = rules._national_plan(region)
    code = plan[0] if plan else str(phonenumbers_code(region))
    prefixes = rules.international_plans()[1].get(code, ((),))[0]
    other = str(rnd.choice(sorted(COUNTRY_CODE_TO_REGION_CODE)))
    found = []
    for _ in range(count):
        national = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 14)))
        head = rnd.random()
        if prefixes and head < 0.35:
            national = rnd.choice(prefixes) + national
        elif head < 0.45:
            national = "0" + national
        elif head < 0.5:
            national = code + national
        elif head < 0.55:
            national = "00" + code + national
        cut = rnd.randint(0, len(national))
        shape = rnd.choice(["{}{}", "{} {}", "({}) {}", "{}-{}", "{}.{}", "{} ({}) {}"])
        parts = (national[:cut], national[cut:]) if shape.count("{}") == 2 else ("", national[:cut], national[cut:])
        written = shape.format(*parts).strip()
        kind = rnd.random()
        if kind < 0.3:
            written = f"+{code} {written}"
        elif kind < 0.4:
            written = f"+{code} (0){written}"
        elif kind < 0.45:
            written = f"+{other} {written}"
        elif kind < 0.48:
            written = rnd.choice(
                [f"{written} ext 1", f"+{written}+1", f"0{written}x", f"++{written}", f"\uff10{written}", "+", "()"]
            )
        found.append(written)
    return found


def phonenumbers_code(region: str) -> int:
    import phonenumbers

    return phonenumbers.country_code_for_region(region)


def column_phones(values: list[str], countries: list[str] | None, phone_region: str):
    """What the column-wise path alone makes of trimmed phone values: (accepted, E.164)."""
    columns = {"Email": 0, "Phone": 1} if countries is None else {"Email": 0, "Phone": 1, "Country": 2}
    rules_c = ColumnarRules(columns, loader.LEAD_COLUMNS, phone_region=phone_region)
    value = pa.array(values, pa.string())
    regions = None if countries is None else rules_c._regions(pa.array(countries, pa.string()))
    if regions is None:
        nanp = phone_region in rules._NANP_REGIONS
    else:
        nanp = pc.is_in(regions, value_set=pa.array(rules._NANP_REGIONS, pa.string()))
    ok, e164 = rules_c._plain_phone(value, nanp, regions)
    return ok.to_pylist(), e164.to_pylist()


@pytest.mark.parametrize("seed", range(4))
def test_the_column_wise_phones_are_exactly_the_fast_paths_for_every_region(seed):
    """Column-wise, a phone is accepted exactly when ``normalize_phone``'s fast paths read it,
    with their E.164 form: national numbers of every region (grouped per row by Country, or
    all in the mapping's region), national prefixes stripped or kept, pattern prefixes."""
    from phonenumbers import SUPPORTED_REGIONS

    rnd = random.Random(seed)
    regions = sorted(SUPPORTED_REGIONS)
    taken = national = 0
    for start in range(0, len(regions), 12):
        chunk = regions[start : start + 12]
        values, countries = [], []
        for region in chunk:
            found = random_phones(rnd, region, 30)
            values += found
            countries += [region] * len(found)
        order = list(range(len(values)))
        rnd.shuffle(order)  # regions interleaved in a batch
        values, countries = [values[i] for i in order], [countries[i] for i in order]
        default = rnd.choice(["US", "GB", "FR"])
        ok, e164 = column_phones(values, countries, default)
        for value, country, accepted, number in zip(values, countries, ok, e164, strict=True):
            expected = fast_phone(value, country)
            assert (accepted, number if accepted else None) == (expected is not None, expected), (value, country)
            taken += accepted
            national += accepted and value[:1] != "+"
        region = rnd.choice(chunk)  # every row in the mapping's region: no Country column
        found = random_phones(rnd, region, 80)
        ok, e164 = column_phones(found, None, region)
        for value, accepted, number in zip(found, ok, e164, strict=True):
            expected = fast_phone(value, region)
            assert (accepted, number if accepted else None) == (expected is not None, expected), (value, region)
    assert taken > 900 and national > 400  # the column-wise paths were exercised


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("030 2123456", "DE", "+49302123456"),
        ("020 7946 0123", "GB", "+442079460123"),
        ("07700 123456", "GB", "+447700123456"),
        ("+33 (0)1 23 45 67 89", "US", "+33123456789"),  # (0): the national prefix, stripped
        ("+49 (0)30 2123456", "US", "+49302123456"),
        ("+44 180020 1234", "US", "+441800201234"),  # the second prefix of 0|180020, kept (too short stripped)
        ("+49 (0)30", "US", "+49030"),  # too short once stripped: phonenumbers keeps the prefix
        ("+44 180020 12345678", "US", None),  # an impossible length
        ("+55 11 91234-5678", "US", "+5511912345678"),  # Brazil: a pattern prefix that does not match
        ("+55 0 11 91234 5678", "US", None),  # it matches: per row
        ("+86 10 1234 5678", "US", "+861012345678"),
        ("0033 6 12 34 56 78", "FR", None),  # the international prefix in front: per row
        ("33 6 12 34 56 78", "FR", None),  # the calling code in front: per row
        ("0 1234", "DE", "+491234"),  # a short German number: its length is possible
        ("+86 010 1234 5678", "US", None),  # China's prefix pattern matches: per row
        ("06 12 34 56 78 90 12", "FR", None),  # an impossible length
        ("(11) 91234-5678", "BR", None),  # a pattern-prefix region's national numbers: per row
        ("06 12 34 56 78", "Narnia", None),  # unknown Country: phone_region US, not a US number
    ],
)
def test_national_and_prefixed_phones_are_read_column_wise(phone, country, expected):
    ok, e164 = column_phones([phone, "(415) 555-0132"], [country, "US"], "US")
    assert ok == [expected is not None, True]
    assert e164[0] == expected
    assert fast_phone(phone, rules.phone_region_for(country)) == expected  # the fast paths agree


def test_phone_characters_read_sliced_arrays_with_nulls_byte_by_byte():
    values = pa.array(["x", "+33 (0)6-12.34", None, "06 12", "", "+", "1+2", "\uff16 1", "++1", " 7"]).slice(1)
    digits, plain, plus = _phone_characters(values)
    assert digits.to_pylist()[:3] == ["33061234", "", "0612"] and digits.to_pylist()[3:] == [
        "",
        "",
        "12",
        "1",
        "1",
        "7",
    ]
    assert plain.tolist() == [True, False, True, False, True, False, False, False, True]
    assert plus.tolist() == [True, False, False, False, True, False, False, True, False]
