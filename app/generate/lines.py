"""Inline lines on generated APIs and pages: the nested `lines` of a parent record (app/rules/lines.py writes them).

API: `POST/PUT /api/v1/<parent>/` take `"lines": [{...}, {"id": 5, "qty": 3}]` (other lines entities under their
snake_case name); GET, POST and PUT answers carry the lines as the child's own API shows them (its hidden
fields dropped, masked ones masked). Pages: `LinesField` is a form field of the parent's add/edit form that
renders the grid (views/static/portal/lines.js adds and removes rows, sums numeric columns) and reads the
submitted rows back (`<key>-<n>-<field>` inputs).
"""
from __future__ import annotations

import re

from flask import current_app, g, url_for
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from wtforms import Field

from app.generate.permissions import permission
from app.i18n import lazy
from app.portal import current_portal
from app.rules.access import current_viewer, mask_value
from app.rules.lines import LinesEdit, lines_edits
from app.schema.spec import VERSION_COLUMN, EntitySpec, FieldSpec

FORM_PENDING = "portal_lines_pending"  # flask.g: the form's checked lines, written by the page's pre_add/pre_update
MAX_LINES = 1000  # per lines entity and save: a grid, not an import


def may(action: str, entity_name: str) -> bool:
    return current_app.appbuilder.sm.has_access(permission(action), entity_name)


def _edits(endpoint, source: str) -> list[LinesEdit]:
    portal = current_portal()
    return lines_edits(portal.spec, endpoint.entity, portal.models, endpoint.datamodel.session, current_viewer(),
                       may, source)


def _too_many(rows) -> str | None:
    if isinstance(rows, list) and len(rows) > MAX_LINES:
        return str(_l("At most %(max)d lines can be saved at once.", max=MAX_LINES))
    return None


# -- API ---------------------------------------------------------------------------------------------

def take_api_lines(entity: EntitySpec, payload: dict) -> dict:
    """The nested lines of a request body (popped from it): key -> submitted rows."""
    return {key: payload.pop(key) for key, _ in entity.lines_keys if key in payload}


def check_api_lines(api, given: dict, parent_current, parent_values: dict) -> tuple[list[LinesEdit], dict]:
    """Check the given lines; (edits to write, errors as `{"lines": [{...}, {}], ...}` for a 422)."""
    edits, errors = [], {}
    for edit in _edits(api, "api"):
        if edit.key not in given:
            continue  # PUT without the key leaves the lines alone
        rows = given[edit.key]
        too_many = _too_many(rows)
        if not may("read", edit.child.name):
            errors[edit.key] = [str(_l("You may not change lines."))]
        elif too_many:
            errors[edit.key] = [too_many]
        elif not edit.check(rows, parent_current, parent_values):
            errors[edit.key] = [edit.refusal] if edit.refusal and not any(edit.errors) else edit.errors
        edits.append(edit)
    return edits, errors


def write_lines(edits: list[LinesEdit], parent_item) -> None:
    for edit in edits:
        edit.write(parent_item)


def _child_api(child: str):
    return next(v for v in current_app.appbuilder.baseviews
                if getattr(v, "entity", None) is not None and v.entity.name == child and hasattr(v, "show_model_schema"))


def add_lines_to_record(api, record: dict | None, parent_id) -> None:
    """The parent's lines (each as the child's API shows it) under their keys, for children the user may read."""
    if record is None or not api.entity.lines or parent_id is None:
        return
    for edit in _edits(api, "api"):
        if not may("read", edit.child.name):
            continue
        child_api = _child_api(edit.child.name)
        record[edit.key] = [child_api.viewer_record(child_api.show_model_schema.dump(line))
                            for line in edit.stored(parent_id)]


def lines_openapi(api, api_spec) -> None:
    """The nested lines in the parent's OpenAPI schemas: arrays of the child's schemas (reads) and objects (writes)."""
    for key, child in api.entity.lines_keys:
        child_api = f"{child}Api"
        for suffix, item in ((".get", {"$ref": f"#/components/schemas/{child_api}.get"}),
                             (".post", {"type": "object", "description": "a new line: the child's fields"}),
                             (".put", {"type": "object", "description": 'a new line, or {"id": n, ...} to change one'})):
            schema = api_spec.components.schemas.get(f"{api.__class__.__name__}{suffix}")
            if schema is None:
                continue
            description = (f"{child} records of this record. PUT: lines without id are created, with id updated, "
                           "lines not listed are deleted; without this key the lines are left alone.")
            schema.setdefault("properties", {})[key] = {"type": "array", "items": item, "description": description}


# -- pages ---------------------------------------------------------------------------------------------

class LinesField(Field):
    """The grid of one lines entity on the parent's add/edit form.

    Rows are read from `<key>-<n>-id` and `<key>-<n>-<field>` inputs (n in submitted order); they are checked
    by `check_form_lines` (run from the form's validate), and errors and submitted values are shown in the rows.
    """

    def __init__(self, key: str, child: str, **kwargs) -> None:
        super().__init__(kwargs.pop("label", None), **kwargs)
        self.key, self.child_name = key, child
        self.rows: list[dict] | None = None  # submitted rows (None: not submitted, show the stored lines)
        self.row_errors: list[dict] = []
        self.problem: str | None = None
        self.parent_id = None

    @property
    def child(self) -> EntitySpec:
        return current_portal().spec.entity(self.child_name)

    def process(self, formdata, data=None, extra_filters=None) -> None:
        self.process_errors, self.errors = [], []
        self.rows, self.row_errors, self.problem = None, [], None
        self.parent_id = getattr(data, "id", None) if data is not None and not isinstance(data, (str, list)) else None
        if formdata is None or f"{self.key}-rows" not in formdata:  # no grid in the post: lines left alone
            return
        rows: dict[int, dict] = {}
        pattern = re.compile(rf"{re.escape(self.key)}-([0-9]{{1,4}})-([A-Za-z0-9_]+)")
        for name in formdata:
            match = pattern.fullmatch(name)
            if match:
                rows.setdefault(int(match.group(1)), {})[match.group(2)] = formdata.get(name)
        self.rows = [rows[n] for n in sorted(rows)]

    def populate_obj(self, obj, name) -> None:
        pass  # the lines are written by pre_add/pre_update (write_form_lines), not set on the parent

    # the values a row posts for one line (blank id: a new line)
    def as_submitted(self, row: dict, editable: list[FieldSpec]) -> dict:
        line = {name: value for name, value in row.items() if name in {f.name for f in editable}}
        for f in editable:
            if f.kind.multiple:
                line[f.name] = [v for v in str(row.get(f.name, "")).split(",") if v.strip()]
        if str(row.get("id", "")).strip():
            line["id"] = int(row["id"]) if str(row["id"]).strip().isdigit() else row["id"]
            if str(row.get(VERSION_COLUMN, "")).strip():
                line[VERSION_COLUMN] = str(row[VERSION_COLUMN]).strip()
        return line


def lines_form_fields(portal, entity: EntitySpec) -> dict:
    """The grid fields of a parent's form, by key."""
    return {key: LinesField(key, child, label=lazy(portal.entity(child).label)) for key, child in entity.lines_keys}
