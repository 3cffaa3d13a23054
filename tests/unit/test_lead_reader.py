"""Reading lead files: encodings, delimiters, line endings, quoting, headers, ragged rows."""

from __future__ import annotations

import codecs

import pytest

from hotcrm.leads.reader import (
    FileRejected,
    Mapping,
    detect_delimiter,
    iter_records,
    map_header,
    normalize_header,
    read_header,
    spool,
)

HEADER = ["First Name", "Last Name", "Company", "Email"]


def parse(tmp_path, data: bytes):
    """Spool ``data`` and parse it as the importer does: (encoding, delimiter, header, records)."""
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    spooled = spool(src, tmp_path / "spool")
    with spooled.open() as text:
        delimiter = detect_delimiter(text.read(65536))
        text.seek(0)
        header, lines, reader = read_header(text, delimiter)
        records = list(iter_records(lines, reader, len(header)))
    return spooled.encoding, delimiter, header, records


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_delimiters_and_line_endings(tmp_path, delimiter, newline):
    rows = [
        HEADER,
        ["Ada", "Lovelace", "Engines", "ada@example.com"],
        ["Alan", "Turing", "Bletchley", "alan@example.com"],
    ]
    data = newline.join(delimiter.join(r) for r in rows) + newline
    encoding, found, header, records = parse(tmp_path, data.encode())
    assert (encoding, found, header) == ("utf-8", delimiter, HEADER)
    assert [(r.line, r.cells, r.error) for r in records] == [
        (2, rows[1], None),
        (3, rows[2], None),
    ]


def test_quoted_fields_with_delimiters_quotes_and_newlines(tmp_path):
    data = (
        'First Name,Last Name,Company,Email\r\n"Ada","Love, lace","Engines ""Inc""\r\nLondon",ada@example.com\r\n'
        "Alan,Turing,Bletchley,alan@example.com\r\n"
    )
    _, delimiter, _, records = parse(tmp_path, data.encode())
    assert delimiter == ","
    assert records[0].cells == ["Ada", "Love, lace", 'Engines "Inc"\r\nLondon', "ada@example.com"]
    assert records[0].line == 2 and records[1].line == 4 and records[1].error is None


def test_semicolon_file_whose_cells_contain_commas_is_detected_as_semicolon(tmp_path):
    data = "Email;Company;First Name;Last Name\nada@example.com;Engines, Ltd;Ada;Lovelace\nb@example.com;A, B, C;B;C\n"
    assert parse(tmp_path, data.encode())[1] == ";"


def test_utf8_bom_is_recognized_and_stripped(tmp_path):
    data = codecs.BOM_UTF8 + "First Name,Last Name,Company,Email\nZoë,Brontë,Café,zoe@example.com\n".encode()
    encoding, _, header, records = parse(tmp_path, data)
    assert encoding == "utf-8-sig" and header[0] == "First Name"
    assert records[0].cells[:3] == ["Zoë", "Brontë", "Café"]


def test_windows_1252_fallback(tmp_path):
    data = "First Name,Last Name,Company,Email\nFrançois,Müller,Café “Noir”,f@example.com\n".encode("cp1252")
    encoding, _, _, records = parse(tmp_path, data)
    assert encoding == "cp1252"
    assert records[0].cells[:3] == ["François", "Müller", "Café “Noir”"]


def test_latin1_fallback_when_not_even_cp1252(tmp_path):
    # 0x81 is undefined in Windows-1252; Latin-1 reads every byte.
    data = b"First Name,Last Name,Company,Email\nA\x81,B\xe9,C,a@example.com\n"
    encoding, _, _, records = parse(tmp_path, data)
    assert encoding == "latin-1" and records[0].cells[1] == "Bé"


def test_ragged_rows_are_rejected_with_their_line_and_the_rest_goes_on(tmp_path):
    data = "First Name,Last Name,Company,Email\nA,B,C\nA,B,C,d@example.com,extra\nE,F,G,h@example.com\n"
    records = parse(tmp_path, data.encode())[3]
    assert [(r.line, r.error) for r in records] == [
        (2, "has 3 fields; the header has 4"),
        (3, "has 5 fields; the header has 4"),
        (4, None),
    ]


