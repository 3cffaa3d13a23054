"""Reading lead files as they come from the field: quotes that never close, NUL bytes,
UTF-16 and mixed encodings, links and special files, files past the size limits."""

from __future__ import annotations

import codecs
import os

import pytest

from hotcrm.leads import reader as reader_module
from hotcrm.leads.reader import (
    MIXED_ENCODING,
    FileRejected,
    Limits,
    detect_delimiter,
    iter_records,
    read_header,
    spool,
)

# The exact file of issue 13, point 1.
UNCLOSED_AT_EOF = (
    "FirstName,LastName,Company,Email,Notes\n"
    'Alice,Q,Co,aq@example.com,"Started import yesterday\n'
    "Bob,Q,Co,bq@example.com,Valid row\n"
)


def parse(tmp_path, data: bytes, limits: Limits | None = None):
    """(spooled, delimiter, header, records), as the importer reads a file."""
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    spooled = spool(src, tmp_path / "spool", limits)
    with spooled.open() as text:
        delimiter = detect_delimiter(text.read(65536))
        text.seek(0)
        header, lines, reader = read_header(text, delimiter, limits)
        records = list(iter_records(lines, reader, len(header)))
    return spooled, delimiter, header, records


def physical_lines(data: str) -> int:
    return len(data.splitlines())


def test_a_quote_open_at_the_end_of_the_file_is_an_error_at_its_line_and_the_next_lines_are_read_again(tmp_path):
    records = parse(tmp_path, UNCLOSED_AT_EOF.encode())[3]
    assert [(r.line, r.error is None) for r in records] == [(2, False), (3, True)]
    assert "unbalanced quote" in records[0].error and "the file ends inside it" in records[0].error
    assert records[1].cells == ["Bob", "Q", "Co", "bq@example.com", "Valid row"]


@pytest.mark.parametrize("block_chars", [1, 64, 1 << 20])
def test_every_physical_line_is_a_record_or_the_header_whatever_the_blocks(tmp_path, monkeypatch, block_chars):
    monkeypatch.setattr(reader_module, "BLOCK_CHARS", block_chars)
    data = (
        "FirstName,LastName,Company,Email,Notes\n"
        + "".join(f"A{i},B,C,a{i}@example.com,n\n" for i in range(5))
        + 'Open,Q,Co,open@example.com,"a note\n'
        + "".join(f"D{i},E,F,d{i}@example.com,n\n" for i in range(5))
        + 'G,H,I,g@example.com,"closed\nacross lines"\n'
        + 'Last,Q,Co,last@example.com,"never closed'
    )
    records = parse(tmp_path, data.encode())[3]
    lines = sorted(r.line for r in records)
    # Every line but the header, and the closed quote's second line (part of line 13's record).
    assert lines == [n for n in range(2, physical_lines(data) + 1) if n != 14]
    errors = {r.line: r.error for r in records if r.error}
    assert set(errors) == {7, 15} and all("unbalanced quote" in e for e in errors.values())


def test_a_quote_open_past_the_longest_field_stops_there_and_the_lines_after_it_are_read(tmp_path):
    notes = "".join(f"x{i},y,z,w{i}@example.com,n\n" for i in range(20))
    data = 'FirstName,LastName,Company,Email,Notes\nA,B,C,a@example.com,"open\n' + notes
    records = parse(tmp_path, data.encode(), Limits(max_field_chars=100))[3]
    assert records[0].line == 2 and "limits.max_field_chars" in records[0].error
    assert [r.line for r in records[1:]] == list(range(3, 23)) and all(r.error is None for r in records[1:])


def test_a_nul_byte_rejects_its_row_only(tmp_path):
    data = b"First Name,Last Name,Company,Email\nA,B,C,a@example.com\nN,U\x00L,C,n@example.com\nD,E,F,d@example.com\n"
    spooled, _, _, records = parse(tmp_path, data)
    assert spooled.encoding == "utf-8"
    assert [(r.line, r.error) for r in records] == [
        (2, None),
        (3, reader_module.NUL_REASON),
        (4, None),
    ]
    assert records[1].cells[1] == "U\ufffdL"


