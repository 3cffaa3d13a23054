"""The lead rules for many rows at once, column by column, for the plain rows of a file.

Almost every row of a lead file is plain: ASCII-trimmable cells within their column sizes,
a plain email, a phone number or none, an amount or none. Such rows are validated and
normalized here with Arrow compute kernels (C++, no Python per cell; phones that need
phonenumbers and amounts are read one by one with the per-row functions), which is what
lets an import keep up with the database. Every other row (an error to report, an email
that needs the full validator, unusual whitespace) is left to
:func:`hotcrm.leads.rules.row_normalizer`, so a row comes out exactly as the per-row rules
make it whichever way it goes (``tests/unit/test_lead_columnar.py`` checks the two against
each other on random rows).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from hotcrm.crm.models import api_to_attr
from hotcrm.leads import rules
from hotcrm.leads.numbers import AmountFormat
from hotcrm.leads.reader import closes_cleanly

# Characters str.strip() removes that an ASCII trim does not, other controls and the BOM:
# a cell holding one anywhere takes the per-row path. (Literal characters above ASCII, so
# the class reads the same to Arrow's RE2 and to Python's re.)
_UNUSUAL_CLASS = "\\x00-\\x08\\x0e-\\x1f\\x7f\\x85\\xa0" + "\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_UNUSUAL = f"[{_UNUSUAL_CLASS}]"
_ASCII_SPACE = " \t\n\v\f\r"
_NULL = pa.scalar(None, pa.string())
# What a JSON encoder must escape in a string (ensure_ascii=False): quotes, backslashes, controls.
_JSON_ESCAPED = r'[\x00-\x1f"\\]'
_JSON_ESCAPED_RE = re.compile(_JSON_ESCAPED)
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_PLAIN_EMAIL = "^" + rules._PLAIN_EMAIL.pattern + "$"
_SPECIAL_USE_TLD = r"(?i)\.(?:" + "|".join(rules._SPECIAL_USE_SUFFIXES) + ")$"
_NANP_NATIONAL = "^" + rules._NANP_NATIONAL.pattern + "$"


@dataclass(frozen=True)
class _PhonePlans:
    """:func:`rules.international_plans` and :func:`rules._pattern_plans` as numpy tables indexed
    by calling code (a number below 1000) and national length (below 16), so one gather serves
    every code of a batch; the patterns stay RE2 patterns (phonenumbers' are RE2's syntax too)."""

    codes: tuple[np.ndarray, np.ndarray, np.ndarray]  # per code size 1-3: is this number a calling code
    lengths: np.ndarray  # [code, n]: a possible national length (n >= 2) of a literal-prefix code
    # Per place in a code's national prefix alternation: width -> code * 10**width + prefix.
    prefixes: list[dict[int, np.ndarray]]
    transformed: np.ndarray  # [code]: a literal-prefix code whose metadata transforms the prefix (left per row)
    stripped: np.ndarray  # [code, n]: a stripped length _test_number_length does not call too short
    general: dict[int, str]  # code -> general_desc.national_number_pattern (literal-prefix codes)
    patterns: dict[int, str]  # pattern-prefix code -> its national_prefix_for_parsing
    pattern_lengths: np.ndarray  # [code, n]: a possible national length (n >= 2) of a pattern-prefix code


@functools.cache
def _phone_plans() -> _PhonePlans:
    from phonenumbers import ValidationResult
    from phonenumbers.phonenumberutil import _test_number_length

    codes, plans = rules.international_plans()
    sizes = (np.zeros(10, bool), np.zeros(100, bool), np.zeros(1000, bool))
    for code in codes:
        sizes[len(code) - 1][int(code)] = True
    lengths, stripped, pattern_lengths = (np.zeros((1000, 16), bool) for _ in range(3))
    transformed = np.zeros(1000, bool)
    places: list[dict[int, list[int]]] = []
    short = (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY, ValidationResult.INVALID_LENGTH)
    general = {}
    for code, (literals, possible) in plans.items():
        lengths[int(code), [n for n in possible if 2 <= n < 16]] = True
        for place, literal in enumerate(literals):
            if place == len(places):
                places.append({})
            places[place].setdefault(len(literal), []).append(int(code) * 10 ** len(literal) + int(literal))
        metadata = rules._code_metadata(code)
        if metadata is None or metadata.national_prefix_transform_rule:
            transformed[int(code)] = True
            continue
        general[int(code)] = metadata.general_desc.national_number_pattern or ""
        # The outcome depends on the length alone (a national part has at most 14 digits).
        for n in range(16):
            stripped[int(code), n] = _test_number_length("0" * n, metadata) not in short
    patterns = {}
    for code, (pattern, possible) in rules._pattern_plans().items():
        pattern_lengths[int(code), [n for n in possible if 2 <= n < 16]] = True
        patterns[int(code)] = pattern.pattern
    return _PhonePlans(
        sizes,
        lengths,
        [{size: np.array(sorted(keys), np.int64) for size, keys in place.items()} for place in places],
        transformed,
        stripped,
        general,
        patterns,
        pattern_lengths,
    )


@functools.cache
def _national_starts() -> dict[int, str]:
    """Calling code -> what the digits of a national number of its main region must not start
    with to be read as ``+<code><digits>`` (the code, or the region's international prefix)."""
    from phonenumbers import SUPPORTED_REGIONS

    starts = {}
    for region in SUPPORTED_REGIONS:
        plan = rules._national_plan(region)
        if plan is not None:
            code, prefix = plan
            starts[int(code)] = code if prefix is None else f"{code}|(?:{prefix.pattern})"
    return starts


def _string_bytes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the bytes of a string array's values, where each value ends in them (from 0, one more
    than values), which values are not null): numpy views, no copy."""
    if not pa.types.is_string(strings.type):
        strings = strings.cast(pa.string())
    _, offsets, data = strings.buffers()
    ends = np.frombuffer(offsets, np.int32, len(strings) + 1, strings.offset * 4).astype(np.int64)
    octets = np.frombuffer(data, np.uint8)[ends[0] : ends[-1]] if data is not None else np.zeros(0, np.uint8)
    return octets, ends - ends[0], strings.is_valid().to_numpy(zero_copy_only=False)


def _string_parts(strings: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, each value's start in them, its length: 0 when null) of a string array."""
    octets, ends, valid = _string_bytes(strings)
    return octets, ends[:-1], np.where(valid, np.diff(ends), 0)