def test_unbalanced_quote_rejects_only_its_line(tmp_path):
    data = 'First Name,Last Name,Company,Email\nA,"B,C,a@example.com\nD,E,F,d@example.com\nG,H,I,g@example.com\n'
    records = parse(tmp_path, data.encode())[3]
    assert records[0].line == 2 and "unbalanced quote" in records[0].error
    assert [(r.line, r.cells, r.error) for r in records[1:]] == [
        (3, ["D", "E", "F", "d@example.com"], None),
        (4, ["G", "H", "I", "g@example.com"], None),
    ]


def test_blank_lines_are_skipped(tmp_path):
    data = "\n\nFirst Name,Last Name,Company,Email\n\nA,B,C,a@example.com\n\n"
    _, _, header, records = parse(tmp_path, data.encode())
    assert header == HEADER and [r.line for r in records] == [5]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\n\n  \n", "empty"),
        (b"PK\x03\x04\x14\x00rest-of-a-zip", "ZIP archive"),
        (b"%PDF-1.7\n...", "PDF"),
        (b"a,b\n\x00\x01\x02", "NUL byte at byte 4"),
    ],
)
def test_files_that_are_not_text_or_are_empty(tmp_path, data, message):
    with pytest.raises(FileRejected, match=message):
        parse(tmp_path, data)


def test_spool_hashes_and_measures(tmp_path):
    import hashlib

    data = b"First Name,Last Name,Company,Email\n" * 50_000
    src = tmp_path / "big.csv"
    src.write_bytes(data)
    spooled = spool(src, tmp_path / "copy")
    assert spooled.size == len(data) and spooled.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "copy").read_bytes() == data


@pytest.mark.parametrize(
    "header, field",
    [
        ("First Name", "FirstName"),
        ("first_name", "FirstName"),
        ("FirstName", "FirstName"),
        (" FIRST-NAME ", "FirstName"),
        ("E-mail", "Email"),
        ("Email 1", "Email"),
        ("Email Address", "Email"),
        ("Phone 1", "Phone"),
        ("Mobile", "Phone"),
        ("Account Name", "Company"),
        ("Organization", "Company"),
        ("Surname", "LastName"),
    ],
)
def test_usual_export_headers_map_to_lead_fields(header, field):
    others = {"FirstName": "First Name", "LastName": "Last Name", "Company": "Company", "Email": "Email"}
    others.pop(field, None)
    mapped = map_header([header, *others.values()], Mapping.load())
    assert mapped.columns[field] == 0


def test_unknown_columns_are_listed_not_fatal():
    mapped = map_header([*HEADER, "Favourite Colour", ""], Mapping.load())
    assert mapped.unknown == ["Favourite Colour"]


def test_two_columns_for_one_field_the_better_alias_wins():
    mapped = map_header([*HEADER, "Mobile", "Phone"], Mapping.load())
    assert mapped.columns["Phone"] == 5 and mapped.unused == ["Mobile"]


def test_duplicate_header_names_end_the_file():
    with pytest.raises(FileRejected, match=r"column 4 'Email' and column 5 'E-mail' are the same header"):
        map_header([*HEADER, "E-mail"], Mapping.load())


def test_missing_required_column_names_it_and_the_fix():
    with pytest.raises(FileRejected, match=r"missing required column\(s\): Email .*lead_mapping.json"):
        map_header(["First Name", "Last Name", "Company", "Phone"], Mapping.load())


def test_normalize_header():
    assert normalize_header("  E-mail Address ") == "emailaddress"


def test_a_bad_mapping_file_names_the_file_and_entry(tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text('{"fields": {"Nickname": ["Nick"]}, "required": []}')
    with pytest.raises(ValueError, match=r"mapping.json: unknown Lead fields \['Nickname'\]"):
        Mapping.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"mapping.json, line 1, column 2: invalid JSON"):
        Mapping.load(path)


def _records(text: str, delimiter: str, *, line_by_line: bool = False):
    import io

    from hotcrm.leads import reader as reader_module

    header, lines, reader = read_header(io.StringIO(text, newline=""), delimiter)
    if not line_by_line:
        return [(r.line, r.cells, r.error) for r in iter_records(lines, reader, len(header))]
    records = []  # the record-by-record path alone, as a reference
    while (record := reader_module._next_record(lines, reader, len(header))) is not reader_module._END:
        if record is not None:
            records.append((record.line, record.cells, record.error))
    return records


