"""Defaults from a link and filtered pickers on the write path (record_rules.py), and the SQL of a filter.

    rate:   {type: decimal, default: worker.day_rate}                            # LinkDefaultStep
    worker: {type: link, to: Worker, filter: {active: true, projects: $record.project}}   # LinkFilterStep

- `LinkDefaultStep` (first step: the required check and formulas read the filled value) copies the linked
  record's field when the link is given and the field's value is not (absent or empty); an explicit value wins.
  No fill when the viewer may not read the source field (hidden or masked for them, or on an entity they may not
  read at all): a default never reveals a value. Imports read the linked rows of a chunk with one query per link field (and a memo across chunks).
- `LinkFilterStep` refuses a chosen record that does not meet the field's `filter`, evaluated against the
  record's final values (given or stored); on an edit only when the link or a field the filter reads changes
  (an old entry keeps its worker after the worker leaves). Imports ask once per distinct set of filter values
  per chunk, with a memo.
- `filter_clause` is the filter as SQL; the lookup endpoint (app/generate/lookups.py) uses the same clause.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, false, select

from app.rules.record_rules import RuleStep, WriteContext
from app.rules.records import FieldError, clean_value, is_blank
from app.schema.spec import EntitySpec, FieldSpec

MEMO_LIMIT = 20_000


def link_default_fields(entity: EntitySpec) -> tuple[FieldSpec, ...]:
    return tuple(f for f in entity.fields if f.default_from is not None)


def filtered_fields(entity: EntitySpec) -> tuple[FieldSpec, ...]:
    return tuple(f for f in entity.fields if f.filter)


def id_of(value):
    """A link value as an id: forms and the API carry records, imports ids."""
    return getattr(value, "id", value)


def not_given(ctx: WriteContext, name: str) -> bool:
    return name not in ctx.values or is_blank(ctx.values[name])


def link_changed(ctx: WriteContext, name: str) -> bool:
    """A new record's link is set; an edit's only when it differs from the stored one."""
    return ctx.creating or id_of(ctx.values[name]) != id_of(getattr(ctx.stored(), name, None))


# -- defaults from a link --------------------------------------------------------------------------

def source_readable(rules, f: FieldSpec) -> bool:
    """Whether the writer may read the field a default copies (a default never reveals a hidden value, nor any
    field of an entity the writer may not read)."""
    link = rules.entity.field(f.default_from[0])
    return rules.viewer.may_read(link.to) and f.default_from[1] not in rules.viewer.unreadable(link.to)


def default_value(rules, f: FieldSpec, linked):
    """The value `f` takes from the linked record (a record, or a row of the import memo); FieldError when it does
    not fit the field (e.g. above its max)."""
    value = getattr(linked, f.default_from[1], None)
    return None if value is None else clean_value(f, value)


class LinkDefaultStep(RuleStep):
    """`default: <link>.<field>`: filled when the link is set (new record) or changed (edit) and the field is not
    given. Forms see the filled value too (pages.py copies checked values back to the form)."""

    def applies(self, entity: EntitySpec) -> bool:
        return bool(link_default_fields(entity))

    def fields_written(self, entity: EntitySpec) -> tuple[str, ...]:
        return tuple(f.name for f in link_default_fields(entity))

    def check(self, ctx: WriteContext) -> None:
        """Forms and the API: the link's value is the linked record itself."""
        rules = ctx.rules
        for f in link_default_fields(rules.entity):
            link_name = f.default_from[0]
            if link_name not in ctx.values or not not_given(ctx, f.name) or not source_readable(rules, f):
                continue
            linked = ctx.values[link_name]
            if linked is None or f.name in ctx.errors or not link_changed(ctx, link_name):
                continue
            try:
                ctx.values[f.name] = default_value(rules, f, linked)
            except FieldError as exc:
                ctx.error(f.name, exc)

    def before_write_many(self, batch: list[WriteContext]) -> None:
        pass  # imports: filled by check_many

    def edit_reads(self, rules, written):
        """The fields filled from links (an edit keeps their stored values, checked as required) and the links the
        edit sets (compared with the stored ones)."""
        fields = link_default_fields(rules.entity)
        return frozenset({f.name for f in fields} | {f.default_from[0] for f in fields} & written)

    def check_many(self, batch: list[WriteContext]) -> None:
        """Imports: the linked rows of the chunk in one query per link field, each linked record's defaults cleaned
        once (and remembered), so a row costs a few dict lookups. The importer leaves the required check of these
        fields to this step (importer._prepare)."""
        if not batch:
            return
        rules = batch[0].rules
        fields = [f for f in link_default_fields(rules.entity) if source_readable(rules, f)]
        memo = rules.__dict__.setdefault("_default_rows", {})  # link name -> linked id -> {field: value or FieldError}
        if sum(len(rows) for rows in memo.values()) > MEMO_LIMIT:
            memo.clear()  # keep memory flat over a long import
        for link_name in dict.fromkeys(f.default_from[0] for f in fields):
            rows = memo.setdefault(link_name, {})
            wanted = sorted({ctx.values.get(link_name) for ctx in batch} - {None} - set(rows))
            mine = [f for f in fields if f.default_from[0] == link_name]
            model = rules.models[rules.entity.field(link_name).to]
            sources = sorted({f.default_from[1] for f in mine})
            for start in range(0, len(wanted), 500):
                query = select(model.id, *(getattr(model, name) for name in sources)).where(model.id.in_(wanted[start:start + 500]))
                for row in rules.session.execute(query):
                    rows[row[0]] = {f.name: _cleaned(rules, f, _Row(dict(zip(sources, row[1:])))) for f in mine}
        required = [f.name for f in link_default_fields(rules.entity) if f.required]
        names = [f.name for f in link_default_fields(rules.entity)]
        plan = [(f.name, f.default_from[0], memo.get(f.default_from[0], {})) for f in fields]
        for ctx in batch:
            values = ctx.values
            for name, link_name, rows in plan:
                if link_name not in values or values.get(name) not in (None, "") or values[link_name] is None:
                    continue
                if not ctx.creating and not link_changed(ctx, link_name):
                    continue
                value = rows.get(values[link_name], {}).get(name)
                if value.__class__ is FieldError:
                    ctx.error(name, value)
                else:
                    values[name] = value
            if ctx.record_id:  # an update by key that does not touch a field keeps it
                for name in names:
                    if name not in values:
                        values[name] = ctx.get(name)
            for name in required:
                if values.get(name) in (None, "") and name not in ctx.errors:
                    ctx.error(name, _l("This field is required."))


