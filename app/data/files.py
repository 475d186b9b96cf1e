"""Uploaded files: content-addressed storage outside the database, and the checks of what a file really is.

Storage (`FileStore`): a file is streamed to a temporary file inside the files folder while its sha256 and size
are counted (never whole in memory; stopped one byte past the limit), then renamed atomically to
`ab/cd/<sha256>`. The path comes only from the hash, never from the name the user sent; the same content
uploaded twice is one blob. A blob is removed (`drop_unreferenced`) once no `portal_attachments` row names it,
after the transaction that removed the last row has committed.

Content (`recognise`): the kind is read from the bytes, not from the name or the browser's content type. The
magic numbers of pdf/jpg/png/gif/webp/zip come from the `filetype` library (pure Python, no system libmagic,
reads only the first 8 KB); office files are zips whose parts `zipfile` lists; csv/txt must decode as UTF-8 (or
GB18030, what Chinese Excel writes) without NUL bytes. The uploaded name's extension must fit the kind found.
"""
from __future__ import annotations

import codecs
import hashlib
import os
import re
import tempfile
import time
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

import filetype
from flask_babel import lazy_gettext as _l

from app.fieldtypes.files import FILE_KIND_ALIASES, FILE_KINDS

CHUNK = 1024 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME = 255  # characters of a stored file name (the column's size)
INCOMING = ".incoming"  # temporary files being received, inside the files folder (same file system: rename is atomic)
OFFICE_PARTS = {"xlsx": "xl/", "docx": "word/", "pptx": "ppt/"}
TEXT_KINDS = ("csv", "txt")
MAGIC_KINDS = {"pdf": "pdf", "jpg": "jpg", "png": "png", "gif": "gif", "webp": "webp", "zip": "zip"}


class FileRefused(Exception):
    """A file (or upload) that is not stored: `status` is the HTTP answer (400, 413, 415), `message` localized."""

    def __init__(self, status: int, message) -> None:
        super().__init__(str(message))
        self.status, self.message = status, message

    def __str__(self) -> str:
        return str(self.message)


@dataclass
class Received:
    """A file streamed to a temporary path: its hash and size are known, nothing is kept yet."""

    temp: Path
    sha256: str
    size: int
    name: str  # the safe display name (see safe_name)
    kind: str | None = None
    content_type: str = "application/octet-stream"


def safe_name(raw: str | None) -> str:
    """The name shown and offered on download: no folders, control characters or NUL; at most 255 characters
    (the extension kept). Never used as a path."""
    name = unicodedata.normalize("NFC", str(raw or ""))
    name = re.split(r"[\\/]", name)[-1]  # a browser may send C:\fakepath\x.pdf; a client ../../etc/passwd
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".") or "file"
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        name = (name if not ext else stem)[:MAX_NAME - len(ext) - 1].rstrip() + ("." + ext if ext else "")
    return name[:MAX_NAME]


def extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def kind_names(types: Iterable[str]) -> str:
    return ", ".join(types)


