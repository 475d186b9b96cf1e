"""The kinds of file a record's `attachments:` or a `file` field may take, by name.

Pure data (no Flask): the checker reads the names; the upload path (app/data/files.py) recognises each kind
by its content, not by the name the browser sent.
"""
from __future__ import annotations

# name -> (content type it is served as, file name extensions it may carry)
FILE_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pdf": ("application/pdf", ("pdf",)),
    "jpg": ("image/jpeg", ("jpg", "jpeg")),
    "png": ("image/png", ("png",)),
    "gif": ("image/gif", ("gif",)),
    "webp": ("image/webp", ("webp",)),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ("xlsx",)),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ("docx",)),
    "pptx": ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ("pptx",)),
    "zip": ("application/zip", ("zip",)),
    "csv": ("text/csv", ("csv",)),
    "txt": ("text/plain", ("txt",)),
}
FILE_KIND_ALIASES = {"jpeg": "jpg"}
DEFAULT_FILE_TYPES = ("pdf", "jpg", "png", "xlsx", "docx")
DEFAULT_MAX_MB = 20
MAX_MB = 1024  # what the checker accepts for max_mb
