"""The column-wise lead rules, Arrow's parsing of quote-free lines, and the email-hash set give
exactly what their per-row counterparts give."""

from __future__ import annotations

import csv
import random
import re

import numpy as np
import pyarrow as pa
import pytest

from hotcrm.leads import loader, numbers, rules
from hotcrm.leads.columnar import _UNUSUAL_CLASS, ColumnarRules, _scan, cells_from_rows, parse_text
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
    ],
    "LeadSource": ["", "Web", " Partner ", "s" * 101],
    "Status": ["", "Working", "q" * 41],
    "Title": ["", "CTO", "t" * 129],
    "Website": ["", "https://example.com"],
    "State": ["", "CA"],
    # National numbers are read in the Country's region when it is recognised.
    "Country": ["", "FR", "France", "DE", "Deutschland", "GB", "United Kingdom", "UK", " fr ", "US", "CA", "Narnia"],
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


@pytest.mark.parametrize("seed", range(6))
def test_plain_rows_get_what_the_per_row_rules_give_and_the_rest_is_left_to_them(seed):
    rnd = random.Random(seed)
    for _ in range(40):
        fields = ["Email", *rnd.sample([f for f in CELLS if f != "Email"], rnd.randint(2, len(CELLS) - 1))]
        width = len(fields) + rnd.randint(0, 2)
        positions = rnd.sample(range(width), len(fields))
        columns = dict(zip(fields, positions, strict=True))
        required = [f for f in rules.REQUIRED_FIELDS if f in columns]
        region = rnd.choice(["US", "US", "CA", "GB"])
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
