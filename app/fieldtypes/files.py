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


# -- the `file` field type ---------------------------------------------------------------------------------
from app.fieldtypes.base import FieldError, FieldType, OptionProblem, _l  # noqa: E402 - the catalog above is pure data


class FileType(FieldType):
    """One file per field: `photo: {type: file, max_mb: 5, types: [jpg, png]}`.

    The column holds the id of the field's `portal_attachments` row (its `field` is the field's name); the
    bytes are stored like record attachments (app/data/files.py) and checked the same way. Forms show a file
    input (app/generate/attachments.py `FileUploadField`); API clients POST the file to
    `/api/v1/<entity>/<id>/attachments` with `field=<name>`; an import column for it is reported and ignored.
    """

    name = "file"
    option_keys = ("max_mb", "types")
    can_be_unique = False
    sortable = False
    can_be_title = False
    maskable = False
    takes_literals = False
    groupable = False
    assigned = True  # the portal sets the value from an upload: an import column for it is reported and ignored
    listed_by_default = False
    # `required` is enforced on forms and when deleting the file (replace it instead); API and import creates
    # cannot send a file, so the column stays nullable and they create the record without it
    required_in_column = False

    def check_option(self, key: str, value) -> OptionProblem | None:
        if key == "max_mb":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MB:
                return OptionProblem("E532", f"must be a whole number of megabytes from 1 to {MAX_MB}, got {value!r}"[:200])
        if key == "types":
            if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
                return OptionProblem("E533", "must be a list of file types like [pdf, jpg]")
            unknown = [v for v in value if FILE_KIND_ALIASES.get(v.lower(), v.lower()) not in FILE_KINDS]
            if unknown:
                return OptionProblem("E534", f"names unknown file type '{unknown[0][:40]}'; known: {', '.join(FILE_KINDS)}")
        return None

    def column_type(self, field):
        from sqlalchemy import BigInteger, Integer

        return BigInteger().with_variant(Integer(), "sqlite")  # the id of a portal_attachments row

    def form_field(self, field, rule):
        from app.generate.attachments import FileUploadField

        return FileUploadField(field)

    def clean(self, field, value):
        """No JSON or text value sets a file (API writes, filters): the file is uploaded."""
        raise FieldError(_l("Upload the file to the record's attachments with field=%(field)s.", field=field.name))

    def filter_operators(self, field) -> list | None:
        from app.generate.attachments import file_filters

        return file_filters()

    def clean_filter(self, field, operator: str, value):
        return None

    def display(self, field):
        from app.generate.attachments import file_link

        return lambda value: file_link(field, value)

    def export_converter(self, field):
        from app.generate.attachments import file_names_converter

        return file_names_converter(field)

    def export_sql(self, field, column):
        from app.generate.attachments import file_name_sql

        return file_name_sql(column)

    def openapi_schema(self, field) -> dict | None:
        return {"type": "object", "nullable": True, "readOnly": True,
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "size": {"type": "integer"},
                               "content_type": {"type": "string"}, "url": {"type": "string"}}}
