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
from markupsafe import Markup
from wtforms import Field
from wtforms.widgets import html_params

from app.generate.permissions import permission
from app.i18n import lazy
from app.portal import current_portal
from app.rules.access import current_viewer
from app.rules.lines import LinesEdit, lines_edits
from app.schema.spec import VERSION_COLUMN, EntitySpec, FieldSpec

FORM_PENDING = "portal_lines_pending"  # flask.g: the form's checked lines, written by the page's pre_add/pre_update
MAX_LINES = 1000  # per lines entity and save: a grid, not an import


def may(action: str, entity_name: str) -> bool:
    return current_app.appbuilder.sm.has_access(permission(action), entity_name)


def _edits(parent: EntitySpec, source: str) -> list[LinesEdit]:
    """One LinesEdit per lines entity of `parent`, for the current user, in the request's session."""
    portal = current_portal()
    return lines_edits(portal.spec, parent, portal.models, current_app.appbuilder.session, current_viewer(), may, source)


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
    for edit in _edits(api.entity, "api"):
        if edit.key not in given:
            continue  # PUT without the key leaves the lines alone
        rows = given[edit.key]
        too_many = _too_many(rows)
        if not may("read", edit.child.name):
            errors[edit.key] = [str(_l("You may not change lines."))]
        elif too_many:
            errors[edit.key] = [too_many]
        elif not edit.check(rows, parent_current, parent_values):
            errors[edit.key] = edit.errors if any(edit.errors) else [edit.refusal]
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
    for edit in _edits(api.entity, "api"):
        if not may("read", edit.child.name):
            continue
        child_api = _child_api(edit.child.name)
        record[edit.key] = [child_api.viewer_record(child_api.show_model_schema.dump(line))
                            for line in edit.stored(parent_id)]


# -- pages ---------------------------------------------------------------------------------------------

def grid_columns(child: EntitySpec, back: FieldSpec) -> list[FieldSpec]:
    """The child's fields a grid shows: all but the back link, `file` fields (uploaded on the line's own page) and
    what the viewer may not read in full."""
    unreadable = current_viewer().unreadable(child.name)
    return [f for f in child.fields if f.name != back.name and f.name not in unreadable and f.type != "file"]


def _read_only(child: EntitySpec, f: FieldSpec) -> bool:
    """Shown, never posted: readonly fields and a workflow's state (it changes only through transitions)."""
    return f.readonly or (child.workflow is not None and f.name == child.workflow.field)


