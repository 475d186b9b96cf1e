"""Inline lines (`lines: [OrderLine]`): a parent record's child records written with it, all or nothing.

Forms and the API hand over the submitted lines as a list of dicts (`{"id": 5, "qty": 3}` or a new line
without `id`). `LinesEdit.check` runs every line through the child's own `RecordRules` (the same path as the
child's API and imports: clean -> check; required, unique, formulas, rules, row scope) with the back link
set to the parent, and says which line operations the user may do; `LinesEdit.write` runs `before_write`
(autonumbers, formulas, audit stamp) and puts the lines in the parent's session, so they are committed in the
parent's one transaction. Lines of the parent that the list leaves out are deleted.

Errors are one dict per submitted line, in order (`{}` for a line without problems), plus `refusal`: a message
about the whole list (a line that may not be deleted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.rules.access import Viewer
from app.rules.record_rules import RecordRules, WriteContext
from app.schema.spec import VERSION_COLUMN, EntitySpec, PortalSpec

ID = "id"


@dataclass
class LinePlan:
    """One submitted line after checking: a new record (`item` None), an update, or a line kept as it is."""

    ctx: WriteContext | None  # None: the line only names its id (kept unchanged)
    item: object = None


@dataclass
class LinesEdit:
    """The lines of one lines entity of a parent, as submitted, checked, then written."""

    portal: PortalSpec
    parent: EntitySpec
    key: str  # `lines`, or the child's snake_case name (EntitySpec.lines_keys)
    child: EntitySpec
    models: dict
    session: object
    viewer: Viewer
    may: object  # may(action) -> bool: the user's permission on the child entity ("create", "update", "delete")
    source: str = "api"
    plans: list[LinePlan] = field(default_factory=list)
    deletes: list = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    values: list[dict] = field(default_factory=list)  # per submitted line: its values as checked (formulas computed)
    refusal: str | None = None
    placed: list = field(default_factory=list)  # (index of the submitted line, its LinePlan)

    def __post_init__(self) -> None:
        self._plan_rows: list[int] = []
        self.back = self.portal.back_link(self.child.name, self.parent.name)
        self.rules = RecordRules(self.portal, self.child, self.models, self.session, self.viewer)
        self.model = self.rules.model
        # a line's `file` fields change through its attachments API only: a nested write (a GET's lines put back)
        # leaves them as they are
        self.file_fields = {f.name for f in self.child.fields if f.type == "file"}

    # -- reading -----------------------------------------------------------------------------------
    def stored(self, parent_id) -> list:
        """The parent's lines the viewer may see, in the order they were added."""
        if parent_id is None:
            return []
        statement = select(self.model).where(getattr(self.model, self.back.column_name) == parent_id)
        clause = self.viewer.row_clause(self.child.name, self.models)
        if clause is not None:
            statement = statement.where(clause)
        return list(self.session.scalars(statement.order_by(self.model.id)))

    # -- checking ----------------------------------------------------------------------------------
    def check(self, rows, parent_current, parent_values: dict, known: set | None = None) -> bool:
        """Check the submitted lines of a parent (`parent_current` None: the parent is being created, its
        values so far in `parent_values`). True when every line may be written.

        `known`: the ids of the lines the form showed when it was opened (forms). A line added since then by
        someone else would be deleted by a save that does not list it: the save is refused instead, like a
        record changed meanwhile (app/generate/versions.py)."""
        if not isinstance(rows, list):
            self.refusal = str(_l("Must be a list of lines."))
            return False
        # the parent as the lines' rules see it: expressions may read `order.<field>` one hop away
        parent = parent_current if parent_current is not None else SimpleNamespace(id=None, **parent_values)
        stored = {line.id: line for line in self.stored(getattr(parent_current, "id", None))}
        listed = set()
        for row in rows:
            errors: dict = {}
            self.errors.append(errors)
            self.values.append({})
            if not isinstance(row, dict):
                errors[ID] = [str(_l("Each line must be an object of field values."))]
                continue
            row = {name: value for name, value in row.items() if name not in self.file_fields}
            line_id = row.pop(ID, None)
            version = row.pop(VERSION_COLUMN, None)
            if not self._back_link_ok(row, parent_current, errors):
                continue
            if line_id is None:
                if not self.may("create"):
                    errors[ID] = [str(_l("You may not add lines."))]
                    continue
                self._plan(self._checked(row, True, None, parent, errors))
                continue
            if isinstance(line_id, str) and line_id.strip().isdecimal():
                line_id = int(line_id)
            item = stored.get(line_id) if isinstance(line_id, int) and not isinstance(line_id, bool) else None
            if item is None or line_id in listed:
                errors[ID] = [str(_l("No line with id %(id)s on this record.", id=line_id))]
                continue
            listed.add(line_id)
            if version is not None and str(version) != str(getattr(item, VERSION_COLUMN)):
                from app.generate.versions import stale_message  # its wording, once

                errors[ID] = [stale_message(item)]
                continue
            if not row:  # only the id: the line stays as it is
                self._plan(LinePlan(None, item))
                continue
            if not self.may("update"):
                errors[ID] = [str(_l("You may not change lines."))]
                continue
            self._plan(self._checked(row, False, item, parent, errors))
        if known is not None and set(stored) - known - listed:
            self.refusal = str(_l("Someone else has added lines since this form was opened. Reload the page to "
                                  "see them; your changes were not saved."))
            return False
        self.placed = [(n, plan) for n, plan in zip(self._plan_rows, self.plans)]
        self._check_duplicates()
        self.deletes = [line for line_id, line in stored.items() if line_id not in listed]
        if self.deletes and not any(self.errors):
            self._check_deletes()
        return not self.refusal and not any(self.errors)

    def _plan(self, plan: LinePlan) -> None:
        self.plans.append(plan)
        self._plan_rows.append(len(self.errors) - 1)

    def _check_duplicates(self) -> None:
        """unique / unique_together among the submitted lines themselves (each line was checked against the table
        alone): a later line repeating an earlier one gets the error, never the database's refusal."""
        from app.rules.record_rules import duplicate_message

        groups = [(f.name,) for f in self.child.fields if f.unique] + [tuple(g) for g in self.child.unique_together]
        seen = set()
        for index, plan in self.placed:
            values = plan.ctx.values if plan.ctx is not None else {}

            def value(name, values=values, item=plan.item):
                if name == self.back.name:
                    return "parent"  # every line is the parent's
                given = values[name] if name in values else getattr(item, name, None)
                return getattr(given, "id", given)
            for group in groups:
                key = (group, tuple(value(name) for name in group))
                if any(v is None for v in key[1]):
                    continue
                if key in seen:
                    shown = next((name for name in group if name != self.back.name), group[0])  # the grid has no back link
                    self.errors[index].setdefault(shown, []).append(duplicate_message(self.child, group))
                seen.add(key)

    def _back_link_ok(self, row: dict, parent_current, errors: dict) -> bool:
        """A line may name its parent (as GET shows it) but not another one."""
        if self.back.name not in row:
            return True
        given = row.pop(self.back.name)
        given_id = given.get(ID) if isinstance(given, dict) else given
        if given_id is None or (parent_current is not None and given_id == parent_current.id):
            return True
        errors[self.back.name] = [str(_l("A line belongs to the record it is saved with."))]
        return False

    def _checked(self, row: dict, creating: bool, item, parent, errors: dict) -> LinePlan:
        rules = self.rules
        values, parse_errors = rules.parse(row, creating)
        given = dict(values)
        ctx = rules.context(values, creating, self.source, item, parse_errors)
        ctx.values[self.back.name] = parent
        errors.update(rules.check(ctx))
        self.values[-1] = ctx.values
        if item is not None and not errors and all(getattr(item, name) == value for name, value in given.items()):
            return LinePlan(None, item)  # a form posts every row: an unchanged line is not written again
        return LinePlan(ctx, item)

    def _check_deletes(self) -> None:
        from app.generate.references import delete_refusal  # what blocks a delete: the pages' and API's wording

        if not self.may("delete"):
            self.refusal = str(_l("You may not remove lines."))
            return
        for line in self.deletes:
            refusal = delete_refusal(self.portal, self.models, self.session, self.child, line)
            if refusal:
                self.refusal = f"{line}: {refusal}"
                return

    # -- writing -----------------------------------------------------------------------------------
    def write(self, parent_item) -> None:
        """Put the checked lines in the session, linked to `parent_item`; the parent's commit writes them."""
        for plan in self.plans:
            if plan.ctx is None:
                continue
            plan.ctx.values[self.back.name] = parent_item
            values = self.rules.before_write(plan.ctx)
            target = plan.item if plan.item is not None else self.model()
            self.rules.apply(target, values)
            self.session.add(target)
        for line in self.deletes:
            self.session.delete(line)


def lines_edits(portal: PortalSpec, parent: EntitySpec, models: dict, session, viewer: Viewer, may, source: str):
    """One LinesEdit per lines entity of `parent` (key, edit); `may(action, entity)` is the user's permission."""
    return [LinesEdit(portal, parent, key, portal.entity(child), models, session, viewer,
                      (lambda action, child=child: may(action, child)), source)
            for key, child in parent.lines_keys]
