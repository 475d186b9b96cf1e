"""Duplicate warnings on the write paths and the duplicates page (issue 16); the search is app/data/duplicates.py.

- Forms: a create or edit whose values pair with readable records is not saved; the form comes back with the
  candidates (links, title, score, rule), "Open" and, when the user may, "Save anyway" (`allow_duplicate=1`).
- API: `409 {"message": ..., "duplicates": [{"id", "title", "score", "rule"}]}` unless `?allow_duplicate=1`.
- Imports: `Importer` flags rows (app/data/importer.py `_flag_duplicates`); flags never block a row except for a
  rule whose `save_anyway` roles the importer lacks.
- `/<entity_snake>/duplicates/`: candidate pairs of records the user may read, paged by a (first, second) id
  cursor, each linking to the merge page `/<entity_snake>/merge/<survivor_id>?loser=<id>` when the user may update.

Who may save anyway: whoever may create (or update) the entity, unless a rule names `save_anyway` roles; then
only those roles and Admin, for the candidates that rule found.
"""
from __future__ import annotations

from flask import abort, flash, g, request, url_for
from flask_appbuilder import expose, has_access
from flask_babel import gettext, lazy_gettext as _l

from app.data.duplicates import Candidate, DuplicateSearch, may_save_anyway
from app.i18n import current_locale, format_with_schema_text, lazy
from app.portal import current_portal
from app.rules.access import Viewer, current_viewer
from app.schema.spec import DuplicateRule, EntitySpec

PAGE_SIZE = 50
ALLOW_ARG = "allow_duplicate"


def search_for(entity: EntitySpec, session, viewer: Viewer | None = None) -> DuplicateSearch:
    return DuplicateSearch(entity, current_portal().models, session, viewer or current_viewer())


def rule_label(entity: EntitySpec, rule: DuplicateRule) -> str:
    """`Phone`, `Name ≈ 90% (same City)` in the user's language."""
    locale = current_locale()
    names = ", ".join(entity.field(n).label.get(locale) for n in rule.match)
    text = names if rule.fuzzy is None else f"{names} ≈ {rule.fuzzy}%"
    if rule.same:
        same = ", ".join(entity.field(n).label.get(locale) for n in rule.same)
        text += " " + gettext("(same %(fields)s)", fields=same)
    return text


def allow_asked(source) -> bool:
    return str(source.get(ALLOW_ARG, "")).lower() in ("1", "true", "yes", "on")


def candidates_for_write(entity: EntitySpec, session, ctx) -> list[Candidate]:
    """Candidates of the record a WriteContext is about to write (create: all rules; edit: the rules over a field
    whose value changes, never the record itself)."""
    search = search_for(entity, session, ctx.rules.viewer)
    if not search:
        return []
    values = {name: ctx.get(name) for rule in search.rules for name in rule.fields}
    if ctx.creating:
        return search.candidates(values)
    stored = ctx.stored()
    changed = {name for name, value in values.items()
               if getattr(value, "id", value) != getattr(getattr(stored, name, None), "id", getattr(stored, name, None))}
    return search.candidates(values, exclude_id=getattr(stored, "id", None), changed=changed)


class DuplicatesPagesMixin:
    """The form warning and the duplicates page of a generated EntityView."""

    add_template = "portal/duplicates_add.html"   # FAB's, with the warning above the form
    edit_template = "portal/duplicates_edit.html"

    def duplicates_refuse(self, rules, ctx) -> bool:
        """True (the form comes back with the candidates) unless there are none or the user chose "Save anyway"
        and may."""
        if not self.entity.duplicates:
            return False
        candidates = candidates_for_write(self.entity, self.datamodel.session, ctx)
        if not candidates:
            return False
        allowed = may_save_anyway(rules.viewer, candidates)
        if allowed and allow_asked(request.form):
            return False
        g.portal_duplicates = {
            "may_save": allowed,
            "candidates": [dict(c.as_dict(), url=url_for(f"{self.endpoint}.show", pk=c.id),
                                rule_label=rule_label(self.entity, c.rule)) for c in candidates],
        }
        flash(str(_l("This record looks like one that already exists.")), "warning")
        return True

    def render_template(self, template, **kwargs):
        if template == self.list_template and self.entity.duplicates:  # the list links to the duplicates page
            kwargs.setdefault("duplicates_url", f"{self.route_base}/duplicates/")
        return super().render_template(template, **kwargs)

    @expose("/duplicates/")
    @has_access
    def duplicates(self):
        """Candidate pairs for review, a page at a time (`?after=<first>-<second>`)."""
        after = _cursor(request.args.get("after", ""))
        search = search_for(self.entity, self.datamodel.session)
        pairs, next_cursor = search.pairs(after, PAGE_SIZE) if search else ([], None)
        sm = self.appbuilder.sm
        may_merge = sm.has_access("can_update", self.class_permission_name)
        rows = []
        for pair in pairs:
            first, second = pair.first, pair.second
            rows.append({
                "first": first, "second": second, "score": first.score,
                "rule": rule_label(self.entity, first.rule), "rule_id": first.rule.id,
                "first_url": url_for(f"{self.endpoint}.show", pk=first.id),
                "second_url": url_for(f"{self.endpoint}.show", pk=second.id),
                "merge_url": f"{self.route_base}/merge/{first.id}?loser={second.id}" if may_merge else None,
            })
        title = format_with_schema_text(gettext("Possible duplicates: %(entity)s"), entity=lazy(self.entity.label))
        return self.render_template(
            "portal/duplicates.html", title=title, rows=rows, has_rules=bool(self.entity.duplicates),
            searchable=bool(search), list_url=url_for(f"{self.endpoint}.list"),
            next_url=f"{self.route_base}/duplicates/?after={next_cursor[0]}-{next_cursor[1]}" if next_cursor else None)


