"""Reading lead files: spool, hash, detect encoding and delimiter, map headers, stream rows.

Everything here streams: a file is copied once to a local spool file (computing its
sha256 and checking its encoding on the way), then parsed record by record. Memory does
not grow with the file.

Problems that end the whole file (empty, header only, binary, duplicate or missing
columns) raise :class:`FileRejected` with a message for the person who dropped the file.
Problems with one record (ragged, unbalanced quotes) come out of :func:`iter_records` as
:class:`Record` with ``error`` set, and the rest of the file goes on.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotcrm.settings import CONFIG_DIR

MAPPING_PATH = CONFIG_DIR / "lead_mapping.json"
CHUNK = 1 << 20
SNIFF_BYTES = 64 * 1024
# Characters of text read at a time when parsing records.
BLOCK_CHARS = 256 * 1024
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# A quoted field spanning more lines than this is taken for an unbalanced quote.
MAX_RECORD_LINES = 50
# Fields may legitimately be long (notes), but not unbounded.
FIELD_LIMIT = 16 * 1024 * 1024
csv.field_size_limit(FIELD_LIMIT)

_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?)"),
    (b"\xd0\xcf\x11\xe0", "an OLE document (an .xls workbook?)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)
_FIX_SAVE_AS = "save it as 'CSV UTF-8 (comma delimited)' and drop it again"


class FileRejected(Exception):
    """The file as a whole cannot be imported; the message says why and how to fix it."""


@dataclass(frozen=True)
class Spooled:
    """A local copy of a dropped file, with what was learnt while copying it."""

    path: Path
    size: int
    sha256: str
    encoding: str


def spool(source: Any, dest: Path) -> Spooled:
    """Copy ``source`` (anything with ``.open('rb')``) to ``dest``, hashing it and working out
    its encoding: ``utf-8-sig`` (with BOM), ``utf-8``, else ``cp1252``, else ``latin-1``.

    Raises :class:`FileRejected` for binary content (NUL bytes or a known binary signature).
    """
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok = True
    size = 0
    head = b""
    with source.open("rb") as src, open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            if size == 0:
                head = chunk[:8]
                for magic, what in _MAGIC:
                    if chunk.startswith(magic):
                        raise FileRejected(f"the file is {what}, not a CSV text file; {_FIX_SAVE_AS}")
            if b"\x00" in chunk:
                offset = size + chunk.index(b"\x00")
                raise FileRejected(
                    f"the file is binary (a NUL byte at byte {offset}); it may be UTF-16 or a spreadsheet: "
                    + _FIX_SAVE_AS
                )
            size += len(chunk)
            digest.update(chunk)
            out.write(chunk)
            if utf8_ok:
                try:
                    utf8.decode(chunk)
                except UnicodeDecodeError:
                    utf8_ok = False
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    if utf8_ok:
        encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    elif _decodes(dest, "cp1252"):
        encoding = "cp1252"
    else:
        encoding = "latin-1"  # every byte is a Latin-1 character: the last resort never fails
    return Spooled(dest, size, digest.hexdigest(), encoding)


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    """The spooled file as text; ``newline=''`` lets the csv module see CR, LF and CRLF alike."""
    return open(path, encoding=encoding, newline="")


def detect_delimiter(sample: str) -> str:
    """The delimiter (comma, semicolon, tab or pipe) that splits the sample most consistently.

    Each candidate parses the first lines of the sample; the winner gives the header more
    than one column and the most records with the header's field count (ties go to the
    earlier candidate in ``DELIMITERS``).
    """
    best, best_score = ",", (-1, -1)
    lines = sample.splitlines(keepends=True)
    if len(sample) >= SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of a truncated sample may be cut short
    for delimiter in DELIMITERS:
        try:
            rows = list(csv.reader(lines[:50], delimiter=delimiter))
        except csv.Error:
            continue
        rows = [r for r in rows if r]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(1 for r in rows[1:] if len(r) == width), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def normalize_header(name: str) -> str:
    """``' E-mail Address '`` -> ``'emailaddress'``: trimmed, lower-cased, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", name.strip().lower())