class LinesField(Field):
    """The grid of one lines entity on the parent's add/edit form.

    Rows are read from `<key>-<n>-id` and `<key>-<n>-<field>` inputs (n in submitted order; `<key>-rows` says the
    grid was on the page). `check_form_lines` (run from the form's validate) checks them; after a failed save the
    grid shows the submitted values with each row's errors.
    """

    def __init__(self, key: str, parent: str, child: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.key, self.parent_name, self.child_name = key, parent, child
        self.widget = LinesWidget()
        self.rows: list[dict] | None = None  # submitted rows (None: not submitted: show the stored lines)
        self.known: set[int] | None = None  # ids of the lines the form showed when it was opened (`<key>-known`)
        self.row_errors: list[dict] = []
        self.row_values: list[dict] = []
        self.parent_id = None

    def process(self, formdata, data=None, extra_filters=None) -> None:
        self.process_errors, self.errors = [], []
        self.rows, self.row_errors, self.row_values, self.known = None, [], [], None
        if formdata is None or f"{self.key}-rows" not in formdata:  # no grid in the post: lines left alone
            return
        known = formdata.get(f"{self.key}-known")  # absent (a post from an older page): no check of lines added since
        if known is not None:
            self.known = {int(i) for i in known.split(",") if re.fullmatch(r"[0-9]{1,18}", i)} if len(known) < 20_000 else set()
        rows: dict[int, dict] = {}
        pattern = re.compile(rf"{re.escape(self.key)}-([0-9]{{1,4}})-([A-Za-z0-9_]+)")
        for name in formdata:
            match = pattern.fullmatch(name)
            if match:
                rows.setdefault(int(match.group(1)), {})[match.group(2)] = formdata.getlist(name)
        self.rows = [rows[n] for n in sorted(rows)]

    def populate_obj(self, obj, name) -> None:
        pass  # the lines are written by pre_add/pre_update (write_form_lines), not set on the parent


def _submitted(row: dict, columns: list[FieldSpec]) -> dict:
    """One posted row as a line for LinesEdit.check: its writable fields (a many field: every value), id, version."""
    line = {}
    for f in columns:
        if f.readonly or f.name not in row:
            continue
        values = row[f.name]
        if f.is_relation:  # pickers post ids (as the page's own pickers do, lookups._ids)
            values = [int(v) if re.fullmatch(r"[0-9]{1,18}", v.strip()) else v for v in values if v.strip()]
        line[f.name] = values if f.kind.multiple else (values[-1] if values else "")  # a checkbox posts "n" then "y"
    line_id = (row.get("id") or [""])[-1].strip()
    if line_id:
        line["id"] = int(line_id) if line_id.isdecimal() else line_id
        version = (row.get(VERSION_COLUMN) or [""])[-1].strip()
        if version:
            line[VERSION_COLUMN] = version
    return line


def check_form_lines(view, form, creating: bool) -> bool:
    """Check the grids of a posted parent form; their errors go into the rows. The checked lines wait in
    flask.g for `write_form_lines` (pre_add/pre_update), so they are saved in the parent's transaction."""
    if not view.entity.lines:
        return True
    from app import fab

    session = view.datamodel.session
    current = None if creating else session.get(view.datamodel.obj, fab.edited_pk(form))
    parent_values = {name: form[name].data for name in view.entity.field_names if name in form}
    pending, ok = [], True
    for edit in _edits(view.entity, "form"):
        field = form[edit.key] if edit.key in form else None
        if field is None:
            continue
        field.parent_id = fab.edited_pk(form)  # shown again if the save fails and the grid was not posted
        if field.rows is None:
            continue
        if not may("read", edit.child.name):
            field.errors = [str(_l("You may not change lines."))]
            ok = False
            continue
        columns = grid_columns(edit.child, edit.back)
        rows = [_submitted(row, columns) for row in field.rows]
        too_many = _too_many(rows)
        if too_many:
            field.errors = [too_many]
            ok = False
            continue
        if not edit.check(rows, current, parent_values, field.known):
            ok = False
            if edit.refusal:
                field.errors = [edit.refusal]
        field.row_errors, field.row_values = edit.errors, edit.values
        pending.append(edit)
    g.setdefault(FORM_PENDING, {})[view.entity.name] = pending
    return ok


def write_form_lines(view, item) -> None:
    """The lines checked with this form, into the parent's session (FAB commits them with the parent)."""
    for edit in g.get(FORM_PENDING, {}).pop(view.entity.name, []):
        edit.write(item)


def prefill_lines(form, pk) -> None:
    """The edit form's grids show the record's stored lines."""
    for field in form:
        if isinstance(field, LinesField):
            field.parent_id = pk


def lines_form_fields(portal, entity: EntitySpec) -> dict:
    """The grid fields of a parent's form, by key."""
    return {key: LinesField(key, entity.name, child, label=lazy(portal.entity(child).label))
            for key, child in entity.lines_keys}


# -- the grid's HTML -------------------------------------------------------------------------------------

def _text(f: FieldSpec, value) -> str:
    """A value as an input holds it (what the user typed comes back as it was typed)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return value[-1] if value else ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "y" if value else ""
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="minutes") if hasattr(value, "hour") else value.isoformat()
    if hasattr(value, "id"):
        return str(value.id)
    return format(value, "f") if hasattr(value, "as_tuple") else str(value)


def _chosen(f: FieldSpec, value) -> list[tuple[int, str]]:
    """(id, title) of the record(s) a link cell shows as chosen: stored records, or submitted ids."""
    from app.generate.lookups import link_target, titles_by_id

    values = value if isinstance(value, list) else [value]
    records = [v for v in values if hasattr(v, "id")]
    if records:
        return [(r.id, str(r)) for r in records]
    ids = [int(v) for v in values if isinstance(v, str) and v.strip().isdecimal() and len(v.strip()) < 19]
    return titles_by_id(link_target(f), ids) if ids else []


class LinesWidget:
    def __call__(self, field: LinesField, **kwargs):
        portal = current_portal().spec
        child = portal.entity(field.child_name)
        if not may("read", child.name):
            return Markup("")
        back = portal.back_link(child.name, field.parent_name)
        columns = grid_columns(child, back)
        can = {action: may(action, child.name) for action in ("create", "update", "delete")}
        editable = any(can.values())
        if field.rows is not None:  # a post that failed: the submitted rows, their errors and computed values
            rows = []
            for i, row in enumerate(field.rows):
                values = {name: v for name, v in row.items()}
                computed = field.row_values[i] if i < len(field.row_values) else {}
                values.update({f.name: computed.get(f.name) for f in columns if f.readonly})
                rows.append((values, field.row_errors[i] if i < len(field.row_errors) else {}))
        else:
            edit = next(e for e in _edits(portal.entity(field.parent_name), "form") if e.key == field.key)
            records = edit.stored(field.parent_id)
            rows = [({f.name: getattr(r, f.name) for f in columns} | {"id": r.id, VERSION_COLUMN: getattr(r, VERSION_COLUMN)}, {})
                    for r in records]
        key = field.key
        head = Markup("").join(Markup('<th data-column="%s">%s</th>') % (f.name, str(lazy(f.label))) for f in columns)
        body = Markup("").join(self._row(key, n, columns, values, errors, can, child.name) for n, (values, errors) in enumerate(rows))
        totals = [Markup('<td class="portal-lines-total" data-column="%s" data-scale="%s"></td>')
                  % (f.name, 0 if f.kind.whole else f.scale)
                  if f.kind.numeric else Markup("<td></td>") for f in columns]
        total_label = Markup('<th class="portal-lines-total-label">%s</th>') % str(_l("Total"))
        if columns and not columns[0].kind.numeric:  # the label in the first cell when it is not a number column
            totals[0], total_label = total_label, Markup("<td></td>")
        totals = Markup("").join(totals)
        preview = ""
        if child.formulas and (can["create"] or can["update"]):  # lines.js asks the line's own live-form preview
            preview = Markup(' data-preview-url="%s"') % url_for(f"{child.name}View.preview")
        parts = [Markup('<div class="portal-lines" data-key="%s" data-next="%d"%s>') % (key, len(rows), preview)]
        if editable:
            known = field.known if field.rows is not None else {values["id"] for values, _ in rows}
            parts.append(Markup('<input type="hidden" name="%s-rows" value="1">') % key)
            parts.append(Markup('<input type="hidden" name="%s-known" value="%s">')
                         % (key, ",".join(str(i) for i in sorted(known or ()))))
        parts.append(Markup('<table class="table table-condensed table-bordered portal-lines-grid"><thead><tr>%s%s</tr></thead>'
                            '<tbody>%s</tbody><tfoot><tr class="portal-lines-totals">%s%s</tr></tfoot></table>')
                     % (head, Markup("<th></th>") if editable else "", body, totals, total_label if editable else ""))
        if can["create"]:
            defaults = {f.name: f.default for f in columns if f.default is not None and not f.is_relation
                        and not (f.kind.is_moment and isinstance(f.default, str))}
            template = self._row(key, "__n__", columns, defaults, {}, can, child.name)
            parts.append(Markup('<template class="portal-line-template">%s</template>') % template)
            parts.append(Markup('<button type="button" class="btn btn-default btn-sm portal-line-add">'
                                '<i class="fa fa-plus"></i> %s</button>') % str(_l("Add row")))
        parts.append(Markup('</div><script defer src="%s"></script>') % url_for("static", filename="portal/lines.js"))
        return Markup("").join(parts)

    def _row(self, key: str, n, columns: list[FieldSpec], values: dict, errors: dict, can: dict, child: str):
        line_id = _text(None, values.get("id"))
        may_edit = can["update"] if line_id else can["create"]
        prefix = f"{key}-{n}-"
        entity = current_portal().spec.entity(child)
        cells = []
        for f in columns:
            value = values.get(f.name)
            if _read_only(entity, f) or not may_edit:
                shown = _display(f, value)
                cell = Markup('<span class="portal-line-value" data-column="%s">%s</span>') % (f.name, shown)
            else:
                cell = _input(prefix + f.name, f, value, child)
            messages = errors.get(f.name, [])
            if messages:
                cell += Markup('<div class="text-danger small portal-line-error">%s</div>') % " ".join(messages)
            cells.append(Markup('<td data-column="%s">%s</td>') % (f.name, cell))
        hidden = Markup("")
        if line_id:
            hidden = Markup('<input type="hidden" name="%sid" value="%s"><input type="hidden" name="%s%s" value="%s">') % (
                prefix, line_id, prefix, VERSION_COLUMN, _text(None, values.get(VERSION_COLUMN)))
        for name in ("id", VERSION_COLUMN):  # problems with the row as a whole (gone, changed meanwhile, not allowed)
            if errors.get(name):
                hidden += Markup('<div class="text-danger small portal-line-error">%s</div>') % " ".join(errors[name])
        if not any(can.values()):  # read-only grid: nothing is posted
            return Markup('<tr class="portal-line">%s</tr>') % Markup("").join(cells)
        if can["delete"] or not line_id:
            hidden += Markup('<button type="button" class="btn btn-default btn-xs portal-line-remove" title="%s">'
                             '<i class="fa fa-times"></i></button>') % str(_l("Remove row"))
        return Markup('<tr class="portal-line">%s<td>%s</td></tr>') % (Markup("").join(cells), hidden)


def _display(f: FieldSpec, value) -> str:
    """A read-only cell: the type's display of a stored value (masked fields never reach the grid)."""
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, (str, list)):
        return _text(f, value)
    if f.is_relation:
        return ", ".join(str(v) for v in (value if isinstance(value, list) else [value]))
    return str(f.kind.display(f)(value))


