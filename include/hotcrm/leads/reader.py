"""Reading lead files: spool, hash, detect encoding and delimiter, map headers, stream rows.

Everything here streams: a file is copied once to a local spool file (computing its
sha256 and checking its encoding on the way), then parsed record by record. Memory does
not grow with the file.

Problems that end the whole file (empty, header only, binary, not a regular file, a line or
header past the limits, duplicate or missing columns) raise :class:`FileRejected` with a
message for the person who dropped the file. Problems with one record (ragged, a quote that
never closes, a NUL byte) come out of :func:`iter_records` as :class:`Record` with ``error``
set, and the rest of the file goes on: every physical line ends in a record, a rejected
record, a blank line skipped, or the file's error.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import os
import re
import shutil
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotcrm.settings import CONFIG_DIR, read_json_file

MAPPING_PATH = CONFIG_DIR / "lead_mapping.json"
CHUNK = 1 << 20
SNIFF_BYTES = 64 * 1024
# Characters of text read at a time when parsing records.
BLOCK_CHARS = 256 * 1024
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# A quoted field spanning more lines than this is taken for an unbalanced quote.
MAX_RECORD_LINES = 50
# The csv module's own cap on a field (process-wide); Limits.max_line_bytes keeps lines below it.
FIELD_LIMIT = 16 * 1024 * 1024
csv.field_size_limit(FIELD_LIMIT)
# Share of C0 control bytes (NUL included) in the first chunk above which a file is binary.
BINARY_CONTROL_SHARE = 0.05
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_TEXT_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)
MIXED_ENCODING = "utf-8, other lines cp1252"
STRAY_BOM = " after a UTF-16 BOM"

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
class Limits:
    """Caps on a file's shape, far above any real CRM export: past them a file (or a record)
    is refused early, before it can take the worker's memory."""

    max_columns: int = 4_096  # header columns (a data row with more is rejected, cells cut)
    max_field_chars: int = 1 << 20  # a quoted field spanning lines (beyond it: a quote never closed)
    max_line_bytes: int = 16 << 20  # one physical line, checked while copying (the file is refused)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Limits:
        """Limits from the mapping file's ``limits`` object; errors name the file and key."""
        known = {"max_columns", "max_field_chars", "max_line_bytes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown limits {unknown}; known: {sorted(known)}")
        for key, value in data.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}: limits.{key} must be a positive integer, not {value!r}")
        if data.get("max_line_bytes", cls.max_line_bytes) > FIELD_LIMIT:
            raise ValueError(f"{where}: limits.max_line_bytes may be at most {FIELD_LIMIT}")
        return cls(**data)


@dataclass(frozen=True)
class Spooled:
    """A local copy of a dropped file, with what was learnt while copying it.

    ``encoding`` is the file's, as reported; the copy is read as ``text_encoding`` with the
    codec error handler ``errors`` (a UTF-16 file is copied as UTF-8)."""

    path: Path
    size: int
    sha256: str
    encoding: str
    text_encoding: str = ""
    errors: str = "strict"

    def open(self) -> io.TextIOWrapper:
        """The copy as text (see :func:`open_text`)."""
        return open_text(self.path, self.text_encoding or self.encoding, self.errors)


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte that is not UTF-8 is read as Windows-1252 (its five unassigned
    bytes as Latin-1), so a file mixing UTF-8 and Windows-1252 lines reads right in both."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad), exc.end


codecs.register_error("hotcrm-cp1252-fallback", _cp1252_fallback)


