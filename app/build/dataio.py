"""Export and import endpoints shared by the generated pages and APIs."""
from __future__ import annotations

import datetime as dt
import os
import secrets
import tempfile
from pathlib import Path

from flask import Response, current_app, stream_with_context
from sqlalchemy.orm import joinedload, selectinload

from ..access import current_viewer
from ..exporter import export_rows
from ..importer import Importer
from ..observability import timed, timed_chunks
from ..tabular import csv_chunks, file_format, xlsx_chunks

UPLOADS = Path(tempfile.gettempdir()) / "portal-uploads"
MIMETYPES = {"csv": "text/csv; charset=utf-8", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def eager_options(entity, model) -> list:
    """Load links with the rows (one query per batch, not one per row)."""
    options = []
    for f in entity.fields:
        if f.type in ("link", "user"):
            options.append(joinedload(getattr(model, f.name)))
        elif f.type == "many":
            options.append(selectinload(getattr(model, f.name)))
    return options


def export_response(view, filters, order: tuple[str, str], fmt: str) -> Response:
    """Stream the filtered, ordered records as CSV or XLSX; memory stays flat however many rows there are."""
    entity, datamodel = view.entity, view.datamodel
    query = datamodel.apply_all(datamodel.session.query(datamodel.obj), filters, *order)
    query = query.options(*eager_options(entity, datamodel.obj))
    rows = export_rows(entity, query, current_viewer())
    chunks = timed_chunks("export", csv_chunks(rows) if fmt == "csv" else xlsx_chunks(rows, entity.name))
    filename = f"{entity.snake}-{dt.date.today().isoformat()}.{fmt}"
    return Response(stream_with_context(chunks), mimetype=MIMETYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def run_import(view, stream, filename: str, key: str | None, dry_run: bool):
    spec, models = current_app.extensions["portal_spec"], current_app.extensions["portal_models"]
    importer = Importer(spec, view.entity, models, view.datamodel.session, current_viewer(), key or None)
    with timed("import"):
        return importer.run(stream, file_format(filename), dry_run=dry_run)


def keep_upload(data: bytes, filename: str) -> str:
    """Keep a checked file until the user confirms the import; returns its token."""
    UPLOADS.mkdir(mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(16) + "." + file_format(filename)
    (UPLOADS / token).write_bytes(data)
    return token


def take_upload(token: str) -> tuple[Path, str] | None:
    if not token or "/" in token or os.sep in token:
        return None
    path = UPLOADS / token
    return (path, token.rsplit(".", 1)[-1]) if path.exists() else None
