"""Read and write spreadsheets (CSV, XLSX) row by row, so big files never sit in memory twice."""
from __future__ import annotations

import csv
import io
import tempfile
from typing import IO, Iterable, Iterator

from flask_babel import lazy_gettext as _l
from openpyxl import Workbook, load_workbook

FORMATS = ("csv", "xlsx")
CSV_ENCODINGS = ("utf-8-sig", "gb18030")  # Excel in China saves CSV as GB18030/GBK


class FileProblem(ValueError):
    """The file as a whole cannot be read (wrong type, encoding, empty)."""


def file_format(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in FORMATS:
        raise FileProblem(_l("Upload a .csv or .xlsx file."))
    return suffix


def read_rows(stream: IO[bytes], fmt: str) -> Iterator[list]:
    """Rows of cells: text for CSV, typed values (numbers, dates) for XLSX; the header first."""
    if fmt == "xlsx":
        try:
            book = load_workbook(stream, read_only=True, data_only=True)
        except Exception:  # openpyxl raises many types for a broken or mislabelled file
            raise FileProblem(_l("This is not a readable Excel (.xlsx) file.")) from None
        for values in book.worksheets[0].iter_rows(values_only=True):
            yield list(values)
        book.close()
        return
    data = stream.read()
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FileProblem(_l("The CSV file is neither UTF-8 nor GB18030 encoded."))
    yield from csv.reader(io.StringIO(text, newline=""))


def csv_chunks(rows: Iterable[list], chunk_rows: int = 1000) -> Iterator[bytes]:
    """CSV bytes (UTF-8 with BOM for Excel), a chunk every `chunk_rows` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff".encode("utf-8")
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % chunk_rows == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def xlsx_chunks(rows: Iterable[list], sheet_title: str, chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """An XLSX built in write-only mode (rows streamed to disk), then sent in chunks."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=sheet_title[:31])
    for row in rows:
        sheet.append(row)
    with tempfile.TemporaryFile() as spool:
        book.save(spool)
        spool.seek(0)
        while chunk := spool.read(chunk_bytes):
            yield chunk
