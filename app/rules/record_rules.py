"""The one record-rules path: every write (form, API, import) runs the same `RecordRules`.

    clean values  ->  rule steps (check)  ->  rule steps (before_write: forced values, audit stamp)  ->  write

*Clean values* turns input into typed values (`records.clean_value`; links resolved to records the
viewer may see). *Rule steps* are an ordered list of small `RuleStep` objects, each with `check(ctx)`
(add errors; nothing is written if any step objects) and `before_write(ctx)` (change the values about
to be written). The steps come from the app's `Portal.rule_steps` (app/portal.py), so a new rule
(a computed field, a workflow lock, a change log) is one `RuleStep` appended there, and forms, the API
and imports all enforce it:

- forms: `pages.py` runs `RecordRules.check` from the form's `validate` and `before_write` in pre_add/pre_update;
- API: `apis.py` `_save` runs `parse` -> `check` -> `before_write` -> FAB's datamodel add/edit;
- import: `importer.py` cleans cells in bulk, then runs `check_many` per chunk and `stamp_many` before `bulk.write`.

Import keeps bulk forms of the built-in steps, because per-row cost matters at a million rows:
required (field lists worked out once per file), uniqueness (hash sets over the file plus IN (...)
lookups), links by title (a memo per chunk), row scope (`forced_ids`) and the audit stamp (`stamp_many`,
one clock per chunk). A portal's own steps run through `check_many` / `before_write` on every chunk.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flask_appbuilder.security.sqla.models import User
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, select

from app.i18n import current_locale
from app.rules.access import Viewer, current_viewer
from app.rules.records import FieldError, clean_value, is_blank, record_id
from app.schema.spec import EntitySpec, FieldSpec, PortalSpec

# audit columns every generated table has (models.py), in the order bulk.RowSpool writes them
AUDIT_NEW = ("changed_on", "changed_by_id", "created_on", "created_by_id")
AUDIT_CHANGED = ("changed_on", "changed_by_id")


def writable_fields(entity: EntitySpec) -> list[FieldSpec]:
    return [f for f in entity.fields if not f.readonly]


def link_target(portal: PortalSpec, models: dict, f: FieldSpec):
    """(model, title column or None) a link/user/many field points at; users are named by username."""
    if f.kind.to_users:
        return User, User.username
    title = portal.entity(f.to).title
    return models[f.to], (getattr(models[f.to], title) if title else None)


@dataclass
class WriteContext:
    """One record on its way to the database, as every rule step sees it.

    `values` are cleaned values keyed by field name (links: records for forms and the API, ids for
    imports); `current` is the stored record being edited (None when creating, or in an import, where
    `record_id` names the row an update-by-key changes); `source` is "form", "api" or "import".
    """

    rules: "RecordRules"
    values: dict
    creating: bool
    source: str
    current: object = None
    record_id: int | None = None
    row: int | None = None  # spreadsheet row of an import
    errors: dict = field(default_factory=dict)
    computed_from: tuple | None = None  # the formulas' inputs when they were last computed (ExpressionStep)

    def get(self, name: str):
        """The value the record will have: the new one if given, else the stored one."""
        if name in self.values:
            return self.values[name]
        return getattr(self.stored(), name, None)

    def stored(self):
        """The record as stored before this write (None when creating); an import loads it on first ask."""
        if self.current is None and self.record_id is not None:
            rules = self.rules
            self.current = rules.session.get(rules.model, self.record_id)
        return self.current

    def error(self, name: str, message) -> None:
        self.errors.setdefault(name, []).append(str(message))


class RuleStep:
    """One step of the rules path. Subclass, override what you need, append to `Portal.rule_steps`.

    check(ctx)          add errors with `ctx.error(field, message)`; any error refuses the write.
    check_many(batch)   the same for a batch of contexts (imports); override to check a chunk in bulk.
    before_write(ctx)   change `ctx.values` just before they are written (forced values, computed fields).
    before_write_many(batch)  the same for a batch (imports, only when the rows are written); override to do
                        it in bulk (e.g. one counter update per chunk).
    writes              the fields `before_write` may set, so a bulk import writes them even when the
                        file has no such column (or `fields_written(entity)` when they depend on the entity).
    applies(entity)     whether the step has anything to do for an entity (else RecordRules leaves it out).
    edit_reads(rules, written)  the stored fields check / before_write read on an edit of a stored record that
                        sets only the fields `written` (a bulk transition checks one record for all rows sharing
                        them); None, the default: anything, the record's identity included (each row on its own).
    """

    writes: tuple[str, ...] = ()

    def check(self, ctx: WriteContext) -> None:
        pass

    def check_many(self, batch: list[WriteContext]) -> None:
        for ctx in batch:
            self.check(ctx)

    def before_write(self, ctx: WriteContext) -> None:
        pass

    def before_write_many(self, batch: list[WriteContext]) -> None:
        for ctx in batch:
            self.before_write(ctx)

    def fields_written(self, entity: EntitySpec) -> tuple[str, ...]:
        return self.writes

    def applies(self, entity: EntitySpec) -> bool:
        return True

    def edit_reads(self, rules: "RecordRules", written: frozenset) -> frozenset | None:
        """Besides the stored values of `written` themselves, which every edit may compare with the new ones.
        Declare every field read (a bulk transition reads only the declared ones and raises on any other), and
        only when the outcome depends on nothing else of the record (its id, say, or a field read through it)."""
        return None


class RequiredStep(RuleStep):
    """Required fields (without a default) must have a value; only fields the write sets are checked on edit."""

    def check(self, ctx: WriteContext) -> None:
        rules = ctx.rules
        for f in rules.entity.fields:
            if not f.required or f.name in ctx.errors or f.name in rules.forced:
                continue
            if f.name in ctx.values:
                if ctx.values[f.name] is None or ctx.values[f.name] == []:
                    ctx.error(f.name, _l("This field is required."))
            elif ctx.creating and f.default is None and f.name in rules.writable and not f.kind.assigned:
                # (a required `file` field is required on forms; the API and imports cannot carry a file)
                ctx.error(f.name, _l("This field is required."))

    def check_many(self, batch: list[WriteContext]) -> None:
        pass  # importer.py `_record`: the same rule per row, with the field lists worked out once per file

    def edit_reads(self, rules, written):
        return frozenset()  # on an edit, only the values given


class UniqueStep(RuleStep):
    """unique and unique_together, checked against the table (imports check the file itself in bulk)."""

    def check(self, ctx: WriteContext) -> None:
        if not ctx.errors:
            for name, messages in ctx.rules.conflicts(ctx.values, ctx.current).items():
                ctx.errors.setdefault(name, []).extend(messages)

    def check_many(self, batch: list[WriteContext]) -> None:
        pass  # importer.py `_check_unique`: one IN (...) query per chunk, hashes across the file

    def edit_reads(self, rules, written):
        """An edit that sets no field of a unique field or group cannot make a duplicate (the stored rows are
        unique already); one that does is checked against the other rows, so each on its own."""
        entity = rules.entity
        groups = [(f.name,) for f in entity.fields if f.unique] + [tuple(g) for g in entity.unique_together]
        return None if any(written.intersection(g) for g in groups) else frozenset()


class RowScopeStep(RuleStep):
    """A record stays in the writer's row scope (e.g. a salesperson's records are theirs): the values are in the
    context from the start (RecordRules.context), and set again here after any step that changed them."""

    def before_write(self, ctx: WriteContext) -> None:
        ctx.values.update(ctx.rules.forced if ctx.source != "import" else ctx.rules.forced_ids)

    def edit_reads(self, rules, written):
        return frozenset()  # the viewer's forced values, the same for every record


class AuditStep(RuleStep):
    """created_on/created_by on new records, changed_on/changed_by on every write."""

    def before_write(self, ctx: WriteContext) -> None:
        ctx.values.update(ctx.rules.audit_values(ctx.creating))

    def edit_reads(self, rules, written):
        return frozenset()


class ExpressionStep(RuleStep):
    """`formula:` fields recomputed from the values about to be written, and `rules:` checks refused with
    their message (the user's language) under the fields they name. The expressions were parsed and
    compiled by the checker (app/schema/expressions.py); here each one is a closure call per record."""

    def applies(self, entity: EntitySpec) -> bool:
        return bool(entity.formula_order or entity.rules)

    def fields_written(self, entity: EntitySpec) -> tuple[str, ...]:
        return entity.formula_order

    def edit_reads(self, rules, written):
        """What the formulas and `rules:` read (a link's id stands for the fields read through it); formula fields
        are computed, not read."""
        entity = rules.entity
        read = set(entity.formula_inputs) | {path[0] for rule in entity.rules for path in rule.check.names}
        return frozenset(read - set(entity.formula_order))

    def check(self, ctx: WriteContext) -> None:
        entity = ctx.rules.entity
        if not (entity.rules or entity.formula_order):
            return
        self.compute(ctx)  # a rule may read a formula field
        for f in entity.formulas:
            if f.required and ctx.values[f.name] is None:  # the column is NOT NULL: say why instead of a database error
                ctx.error(f.name, _l("Cannot be computed: a value it needs is empty."))
        get = ctx.rules.path_reader(ctx)
        for rule in entity.rules:
            if rule.check.run(get) is False:  # null (an empty operand) is not a refusal, as in SQL CHECK
                names = rule.fields or tuple(sorted({path[0] for path in rule.check.names}))[:1]
                message = rule.message.get(current_locale())  # asked only on a refusal: the user's locale costs a lookup
                for name in names:
                    ctx.error(name, message)

    def before_write(self, ctx: WriteContext) -> None:
        # computed in check; again only if a step since then set an input (an autonumber a formula reads)
        if ctx.computed_from is None or not _same(ctx.computed_from, _inputs(ctx)):
            self.compute(ctx)

    def compute(self, ctx: WriteContext) -> None:
        rules = ctx.rules
        formulas = rules.entity.formulas
        if not formulas:
            return
        get = rules.path_reader(ctx)
        for f in formulas:  # in dependency order: a formula reads the ones computed before it
            ctx.values[f.name] = fit_formula_value(f, f.formula.run(get))
        ctx.computed_from = _inputs(ctx)


_UNSET = object()


def _inputs(ctx: WriteContext) -> tuple:
    values = ctx.values
    return tuple(values.get(name, _UNSET) for name in ctx.rules.entity.formula_inputs)


def _same(before: tuple, now: tuple) -> bool:
    return all(a is b for a, b in zip(before, now))


def fit_formula_value(f: FieldSpec, value):
    """A computed value as the field stores it: decimals at the field's scale (half up), integers whole, text
    as text; null when it cannot be stored (too large for the column, or the wrong kind of value)."""
    from decimal import ROUND_HALF_UP, Decimal

    if value is None:
        return None
    kind = f.kind
    try:
        if kind.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
                return None
            if kind.whole:
                whole = int(Decimal(value).to_integral_value(ROUND_HALF_UP))
                return whole if -2**63 <= whole < 2**63 else None
            number = Decimal(value).quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP)
            return number if abs(number) < Decimal(10) ** (f.precision - f.scale) else None
        if kind.is_moment or kind.truth_value:
            return value
        text = value if isinstance(value, str) else str(value)
        return text[: f.length] if f.length else text
    except ArithmeticError:
        return None


def _default_value(f: FieldSpec):
    """The value a new record gets for a field the write leaves out (its column default, models.py)."""
    if f.rollup is not None:  # a new parent has no children yet: 0 for count and sum
        return f.rollup.empty
    if f.default is None or f.is_relation:
        return None
    if f.default == "today" and f.kind.is_moment:
        return dt.date.today()
    if f.default == "now" and f.kind.is_moment:
        return dt.datetime.now().replace(microsecond=0)
    return f.default


def duplicate_message(entity: EntitySpec, group) -> str:
    """Why a record repeating another in a unique field (or unique_together group) is refused; fields named by their
    labels in the user's language. Forms, the API, imports and inline lines all say it this way."""
    if len(group) == 1:
        return str(_l("Already exists."))
    fields = ", ".join(entity.field(name).label.get(current_locale()) for name in group)
    return str(_l("A record with the same %(fields)s already exists.", fields=fields))


def default_steps() -> list[RuleStep]:
    """The built-in sequence; a portal's own steps go between ExpressionStep and AuditStep (Portal.add_rule_step).
    Numbers are assigned before formulas run, so a formula may read an autonumber; link defaults fill first."""
    from app.rules.autonumber import AutonumberStep  # they build on RuleStep
    from app.rules.link_rules import LinkDefaultStep, LinkFilterStep
    from app.rules.siblings import SiblingStep
    from app.rules.workflows import LockedParentStep, WorkflowStep

    # defaults from links first: the required check, filters and formulas read the filled value; the workflow
    # state before the required check (empty: the default state) and before formulas (`state == 'approved'`)
    # an address's parts (SiblingStep) once its value is final, before the checks and formulas that may read them
    return [LinkDefaultStep(), WorkflowStep(), LockedParentStep(), SiblingStep(), RequiredStep(), UniqueStep(), RowScopeStep(), AutonumberStep(), LinkFilterStep(),
            ExpressionStep(), AuditStep()]


class RecordRules:
    """The rules of one entity for one writer (the request's viewer, or the CLI's unrestricted one)."""

    def __init__(self, portal: PortalSpec, entity: EntitySpec, models: dict, session, viewer: Viewer | None = None,
                 steps: list[RuleStep] | None = None) -> None:
        self.portal, self.entity, self.models, self.session = portal, entity, models, session
        self.model = models[entity.name]
        self.viewer = viewer or current_viewer()
        self.steps = [step for step in (steps if steps is not None else _app_steps()) if step.applies(entity)]
        self.unreadable = self.viewer.unreadable(entity.name)  # hidden or masked: not writable either
        self.writable = {f.name: f for f in writable_fields(entity) if f.name not in self.unreadable}
        self.forced = self.viewer.forced_values(entity.name)
        self.forced_ids = {name: (v.id if hasattr(v, "id") else v) for name, v in self.forced.items()}

    # -- clean values ----------------------------------------------------------------------
    def _visible(self, f: FieldSpec, query):
        """Links may only point at records the user can see (a foreman books hours on own sites)."""
        if f.kind.to_users:
            return query
        clause = self.viewer.row_clause(f.to, self.models)
        return query if clause is None else query.where(clause)

    def resolve_link(self, f: FieldSpec, raw):
        """A link given as an id, {"id": n}, or as text: the target's title (spreadsheets carry titles)."""
        if isinstance(raw, dict):
            raw = raw.get("id")
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        target, title_column = link_target(self.portal, self.models, f)
        if isinstance(raw, str) and title_column is None and raw.strip().isdecimal():
            raw = int(raw)
        if isinstance(raw, int) and not isinstance(raw, bool):
            try:
                record_id(raw)
            except ValueError:  # past the id column's range: the database would overflow
                raise FieldError(_l("No record with id %(id)s.", id=raw)) from None
            record = self.session.scalar(self._visible(f, select(target).where(target.id == raw)))
            if record is None:
                raise FieldError(_l("No record with id %(id)s.", id=raw))
            return record
        if not isinstance(raw, str) or title_column is None:
            raise FieldError(_l("Must be the id of a record."))
        query = self._visible(f, select(target).where(title_column == raw.strip()).limit(2))
        matches = self.session.scalars(query).all()
        if not matches:
            raise FieldError(_l("No record named '%(title)s'.", title=raw.strip()))
        if len(matches) > 1:
            raise FieldError(_l("More than one record is named '%(title)s'; use its id.", title=raw.strip()))
        return matches[0]

    def clean(self, f: FieldSpec, raw):
        """One field's input as its typed value (FieldError if it is not one)."""
        if f.kind.multiple:
            if is_blank(raw):
                return []
            items = raw if isinstance(raw, list) else [part for part in str(raw).split(",") if part.strip()]
            return [self.resolve_link(f, item) for item in items]
        if is_blank(raw):
            if f.required:
                raise FieldError(_l("This field is required."))
            return None
        if f.is_relation:
            return self.resolve_link(f, raw)
        return clean_value(f, raw)

    def parse(self, data: dict, creating: bool) -> tuple[dict, dict]:
        """Clean a whole record given as a dict (API): (values, errors by field name)."""
        values, errors = {}, {}
        readonly = {f.name for f in self.entity.fields if f.readonly or f.name in self.unreadable}
        for key in data:
            if key in readonly:
                errors[key] = [str(_l("This field is read-only."))]
            elif key not in self.writable:
                errors[key] = [str(_l("Unknown field."))]
        for name, f in self.writable.items():
            if name not in data:
                continue
            try:
                values[name] = self.clean(f, data[name])
            except FieldError as exc:
                errors[name] = [str(exc)]
        return values, errors

    # -- rule steps ------------------------------------------------------------------------
    def context(self, values: dict, creating: bool, source: str, current=None, errors: dict | None = None,
                **extra) -> WriteContext:
        # the record stays in the writer's row scope (e.g. owner = me): every step checks the values written
        # (an imported row already carries them: importer._record sets `forced_ids` on each row)
        if source != "import":
            values.update(self.forced)
        return WriteContext(self, values, creating, source, current, errors=dict(errors or {}), **extra)

    def check(self, ctx: WriteContext) -> dict:
        """Run every step's check; returns the errors (empty: the record may be written)."""
        for step in self.steps:
            step.check(ctx)
        return ctx.errors

    def check_many(self, batch: list[WriteContext]) -> None:
        """Every step's check over a batch (imports); errors land on each context."""
        for step in self.steps:
            step.check_many(batch)

    def before_write(self, ctx: WriteContext) -> dict:
        for step in self.steps:
            step.before_write(ctx)
        return ctx.values

    def before_write_many(self, batch: list[WriteContext]) -> None:
        """Every step's before_write over a batch of contexts about to be written (imports)."""
        for step in self.steps:
            step.before_write_many(batch)

    def apply(self, item, values: dict) -> None:
        for name, value in values.items():
            setattr(item, name, value)

    def audit_values(self, creating: bool, now: dt.datetime | None = None) -> dict:
        now = now or dt.datetime.now().replace(microsecond=0)
        user_id = self.viewer.user_id
        stamp = {"changed_on": now, "changed_by_id": user_id}
        if creating:
            stamp.update(created_on=now, created_by_id=user_id)
        return stamp

    def stamp_many(self, creating: bool) -> tuple:
        """The audit values of a chunk of bulk rows, in AUDIT_NEW / AUDIT_CHANGED order (one clock per chunk)."""
        stamp = self.audit_values(creating)
        return tuple(stamp[name] for name in (AUDIT_NEW if creating else AUDIT_CHANGED))

    @property
    def step_fields(self) -> set[str]:
        """Fields some rule step sets in before_write (see RuleStep.writes)."""
        return {name for step in self.steps for name in step.fields_written(self.entity)}

    @property
    def checks_each_row(self) -> bool:
        """Whether a step beyond the built-ins wants to see every imported row (else imports skip the contexts)."""
        return any(not isinstance(step, _BUILT_IN) and step.applies(self.entity) for step in self.steps)

    # -- expression names ----------------------------------------------------------------------
    def path_reader(self, ctx: WriteContext):
        """`get(path)` for expressions: a field of the record about to be written, or one hop through a
        link (`worker.day_rate`) read from the linked record (imports carry ids: loaded once per id)."""
        def get(path):
            name = path[0]
            value = ctx.values[name] if name in ctx.values else (
                _default_value(self.entity.field(name)) if ctx.creating else ctx.get(name))
            if len(path) == 1 or value is None:
                return value
            if isinstance(value, int):
                value = self.linked(self.entity.field(path[0]), value)
            return getattr(value, path[1], None)
        return get

    def linked(self, f: FieldSpec, record_id: int):
        memo = self.__dict__.setdefault("_linked", {})
        key = (f.to, record_id)
        if key not in memo:
            if len(memo) >= 10000:
                memo.clear()  # keep memory flat over a long import
            memo[key] = self.session.get(self.models[f.to], record_id)
        return memo[key]

    # -- unique ----------------------------------------------------------------------------
    def conflicts(self, values: dict, current=None) -> dict:
        """Unique and unique_together violations as field errors, checked before writing."""
        errors = {}
        for f in self.entity.fields:
            if f.unique and values.get(f.name) is not None:
                if self._exists({f.name: values[f.name]}, current):
                    errors[f.name] = [duplicate_message(self.entity, (f.name,))]
        for group in self.entity.unique_together:
            merged = {name: values[name] if name in values else getattr(current, name, None) for name in group}
            if any(v is None for v in merged.values()):
                continue
            if self._exists(merged, current):
                errors.setdefault(group[0], []).append(duplicate_message(self.entity, group))
        return errors

    def _exists(self, criteria: dict, current) -> bool:
        conditions = []
        for name, value in criteria.items():
            f = self.entity.field(name)
            column = getattr(self.model, f.column_name)
            conditions.append(column == (getattr(value, "id", value) if f.stores_link else value))  # a record or its id
        if current is not None and current.id is not None:
            conditions.append(self.model.id != current.id)
        query = select(func.count()).select_from(self.model).where(and_(*conditions))
        return self.session.scalar(query) > 0


_BUILT_IN = (RequiredStep, UniqueStep, RowScopeStep, AuditStep)


def _app_steps() -> list[RuleStep]:
    from app.portal import current_portal  # the app's own list (tests add steps to one app only)

    return current_portal().rule_steps