def _random_file(rnd, delimiter: str, pieces: list[str], *, blank_spaces: bool = False) -> str:
    """A header and 400 lines of random ``pieces``: blank lines, lines of empty cells (and with
    ``blank_spaces``, of spaces), ragged ones; LF, CRLF or CR line ends, the last maybe none."""
    lines = [delimiter.join(HEADER)]
    for _ in range(400):
        kind = rnd.random()
        if kind < 0.05:
            lines.append("")
        elif kind < 0.07:
            lines.append(delimiter * 3)
        elif kind < 0.08:
            lines.append("   " if blank_spaces else delimiter * 3)
        else:
            lines.append(delimiter.join(rnd.choice(pieces) for _ in range(rnd.choice([4, 4, 4, 3, 5]))))
    text = "".join(line + rnd.choice(["\n", "\r\n", "\r\n", "\r"]) for line in lines)
    return text.rstrip("\r\n") if rnd.random() < 0.5 else text


@pytest.mark.parametrize("seed", range(6))
def test_block_parsing_gives_what_record_by_record_parsing_gives(seed, monkeypatch):
    import random

    from hotcrm.leads import reader as reader_module

    rnd = random.Random(seed)
    delimiter = rnd.choice([",", ";", "\t"])
    pieces = ["Ada", "", "  ", "O'Brien", 'say "hi"', '"quoted"', '"with\nnewline"', '"open', f"a{delimiter}b", "é"]
    text = _random_file(rnd, delimiter, pieces)
    expected = _records(text, delimiter, line_by_line=True)
    assert len(expected) > 300
    for block_chars in (1, 50, 4096, 1 << 20):
        monkeypatch.setattr(reader_module, "BLOCK_CHARS", block_chars)
        assert _records(text, delimiter) == expected, block_chars


def test_quoted_line_breaks_keep_a_block_whole_with_each_records_first_line():
    """A record with a quoted line break no longer sends its whole block record by record
    (the realistic file's notes did that to every block)."""
    import io

    from hotcrm.leads.reader import Block, iter_blocks

    text = 'a,b\n1,"x\ny"\n2,z\n3,"p\r\nq\r\nr"\n\n4,w\n'
    header, lines, reader = read_header(io.StringIO(text, newline=""), ",")
    items = list(iter_blocks(lines, reader, len(header)))
    assert len(items) == 1 and isinstance(items[0], Block)
    assert items[0].numbers() == [2, 4, 5, 8, 9]
    assert items[0].rows == [["1", "x\ny"], ["2", "z"], ["3", "p\r\nq\r\nr"], [], ["4", "w"]]
    # A record spanning lines with the wrong width is an unbalanced quote: left to the record-by-record path.
    header, lines, reader = read_header(io.StringIO('a,b\n"x\ny",1,2\n3,w\n', newline=""), ",")
    assert not any(isinstance(item, Block) for item in iter_blocks(lines, reader, 2))


def _records_by_arrow(text: str, delimiter: str) -> tuple[list, int]:
    """What the importer reads with Arrow where it can (``columnar.parse_quoted`` for blocks
    with quotes, ``parse_text`` for the others) as records; and how many blocks Arrow parsed."""
    import csv
    import io

    from hotcrm.leads.columnar import ParsedText, parse_quoted, parse_text
    from hotcrm.leads.reader import Block, Record, TextBlock, is_blank, iter_blocks, ragged

    header, lines, reader = read_header(io.StringIO(text, newline=""), delimiter)
    width = len(header)

    def quoted(first, block):
        return parse_quoted(
            first, block, delimiter, width, max_lines=lines.max_lines, max_chars=lines.max_chars, dialect=reader.dialect
        )

    records, by_arrow = [], 0
    for item in iter_blocks(lines, reader, width, parse_quoted=quoted):
        if isinstance(item, TextBlock):
            item = parse_text(item.text, item.first, item.count, delimiter, width)
        if isinstance(item, ParsedText):
            by_arrow += item.escapes  # (quoted blocks)
            found = []
            rows = zip(*(c.to_pylist() for c in item.cells), strict=True) if width else []
            for line, row in zip(item.lines.tolist(), rows, strict=True):
                if not is_blank(list(row)):
                    found.append((line, list(row), None))
            for line, other in item.others:
                cells = next(csv.reader([other], delimiter=delimiter), [])
                if not is_blank(cells):
                    found.append((line, cells, ragged(len(cells), width)))
            records += sorted(found, key=lambda r: r[0])
        elif isinstance(item, Block):
            for number, row in zip(item.numbers(), item.rows, strict=True):
                if not is_blank(row):
                    records.append((number, row, None if len(row) == width else ragged(len(row), width)))
        elif isinstance(item, Record):
            records.append((item.line, item.cells, item.error))
    return records, by_arrow