@dataclass
class Mapping:
    """The header mapping from ``include/config/lead_mapping.json``."""

    fields: dict[str, list[str]]
    required: list[str]
    defaults: dict[str, str] = field(default_factory=dict)
    phone_region: str = "US"
    # How amounts are written: "auto" (from each file's values) or a format such as "1.234,56".
    number_format: str = "auto"

    @classmethod
    def load(cls, path: Path = MAPPING_PATH) -> Mapping:
        """Read and check a mapping file; errors name the file and the entry."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the lead mapping ({exc})") from exc
        fields = data.get("fields")
        if not isinstance(fields, dict) or not all(
            isinstance(v, list) and all(isinstance(a, str) for a in v) for v in fields.values()
        ):
            raise ValueError(f"{path}: 'fields' must map each Lead field to a list of header names")
        from hotcrm.leads.rules import WRITABLE_FIELDS

        unknown = sorted(set(fields) - set(WRITABLE_FIELDS))
        if unknown:
            raise ValueError(f"{path}: unknown Lead fields {unknown}; allowed: {', '.join(WRITABLE_FIELDS)}")
        required = data.get("required", [])
        missing = [f for f in required if f not in fields]
        if missing:
            raise ValueError(f"{path}: required fields {missing} have no entry in 'fields'")
        from hotcrm.leads.numbers import from_setting

        number_format = str(data.get("number_format", "auto"))
        try:
            from_setting(number_format)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return cls(
            fields,
            list(required),
            dict(data.get("defaults", {})),
            str(data.get("phone_region", "US")),
            number_format,
        )

    def aliases(self) -> dict[str, tuple[str, int]]:
        """Normalized alias -> (field, priority); a lower priority number wins."""
        table: dict[str, tuple[str, int]] = {}
        for field_name, names in self.fields.items():
            for priority, alias in enumerate([field_name, *names]):
                table.setdefault(normalize_header(alias), (field_name, priority))
        return table


@dataclass
class HeaderMap:
    """How one file's columns map to Lead fields."""

    header: list[str]
    columns: dict[str, int]  # Lead field -> column index
    unknown: list[str]  # columns no field claims
    unused: list[str]  # columns that lost to a better alias of the same field


def map_header(header: list[str], mapping: Mapping) -> HeaderMap:
    """Map a header row to Lead fields; :class:`FileRejected` for duplicate names or missing
    required columns (the message lists what the file has)."""
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        key = normalize_header(name)
        if not key:
            continue
        if key in seen:
            first = seen[key]
            raise FileRejected(
                f"duplicate column names: column {first + 1} {header[first]!r} and column {index + 1} {name!r} "
                "are the same header; rename or remove one"
            )
        seen[key] = index
    aliases = mapping.aliases()
    chosen: dict[str, tuple[int, int]] = {}
    unknown, unused = [], []
    for index, name in enumerate(header):
        hit = aliases.get(normalize_header(name))
        if hit is None:
            if name:
                unknown.append(name)
            continue
        field_name, priority = hit
        if field_name in chosen:
            other_index, other_priority = chosen[field_name]
            if priority < other_priority:
                unused.append(header[other_index])
                chosen[field_name] = (index, priority)
            else:
                unused.append(name)
            continue
        chosen[field_name] = (index, priority)
    columns = {f: i for f, (i, _) in chosen.items()}
    missing = [f for f in mapping.required if f not in columns]
    if missing:
        hints = "; ".join(f"{f} (e.g. {', '.join(repr(a) for a in mapping.fields[f][:3])})" for f in missing)
        raise FileRejected(
            f"missing required column(s): {hints}. The file's columns are {header}; "
            f"rename a column or add its name to include/config/lead_mapping.json"
        )
    return HeaderMap(header, columns, unknown, unused)


@dataclass(slots=True)
class Record:
    """One record of the file: its first line number, its cells, and what is wrong with its shape."""

    line: int
    cells: list[str]
    error: str | None = None


class _Lines:
    """Physical lines with their numbers, with push-back, counting what the csv reader takes."""

    def __init__(self, text: io.TextIOBase) -> None:
        self._text = text
        self._number = 0
        self._pending: deque[tuple[int, str]] = deque()
        self.taken: list[tuple[int, str]] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._pending:
            item = self._pending.popleft()
        else:
            line = self._text.readline()
            if not line:
                raise StopIteration
            self._number += 1
            item = (self._number, line)
        self.taken.append(item)
        return item[1]

    def push_back(self, items: list[tuple[int, str]]) -> None:
        self._pending.extendleft(reversed(items))

    @property
    def pending(self) -> bool:
        """True when pushed-back lines wait to be read again."""
        return bool(self._pending)

    def read_block(self, hint: int) -> tuple[int, list[str]]:
        """The next physical lines (about ``hint`` characters' worth), with the number of the
        first; only when nothing is pending."""
        assert not self._pending
        block = self._text.readlines(hint)
        first = self._number + 1
        self._number += len(block)
        return first, block


def read_header(text: io.TextIOBase, delimiter: str) -> tuple[list[str], _Lines, Any]:
    """The header row, and the line source and csv reader positioned after it.

    Blank lines before the header are skipped; :class:`FileRejected` when the file has no text.
    """
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter, strict=False)
    for row in reader:
        lines.taken.clear()
        if not is_blank(row):
            return row, lines, reader
    raise FileRejected("the file is empty: it needs a header row and at least one lead")


def is_blank(cells: list[str]) -> bool:
    """True for a record with no cell holding anything but whitespace (a blank line)."""
    return not "".join(cells).strip()


@dataclass(slots=True)
class TextBlock:
    """``count`` physical lines without a quote character, starting at line ``first``, as one
    string: each line is one record, so they can be parsed in one go (by the csv module or
    by Arrow)."""

    first: int
    text: str
    count: int

    @property
    def lines(self) -> list[str]:
        """The lines, with their line ends (CR, LF or CRLF only, as the file was read)."""
        return io.StringIO(self.text, newline="").readlines()