def _cursor(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    first, _, second = text.partition("-")
    if not (first.isdecimal() and second.isdecimal()) or len(first) > 18 or len(second) > 18:
        abort(400, description=str(_l("Not a valid page cursor.")))
    return int(first), int(second)


class DuplicatesApiMixin:
    """409 with the candidates on POST/PUT of a generated EntityApi, unless `?allow_duplicate=1` (and the user may)."""

    def duplicates_conflict(self, rules, ctx):
        if not self.entity.duplicates:
            return None
        candidates = candidates_for_write(self.entity, self.datamodel.session, ctx)
        if not candidates:
            return None
        allowed = may_save_anyway(rules.viewer, candidates)
        if allowed and allow_asked(request.args):
            return None
        message = (_l("Possible duplicates found; send ?allow_duplicate=1 to save anyway.") if allowed
                   else _l("Possible duplicates found; your role may not save a duplicate."))
        self.datamodel.session.rollback()
        return self.response(409, message=str(message), duplicates=[c.as_dict() for c in candidates])


_ALLOW_PARAMETER = {"in": "query", "name": ALLOW_ARG, "required": False, "schema": {"type": "integer", "enum": [0, 1]},
                    "description": "1: save even if the record looks like an existing one (the duplicates: rules)"}
_DUPLICATES_RESPONSE = {
    "description": "Possible duplicates: readable records the entity's duplicates: rules pair with this one; "
                   "nothing was written (repeat with ?allow_duplicate=1 to save anyway)",
    "content": {"application/json": {"schema": {"type": "object", "properties": {
        "message": {"type": "string"},
        "duplicates": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "title": {"type": "string"}, "score": {"type": "number"},
            "rule": {"type": "string", "example": "name~90=address_city"}}}},
    }}}},
}


def openapi_with_duplicates(entity: EntitySpec, specs: dict) -> dict:
    """The API's operation docs (versions.openapi_spec_methods) with POST/PUT's `allow_duplicate` and 409."""
    if not entity.duplicates:
        return specs
    import json

    from apispec import yaml_utils
    from flask_appbuilder.api import ModelRestApi

    if "post" not in specs:
        doc = yaml_utils.load_operations_from_docstring(ModelRestApi.post.__doc__)
        text = json.dumps(doc["post"]).replace("{{self.__class__.__name__}}", f"{entity.name}Api")
        specs = {**specs, "post": {"post": json.loads(text)}}
    for method in ("post", "put"):
        operation = specs[method][method]
        operation["parameters"] = operation.get("parameters", []) + [_ALLOW_PARAMETER]
        responses = operation.setdefault("responses", {})
        if "409" in responses:  # PUT: a stale version is a 409 too
            conflict = dict(responses["409"])
            conflict["description"] += "; or possible duplicates (`duplicates`, see ?allow_duplicate=1)"
            conflict["content"] = {"application/json": {"schema": {"type": "object", "properties": {
                **responses["409"]["content"]["application/json"]["schema"]["properties"],
                "duplicates": _DUPLICATES_RESPONSE["content"]["application/json"]["schema"]["properties"]["duplicates"]}}}}
            responses["409"] = conflict
        else:
            responses["409"] = _DUPLICATES_RESPONSE
    return specs