def _cleaned(rules, f: FieldSpec, linked):
    try:
        return default_value(rules, f, linked)
    except FieldError as exc:
        return exc


class _Row:
    """A linked row read in bulk, read like a record."""

    def __init__(self, values: dict) -> None:
        self.__dict__.update(values)


# -- filtered pickers ------------------------------------------------------------------------------

UNSAVED = "unsaved"  # a `$record` link to a record saved in the same request (a line's new parent): matches nothing


def record_params(f: FieldSpec, get) -> dict:
    """The values of this record's fields that `f`'s filter reads (`$record.<field>`), as ids for links."""
    params = {}
    for c in f.filter:
        if c.record_field is not None:
            value = get(c.record_field)
            unsaved = value is not None and hasattr(value, "id") and value.id is None
            params[c.record_field] = UNSAVED if unsaved else id_of(value)
    return params


def filter_clause(portal, models: dict, f: FieldSpec, params: dict, user_id):
    """`f`'s filter as a SQL condition on the linked entity's model (None: no condition). `params` are the
    record's values by field name (ids for links); a condition whose `$record` value is empty is dropped."""
    model = models[f.to]
    target = portal.entity(f.to)
    clauses = []
    for c in f.filter:
        field = target.field(c.field)
        if c.user:
            if user_id is None:
                return false()
            clauses.append(getattr(model, field.column_name) == user_id)
        elif c.record_field is not None:
            value = params.get(c.record_field)
            if value is None or value == "" or value == []:
                continue  # an empty `$record` value does not limit the choices
            if value is UNSAVED:
                return false()  # no stored record belongs to one being created in this request
            if field.kind.multiple:
                other = models[field.to]
                clauses.append(getattr(model, field.name).any(other.id == value))
            else:
                clauses.append(getattr(model, field.column_name) == value)
        else:
            column = getattr(model, field.column_name)
            clauses.append(column == c.values[0] if len(c.values) == 1 else column.in_(c.values))
    return and_(*clauses) if clauses else None


