"""Bulk API 2.0 CSV, read and written by the emulator from Salesforce's published rules, not
with Python's ``csv`` module (so the emulator does not share the client's assumptions).

Rules, from the Bulk API 2.0 and Bulk API Developer Guide:

- "Prepare CSV Files" (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/datafiles_prepare_csv.htm):
  UTF-8; the first row names the fields; the delimiter is the job's ``columnDelimiter``
  (BACKQUOTE, CARET, COMMA, PIPE, SEMICOLON, TAB; default COMMA); the line ending is the job's
  ``lineEnding`` (LF or CRLF; default LF); double quotes escape values that would otherwise
  be read as delimiters or line endings.
- "Valid CSV Record Rows" (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_bulk_v2/datafiles_csv_valid_record_rows.htm):
  a value with the delimiter, a line break or a double quote is enclosed in double quotes;
  an inner double quote is doubled; values are not trimmed; a space before or after a
  double quote is an error for the row; an empty value is ignored on update and ``#N/A``
  sets a field to null.
"""

from __future__ import annotations

DELIMITERS = {"COMMA": ",", "TAB": "\t", "SEMICOLON": ";", "PIPE": "|", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}


class CsvRowError(ValueError):
    """A row breaks the CSV rules (line number is 1-based, the header being line 1)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def parse(text: str, column_delimiter: str = "COMMA", line_ending: str = "LF") -> list[tuple[int, list[str]]]:
    """Rows of ``text`` as (line number, cells). A row that breaks the quoting rules raises
    :class:`CsvRowError` naming its line."""
    delimiter = DELIMITERS[column_delimiter]
    newline = LINE_ENDINGS[line_ending]
    rows: list[tuple[int, list[str]]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        start_line = line
        cells: list[str] = []
        while True:  # one cell per pass
            if text.startswith('"', i):
                i += 1
                value: list[str] = []
                while True:
                    j = text.find('"', i)
                    if j < 0:
                        raise CsvRowError(start_line, "a quoted value is not closed")
                    value.append(text[i:j])
                    if text.startswith('""', j):
                        value.append('"')
                        i = j + 2
                        continue
                    i = j + 1
                    break
                cell = "".join(value)
                line += cell.count("\n")
                if i < n and not text.startswith(delimiter, i) and not text.startswith(newline, i):
                    raise CsvRowError(start_line, f"unexpected {text[i]!r} after a closing double quote")
            else:
                ends = [k for k in (text.find(delimiter, i), text.find(newline, i)) if k >= 0]
                j = min(ends) if ends else n
                cell = text[i:j]
                if '"' in cell:
                    raise CsvRowError(start_line, "a double quote inside a value that is not enclosed in double quotes")
                i = j
            cells.append(cell)
            if text.startswith(delimiter, i):
                i += len(delimiter)
                continue
            if text.startswith(newline, i):
                i += len(newline)
                line += 1
            break
        rows.append((start_line, cells))
    return rows


def _cell(value: str, delimiter: str) -> str:
    if delimiter in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def write(rows: list[list[str]], column_delimiter: str = "COMMA", line_ending: str = "LF") -> str:
    """Rows as CSV text by the same rules."""
    delimiter = DELIMITERS[column_delimiter]
    newline = LINE_ENDINGS[line_ending]
    return "".join(delimiter.join(_cell(c, delimiter) for c in row) + newline for row in rows)