def test_a_really_binary_file_is_still_refused(tmp_path):
    with pytest.raises(FileRejected, match="binary"):
        parse(tmp_path, b"First,Last\n" + os.urandom(4096))


EXCEL_UNICODE_TEXT = "First Name\tLast Name\tCompany\tEmail\r\nZoë\tMüller\tCafé Ltd\tzoe@example.com\r\n"


@pytest.mark.parametrize(
    "data, encoding",
    [
        (codecs.BOM_UTF16_LE + EXCEL_UNICODE_TEXT.encode("utf-16-le"), "utf-16-le"),  # Excel's "Unicode Text"
        (codecs.BOM_UTF16_BE + EXCEL_UNICODE_TEXT.encode("utf-16-be"), "utf-16-be"),
        (EXCEL_UNICODE_TEXT.encode("utf-16-le"), "utf-16-le (no BOM)"),
        (EXCEL_UNICODE_TEXT.encode("utf-16-be"), "utf-16-be (no BOM)"),
        (codecs.BOM_UTF16_LE + EXCEL_UNICODE_TEXT.encode("utf-8"), "utf-8 after a UTF-16 BOM"),
    ],
)
def test_utf16_files_read_as_text(tmp_path, data, encoding):
    spooled, delimiter, header, records = parse(tmp_path, data)
    assert (spooled.encoding, delimiter) == (encoding, "\t")
    assert header == ["First Name", "Last Name", "Company", "Email"]
    assert [(r.line, r.cells, r.error) for r in records] == [
        (2, ["Zoë", "Müller", "Café Ltd", "zoe@example.com"], None)
    ]


def test_invalid_utf16_is_refused_with_the_reason(tmp_path):
    data = codecs.BOM_UTF16_LE + "First,Last\n".encode("utf-16-le") + b"\x00\xdc\x00\x00"  # a lone low surrogate
    with pytest.raises(FileRejected, match="not valid utf-16-le"):
        parse(tmp_path, data)


def test_a_utf8_header_over_cp1252_rows_reads_right_in_both(tmp_path):
    data = "Prénom;Nom;Société;E-mail\n".encode() + "Zoë;Müller;Café;zoe@example.com\n".encode("cp1252")
    spooled, delimiter, header, records = parse(tmp_path, data)
    assert spooled.encoding == MIXED_ENCODING and delimiter == ";"
    assert header == ["Prénom", "Nom", "Société", "E-mail"]
    assert records[0].cells == ["Zoë", "Müller", "Café", "zoe@example.com"]


def test_a_plain_cp1252_file_is_still_cp1252(tmp_path):
    data = "First,Last,Company,Email\nZoë,Müller,Café,z@example.com\n".encode("cp1252")
    assert parse(tmp_path, data)[0].encoding == "cp1252"


