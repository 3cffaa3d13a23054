"""Amounts as people write them: a decimal point or a decimal comma, grouped thousands, currency marks.

A file's number format is one of two: the decimal mark is a point (``1,234.56``) or a comma
(``1.234,56``). Spaces (also no-break and narrow no-break spaces) and apostrophes group
thousands in either. The format comes from the mapping file (``number_format``) or, in
``auto``, from the file's own amounts (:func:`infer_format`); a value that reads as two
different numbers and that the file does not settle is rejected, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

AUTO = "auto"
POINT, COMMA = ".", ","
# The names the mapping file accepts for ``number_format``, and the decimal mark of each.
FORMATS = {
    "1,234.56": POINT,
    "1 234.56": POINT,
    "1'234.56": POINT,
    "1234.56": POINT,
    "1.234,56": COMMA,
    "1 234,56": COMMA,
    "1234,56": COMMA,
}
NAMES = {POINT: "1,234.56", COMMA: "1.234,56"}
MAX_AMOUNT = Decimal("1e16")
_CENT = Decimal("0.01")
_FIX = 'set "number_format" in include/config/lead_mapping.json (e.g. "1.234,56" or "1,234.56")'

# Grouping characters either format accepts: space, no-break space, narrow no-break space,
# thin space, apostrophe and right single quotation mark (Swiss).
_GROUPING = " \u00a0\u202f\u2009'\u2019"
_SPACE = " \t\u00a0\u202f\u2009"
# One currency mark before or after the number: a symbol or an ISO 4217 code.
_CURRENCY = r"(?:[€$£¥₹]|US\$|[A-Z]{3})"
_WITH_CURRENCY = re.compile(
    rf"(?:{_CURRENCY}[{_SPACE}]*)?(?P<number>[^€$£¥₹A-Z]*?)(?:[{_SPACE}]*{_CURRENCY})?", re.ASCII
)
# "1.200,-": no cents (German, Swiss); the mark before the dash is the decimal mark.
_NO_CENTS = re.compile(r"(?P<number>.*?)(?P<mark>[.,])(?:-{1,2}|–|—)")
_DIGITS = re.compile(r"[0-9]+")
_GROUPED = {sep: re.compile(rf"[0-9]{{1,3}}(?:{re.escape(sep)}[0-9]{{3}})+") for sep in (*_GROUPING, POINT, COMMA)}


def _core(text: str) -> tuple[str, str | None] | None:
    """The number without a currency mark or surrounding spaces, and the decimal mark a ``,-``
    ending shows (None when it has none); None when the text is not shaped like an amount."""
    match = _WITH_CURRENCY.fullmatch(text.strip(_SPACE))
    if match is None:
        return None
    number = match["number"].strip(_SPACE)
    dash = _NO_CENTS.fullmatch(number)
    if dash is not None:
        return dash["number"], dash["mark"]
    return number, None


def read_as(text: str, decimal: str) -> Decimal | None:
    """``text`` read with ``decimal`` as its decimal mark (exactly, not rounded); None when it
    is not a non-negative number written that way."""
    core = _core(text)
    if core is None:
        return None
    number, dash_mark = core
    if dash_mark is not None:
        if dash_mark != decimal:
            return None
        whole, fraction = number, ""
    else:
        whole, mark, fraction = number.partition(decimal)
        if mark and not _DIGITS.fullmatch(fraction):
            return None
    if not whole:
        return None
    if not _DIGITS.fullmatch(whole):
        other = COMMA if decimal == POINT else POINT
        separators = {c for c in whole if not c.isdigit()}
        if len(separators) != 1:
            return None
        (separator,) = separators
        if separator not in (*_GROUPING, other) or not _GROUPED[separator].fullmatch(whole):
            return None
        whole = whole.replace(separator, "")
    try:
        return Decimal(f"{whole}.{fraction}" if fraction else whole)
    except InvalidOperation:  # pragma: no cover - the patterns allow only digits
        return None


@dataclass(frozen=True)
class AmountFormat:
    """How one file (or the API) writes amounts: ``decimal`` is ``.`` or ``,``, or None when
    the file does not show it (then only amounts that read the same either way are taken).
    ``why`` says where the format came from, for the reasons given to a person."""

    decimal: str | None
    why: str = ""

    @property
    def name(self) -> str:
        return NAMES[self.decimal] if self.decimal else "undetermined"

    def parse(self, text: str) -> Decimal:
        """The amount, to the cent; ValueError with the reason when it is not one under this format."""
        readings = {mark: read_as(text, mark) for mark in ((self.decimal,) if self.decimal else (POINT, COMMA))}
        values = {v for v in readings.values() if v is not None}
        if not values:
            where = f" in the file's number format {self.name} ({self.why})" if self.decimal and self.why else ""
            raise ValueError(f"{text!r} is not an amount{where}")
        if len(values) > 1:
            low, high = sorted(values)
            why = self.why or "the number format is not known"
            raise ValueError(
                f"{text!r} is ambiguous: {_plain(low)} or {_plain(high)}? {why}; "
                f"write it without thousands separators or {_FIX}"
            )
        (amount,) = values
        if amount >= MAX_AMOUNT:
            raise ValueError(f"{text!r} is not an amount (too large)")
        cents = amount.quantize(_CENT)
        if cents != amount:
            raise ValueError(f"{text!r} has more than 2 decimals; amounts are kept to the cent")
        return cents


def _plain(value: Decimal) -> str:
    return f"{value.normalize():,f}"


# The API's format: JSON numbers, or strings with a decimal point.
DEFAULT = AmountFormat(POINT)


def classify(text: str) -> str | None:
    """``.`` or ``,`` when ``text`` reads as a number with only that decimal mark, else None
    (it reads the same either way, two ways, or not at all)."""
    point, comma = read_as(text, POINT), read_as(text, COMMA)
    if (point is None) == (comma is None):
        return None
    return POINT if point is not None else COMMA


def infer_format(values: Iterable[tuple[int, str]], delimiter: str = ",") -> AmountFormat:
    """The number format of a file, from its (line, amount cell) pairs.

    Each amount that reads as a number with one decimal mark only (``1.234,56``, ``12,50``,
    ``1,234.56``, ``1.200,-``) is a vote; the format with more votes wins. A tie is broken by
    the delimiter (a semicolon file comes from a locale with the decimal comma, a comma file
    from one with the point); with no vote, or a tie a tab or pipe does not break, the format
    stays undetermined and amounts that read two ways are rejected.
    """
    votes = {POINT: 0, COMMA: 0}
    first: dict[str, tuple[int, str]] = {}
    for line, text in values:
        mark = classify(text)
        if mark is not None:
            votes[mark] += 1
            first.setdefault(mark, (line, text))
    if votes[POINT] != votes[COMMA]:
        mark = POINT if votes[POINT] > votes[COMMA] else COMMA
        line, text = first[mark]
        other = COMMA if mark == POINT else POINT
        against = f"; {votes[other]:,} read only as {NAMES[other]}" if votes[other] else ""
        why = f"{votes[mark]:,} amounts read only as {NAMES[mark]}, the first on line {line}: {text!r}{against}"
        return AmountFormat(mark, why)
    if not votes[POINT]:
        return AmountFormat(None, "the file's other amounts do not show whether its decimal mark is a point or a comma")
    tie = (
        f"{votes[POINT]:,} amounts read only as 1,234.56 (line {first[POINT][0]}) "
        f"and as many only as 1.234,56 (line {first[COMMA][0]})"
    )
    hint = {";": COMMA, ",": POINT}.get(delimiter)
    if hint is not None:
        return AmountFormat(hint, f"{tie}; the {'semicolon' if hint == COMMA else 'comma'} delimiter decided")
    return AmountFormat(None, tie)


def from_setting(setting: str) -> AmountFormat | None:
    """The format a mapping's ``number_format`` names (None for ``auto``); ValueError for an unknown name."""
    if setting == AUTO:
        return None
    if setting not in FORMATS:
        raise ValueError(f"unknown number_format {setting!r}; use 'auto' or one of {', '.join(FORMATS)}")
    return AmountFormat(FORMATS[setting], f'number_format "{setting}" in the lead mapping')
