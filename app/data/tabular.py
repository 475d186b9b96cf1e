"""Read and write spreadsheets (CSV, XLSX) row by row: memory stays flat however big the file is.

Reading streams the file (CSV decoded on the fly, XLSX through openpyxl's read-only parser).
Writing produces bytes chunk by chunk: CSV through `csv.writer`, XLSX as a zip built incrementally
(`xlsx_stream.py`), so the first bytes leave long before the last row is read.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from typing import IO, Iterable, Iterator

from flask_babel import lazy_gettext as _l
from openpyxl import load_workbook

FORMATS = ("csv", "xlsx")
UTF8, GB18030 = "utf-8-sig", "gb18030"  # Excel in China saves CSV as GB18030/GBK
PREFIX_BYTES = 64 * 1024  # how much of a CSV file decides its encoding

# OWASP CSV injection: a text cell starting with one of these is run as a formula by Excel/LibreOffice
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# characters an XLSX (XML 1.0) cell cannot hold; openpyxl refuses them with IllegalCharacterError
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class FileProblem(ValueError):
    """The file as a whole cannot be read (wrong type, encoding, empty)."""


class NotUtf8(Exception):
    """A CSV that looked like UTF-8 at its start has other bytes further on: read it again as GB18030."""


def file_format(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in FORMATS:
        raise FileProblem(_l("Upload a .csv or .xlsx file."))
    return suffix


def read_rows(stream: IO[bytes], fmt: str, encoding: str | None = None) -> Iterator[list]:
    """Rows of cells: text for CSV, typed values (numbers, dates) for XLSX; the header first.

    CSV encoding: `encoding`, or UTF-8 if the first 64 KB decode as UTF-8, else GB18030. A UTF-8 guess
    that meets a non-UTF-8 byte later raises NotUtf8; the caller rewinds and passes `encoding=GB18030`.
    """
    if fmt == "xlsx":
        yield from _xlsx_rows(stream)
        return
    encoding = encoding or _guess_encoding(stream)
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    try:
        yield from csv.reader(text)
    except UnicodeDecodeError:
        if encoding == UTF8:
            raise NotUtf8() from None
        raise FileProblem(_l("The CSV file is neither UTF-8 nor GB18030 encoded.")) from None
    finally:
        text.detach()  # the caller owns (and closes) the binary stream


def _guess_encoding(stream: IO[bytes]) -> str:
    start = stream.tell()
    prefix = stream.read(PREFIX_BYTES)
    stream.seek(start)
    for encoding in (UTF8, GB18030):
        try:
            codecs.getincrementaldecoder(encoding)().decode(prefix, final=len(prefix) < PREFIX_BYTES)
            return encoding
        except UnicodeDecodeError:
            continue
    raise FileProblem(_l("The CSV file is neither UTF-8 nor GB18030 encoded."))


def _xlsx_rows(stream: IO[bytes]) -> Iterator[list]:
    try:
        book = load_workbook(stream, read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types for a broken or mislabelled file
        raise FileProblem(_l("This is not a readable Excel (.xlsx) file.")) from None
    try:
        for values in book.worksheets[0].iter_rows(values_only=True):
            yield list(values)
    except Exception:  # a sheet broken further on (zip, XML): openpyxl raises many types here too
        raise FileProblem(_l("This is not a readable Excel (.xlsx) file.")) from None
    finally:
        book.close()


def safe_text(text: str) -> str:
    """A text cell that no spreadsheet will run as a formula and that XLSX can hold."""
    if _ILLEGAL.search(text):
        text = _ILLEGAL.sub("", text)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


# `safe_text`'s rules for PostgreSQL (the CSV export's COPY): _ILLEGAL's characters as one string for SQL
# translate() (PostgreSQL text holds no NUL nor surrogates) and FORMULA_START as an anchored class
SQL_ILLEGAL = "".join(map(chr, [*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]))
SQL_ILLEGAL_CLASS = f"[{SQL_ILLEGAL}]"
SQL_FORMULA_START = "^[-=+@\t\r]"


def safe_sql_text(text):
    """`safe_text` in SQL: characters XLSX cannot hold dropped, a leading formula character quoted.

    Both tests are anchored or single-class regular expressions that fail fast on ordinary text; the
    multibyte-aware translate() runs only for the rare value that holds such characters.
    """
    from sqlalchemy import case, func, literal

    cleaned = case((text.op("~")(SQL_ILLEGAL_CLASS), func.translate(text, SQL_ILLEGAL, "")), else_=text)
    return case((cleaned.op("~")(SQL_FORMULA_START), literal("'") + cleaned), else_=cleaned)


def unquote_formula(text: str) -> str:
    """Undo `safe_text`'s quote, so an exported file imports back to the same values."""
    return text[1:] if text[:1] == "'" and text[1:2] in FORMULA_START and text[1:2] != "" else text


def csv_chunks(batches: Iterable[list[list]]) -> Iterator[bytes]:
    """CSV bytes (UTF-8 with BOM for Excel), one chunk per batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff".encode("utf-8")
    for rows in batches:
        writer.writerows(rows)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