def test_a_symlink_is_refused_and_its_target_never_read(tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text("secret-first-line\n")
    link = tmp_path / "incoming.csv"
    link.symlink_to(outside)
    with pytest.raises(FileRejected, match="symbolic link") as caught:
        spool(link, tmp_path / "spool")
    assert "secret" not in str(caught.value) and str(outside) not in str(caught.value)
    assert not (tmp_path / "spool").exists()


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "leads.csv"
    os.mkfifo(fifo)
    with pytest.raises(FileRejected, match="named pipe"):
        spool(fifo, tmp_path / "spool")


def test_a_line_past_the_limit_refuses_the_file_while_copying(tmp_path):
    data = b"First,Last,Company,Email\nA,B,C,a@example.com\n" + b"x" * 2000 + b"\nD,E,F,d@example.com\n"
    with pytest.raises(FileRejected, match="line 3 is longer than 1,000 bytes"):
        parse(tmp_path, data, Limits(max_line_bytes=1000))
    # CR-only line ends count as line ends.
    parse(tmp_path, (b"First,Last,Company,Email\r" + b"A,B,C,a@example.com\r" * 200), Limits(max_line_bytes=1000))


def test_a_header_past_the_column_limit_refuses_the_file(tmp_path):
    header = ",".join(f"c{i}" for i in range(50))
    with pytest.raises(FileRejected, match="50 columns, more than the 10 allowed"):
        parse(tmp_path, (header + "\n" + "x," * 49 + "x\n").encode(), Limits(max_columns=10))


def test_limits_from_the_mapping_file_are_checked():
    assert Limits.from_dict({"max_columns": 10}, "m.json").max_columns == 10
    with pytest.raises(ValueError, match="unknown limits"):
        Limits.from_dict({"max_rows": 1}, "m.json")
    with pytest.raises(ValueError, match="positive integer"):
        Limits.from_dict({"max_columns": 0}, "m.json")


@pytest.mark.parametrize("seed", range(3))
def test_the_line_length_watch_agrees_with_splitting_the_lines_whatever_the_chunks(seed):
    import random
    import re

    rnd = random.Random(seed)
    for _ in range(200):
        lines = [b"x" * rnd.choice([0, 1, 50, 99, 100, 101, 300]) for _ in range(rnd.randint(1, 20))]
        data = b"".join(line + rnd.choice([b"\n", b"\r\n", b"\r"]) for line in lines)
        if rnd.random() < 0.3:
            data = data.rstrip(b"\r\n")
        too_long = max(len(line) for line in re.split(rb"\r\n|\r|\n", data)) > 100
        watch, refused, position = reader_module._LongestLine(100), False, 0
        try:
            while position < len(data):
                size = rnd.randint(1, 400)
                watch.feed(data[position : position + size])
                position += size
            watch.finish()
        except FileRejected:
            refused = True
        assert refused == too_long


def test_a_utf8_header_is_recognised_when_the_cp1252_rows_come_megabytes_later(tmp_path):
    rows = "".join(f"A{i};B;C;a{i}@example.com;x\n" for i in range(100_000))
    data = (
        "Prénom;Nom;Société;E-mail;Unité\n".encode()
        + rows.encode()
        + "Zoë;Müller;Café;z@example.com;y\n".encode("cp1252")
    )
    spooled, _, header, records = parse(tmp_path, data)
    assert spooled.encoding == MIXED_ENCODING and header[0] == "Prénom"
    assert records[-1].cells[:3] == ["Zoë", "Müller", "Café"]


@pytest.mark.parametrize(
    "data",
    [
        # A quote "closed" by a quote inside the next line, the fields still adding up to the header's.
        'A,B,C\nx,y,"open\np"r\nu,v,w\n',
        # A quoted line break that closes cleanly: one record of two lines.
        'A,B,C\nx,y,"two\nlines"\nu,v,w\n',
        # A quoted field past the longest allowed (limits below) before its last line.
        'A,B,C\nx,y,"' + "z" * 40 + "\n" + "z" * 40 + '"\nu,v,w\n',
    ],
)
def test_blocks_and_records_read_a_file_the_same_way(tmp_path, monkeypatch, data):
    """A block parsed whole (quoted line breaks included) gives the records that reading it
    record by record gives: same lines, cells and errors."""
    limits = Limits(max_field_chars=32)
    seen = []
    for block_chars in (1, 1 << 20):  # one line a block (record by record), the whole file a block
        monkeypatch.setattr(reader_module, "BLOCK_CHARS", block_chars)
        (tmp_path / str(block_chars)).mkdir()
        records = parse(tmp_path / str(block_chars), data.encode(), limits)[3]
        seen.append([(r.line, r.cells, r.error) for r in records])
    assert seen[0] == seen[1]