def _input(name: str, f: FieldSpec, value, child: str):
    """The input of one cell, named `<key>-<n>-<field>`; links get the type-ahead picker of the child's page."""
    kind = f.kind
    common = {"name": name, "class": "form-control input-sm", "data-column": f.name}
    if kind.is_relation:
        options = [] if kind.multiple else [Markup('<option value=""></option>')]
        options += [Markup('<option selected value="%s">%s</option>') % (pk, title) for pk, title in _chosen(f, value)]
        attrs = {**common, "class": "portal-lookup form-control", "multiple": kind.multiple,
                 "data-lookup-url": url_for(f"{child}View.lookup", field=f.name),
                 "data-placeholder": str(_l("Type to search")),
                 "data-allow-clear": "false" if (kind.multiple or f.required) else "true", "style": "width: 100%"}
        return Markup("<select %s>%s</select>") % (Markup(html_params(**attrs)), Markup("").join(options))
    if f.choices:
        text = _text(f, value)
        options = [Markup('<option value=""></option>')] if not f.required else []
        options += [Markup('<option value="%s"%s>%s</option>') % (c.key, Markup(" selected") if c.key == text else "",
                                                                   str(lazy(c.label))) for c in f.choices]
        return Markup("<select %s>%s</select>") % (Markup(html_params(**common)), Markup("").join(options))
    if kind.truth_value:
        checked = _text(f, value).strip().lower() in ("y", "yes", "true", "1", "on")
        return Markup('<input type="hidden" name="%s" value="n"><input type="checkbox" %s>') % (
            name, Markup(html_params(name=name, value="y", checked=checked, **{"data-column": f.name})))
    attrs = {**common, "type": "text", "value": _text(f, value)}
    if kind.numeric:
        attrs.update({"inputmode": "decimal", "class": "form-control input-sm portal-line-number"})
    elif kind.is_moment:
        attrs["type"] = "datetime-local" if kind.has_time else "date"
    elif f.length:
        attrs["maxlength"] = f.length
    return Markup("<input %s>") % Markup(html_params(**attrs))
