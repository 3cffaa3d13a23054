"""Amounts in a file's number format: the parser, the per-file inference, and the rule that a
number is never read at another scale than it was written."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from hotcrm.leads import numbers
from hotcrm.leads.numbers import COMMA, POINT, AmountFormat, classify, infer_format, read_as
from hotcrm.leads.rules import normalize_lead

NBSP, NNBSP, THIN = "\u00a0", "\u202f", "\u2009"


@pytest.mark.parametrize(
    ("text", "point", "comma"),
    [
        ("1.234,56", None, "1234.56"),
        ("1,234.56", "1234.56", None),
        ("1 234,56", None, "1234.56"),
        (f"1{NBSP}234,56", None, "1234.56"),
        (f"1{NNBSP}234{NNBSP}567,5", None, "1234567.5"),
        (f"1{THIN}234.5", "1234.5", None),
        ("1'234.56", "1234.56", None),
        ("12.500", "12.5", "12500"),
        ("1,000", "1000", "1.000"),
        ("12.500,00", None, "12500.00"),
        ("1.200,-", None, "1200"),
        ("1,200.-", "1200", None),
        ("1.200,--", None, "1200"),
        ("€ 1.200,50", None, "1200.50"),
        ("1.200,50 €", None, "1200.50"),
        (f"1.200,50{NBSP}€", None, "1200.50"),
        ("$1,200.50", "1200.50", None),
        ("EUR 12,50", None, "12.50"),
        ("CHF 1'200.50", "1200.50", None),
        ("1,234,567", "1234567", None),
        ("1.234.567", None, "1234567"),
        ("1234", "1234", "1234"),
        (f"1{NBSP}234", "1234", "1234"),
        ("0,5", None, "0.5"),
        ("7", "7", "7"),
        # Not amounts in either format:
        ("", None, None),
        ("-3", None, None),
        ("1e20", None, None),
        ("NaN", None, None),
        ("abc", None, None),
        ("1,23,456", None, None),  # Indian grouping is not among the formats
        ("12,3456.7", None, None),  # a group of four
        ("1.234.56", None, None),
        ("1 234.567,8", None, None),  # two grouping characters
        ("12.", None, None),
        (",5", None, None),
        ("5 apples", None, None),
        ("١٢٣", None, None),  # digits of another script
    ],
)
def test_an_amount_reads_as_written_with_each_decimal_mark(text, point, comma):
    assert read_as(text, POINT) == (None if point is None else Decimal(point))
    assert read_as(text, COMMA) == (None if comma is None else Decimal(comma))


def test_the_file_format_decides_and_a_value_of_the_other_format_is_rejected_with_why():
    german = infer_format([(2, "12.500,00"), (3, "12.500"), (4, "$1,200.50")], ";")
    assert german.decimal == COMMA
    assert german.parse("12.500") == Decimal("12500.00")
    with pytest.raises(ValueError, match=r"^'\$1,200.50' is not an amount in the file's number format 1.234,56 \(1 "):
        german.parse("$1,200.50")
    us = infer_format([(2, "1,234.56"), (3, "12.500")])
    assert (us.decimal, us.parse("12.500"), us.parse("1,000")) == (POINT, Decimal("12.50"), Decimal("1000.00"))


def test_an_amount_that_reads_two_ways_is_rejected_when_the_file_does_not_settle_it():
    undecided = infer_format([(2, "12.500"), (3, "7"), (4, "")], ";")
    assert undecided.decimal is None
    with pytest.raises(ValueError, match=r"^'12.500' is ambiguous: 12.5 or 12,500\? the file's other amounts"):
        undecided.parse("12.500")
    assert undecided.parse("7") == Decimal("7.00")
    assert undecided.parse("1 234") == Decimal("1234.00")  # reads the same either way


@pytest.mark.parametrize(("delimiter", "expected"), [(";", COMMA), (",", POINT), ("\t", None), ("|", None)])
def test_a_tie_of_the_values_is_broken_by_the_delimiter_only_where_it_says_something(delimiter, expected):
    fmt = infer_format([(2, "1,5"), (3, "1.5")], delimiter)
    assert fmt.decimal == expected
    assert "1 amounts read only as 1,234.56 (line 3) and as many only as 1.234,56 (line 2)" in fmt.why


def test_the_majority_decides_and_the_reason_counts_the_others():
    fmt = infer_format([(2, "1,5"), (3, "2,5"), (4, "1.5")], ",")
    assert fmt.decimal == COMMA
    assert fmt.why == "2 amounts read only as 1.234,56, the first on line 2: '1,5'; 1 read only as 1,234.56"


def test_cents_are_kept_and_finer_amounts_are_refused_not_rounded():
    assert AmountFormat(POINT).parse("12.5") == Decimal("12.50")
    with pytest.raises(ValueError, match="more than 2 decimals"):
        AmountFormat(COMMA).parse("1,234")
    with pytest.raises(ValueError, match="too large"):
        AmountFormat(POINT).parse("1" + "0" * 16)


def test_mapping_settings():
    assert numbers.from_setting("auto") is None
    assert numbers.from_setting("1 234,56").decimal == COMMA
    assert numbers.from_setting("1'234.56").decimal == POINT
    with pytest.raises(ValueError, match="unknown number_format"):
        numbers.from_setting("european")


def test_the_api_reads_a_decimal_point_and_no_longer_drops_a_decimal_comma():
    clean, errors = normalize_lead({"FirstName": "A", "LastName": "B", "Company": "C", "Email": "a@b.co",
                                    "EstimatedValue": "12,50"})  # fmt: skip
    assert "EstimatedValue" not in clean  # it was 1250 before: a comma was dropped wherever it stood
    assert [str(e) for e in errors] == ["EstimatedValue: '12,50' is not an amount"]
    clean, _ = normalize_lead({"FirstName": "A", "LastName": "B", "Company": "C", "Email": "a@b.co",
                               "EstimatedValue": 1200.5})  # fmt: skip
    assert clean["EstimatedValue"] == Decimal("1200.50")


def _write(amount: Decimal, decimal: str, rnd: random.Random) -> str:
    """``amount`` as a person in a locale with ``decimal`` might write it."""
    whole, _, cents = f"{amount:.2f}".partition(".")
    group = rnd.choice([COMMA if decimal == POINT else POINT, " ", NBSP, NNBSP, "'", ""])
    if group and len(whole) > 3:
        head = len(whole) % 3 or 3
        whole = whole[:head] + "".join(group + whole[i : i + 3] for i in range(head, len(whole), 3))
    style = rnd.random()
    if style < 0.3 and cents == "00":
        text = whole + rnd.choice(["", decimal + "-"])
    elif style < 0.5:
        text = whole + decimal + cents.rstrip("0") if cents.rstrip("0") else whole
    else:
        text = whole + decimal + cents
    return rnd.choice(["{}", "€ {}", "{} €", "${}", "USD {}"]).format(text)


@pytest.mark.parametrize("seed", range(6))
def test_a_number_is_never_read_at_another_scale(seed):
    """Whatever a file's amounts look like, each is read as written or rejected: never another value."""
    rnd = random.Random(seed)
    for _ in range(200):
        decimal = rnd.choice([POINT, COMMA])
        amounts = [
            Decimal(rnd.choice([rnd.randint(0, 999), rnd.randint(0, 10**9), rnd.randint(0, 10**6) * 1000])) / 100
            for _ in range(rnd.randint(1, 6))
        ]
        written = [_write(a, decimal, rnd) for a in amounts]
        fmt = infer_format(enumerate(written, 2), rnd.choice([",", ";", "\t"]))
        for amount, text in zip(amounts, written, strict=True):
            try:
                got = fmt.parse(text)
            except ValueError:
                continue  # rejected with a reason: allowed
            assert got == amount, (text, fmt, written)
        if any(classify(t) == decimal for t in written):  # one value shows the format: all are read
            assert fmt.decimal in (decimal, None) or fmt.why.count("line") == 2, (written, fmt)
            if fmt.decimal == decimal:
                assert [fmt.parse(t) for t in written] == amounts
