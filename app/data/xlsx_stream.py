"""Write an XLSX workbook as a stream of bytes: the zip is built while rows arrive, nothing waits for the end.

openpyxl (even write-only) saves the workbook at the end, so a million-row download sent its first byte
after minutes. Here the single worksheet is written as XML into a zip entry that the standard library's
`zipfile` compresses and emits incrementally (a non-seekable output gets data descriptors), so the first
bytes leave after the first batch. Cells: numbers as numbers, dates/datetimes as Excel serials with a date
format, everything else as inline strings (no shared-string table to keep in memory).
"""
from __future__ import annotations

import datetime as dt
import zipfile
from decimal import Decimal
from typing import Iterable, Iterator
from xml.sax.saxutils import escape

from app.data.tabular import safe_text

EPOCH = dt.datetime(1899, 12, 30)  # Excel's day 0 (with its 1900 leap-year quirk folded in)
DATE_STYLE, DATETIME_STYLE = 1, 2

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
</Types>"""
_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""
_WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets>
</workbook>"""
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
</Relationships>"""
_STYLES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/><numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>
<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/><xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/><xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""
_SHEET_START = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
_SHEET_END = "</sheetData></worksheet>"


class _Sink:
    """A write-only, non-seekable file for zipfile; `take()` hands over what was written so far."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def column_letters(count: int) -> list[str]:
    letters = []
    for n in range(1, count + 1):
        name = ""
        while n:
            n, rest = divmod(n - 1, 26)
            name = chr(65 + rest) + name
        letters.append(name)
    return letters


def cell_xml(value) -> str:
    """The part of a <c> element after its reference: type/style attributes and content."""
    if value is None or value == "":
        return "/>"
    if isinstance(value, bool):
        return f' t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float, Decimal)):
        return f"><v>{value}</v></c>"
    if isinstance(value, dt.datetime):
        serial = (value - EPOCH).total_seconds() / 86400
        return f' s="{DATETIME_STYLE}"><v>{serial:.6f}</v></c>'
    if isinstance(value, dt.date):
        return f' s="{DATE_STYLE}"><v>{(value - EPOCH.date()).days}</v></c>'
    text = escape(safe_text(str(value)))
    space = ' xml:space="preserve"' if text != text.strip() else ""
    return f' t="inlineStr"><is><t{space}>{text}</t></is></c>'


def xlsx_chunks(header: list[str], batches: Iterable[list[list]], sheet_title: str,
                compresslevel: int = 1) -> Iterator[bytes]:
    """The workbook's bytes: the zip's small parts and the header row first, then a chunk per batch.

    The header holds plain values; the cells of `batches` are `cell_xml` fragments already, which lets the
    exporter build the XML of a repeated value once. Without zip64 (widest compatibility) the sheet's XML
    may reach 2 GiB, far more than Excel's 1,048,576 rows of ordinary records take.
    """
    sink = _Sink()
    book = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
    for name, text in (("[Content_Types].xml", _CONTENT_TYPES), ("_rels/.rels", _ROOT_RELS),
                       ("xl/workbook.xml", _WORKBOOK.format(name=escape(sheet_title[:31] or "Sheet1", {'"': "&quot;"}))),
                       ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS), ("xl/styles.xml", _STYLES)):
        book.writestr(name, text)
    letters = column_letters(len(header))
    with book.open("xl/worksheets/sheet1.xml", "w") as sheet:
        sheet.write((_SHEET_START + _row_xml(1, letters, [cell_xml(v) for v in header])).encode("utf-8"))
        yield sink.take()
        number = 1
        for rows in batches:
            parts = []
            for cells in rows:
                number += 1
                parts.append(_row_xml(number, letters, cells))
            sheet.write("".join(parts).encode("utf-8"))
            yield sink.take()
        sheet.write(_SHEET_END.encode("utf-8"))
    book.close()
    yield sink.take()


def _row_xml(number: int, letters: list[str], cells: list[str]) -> str:
    """`cells` are `cell_xml` fragments; blank cells ("/>") are left out."""
    return f'<row r="{number}">' + "".join(
        f'<c r="{letter}{number}"{cell}' for letter, cell in zip(letters, cells) if cell != "/>") + "</row>"
