"""Export and import endpoints shared by the generated pages and APIs."""
from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import IO

from flask import Response, request, stream_with_context

from app.data import audit
from app.rules.access import current_viewer
from app.portal import current_portal
from app.data.exporter import Export
from app.data.importer import Importer
from app.runtime.observability import timed, timed_chunks
from app.runtime.serving import heartbeat, keep_alive
from app.data.tabular import csv_chunks, file_format
from app.data.xlsx_stream import xlsx_chunks

UPLOADS = Path(tempfile.gettempdir()) / "portal-uploads"
MIMETYPES = {"csv": "text/csv; charset=utf-8", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
COPY_BUFFER = 1024 * 1024


def export_response(view, filters, order: tuple[str, str], fmt: str) -> Response:
    """Stream the filtered, ordered records as CSV or XLSX; memory stays flat however many rows there are."""
    entity, datamodel = view.entity, view.datamodel
    query = datamodel.apply_all(datamodel.session.query(datamodel.obj), filters, *order)
    spec, models = current_portal().spec, current_portal().models
    export = Export(spec, entity, models, current_viewer(), query)
    counter = _RowCounter()
    if fmt == "csv" and export.can_format_in_database(datamodel.session.get_bind().dialect.name):
        beat = heartbeat()
        chunks = export.csv_chunks(datamodel.session, progress=lambda: (counter.add(1), beat()))  # COPY: one write a row
    elif fmt == "csv":
        chunks = csv_chunks(_with_header(export.header, counter.batches(export.batches(datamodel.session, fmt))))
    else:
        chunks = xlsx_chunks(export.header, counter.batches(export.batches(datamodel.session, fmt)), entity.name)
    chunks = keep_alive(timed_chunks("export", _audited_export(chunks, counter, entity.name, fmt)))
    filename = f"{entity.snake}-{dt.date.today().isoformat()}.{fmt}"
    return Response(stream_with_context(chunks), mimetype=MIMETYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


class _RowCounter:
    """Rows an export has written so far (its batches pass through `batches`; a COPY calls `add` per row)."""

    def __init__(self) -> None:
        self.rows = 0

    def add(self, n: int) -> None:
        self.rows += n

    def batches(self, batches):
        for batch in batches:
            self.rows += len(batch)
            yield batch


def _audited_export(chunks, counter: _RowCounter, entity_name: str, fmt: str):
    """The export's chunks; once they are all sent (or the client went away), an audit entry: who, which entity,
    the list's filter and sort arguments, how many rows."""
    query = {key: values if len(values) > 1 else values[0] for key, values in request.args.lists()}
    if request.method == "POST":  # the list page's "export selected": the chosen rows, or its filter
        if request.form.get("scope") == "filter":
            query["scope"] = "filter"
        elif request.form.getlist("rowid"):
            query["rowid"] = request.form.getlist("rowid")[:1000]
    complete = False
    try:
        yield from chunks
        complete = True
    finally:
        audit.record_event(audit.EXPORT, entity=entity_name,
                           detail={"format": fmt, "filter": query, "rows": counter.rows, "complete": complete})


def _with_header(header: list, batches):
    yield [header]
    yield from batches


def run_import(view, stream: IO[bytes], filename: str, key: str | None, dry_run: bool):
    spec, models = current_portal().spec, current_portal().models
    importer = Importer(spec, view.entity, models, view.datamodel.session, current_viewer(), key or None)
    with timed("import"):
        report = importer.run(stream, file_format(filename), dry_run=dry_run)
    if not dry_run:
        audit.record_import(view.entity.name, report, key)
    return report


def spool_upload(upload) -> IO[bytes]:
    """An uploaded file copied to an anonymous temp file in 1 MB pieces (never whole in memory), rewound."""
    spool = tempfile.TemporaryFile()
    shutil.copyfileobj(upload.stream, spool, COPY_BUFFER)
    spool.seek(0)
    return spool


def keep_upload(stream: IO[bytes], filename: str) -> str:
    """Keep a checked file until the user confirms the import; returns its token."""
    UPLOADS.mkdir(mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(16) + "." + file_format(filename)
    stream.seek(0)
    with (UPLOADS / token).open("wb") as kept:
        shutil.copyfileobj(stream, kept, COPY_BUFFER)
    return token


def take_upload(token: str) -> tuple[Path, str] | None:
    if not token or "/" in token or os.sep in token:
        return None
    path = UPLOADS / token
    return (path, token.rsplit(".", 1)[-1]) if path.exists() else None