def allowed_ids(rules, f: FieldSpec, ids, params: dict) -> set:
    """The ids among `ids` that pass `f`'s filter for these record values: one query."""
    model = rules.models[f.to]
    clause = filter_clause(rules.portal, rules.models, f, params, rules.viewer.user_id)
    if clause is None:
        return set(ids)
    return set(rules.session.scalars(select(model.id).where(model.id.in_(sorted(ids)), clause)))


NOT_ALLOWED = _l("This record is not one of the allowed choices here.")


class LinkFilterStep(RuleStep):
    """A chosen record must meet its field's `filter:`."""

    def applies(self, entity: EntitySpec) -> bool:
        return bool(filtered_fields(entity))

    def _to_check(self, ctx: WriteContext, f: FieldSpec) -> bool:
        """New records always; an edit when the link or a field its filter reads changes."""
        if f.name in ctx.errors:
            return False
        if ctx.creating:
            return True
        names = [f.name] + [c.record_field for c in f.filter if c.record_field]
        stored = ctx.stored()
        return any(name in ctx.values and _ids(ctx.values[name]) != _ids(getattr(stored, name, None)) for name in names)

    def edit_reads(self, rules, written):
        """An edit checks a filtered link only when it sets the link or a field its filter reads: then all of them."""
        read = set()
        for f in filtered_fields(rules.entity):
            names = {f.name} | {c.record_field for c in f.filter if c.record_field}
            if names & written:
                read |= names
        return frozenset(read)

    def check(self, ctx: WriteContext) -> None:
        for f in filtered_fields(ctx.rules.entity):
            if not self._to_check(ctx, f):
                continue
            chosen = _ids(ctx.get(f.name)) - {None}  # a line's new parent (saved with it) is checked by its own rules
            if chosen and not chosen <= allowed_ids(ctx.rules, f, chosen, record_params(f, ctx.get)):
                ctx.error(f.name, NOT_ALLOWED)

    def check_many(self, batch: list[WriteContext]) -> None:
        """Imports: one query per field and distinct set of filter values in the chunk; verdicts are remembered."""
        if not batch:
            return
        rules = batch[0].rules
        memo = rules.__dict__.setdefault("_filter_verdicts", {})  # field -> (filter values, id) -> passes
        if sum(len(verdicts) for verdicts in memo.values()) > MEMO_LIMIT:
            memo.clear()  # keep memory flat over a long import
        for f in filtered_fields(rules.entity):
            reads = tuple(dict.fromkeys(c.record_field for c in f.filter if c.record_field is not None))
            verdicts = memo.setdefault(f.name, {})
            asked: dict[tuple, set] = {}
            rows = []
            for ctx in batch:
                if not (ctx.creating or self._to_check(ctx, f)) or f.name in ctx.errors:
                    continue
                values = ctx.values
                chosen = values[f.name] if f.name in values else ctx.get(f.name)
                if chosen is None or chosen == []:
                    continue
                chosen = _ids(chosen) if chosen.__class__ is not int else (chosen,)
                params = tuple(_id(values[n] if n in values else ctx.get(n)) for n in reads)
                rows.append((ctx, chosen, params))
                for i in chosen:
                    if (params, i) not in verdicts:
                        asked.setdefault(params, set()).add(i)
            for params, ids in asked.items():
                ok = allowed_ids(rules, f, ids, dict(zip(reads, params)))
                verdicts.update({(params, i): i in ok for i in ids})
            for ctx, chosen, params in rows:
                if not all(verdicts[(params, i)] for i in chosen):
                    ctx.error(f.name, NOT_ALLOWED)


def _id(value):
    return value if value is None or value.__class__ is int else id_of(value)


def _ids(value) -> set:
    if value is None:
        return set()
    if isinstance(value, (list, tuple, set)):
        return {id_of(v) for v in value}
    return {id_of(value)}