def _open_regular(source: Any):
    """``source`` opened for reading; a local path is opened without following a symbolic link
    and must be a regular file (a FIFO would block, a device never end)."""
    local = local_file(source)
    if local is None:
        return source.open("rb")
    try:
        fd = os.open(local, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if os.path.islink(local):
            raise FileRejected(not_regular_reason(local)) from None
        raise FileRejected(f"the file cannot be opened ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FileRejected(not_regular_reason(local))
    return os.fdopen(fd, "rb")


def local_file(source: Any) -> Path | None:
    """The local file behind ``source`` (a ``Path`` or a ``file://`` ObjectStoragePath), else None."""
    if isinstance(source, Path):
        return source
    if getattr(source, "protocol", None) in ("file", "local"):
        return Path(source.path)
    return None


def not_regular_reason(path: Any) -> str | None:
    """Why a local ``path`` is refused unread (a link, a folder, a FIFO...), or None for a regular file.

    Links are never followed: nothing is read from their target, whose name is not repeated."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        what = "a symbolic link"
    elif stat.S_ISDIR(mode):
        what = "a folder"
    elif stat.S_ISFIFO(mode):
        what = "a named pipe (FIFO)"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        what = "a device"
    return (
        f"this is {what}, not a regular file; links and special files are never read: "
        "copy the CSV file itself into incoming/"
    )


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le`` / ``utf-16-be`` when the head looks like UTF-16 text without a BOM (mostly
    ASCII: NUL in every other byte), else None."""
    pairs = len(head) // 2
    if pairs < 4:
        return None
    even, odd = head[0 : 2 * pairs : 2], head[1 : 2 * pairs : 2]
    if odd.count(0) >= 0.6 * pairs and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) >= 0.6 * pairs and odd.count(0) == 0:
        return "utf-16-be"
    return None


def spool(source: Any, dest: Path, limits: Limits | None = None) -> Spooled:
    """Copy ``source`` (anything with ``.open('rb')``) to ``dest``, hashing it and working out
    its encoding: UTF-16 (with or without BOM; the copy is UTF-8), ``utf-8-sig`` (with BOM),
    ``utf-8``, else UTF-8 with Windows-1252 lines, ``cp1252``, else ``latin-1``.

    Raises :class:`FileRejected` for what is not a regular file (a local symbolic link is
    never followed), binary content (a known signature, or control bytes throughout the first
    chunk) and a line longer than ``limits.max_line_bytes``. A NUL byte here and there is left
    to the rows it is in.
    """
    limits = limits or Limits()
    digest = hashlib.sha256()
    size = 0
    with _open_regular(source) as src:
        head = src.read(CHUNK)
        for magic, what in _MAGIC:
            if head.startswith(magic):
                raise FileRejected(f"the file is {what}, not a CSV text file; {_FIX_SAVE_AS}")
        utf16, skip, label = _utf16_kind(head)
        if utf16 is None and len(head.translate(None, _TEXT_BYTES)) > BINARY_CONTROL_SHARE * len(head):
            offset = next(i for i, b in enumerate(head) if b in _CONTROL_BYTES)
            what = "a NUL byte" if head[offset] == 0 else f"control byte 0x{head[offset]:02x}"
            raise FileRejected(
                f"the file is binary (control bytes throughout; {what} at byte {offset}); it may be a spreadsheet: "
                + _FIX_SAVE_AS
            )
        decoder = codecs.getincrementaldecoder(utf16)() if utf16 else None
        utf8 = codecs.getincrementaldecoder("utf-8")()
        utf8_ok, multibyte = True, False
        longest = _LongestLine(limits.max_line_bytes)
        with open(dest, "wb") as out:
            chunk, first = head, True
            while chunk:
                size += len(chunk)
                digest.update(chunk)
                data = chunk[skip:] if first else chunk
                first = False
                if decoder is not None:
                    try:
                        data = decoder.decode(data).encode("utf-8")
                    except UnicodeDecodeError:
                        raise FileRejected(
                            f"the file starts as {label} text but is not valid {label} near byte {size - len(chunk)}: "
                            + _FIX_SAVE_AS
                        ) from None
                longest.feed(data)
                out.write(data)
                if decoder is None:
                    if utf8_ok:
                        try:
                            utf8.decode(data)
                        except UnicodeDecodeError:
                            utf8_ok = False
                    if not multibyte and not data.isascii():
                        multibyte = _has_utf8_multibyte(data)
                chunk = src.read(CHUNK)
            if decoder is not None:
                try:
                    out.write(decoder.decode(b"", final=True).encode("utf-8"))
                except UnicodeDecodeError:
                    raise FileRejected(f"the file ends in the middle of a {label} character: {_FIX_SAVE_AS}") from None
        longest.finish()
    if decoder is not None:
        return Spooled(dest, size, digest.hexdigest(), label, "utf-8")
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    if utf8_ok and label == STRAY_BOM:
        return Spooled(dest, size, digest.hexdigest(), "utf-8" + STRAY_BOM, "utf-8")
    if utf8_ok:
        encoding = "utf-8-sig" if head[skip:].startswith(codecs.BOM_UTF8) else "utf-8"
        return Spooled(dest, size, digest.hexdigest(), encoding, encoding)
    if multibyte:
        # Some of it is UTF-8 (say the header), some not: each line reads right either way.
        return Spooled(dest, size, digest.hexdigest(), MIXED_ENCODING, "utf-8", "hotcrm-cp1252-fallback")
    encoding = "cp1252" if _decodes(dest, "cp1252") else "latin-1"  # Latin-1 never fails
    return Spooled(dest, size, digest.hexdigest(), encoding + label, encoding)


def _has_utf8_multibyte(data: bytes) -> bool:
    """True when the bytes hold a 2- or 3-byte UTF-8 sequence (a lead byte, then continuation
    bytes): in a file that is not UTF-8 throughout, the sign that some of it (often the header,
    written by another tool) is UTF-8 all the same. Element-wise numpy, a few ms a megabyte."""
    import numpy as np

    codes = np.frombuffer(data, dtype=np.uint8)
    if len(codes) < 2:
        return False
    cont = (codes >= 0x80) & (codes <= 0xBF)
    lead2 = (codes >= 0xC2) & (codes <= 0xDF)
    if (lead2[:-1] & cont[1:]).any():
        return True
    lead3 = (codes >= 0xE0) & (codes <= 0xEF)
    return bool(len(codes) > 2 and (lead3[:-2] & cont[1:-1] & cont[2:]).any())


def _utf16_kind(head: bytes) -> tuple[str | None, int, str]:
    """(decoder, BOM bytes to skip, label) for the file's first chunk: UTF-16 with a BOM, UTF-16
    without one, a UTF-16 BOM on 8-bit text (the BOM is dropped), or neither."""
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            if b"\x00" not in head[2:] and len(head) > 2:
                # "Unicode" in name only: a UTF-16 BOM, then text with no NUL byte in it.
                return None, 2, STRAY_BOM
            return codec, 2, codec
    codec = _utf16_without_bom(head)
    if codec is not None:
        return codec, 0, f"{codec} (no BOM)"
    return None, 0, ""


class _LongestLine:
    """Watches the bytes of a copy for a line (ended by LF or CR) longer than ``limit``, with
    numpy over each chunk; the line number given counts LFs (CRs alone for a CR-only file)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.run, self.lf, self.cr = limit, 0, 0, 0

    def feed(self, data: bytes) -> None:
        import numpy as np

        if self.run + len(data) <= self.limit:  # no line of this chunk can be too long: only find its last end
            last = max(data.rfind(b"\n"), data.rfind(b"\r"))
            self.run = self.run + len(data) if last < 0 else len(data) - last - 1
            self.lf += data.count(b"\n")
            self.cr += data.count(b"\r")
            return
        octets = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero((octets == 10) | (octets == 13))
        if len(ends):
            gaps = np.diff(ends, prepend=-1 - self.run)  # each line's length, its end included
            if int(gaps.max()) > self.limit + 1:
                self._refuse(data, int(ends[int(np.argmax(gaps > self.limit + 1))]))
            self.run = len(data) - int(ends[-1]) - 1
        else:
            self.run += len(data)
        if self.run > self.limit:
            self._refuse(data, len(data))
        self.lf += data.count(b"\n")
        self.cr += data.count(b"\r")

    def finish(self) -> None:
        if self.run > self.limit:
            self._refuse(b"", 0)

    def _refuse(self, data: bytes, position: int) -> None:
        line = 1 + (self.lf + data.count(b"\n", 0, position) if self.lf or b"\n" in data else self.cr)
        raise FileRejected(
            f"line {line} is longer than {self.limit:,} bytes (limits.max_line_bytes in "
            "include/config/lead_mapping.json); no lead export has lines that long: check that the file is a "
            "CSV of leads, or shorten the long field"
        )


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


def open_text(path: Path, encoding: str, errors: str = "strict") -> io.TextIOWrapper:
    """The spooled file as text; ``newline=''`` lets the csv module see CR, LF and CRLF alike."""
    return open(path, encoding=encoding, errors=errors, newline="")


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
    limits: Limits = field(default_factory=Limits)
    # How amounts are written: "auto" (from each file's values) or a format such as "1.234,56".
    number_format: str = "auto"

    @classmethod
    def load(cls, path: Path = MAPPING_PATH) -> Mapping:
        """Read and check a mapping file; errors name the file and the entry."""
        data = read_json_file(path, "lead mapping")
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
        limits = data.get("limits", {})
        if not isinstance(limits, dict):
            raise ValueError(f"{path}: 'limits' must be an object, e.g. {{\"max_columns\": 4096}}")
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
            Limits.from_dict({k: v for k, v in limits.items() if not k.startswith("_")}, str(path)),
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
    """Physical lines with their numbers, with push-back, counting what the csv reader takes.

    While the csv reader builds one record (``taken`` not empty), the lines stop (as at the end
    of the file, ``cut`` set) once the record spans ``max_lines`` lines or ``max_chars``
    characters: a quote that never closes costs no more than that. ``eof`` is set when the
    reader asked for a line past the end of the file.
    """

    def __init__(self, text: io.TextIOBase, max_lines: int = MAX_RECORD_LINES, max_chars: int = 1 << 20) -> None:
        self._text = text
        self._number = 0
        self._pending: deque[tuple[int, str]] = deque()
        self.taken: list[tuple[int, str]] = []
        self.taken_chars = 0
        self.max_lines, self.max_chars = max_lines, max_chars
        self.eof = self.cut = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.taken and (len(self.taken) >= self.max_lines or self.taken_chars > self.max_chars):
            self.cut = True
            raise StopIteration
        if self._pending:
            item = self._pending.popleft()
        else:
            line = self._text.readline()
            if not line:
                self.eof = True
                raise StopIteration
            self._number += 1
            item = (self._number, line)
        self.taken.append(item)
        self.taken_chars += len(item[1])
        return item[1]

    def start_record(self) -> None:
        """Forget what the previous record took."""
        self.taken.clear()
        self.taken_chars = 0
        self.eof = self.cut = False

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


def read_header(text: io.TextIOBase, delimiter: str, limits: Limits | None = None) -> tuple[list[str], _Lines, Any]:
    """The header row, and the line source and csv reader positioned after it.

    Blank lines before the header are skipped; :class:`FileRejected` when the file has no
    text, or a header of more than ``limits.max_columns`` columns.
    """
    limits = limits or Limits()
    lines = _Lines(text, max_chars=limits.max_field_chars)
    reader = csv.reader(lines, delimiter=delimiter, strict=False)
    while True:
        lines.start_record()
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise FileRejected(f"the header row cannot be parsed ({exc})") from None
        if len(row) > limits.max_columns:
            raise FileRejected(
                f"the header row has {len(row):,} columns, more than the {limits.max_columns:,} allowed "
                "(limits.max_columns in include/config/lead_mapping.json); check that the file is a CSV of leads"
            )
        if lines.eof or lines.cut:
            raise FileRejected(
                f"the header row opens a quote on line {lines.taken[0][0]} that is never closed; "
                "fix the quotes in the first line"
            )
        if not is_blank(row):
            lines.start_record()
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


def iter_blocks(
    lines: _Lines, reader: Any, width: int, parse_quoted: Callable[[int, list[str]], Any] | None = None
) -> Iterator[Any]:
    """The data records after the header, in file order, as blocks where that is safe.

    Lines are read in blocks of about ``BLOCK_CHARS``. A block without a quote character is
    a :class:`TextBlock`; a block whose every line closes its quotes is parsed by
    ``parse_quoted(first line, lines)`` when given (what it returns is yielded; None: it
    could not) or else into a :class:`Block`; otherwise the block is read record by record, as :class:`Record`: blank
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
            if "\x00" in text or max(map(len, block)) >= FIELD_LIMIT:
                # Rare: the records with a NUL, or past the csv module's field limit, found one by one.
                lines.push_back(list(enumerate(block, first)))
            elif quote not in text:
                yield TextBlock(first, text, len(block))
                continue
            elif parse_quoted is not None and (parsed := parse_quoted(first, block)) is not None:
                yield parsed
                continue
            elif (parsed := _parse_block(block, dialect, width, lines.max_chars)) is not None:
                yield Block(first, *parsed)
                continue
            else:
                lines.push_back(list(enumerate(block, first)))
        record = _next_record(lines, reader, width)
        if record is _END:
            return
        if record is not None:
            yield record


def _parse_block(
    block: list[str], dialect: Any, width: int, max_chars: int
) -> tuple[list[list[str]], list[int] | None] | None:
    """The block's records and, when one spans several lines, each one's first line (offset in
    the block); None when the block is not made of whole, well-formed records.

    A record may span several lines (a quoted line break) only as :func:`_next_record` takes
    one: the header's width, at most ``MAX_RECORD_LINES`` lines and ``max_chars`` characters
    before its last line, and quotes that close cleanly; anything else that spans lines is left
    to it (an unbalanced quote). A blank sentinel line after the block shows whether the last
    record closed its quotes: if it did not, the sentinel is swallowed.
    """
    reader = csv.reader([*block, "\n"], dialect)
    rows: list[list[str]] = []
    offsets: list[int] = []
    start = 0
    try:
        for row in reader:
            end = reader.line_num
            if end - start > 1 and (
                len(row) != width
                or end - start > MAX_RECORD_LINES
                or sum(map(len, block[start : end - 1])) > max_chars
                or not closes_cleanly(block[start:end], dialect)
            ):
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


def cells_at(text: io.TextIOBase, delimiter: str, wanted: Iterable[int]) -> dict[int, list[str]]:
    """The cells of the well-formed records that start on the ``wanted`` physical lines (as
    :func:`iter_blocks` numbers them), read again from ``text`` at its start: one pass over the
    lines (skipped in C), the csv module only where a wanted record starts."""
    found: dict[int, list[str]] = {}
    skipped = 0  # lines skipped outside the reader (the reader's line_num counts its own)
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    for line in sorted(set(wanted)):
        gap = line - (skipped + reader.line_num) - 1
        deque(itertools.islice(text, gap), maxlen=0)  # the lines before it
        skipped += gap
        found[line] = next(reader)
    return found


def ragged(fields: int, width: int) -> str:
    """The reason given for a record with the wrong number of fields."""
    return f"has {fields} fields; the header has {width}"


_END = Record(0, [])
UNCLOSED_QUOTE = "has an unbalanced quote: a quote opened on this line is never closed"
NUL_REASON = "contains a NUL byte (shown as \ufffd); remove it from the file and drop it again"


def _next_record(lines: _Lines, reader: Any, width: int) -> Record | None:
    """The next record read line by line (``None`` for a blank line, ``_END`` at the end).

    A quote still open at the end of the file, or past ``MAX_RECORD_LINES`` lines or the
    longest field allowed, rejects the record's first line only; the lines after it are read
    again as records of their own, so none is lost.
    """
    lines.start_record()
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
    unclosed = lines.eof or lines.cut  # the reader wanted more lines for an open quote
    spans_lines = len(taken) > 1 and row is not None
    if not unclosed and spans_lines and not closes_cleanly([text for _, text in taken], reader.dialect):
        # The quote "closed" on a later line by a quote of another record (followed by text,
        # not a delimiter): the lines between are records, not a field.
        unclosed, problem = True, f"its quote only closes on line {taken[-1][0]}, inside another record"
    if row is not None and is_blank(row) and len(taken) == 1 and not unclosed:
        return None
    if unclosed or (len(taken) > 1 and (row is None or len(row) != width)):
        lines.push_back(taken[1:])
        raw = taken[0][1].rstrip("\r\n")
        cells = next(csv.reader([raw], delimiter=reader.dialect.delimiter, strict=False), [raw])
        if problem is not None and problem.startswith("its quote"):
            where = problem
        elif lines.eof:
            where = "the file ends inside it"
        elif lines.cut and len(taken) >= lines.max_lines:
            where = f"not within {lines.max_lines} lines"
        elif lines.cut:
            where = f"not within {lines.max_chars:,} characters (limits.max_field_chars)"
        else:
            where = f"its record spans {len(taken)} lines and has {len(row or [])} fields, not {width}"
        return _checked(Record(first_line, cells, f"{UNCLOSED_QUOTE} ({where}); the lines after it are read again"))
    if row is not None and len(row) == width:
        return _checked(Record(first_line, row))
    if problem is None:
        problem = ragged(len(row), width)
    return _checked(Record(first_line, row or [taken[0][1].rstrip("\r\n")], problem))


def closes_cleanly(lines: list[str], dialect: Any) -> bool:
    """True when the lines of a record parse strictly (each closing quote followed by a
    delimiter or the line's end) as one record."""
    try:
        rows = list(csv.reader(["".join(lines)], dialect, strict=True))
    except csv.Error:
        return False
    return len(rows) == 1


def _checked(record: Record) -> Record:
    """The record, rejected when a NUL byte is in it (the database cannot store one); NULs in
    the kept cells become U+FFFD."""
    if any("\x00" in cell for cell in record.cells):
        record.cells = [cell.replace("\x00", "\ufffd") for cell in record.cells]
        if record.error is None:
            record.error = NUL_REASON
    return record


def copy_to(source: Any, dest: Any) -> None:
    """Copy one file to another (local or object storage) by streaming."""
    with source.open("rb") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