def _spliced(
    octets: np.ndarray, start: np.ndarray, length: np.ndarray, cut: np.ndarray, cut_length: np.ndarray, lead: str = ""
) -> pa.Array:
    """Per row (values in the order of their bytes, ``cut + cut_length <= length``), ``lead``
    (one character or none) + ``octets[start:start + length]`` without its ``cut_length``
    bytes from ``cut`` on, as a string array: one mask over the bytes, made by run lengths."""
    count = len(start)
    gap = start - np.concatenate([[0], (start + length)[:-1]])
    runs = np.stack([gap, cut, cut_length, length - cut - cut_length], axis=1).ravel()
    inside = np.repeat(np.tile(np.array([False, True, False, True]), count), runs)
    kept = octets[: len(inside)][inside]
    offsets = np.zeros(count + 1, np.int32)
    np.cumsum(length - cut_length + len(lead), out=offsets[1:])
    if lead:
        kept = np.insert(kept, offsets[:-1] - np.arange(count) * len(lead), ord(lead))
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(kept)))


# Bytes of a plainly written number besides digits and a leading "+" (rules._NATIONAL_CHARS).
_PHONE_MARKS = np.isin(np.arange(256), [ord(c) for c in " ().-"])


def _phone_characters(value: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(digits, plain, plus) per value, from its bytes with numpy: the ASCII digits it holds
    (what ``rules._NON_DIGITS`` leaves), whether it is written with digits, spaces, dots,
    dashes and parentheses only after at most a leading "+" (``rules._NANP_CHARS``), whether
    it starts with "+"."""
    count = len(value)
    octets, ends, valid = _string_bytes(value)
    # Only the bytes that are not digits are looked at one by one (a few per number).
    marks = np.flatnonzero((octets < 48) | (octets > 57))
    row = np.searchsorted(ends, marks, side="right") - 1
    found = octets[marks]
    plus_sign = found == 43
    others = np.bincount(row[~plus_sign & ~_PHONE_MARKS[found]], minlength=count)
    pluses = np.bincount(row[plus_sign], minlength=count)
    sizes = np.diff(ends)
    leading = np.zeros(count, bool)
    leading[row[plus_sign & (marks == ends[row])]] = True
    plain = valid & (sizes > 0) & (others == 0) & (pluses == leading)
    offsets = np.zeros(count + 1, np.int32)
    np.cumsum(sizes - np.bincount(row, minlength=count), out=offsets[1:])
    kept = np.delete(octets, marks)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(kept)), plain, leading & valid


def _match_per_code(text: pa.Array, code: np.ndarray, patterns: Mapping[int, str], *, full: bool) -> np.ndarray:
    """Whether each value of ``text`` matches its ``code``'s pattern (all of it when ``full``,
    else a start); false for a code without one (phonenumbers' empty pattern matches nothing).
    One RE2 kernel per code present."""
    order = np.argsort(code, kind="stable")
    text, code = text.take(pa.array(order)), code[order]
    found = np.zeros(len(text), dtype=bool)
    bounds = [0, *(np.flatnonzero(np.diff(code)) + 1).tolist(), len(code)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        pattern = patterns.get(int(code[a]), "") if b > a else ""
        if pattern:
            matched = pc.match_substring_regex(text.slice(a, b - a), f"^(?:{pattern})" + ("$" if full else ""))
            found[a:b] = matched.to_numpy(zero_copy_only=False)
    unsorted = np.empty_like(found)
    unsorted[order] = found
    return unsorted


@dataclass
class ParsedText:
    """Records parsed by Arrow: the cells of those with the header's width, and the others."""

    cells: list[pa.Array]  # one string array per column
    lines: np.ndarray  # each parsed row's first physical line
    others: list[tuple[int, str]]  # (line, text) of the single-line records with another width
    unusual: bool  # a cell may hold a character of _UNUSUAL_CLASS (ColumnarRules.apply checks each column)
    escapes: bool  # a cell may hold what JSON or COPY's text format escapes (quote, backslash, control...)
    padded: bool  # a cell may start or end with whitespace
    backslash: bool = True  # a cell may hold a backslash (COPY's text format escapes it)
    chars: int = 0  # characters of text parsed

    @staticmethod
    def concat(parts: Sequence[ParsedText]) -> ParsedText:
        """Several parsed blocks as one batch (in file order)."""
        if len(parts) == 1:
            return parts[0]
        width = len(parts[0].cells)
        return ParsedText(
            [pa.concat_arrays([part.cells[i] for part in parts]) for i in range(width)],
            np.concatenate([part.lines for part in parts]),
            [other for part in parts for other in part.others],
            any(part.unusual for part in parts),
            any(part.escapes for part in parts),
            any(part.padded for part in parts),
            any(part.backslash for part in parts),
            sum(part.chars for part in parts),
        )


def _read_csv(data: bytes, delimiter: str, width: int, *, quoted: bool) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Arrow's CSV reader on ``data`` (every cell a string, no header): the table of the
    records with ``width`` fields and (record index from 0, text) of the others."""
    others: list[tuple[int, str]] = []

    def other(row) -> str:
        others.append((row.number - 1, row.text))
        return "skip"

    names = [f"c{i}" for i in range(width)]
    table = pcsv.read_csv(
        pa.py_buffer(data),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=max(len(data) + 1, 1 << 20)),
        parse_options=pcsv.ParseOptions(
            delimiter=delimiter,
            quote_char='"' if quoted else False,
            double_quote=quoted,
            escape_char=False,
            newlines_in_values=quoted,
            ignore_empty_lines=False,
            invalid_row_handler=other,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    return table, others


def parse_text(text: str, first: int, line_count: int, delimiter: str, width: int) -> ParsedText:
    """Parse ``line_count`` lines without quote characters (each line one record), the first
    of them line ``first``, into columns.

    Blank lines come out as rows of empty cells or among ``others``, like any line whose
    number of fields is not ``width``; the caller decides what they are.
    """
    data = text.encode("utf-8")
    table, others = _read_csv(data, delimiter, width, quoted=False)
    cells = [table.column(i).combine_chunks() for i in range(width)]
    lines = np.arange(first, first + line_count, dtype=np.int64)
    if others:
        lines = np.delete(lines, [offset for offset, _ in others])
    if len(lines) != table.num_rows:  # never expected: Arrow split the lines differently
        raise ValueError(f"parsed {table.num_rows} rows and {len(others)} others from {line_count} lines")
    unusual, escapes, padded = _scan(data, delimiter)
    others = [(first + o, t) for o, t in others]
    return ParsedText(cells, lines, others, unusual, escapes, padded, escapes, len(text))


def parse_quoted(
    first: int, block: list[str], delimiter: str, width: int, *, max_lines: int, max_chars: int, dialect: Any
) -> ParsedText | None:
    """Parse physical lines with quote characters (``block``, the first of them line ``first``)
    with Arrow; None when they are not made of whole, well-formed records (the caller then
    parses them with the csv module, record by record where needed).

    A record spans several lines (a quoted line break) only as the csv-module path takes one:
    the header's width, at most ``max_lines`` lines and ``max_chars`` characters before its last
    line, and quotes that close cleanly (``dialect``, strict). Each record's first line comes
    from the line breaks in its cells. A blank sentinel line after the block shows whether the
    last record closed its quotes: if it did not, the sentinel is swallowed.
    """
    text = "".join(block)
    # The block's own line end again (after a bare "\r", a "\n" would make one line end of the two).
    sentinel = text[-1] if text.endswith(("\n", "\r")) else "\n\n"
    data = (text + sentinel).encode("utf-8")
    try:
        table, others = _read_csv(data, delimiter, width, quoted=True)
    except pa.ArrowInvalid:
        return None
    records = table.num_rows + len(others)
    is_other = np.zeros(records, dtype=bool)
    if others:
        at = np.fromiter((index for index, _ in others), dtype=np.int64, count=len(others))
        if at.min() < 0 or at.max() >= records or len(np.unique(at)) != len(at):
            return None
        is_other[at] = True
    spans = np.ones(records, dtype=np.int64)
    cells = [table.column(i).combine_chunks() for i in range(width)]
    if records != len(block) + 1:  # some record spans lines: count the line breaks in its cells
        for cell in cells:
            octets = _string_bytes(cell)[0]
            if ((octets == 10) | (octets == 13)).any():
                spans[~is_other] += _line_breaks(cell)
        if others:
            spans[is_other] += _line_breaks(pa.array([t for _, t in others], pa.string()))
    starts = np.concatenate([[0], np.cumsum(spans)[:-1]])
    if int(spans.sum()) != len(block) + 1 or is_other[-1] or spans[-1] != 1:
        return None
    if "".join(cell[-1].as_py() for cell in cells):  # the last record is not the blank sentinel
        return None
    cells = [cell.slice(0, len(cell) - 1) for cell in cells]
    row_starts = starts[~is_other][:-1]
    row_spans = spans[~is_other][:-1]
    for start, span in zip(row_starts[row_spans > 1].tolist(), row_spans[row_spans > 1].tolist(), strict=True):
        taken = block[start : start + span]
        if span > max_lines or sum(map(len, taken[:-1])) > max_chars or not closes_cleanly(taken, dialect):
            return None
    if others and (spans[is_other] > 1).any():  # a record of several lines with another width: a stray quote
        return None
    other_lines = [(first + int(start), t) for start, (_, t) in zip(starts[is_other].tolist(), others, strict=True)]
    unusual, _, padded = _scan(data, delimiter, quoted=True)  # (the sentinel adds nothing to either)
    return ParsedText(cells, row_starts + first, other_lines, unusual, True, padded, b"\\" in data, len(text))


def _line_breaks(values: pa.Array) -> np.ndarray:
    """Line ends in each value, as ``readlines`` counts them (CRLF, CR or LF)."""
    counts = [pc.count_substring(values, pattern) for pattern in ("\n", "\r", "\r\n")]
    return (counts[0].to_numpy() + counts[1].to_numpy() - counts[2].to_numpy()).astype(np.int64)


# The bytes of characters of _UNUSUAL_CLASS below 0x80, and every byte but the ASCII ones
# that ask for escaping (those, what JSON escapes: vertical tab, form feed, quote, backslash).
# A tab is one too unless it is the delimiter.
_UNUSUAL_BYTES = bytes([*range(0x09), *range(0x0E, 0x20), 0x7F])
_USUAL_BYTES = bytes(b for b in range(256) if b not in {*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 34, 92})
_ALL_BUT_UNUSUAL = bytes(b for b in range(256) if b not in _UNUSUAL_BYTES)
# Every byte but the lead bytes of the UTF-8 of the characters _UNUSUAL_UTF8 finds.
_ALL_BUT_UNUSUAL_LEADS = bytes(b for b in range(256) if b not in (0xC2, 0xE1, 0xE2, 0xE3, 0xEF))
_UNUSUAL_UTF8 = re.compile(
    b"|".join(re.escape(c.encode()) for c in "\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff")
    + b"|\xe2\x80[\x80-\x8a]"  # U+2000 to U+200A
)


def _unusual_utf8(data: bytes, octets: np.ndarray) -> bool:
    """Whether UTF-8 holds a character _UNUSUAL_UTF8 finds: the regex runs on the 3 bytes from
    each of its lead bytes only (one per line, so no match spans two), not on the whole text."""
    if not data.translate(None, _ALL_BUT_UNUSUAL_LEADS):
        return False
    at = np.flatnonzero((octets == 0xC2) | ((octets >= 0xE1) & (octets <= 0xE3)) | (octets == 0xEF))
    last = len(octets) - 1
    windows = [octets[at], octets[np.minimum(at + 1, last)], octets[np.minimum(at + 2, last)]]
    windows.append(np.full(len(at), 10, dtype=np.uint8))
    return _UNUSUAL_UTF8.search(np.column_stack(windows).tobytes()) is not None


def _scan(data: bytes, delimiter: str, *, quoted: bool = False) -> tuple[bool, bool, bool]:
    """(unusual, escapes, padded) for the UTF-8 of lines, in a few passes of C or SIMD: whether
    a cell may hold a character of ``_UNUSUAL_CLASS``; whether one may hold a character JSON or
    COPY's text format escapes (that, or a vertical tab, form feed, quote, backslash; a tab
    unless it is the delimiter: line ends aside, which separate quote-free lines); and whether
    whitespace touches a delimiter or a line end (``quoted``: or a quote, the edge of a quoted
    cell)."""
    usual = _USUAL_BYTES if delimiter == "\t" else _USUAL_BYTES.replace(b"\t", b"")
    octets = np.frombuffer(data, dtype=np.uint8)
    unusual = bool(data.translate(None, _ALL_BUT_UNUSUAL)) or (not data.isascii() and _unusual_utf8(data, octets))
    escapes = unusual or bool(data.translate(None, usual))
    spaces = (octets == 32) | (octets == 11) | (octets == 12)
    if delimiter != "\t":
        spaces |= octets == 9
    where = np.flatnonzero(spaces)
    if not len(where):
        return unusual, escapes, False
    if where[0] == 0 or where[-1] == len(octets) - 1:
        return unusual, escapes, True
    neighbours = np.concatenate([octets[where - 1], octets[where + 1]])
    edges = (neighbours == ord(delimiter)) | (neighbours == 10) | (neighbours == 13)
    if quoted:
        edges |= neighbours == 34
    return unusual, escapes, bool(edges.any())


def cells_from_rows(rows: Sequence[Sequence[str]], width: int) -> list[pa.Array]:
    """Rows of ``width`` cells (as the csv module gives them) as one string array per column."""
    if not rows:
        return [pa.array([], pa.string()) for _ in range(width)]
    return [pa.array(column, type=pa.string()) for column in zip(*rows, strict=True)]


@dataclass
class ColumnarResult:
    """The outcome for a batch: which rows were plain, and their staging values."""

    plain: np.ndarray  # bool per input row: validated here (the others need the per-row rules)
    values: dict[str, pa.Array]  # lead column -> values of the plain rows (null where not given)
    raw: pa.Array  # the plain rows' original cells, each a JSON array (null when not asked for)
    emails: list[str]  # the plain rows' normalized emails


class ColumnarRules:
    """The lead rules for one file's columns, applied to batches of rows of the header's width.

    ``columns`` maps API field -> cell index, as :func:`row_normalizer` takes them; the
    staging values follow :data:`hotcrm.leads.loader.LEAD_COLUMNS` (an empty LeadSource or
    Status cell stages null, so the merge applies the default or keeps the CRM's value).
    """

    def __init__(
        self,
        columns: Mapping[str, int],
        lead_columns: Sequence[str],
        *,
        phone_region: str = rules.DEFAULT_PHONE_REGION,
        required: Sequence[str] = rules.REQUIRED_FIELDS,
        amounts: AmountFormat = rules.DEFAULT_AMOUNTS,
    ) -> None:
        self.columns = dict(columns)
        self.lead_columns = tuple(lead_columns)
        self.required = tuple(required)
        self.phone_region = phone_region
        self.amounts = amounts
        self.limits = rules._limits()
        # Unknown fields take the generic per-row path.
        self.enabled = "Email" in self.columns and set(self.columns) <= set(rules.WRITABLE_FIELDS)

    def apply(
        self,
        cells: Sequence[pa.Array],
        *,
        unusual: bool = True,
        escape_free: bool = False,
        padded: bool = True,
        raw: bool = True,
    ) -> ColumnarResult:
        """Validate the rows given column-wise (``width`` string arrays of one length).

        ``unusual=False``: the caller checked that no cell holds a character of ``_UNUSUAL_CLASS``
        (see :func:`_scan`), which spares checking each column for them; ``escape_free``: that
        none holds one JSON escapes (the original cells are then joined, not encoded);
        ``padded=False``: that no cell starts or ends with whitespace, which spares trimming
        them; ``raw=False``: the caller does not keep the original cells (the result's ``raw``
        is then all null).
        """
        count = len(cells[0]) if cells else 0
        if not self.enabled or count == 0:
            return self._none(count)
        plain = pa.array(np.ones(count, dtype=bool))
        values: dict[str, pa.Array] = {}
        # Each row's phone region (its Country's, else phone_region), worked out once per distinct Country.
        regions = None
        if "Phone" in self.columns and "Country" in self.columns:
            country = self.columns["Country"]
            regions = self._regions(pc.utf8_trim(cells[country], _ASCII_SPACE) if padded else cells[country])
        for field, index in self.columns.items():
            cell = cells[index]
            if unusual:
                plain = pc.and_(plain, pc.invert(pc.match_substring_regex(cell, _UNUSUAL)))
            value = pc.utf8_trim(cell, _ASCII_SPACE) if padded else cell
            size = pc.binary_length(value)
            present = pc.greater(size, 0)
            every_present = pc.all(present).as_py()
            if field in self.required and not every_present:
                plain = pc.and_(plain, present)
            limit = self.limits[field]
            if limit and pc.max(size).as_py() > limit:  # bytes >= characters: only then count characters
                plain = pc.and_(plain, pc.less_equal(pc.utf8_length(value), limit))
            if field == "Email":
                ok, value = self._email(value)
                plain = pc.and_(plain, ok)
            elif field == "Phone":
                ok, value = self._phone(value, pc.and_(plain, present), regions)  # null where there is none
                plain = pc.and_(plain, pc.or_(pc.invert(present), ok))
                every_present = True
            elif field == "EstimatedValue":
                ok, value = self._amount(value, pc.and_(plain, present))  # null where there is none
                plain = pc.and_(plain, pc.or_(pc.invert(present), ok))
                every_present = True
            values[api_to_attr(field)] = value if every_present else pc.if_else(present, value, _NULL)
        plain_np = plain.to_numpy(zero_copy_only=False)
        mask = pa.array(plain_np)
        plain_count = int(plain_np.sum())
        empty = pa.nulls(plain_count, pa.string())
        staged = {attr: values[attr].filter(mask) if attr in values else empty for attr in self.lead_columns}
        kept = self.raw_cells([c.filter(mask) for c in cells], plain_count, escape_free=escape_free) if raw else empty
        return ColumnarResult(plain_np, staged, kept, staged["email"].to_pylist())

    def _none(self, count: int) -> ColumnarResult:
        empty = pa.array([], pa.string())
        return ColumnarResult(np.zeros(count, dtype=bool), dict.fromkeys(self.lead_columns, empty), empty, [])

    @staticmethod
    def _email(value: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Which trimmed values are plain emails (see ``rules._is_plain_email``), and them lower-cased."""
        ok = pc.and_(
            pc.and_(pc.match_substring_regex(value, _PLAIN_EMAIL), pc.less_equal(pc.binary_length(value), 254)),
            pc.and_(pc.invert(pc.match_substring(value, "--")), pc.less_equal(pc.find_substring(value, "@"), 64)),
        )
        ok = pc.and_(ok, pc.invert(pc.match_substring_regex(value, _SPECIAL_USE_TLD)))
        return ok, pc.ascii_lower(value)

    def _regions(self, country: pa.Array) -> pa.Array | None:
        """Each row's phone region (see :func:`rules.phone_region_for`), or None when every row's
        is ``phone_region``."""
        distinct = pc.unique(country)
        found = [rules.phone_region_for(name, self.phone_region) for name in distinct.to_pylist()]
        if all(region == self.phone_region for region in found):
            return None
        return pa.array(found, pa.string()).take(pc.index_in(country, value_set=distinct))

    def _phone(
        self, value: pa.Array, candidates: pa.Array, regions: pa.Array | None = None
    ) -> tuple[pa.Array, pa.Array]:
        """Which trimmed values are phone numbers, and them in E.164 (null where not).

        Plainly written numbers that ``rules.normalize_phone``'s fast paths read (North
        American, ``+<code>``, national numbers of the row's region, a national prefix to strip
        or keep) column-wise, see :meth:`_plain_phone`; the other ``candidates`` (rows still
        plain) one by one through :func:`rules.normalize_phone`, so that an unusual number
        does not send its whole row to the per-row rules. ``regions``: each row's region for
        national numbers (None: ``phone_region`` for all).
        """
        if regions is None:
            nanp = self.phone_region in rules._NANP_REGIONS
        else:
            nanp = pc.is_in(regions, value_set=pa.array(rules._NANP_REGIONS, pa.string()))
        ok, e164 = self._plain_phone(value, nanp, regions)
        rest = np.flatnonzero(pc.and_(candidates, pc.invert(ok)).to_numpy(zero_copy_only=False))
        if not len(rest):
            return ok, e164
        texts = value.take(pa.array(rest)).to_pylist()
        if regions is None:
            found = [_phone_or_none(text, self.phone_region) for text in texts]
        else:
            places = regions.take(pa.array(rest)).to_pylist()
            found = [_phone_or_none(text, region) for text, region in zip(texts, places, strict=True)]
        hits = np.array([number is not None for number in found], dtype=bool)
        if not hits.any():
            return ok, e164
        mask = np.zeros(len(value), dtype=bool)
        mask[rest[hits]] = True
        numbers = pa.array([number for number in found if number is not None], pa.string())
        return pc.or_(ok, pa.array(mask)), pc.replace_with_mask(e164, pa.array(mask), numbers)

    def _amount(self, value: pa.Array, candidates: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Which trimmed values of the ``candidates`` are amounts in the file's number format,
        and them to the cent as text (what the per-row path stages); null where not. One by
        one through :func:`rules.parse_amount`: the same reading either way."""
        rest = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
        found = [_amount_or_none(text, self.amounts) for text in value.take(pa.array(rest)).to_pylist()]
        hits = np.array([amount is not None for amount in found], dtype=bool)
        mask = np.zeros(len(value), dtype=bool)
        mask[rest[hits]] = True
        amounts = pa.array([amount for amount in found if amount is not None], pa.string())
        return pa.array(mask), pc.replace_with_mask(pa.nulls(len(value), pa.string()), pa.array(mask), amounts)

    def _plain_phone(
        self, value: pa.Array, nanp: bool | pa.Array, regions: pa.Array | None = None
    ) -> tuple[pa.Array, pa.Array]:
        """Which trimmed values are plainly written numbers that ``rules.normalize_phone``'s fast
        paths read (``_plain_nanp``, ``_plain_international``, ``_plain_national``), and them in
        E.164; null where not. ``nanp``: whether national numbers are read as North American
        ones (for all rows, or per row); ``regions``: each row's region (None: ``phone_region``)."""
        digits, plain, plus_np = _phone_characters(value)
        length = pc.binary_length(digits)
        plus = pa.array(plus_np)
        leading_one = pc.and_(pc.equal(length, 11), pc.starts_with(digits, "1"))
        without_one = pc.utf8_slice_codeunits(digits, 1)
        if nanp is True:
            national = pc.if_else(
                leading_one, without_one, pc.if_else(pc.and_(pc.invert(plus), pc.equal(length, 10)), digits, _NULL)
            )
        elif nanp is False:
            national = pc.if_else(pc.and_(plus, leading_one), without_one, _NULL)
        else:  # per row: a national number is North American only in a North American region
            national = pc.if_else(
                pc.and_(leading_one, pc.or_(plus, nanp)),
                without_one,
                pc.if_else(pc.and_(pc.and_(nanp, pc.invert(plus)), pc.equal(length, 10)), digits, _NULL),
            )
        ok = pc.and_(pa.array(plain), pc.fill_null(pc.match_substring_regex(national, _NANP_NATIONAL), False))
        nanp = pc.binary_join_element_wise("+1", national, "")
        if not pc.any(pc.and_(pc.invert(ok), pc.greater(length, 0))).as_py():
            return ok, nanp
        found, e164 = self._international(self._dialled(digits, plain & plus_np, plain & ~plus_np, regions))
        return pc.or_(ok, found), pc.if_else(ok, nanp, e164)

    def _dialled(
        self, digits: pa.Array, international: np.ndarray, national: np.ndarray, regions: pa.Array | None
    ) -> pa.Array:
        """The digits ``rules._plain_international`` reads for each value: those of a plainly
        written ``+<code> <number>`` (``international``), and ``<code><digits>`` for a plainly
        written national number (``national``) of a region ``rules._national_plan`` covers
        (unless its digits start with the code or the region's international prefix, as
        ``rules._plain_national`` asks); null for the others."""
        international = pa.array(international)
        if regions is None:
            plan = rules._national_plan(self.phone_region)
            code = None if plan is None else pa.scalar(plan[0], pa.string())
        else:
            distinct = pc.unique(regions)
            found = [rules._national_plan(region) for region in distinct.to_pylist()]
            known = [None if plan is None else plan[0] for plan in found]
            code = None if not any(known) else pa.array(known, pa.string()).take(pc.index_in(regions, distinct))
        if code is None:
            return pc.if_else(international, digits, _NULL)
        code = pc.if_else(pa.array(national), code, _NULL)
        rows = np.flatnonzero(code.is_valid().to_numpy(zero_copy_only=False))
        numbers = pc.cast(code.take(pa.array(rows)), pa.int64()).to_numpy()
        taken = np.zeros(len(digits), dtype=bool)
        taken[rows] = _match_per_code(digits.take(pa.array(rows)), numbers, _national_starts(), full=False)
        code = pc.if_else(pa.array(taken), _NULL, code)
        return pc.if_else(international, digits, pc.binary_join_element_wise(code, digits, ""))

    @staticmethod
    def _international(digits: pa.Array) -> tuple[pa.Array, pa.Array]:
        """For ``<code><number>`` digits (null: not a candidate), which ones
        ``rules._plain_international`` reads, and its E.164 form of them (null where not).

        The calling code, the national prefix and the lengths are read with numpy from the
        digits' bytes (no strings built but the E.164 ones); the patterns with RE2, per code.
        """
        plans = _phone_plans()
        octets, start, length = _string_parts(digits)

        padded = octets if len(octets) else np.array([48], np.uint8)

        def number(at: np.ndarray, width: int) -> np.ndarray:
            """The digits [at, at + width) as a number; -1 past the end."""
            value = np.zeros(len(digits), np.int64)
            for k in range(width):
                value = value * 10 + padded[np.minimum(start + at + k, len(padded) - 1)] - 48
            return np.where(at + width <= length, value, -1)

        zero = np.zeros(len(digits), np.int64)
        first = number(zero, 3)  # (fewer than 3 digits are never read: see base)
        heads = [np.where(first >= 0, first // 10 ** (3 - n), -1) for n in (1, 2, 3)]
        size = np.zeros(len(digits), np.int64)
        for n in (3, 2, 1):  # the shortest calling code the digits start with
            size = np.where((heads[n - 1] >= 0) & plans.codes[n - 1][np.maximum(heads[n - 1], 0)], n, size)
        code = np.choose(np.maximum(size - 1, 0), heads) * (size > 0)
        base = (size > 0) & (length >= 3) & (length <= 15)
        national = np.where(base, length - size, 0)
        # The national prefix a number starts with: the first of its code's alternation.
        width = np.zeros(len(digits), np.int64)
        for place in plans.prefixes:
            for n, keys in place.items():
                hit = np.isin(code * 10**n + number(size, n), keys) & (national >= n) & (width == 0)
                width[hit] = n
        strip = base & (width > 0) & plans.stripped[code, np.maximum(national - width, 0)]
        ok = ~(base & (width > 0) & plans.transformed[code])  # those are left per row
        rows = np.flatnonzero(strip & ok)
        if len(rows):  # kept when the number matches the general pattern and the stripped one does not
            whole = _spliced(octets, start[rows] + size[rows], national[rows], zero[rows], zero[rows])
            cut = _spliced(octets, start[rows] + size[rows], national[rows], zero[rows], width[rows])
            keep = _match_per_code(whole, code[rows], plans.general, full=True)
            keep &= ~_match_per_code(cut, code[rows], plans.general, full=True)
            strip[rows[keep]] = False
        width = np.where(strip, width, 0)
        ok &= base & plans.lengths[code, national - width]
        patterned = np.flatnonzero(base & plans.pattern_lengths[code, national])
        if len(patterned):  # as written when the pattern does not match the start
            text = _spliced(
                octets, start[patterned] + size[patterned], national[patterned], zero[patterned], zero[patterned]
            )
            ok[patterned] = ~_match_per_code(text, code[patterned], plans.patterns, full=False)
        rows = np.flatnonzero(ok)
        found = _spliced(octets, start[rows], length[rows], size[rows], width[rows], "+")
        mask = pa.array(ok)
        return mask, pc.replace_with_mask(pa.nulls(len(digits), pa.string()), mask, found)

    @staticmethod
    def raw_cells(cells: list[pa.Array], count: int, *, escape_free: bool = False) -> pa.Array:
        """Each row's cells as a JSON array (what ``json.dumps(cells, ensure_ascii=False)`` gives, compactly)."""
        if count == 0:
            return pa.array([], pa.string())
        joined = pc.binary_join_element_wise('["', pc.binary_join_element_wise(*cells, '","'), '"]', "")
        if escape_free:
            return joined
        escaped = pc.match_substring_regex(cells[0], _JSON_ESCAPED)
        for cell in cells[1:]:
            escaped = pc.or_(escaped, pc.match_substring_regex(cell, _JSON_ESCAPED))
        if not pc.any(escaped).as_py():
            return joined
        # The few rows with quotes, backslashes or controls: encoded by the JSON encoder.
        rows = np.flatnonzero(escaped.to_numpy(zero_copy_only=False))
        encoded = joined.to_pylist()
        columns = [c.take(pa.array(rows)).to_pylist() for c in cells]
        for position, row_cells in zip(rows, zip(*columns, strict=True), strict=True):
            encoded[position] = cells_json(row_cells)
        return pa.array(encoded, pa.string())


def _amount_or_none(value: str, amounts: AmountFormat) -> str | None:
    try:
        return str(rules.parse_amount(value, amounts))
    except ValueError:
        return None


def _phone_or_none(value: str, region: str) -> str | None:
    try:
        return rules.normalize_phone(value, region)
    except ValueError:
        return None


def cells_json(cells: Sequence[str]) -> str:
    """``json.dumps(cells)`` compactly, without ASCII escapes; made by joining when no cell has
    anything JSON escapes."""
    if _JSON_ESCAPED_RE.search("".join(cells)) is None:
        return '["' + '","'.join(cells) + '"]' if cells else "[]"
    return _encode_json(list(cells))