@dataclass(slots=True)
class Block:
    """Physical lines parsed by the csv module into whole records: ``rows[i]`` starts at line
    ``first + i``, or at ``first + offsets[i]`` when a record spans several lines (blank
    lines included, widths not checked)."""

    first: int
    rows: list[list[str]]
    offsets: list[int] | None = None

    def numbers(self) -> list[int]:
        """The first line of each record."""
        if self.offsets is None:
            return list(range(self.first, self.first + len(self.rows)))
        return [self.first + offset for offset in self.offsets]


def iter_blocks(lines: _Lines, reader: Any, width: int) -> Iterator[TextBlock | Block | Record]:
    """The data records after the header, in file order, as blocks where that is safe.

    Lines are read in blocks of about ``BLOCK_CHARS``. A block without a quote character is
    a :class:`TextBlock`; a block whose every line closes its quotes is parsed into a
    :class:`Block`; otherwise the block is read record by record, as :class:`Record`: blank
    lines skipped, a record with the wrong number of fields with ``error`` set, and a
    record spanning several lines because an opening quote never closes rejected on its
    first line only, the following lines read again as records of their own.
    """
    dialect = reader.dialect
    quote = dialect.quotechar or '"'
    while True:
        if not lines.pending:
            first, block = lines.read_block(BLOCK_CHARS)
            if not block:
                return
            text = "".join(block)
            if quote not in text and max(map(len, block)) < FIELD_LIMIT:
                yield TextBlock(first, text, len(block))
                continue
            parsed = _parse_block(block, dialect, width)
            if parsed is not None:
                yield Block(first, *parsed)
                continue
            lines.push_back(list(enumerate(block, first)))
        record = _next_record(lines, reader, width)
        if record is _END:
            return
        if record is not None:
            yield record


def _parse_block(block: list[str], dialect: Any, width: int) -> tuple[list[list[str]], list[int] | None] | None:
    """The block's records and, when one spans several lines, each one's first line (offset in
    the block); None when the block is not made of whole, well-formed records.

    A record may span several lines (a quoted line break) when it has the header's width and
    at most ``MAX_RECORD_LINES`` lines, as :func:`_next_record` takes it; anything else that
    spans lines is left to it (an unbalanced quote). A blank sentinel line after the block
    shows whether the last record closed its quotes: if it did not, the sentinel is swallowed.
    """
    reader = csv.reader([*block, "\n"], dialect)
    rows: list[list[str]] = []
    offsets: list[int] = []
    start = 0
    try:
        for row in reader:
            end = reader.line_num
            if end - start > 1 and (len(row) != width or end - start > MAX_RECORD_LINES):
                return None
            rows.append(row)
            offsets.append(start)
            start = end
    except csv.Error:
        return None
    if not rows or rows[-1] or offsets[-1] != len(block):
        return None
    rows.pop()
    offsets.pop()
    return rows, (None if len(rows) == len(block) else offsets)


def iter_records(lines: _Lines, reader: Any, width: int) -> Iterator[Record]:
    """Every data record after the header, each with its first physical line number.

    :func:`iter_blocks`, one record at a time: blank lines are skipped and a record with the
    wrong number of fields comes with ``error`` set.
    """
    for item in iter_blocks(lines, reader, width):
        if isinstance(item, Record):
            yield item
            continue
        if isinstance(item, Block):
            numbered = zip(item.numbers(), item.rows, strict=True)
        else:
            numbered = enumerate(csv.reader(item.lines, reader.dialect), item.first)
        for number, row in numbered:
            if is_blank(row):
                continue
            if len(row) == width:
                yield Record(number, row)
            else:
                yield Record(number, row, ragged(len(row), width))


def ragged(fields: int, width: int) -> str:
    """The reason given for a record with the wrong number of fields."""
    return f"has {fields} fields; the header has {width}"


_END = Record(0, [])


def _next_record(lines: _Lines, reader: Any, width: int) -> Record | None:
    """The next record read line by line (``None`` for a blank line, ``_END`` at the end)."""
    lines.taken.clear()
    try:
        row = next(reader)
        problem = None
    except StopIteration:
        return _END
    except csv.Error as exc:
        row, problem = None, f"cannot be parsed ({exc})"
    taken = list(lines.taken)
    if not taken:
        return _END
    first_line = taken[0][0]
    if row is not None and is_blank(row) and len(taken) == 1:
        return None
    if row is not None and len(row) == width and len(taken) <= MAX_RECORD_LINES:
        return Record(first_line, row)
    if len(taken) > 1 and (row is None or len(row) != width or len(taken) > MAX_RECORD_LINES):
        # Most likely an unbalanced quote: reject the first line, read the rest again.
        lines.push_back(taken[1:])
        raw = taken[0][1].rstrip("\r\n")
        cells = next(csv.reader([raw], delimiter=reader.dialect.delimiter, strict=False), [raw])
        return Record(first_line, cells, "has an unbalanced quote (a field opens a quote that never closes)")
    if problem is None:
        problem = ragged(len(row), width)
    return Record(first_line, row or [taken[0][1].rstrip("\r\n")], problem)


def copy_to(source: Any, dest: Any) -> None:
    """Copy one file to another (local or object storage) by streaming."""
    with source.open("rb") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