class FileStore:
    """The files folder (config PORTAL_FILES_DIR): blobs at `ab/cd/<sha256>`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path_of(self, sha256: str) -> Path:
        if not SHA256.match(sha256 or ""):
            raise ValueError("not a sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def receive(self, stream: IO[bytes], name: str | None, max_bytes: int) -> Received:
        """Stream an upload to a temporary file, hashing and counting; FileRefused(413) one byte past max_bytes
        (the partial file is removed)."""
        incoming = self.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest, size = hashlib.sha256(), 0
        handle, temp = tempfile.mkstemp(dir=incoming, prefix="upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                while True:
                    chunk = stream.read(min(CHUNK, max_bytes + 1 - size))
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise FileRefused(413, _l("%(name)s is too large: at most %(size)s MB.", name=safe_name(name),
                                                  size=f"{max_bytes / (1024 * 1024):g}"))
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return Received(Path(temp), digest.hexdigest(), size, safe_name(name))

    def keep(self, received: Received) -> str:
        """Move a received file to its place (or drop it: the same content is there already); its sha256."""
        target = self.path_of(received.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            received.temp.unlink(missing_ok=True)
            os.utime(target)  # fresh: a concurrent drop_unreferenced leaves it alone (see there)
        else:
            os.chmod(received.temp, 0o640)
            os.replace(received.temp, target)
        return received.sha256

    def discard(self, received: Received) -> None:
        received.temp.unlink(missing_ok=True)

    def open(self, sha256: str) -> IO[bytes]:
        return self.path_of(sha256).open("rb")

    def drop_unreferenced(self, connection, shas: Iterable[str], table) -> list[str]:
        """Remove the blobs of `shas` that no attachment row names any more (call it after the commit that removed
        the rows from `table`, portal_attachments); the removed ones. A blob written or reused since this call started is kept: its row may be
        about to commit."""
        from sqlalchemy import select

        shas = sorted({s for s in shas if s and SHA256.match(s)})
        if not shas:
            return []
        started = time.time()
        used = set(connection.execute(select(table.c.sha256).where(table.c.sha256.in_(shas)).distinct()).scalars())
        removed = []
        for sha in shas:
            if sha in used:
                continue
            path = self.path_of(sha)
            try:
                if path.stat().st_mtime < started - 1:
                    path.unlink()
                    removed.append(sha)
            except FileNotFoundError:
                pass
        return removed


def store_of(app=None) -> FileStore:
    from flask import current_app

    return FileStore((app or current_app).config["PORTAL_FILES_DIR"])


# -- what a file is ------------------------------------------------------------------------------------------
def recognise(path: Path) -> str | None:
    """The FILE_KINDS name of a file's content (None: none of them)."""
    with path.open("rb") as handle:
        head = handle.read(8192)
    if not head:
        return None
    guess = filetype.guess(head)
    if guess is not None:
        kind = FILE_KIND_ALIASES.get(guess.extension, guess.extension)
        if kind in ("zip", "docx", "xlsx", "pptx"):
            return _zip_kind(path)
        return MAGIC_KINDS.get(kind)  # an exe, an mp4, ...: not a kind we serve
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    return "txt" if _is_text(path) else None


def _zip_kind(path: Path) -> str | None:
    """docx/xlsx/pptx (a zip with [Content_Types].xml and the format's folder), another zip, or None (broken)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if "[Content_Types].xml" in names:
        for kind, folder in OFFICE_PARTS.items():
            if any(n.startswith(folder) for n in names):
                return kind
    return "zip"


def _is_text(path: Path) -> bool:
    """UTF-8 (or GB18030, what Excel writes on Chinese Windows) without NUL bytes, read in pieces."""
    for encoding in ("utf-8-sig", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    if b"\0" in chunk:
                        return False
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
            return True
        except UnicodeDecodeError:
            continue
    return False


def check_kind(received: Received, allowed: tuple[str, ...]) -> Received:
    """Fill in the kind and content type found in the bytes; FileRefused(415) when it is not one of `allowed` or
    the name's extension says another kind (a PDF named .png)."""
    kind = recognise(received.temp) if received.size else None
    if kind == "txt" and extension(received.name) == "csv":
        kind = "csv"  # a csv is text; which of the two the user meant is in the name
    if kind == "zip" and "zip" not in allowed and any(k in allowed for k in OFFICE_PARTS):
        raise FileRefused(415, _l("%(name)s is a zip archive, not a %(types)s file.", name=received.name,
                                  types=kind_names(k for k in allowed if k in OFFICE_PARTS)))
    if kind is None or kind not in allowed:
        raise FileRefused(415, _l("%(name)s is not an accepted file type; accepted: %(types)s.", name=received.name,
                                  types=kind_names(allowed)))
    if extension(received.name) not in FILE_KINDS[kind][1]:
        raise FileRefused(415, _l("%(name)s does not match its content (a %(kind)s file); rename it to .%(ext)s.",
                                  name=received.name, kind=kind, ext=FILE_KINDS[kind][1][0]))
    received.kind, received.content_type = kind, FILE_KINDS[kind][0]
    return received