@pytest.mark.parametrize("seed", range(12))
def test_arrow_parses_quoted_blocks_as_the_csv_module_does(seed, monkeypatch):
    """Blocks with quotes parsed by Arrow give the records, first lines and errors of the
    record-by-record csv-module path: quoted delimiters and line breaks (CRLF, CR, LF), doubled
    quotes, quotes inside unquoted cells, text after a closing quote, unbalanced quotes (left to
    the csv module), blank and ragged lines."""
    import random

    from hotcrm.leads import reader as reader_module

    rnd = random.Random(seed)
    delimiter = rnd.choice([",", ";", "\t", "|"])
    pieces = ["Ada", "", "  ", "é", "O'Brien", 'say "hi"', '"quoted"', '"a""b"', '""', f'"x{delimiter}y"']
    pieces += ['"with\nnewline"', '"cr\rlf\r\nboth"', '"ab"c', 'x"y', '" padded "', "\u00a0nbsp"]
    if seed % 3 == 0:
        pieces.append('"open')  # an unbalanced quote now and then
    text = _random_file(rnd, delimiter, pieces, blank_spaces=True)
    expected = _records(text, delimiter, line_by_line=True)
    assert len(expected) > 300
    for block_chars in (1, 300, 4096, 1 << 20):
        monkeypatch.setattr(reader_module, "BLOCK_CHARS", block_chars)
        found, by_arrow = _records_by_arrow(text, delimiter)
        assert found == expected, block_chars
        if block_chars == 1:  # (a block of one line: its quotes close on it, but for the unbalanced ones)
            assert by_arrow, "no block was parsed by Arrow"


def test_arrow_leaves_a_block_with_a_quote_that_never_closes_to_the_csv_module():
    import csv

    from hotcrm.leads.columnar import parse_quoted

    limits = {"max_lines": 50, "max_chars": 1 << 20, "dialect": csv.excel}
    good = ['1,"x\r\n', 'y"\n', "3,4\n"]
    parsed = parse_quoted(10, good, ",", 2, **limits)
    assert parsed.lines.tolist() == [10, 12] and [c.to_pylist() for c in parsed.cells] == [["1", "3"], ["x\r\ny", "4"]]
    assert parse_quoted(10, ['1,"x\n', "y\n"], ",", 2, **limits) is None  # open at the end of the block
    assert parse_quoted(10, ['1,"x\n', 'y"z\n'], ",", 2, **limits) is None  # closes on text, not a delimiter
    assert parse_quoted(10, ['1,"x\n', 'y",2\n'], ",", 2, **limits) is None  # spans lines with another width
    many = ['1,"x\n', *["y\n"] * 60, '"\n']
    assert parse_quoted(10, many, ",", 2, **limits) is None  # past max_lines
    assert parse_quoted(10, many, ",", 2, **{**limits, "max_lines": 100}) is not None
    # Ragged single lines with quotes are others, with their lines.
    parsed = parse_quoted(5, ['"a,b",c\n', '"d",e,f\n', "g,h\n"], ",", 2, **limits)
    assert parsed.lines.tolist() == [5, 7] and parsed.others == [(6, '"d",e,f')]


def test_cells_at_reads_again_the_records_that_start_on_the_wanted_lines():
    import io
    import random

    from hotcrm.leads.reader import cells_at

    rnd = random.Random(5)
    pieces = ["Ada", "", "é", '"a,b"', '"two\nlines"', '"cr\rlf\r\nx"', '"q""q"']
    lines = [",".join(HEADER)]
    lines += [",".join(rnd.choice(pieces) for _ in range(4)) for _ in range(300)]
    text = "".join(line + rnd.choice(["\n", "\r\n", "\r"]) for line in lines)
    expected = {line: cells for line, cells, _ in _records(text, ",", line_by_line=True)}
    wanted = rnd.sample(sorted(expected), 40) + [min(expected), max(expected)]
    found = cells_at(io.StringIO(text, newline=""), ",", wanted)
    assert found == {line: expected[line] for line in wanted}
