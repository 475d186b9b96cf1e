"""Bulk actions (issue 13): a transition or a delete applied to many records at once, each row checked on its own.

Every row is checked like a single action would be -- row scope (a row outside it is "Not found", the same text as
a missing id: no existence leak), the role (the transition's roles, can_delete), the from-state, `when` and
`locked`, references that block a delete, and the record rules (a transition's stamps and the formulas they feed,
e.g. `approved`, then `rules:`). Refused rows are reported with their reason and do not stop the others.

The rows that pass are written set-based, because approving 10,000 entries one ORM flush at a time is slow:

- a transition reads its rows with one core SELECT (locked FOR UPDATE on PostgreSQL, so the checks hold until
  commit), only the fields their outcome depends on: the state, what `when` reads, the old values of the fields
  it writes and what the rule steps declare they read on such an edit (`RuleStep.edit_reads`). Rows with the same
  values of those are checked once, together (a step that declares nothing: each row on its own);
- the record rules run through `check_many` / `before_write_many`, as an import chunk does;
- rows that get the same new values share one `UPDATE ... WHERE id IN (...)` (plus row_version + 1 and the audit
  stamp), the ids bound as one value (`id_in`); a delete is one `DELETE ... WHERE id IN (...)` per chunk (the
  database cascades as it does for one);
- one history INSERT per call (app/rules/history.py, path "bulk"), and the rollups over the entity refreshed once
  with `Rollups.refresh`, as the importer does after its bulk write.

Everything runs in the caller's transaction (the endpoint commits once per call, at most MAX_ROWS rows): the
written rows are all kept or, on a database error, none.

The workflow checks are app/rules/workflows.py's (`may_take`, `stamp_values`, `locked_refusal`), so a bulk
transition refuses a row exactly as taking it on the record would; its record-rules contexts have the
transition source (WorkflowStep lets the state change) and history says path "bulk".
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace

from flask_babel import gettext, lazy_gettext as _l
from sqlalchemy import ARRAY, Integer, any_, bindparam, delete, func, select, type_coerce, update
from sqlalchemy.types import NullType

from app.rules import history, workflows  # modules, read at call time: history imports app.generate, which imports us
from app.i18n import current_locale
from app.rules.access import Viewer
from app.rules.record_rules import AuditStep, ExpressionStep, RecordRules, RowScopeStep, UniqueStep, duplicate_message
from app.schema.spec import VERSION_COLUMN, EntitySpec, TransitionSpec

MAX_ROWS = 10_000  # ids per call, or rows a filter may match
CHUNK = 1_000  # rows a bulk delete reads, checks and deletes together
TRANSITION_ACTION, DELETE_ACTION = "transition", "delete"
ACTIONS = (TRANSITION_ACTION, DELETE_ACTION)


class BulkRequestError(Exception):
    """The whole request is refused (bad input, too many rows): nothing is written. `status` is 400 or 413."""

    def __init__(self, message, status: int = 400) -> None:
        super().__init__(str(message))
        self.message, self.status = str(message), status


@dataclass
class BulkOutcome:
    done: list = field(default_factory=list)
    refused: list = field(default_factory=list)  # (id, reason)

    def as_dict(self) -> dict:
        return {"done": self.done, "refused": [{"id": i, "reason": reason} for i, reason in self.refused]}


def not_found() -> str:
    return gettext("Not found")  # the text a missing id gets: a row outside the scope gets the same


def too_many() -> BulkRequestError:
    return BulkRequestError(_l("At most %(max)s records per bulk action; select fewer or narrow the filter.",
                               max=MAX_ROWS), 413)


def clean_ids(raw) -> list[int]:
    """`ids` of a request: a list of record ids (numbers or digit strings), duplicates dropped, in order."""
    from app.rules.records import record_id

    if not isinstance(raw, list) or not raw:
        raise BulkRequestError(_l("ids must be a non-empty list of record ids."))
    if len(raw) > MAX_ROWS:
        raise too_many()
    ids = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise BulkRequestError(_l("ids must be a non-empty list of record ids."))
        try:
            ids.append(record_id(value))
        except ValueError:
            raise BulkRequestError(_l("ids must be a non-empty list of record ids.")) from None
    return list(dict.fromkeys(ids))


class BulkAction:
    """Bulk transitions and deletes of one entity for one viewer, in `session`'s transaction."""

    def __init__(self, portal, session, viewer: Viewer, entity: EntitySpec, user=None, may_delete: bool = False):
        self.portal, self.session, self.viewer, self.entity = portal, session, viewer, entity
        self.user = user
        self.may_delete = may_delete
        self.model = portal.models[entity.name]
        self.table = self.model.__table__
        self._dialect = session.get_bind().dialect
        self.rules = RecordRules(portal.spec, entity, portal.models, session, viewer)
        self._link_names = {f.name for f in entity.fields if f.stores_link}
        # what the formulas and `rules:` read (top-level names; a link's id stands for what is read through it)
        self._expression_reads = tuple(sorted(
            (set(entity.formula_inputs) | {path[0] for rule in entity.rules for path in rule.check.names})
            - set(entity.formula_order)))
        self._expression_memo: dict[tuple, tuple] = {}
        self._events: list = []  # history of the rows written, inserted once at the end of the call
        self._database_events: dict[str, list] = {}  # entity -> history of the rows the database changed with them
        self._touched: dict = defaultdict(set)  # rollup parents to refresh once at the end: (child, link) -> ids
        self.path = "bulk"  # the history path of the writes ("retention" for app/data/retention.py)

    # -- reading ----------------------------------------------------------------------------------------
    def _read(self, ids: list[int], names, raw: bool = False) -> list:
        """(id, *names) of the stored rows among `ids` that are in the viewer's scope (links as ids), locked FOR
        UPDATE on PostgreSQL so that the checks hold until this transaction ends. `raw` (SQLite): values as the
        driver gives them (a decimal as a float, a date as text), for `_typed` to convert the rows that need it."""
        columns = [self.table.c[self.entity.field(name).column_name] for name in names]
        if raw:
            columns = [type_coerce(column, NullType()) for column in columns]
        query = select(self.table.c.id, *columns).where(id_in(self.table.c.id, ids, self._dialect))
        scope = self.viewer.row_clause(self.entity.name, self.portal.models)
        if scope is not None:
            query = query.where(scope)
        if self._dialect.name == "postgresql":
            query = query.with_for_update(of=self.table)
        return self.session.execute(query).all()

    def _typed(self, names) -> list:
        """One converter per field of `names` (None: as it comes) from a raw SQLite value to the field's value, as
        a typed SELECT gives it (the column type's own result processor)."""
        dialect = self._dialect
        return [self.table.c[self.entity.field(name).column_name].type.dialect_impl(dialect)
                .result_processor(dialect, None) for name in names]

    def _rows(self, ids: list[int]) -> dict:
        """The stored rows among `ids` in the viewer's scope, every field by name (links as ids, as imports carry
        them): plain attributes, read many times per row by the checks (cheaper than Row's)."""
        names = ["id"] + [f.name for f in self.entity.fields if not f.kind.multiple]
        rows = {}
        for values in self._read(ids, names[1:]):
            row = rows[values[0]] = SimpleNamespace()
            row.__dict__.update(zip(names, values))
        return rows

    def _found(self, ids: list[int], outcome: BulkOutcome) -> dict[int, SimpleNamespace]:
        rows = self._rows(ids)
        outcome.refused += [(i, not_found()) for i in ids if i not in rows]
        return rows

    # -- transition -------------------------------------------------------------------------------------
    def transition(self, name: str, ids: list[int]) -> BulkOutcome:
        workflow = self.entity.workflow
        transition = workflow.transition(name) if workflow else None
        if transition is None:
            raise BulkRequestError(_l("No step named %(name)s.", name=str(name)[:60]))
        outcome = BulkOutcome()
        now = dt.datetime.now().replace(microsecond=0)
        stamps = self._column_values(workflows.stamp_values(transition, self.user, now))  # as workflows.take does
        derived = (f.name for f in self.entity.fields if f.derived_from in stamps)  # a set address's parts
        written = frozenset({workflow.field, *stamps, *self.entity.formula_order, *derived})
        with history.writing_as("bulk", transition.name):
            self._transition_rows(transition, ids, stamps, written, now, outcome)
            self._after_write(now)
        return outcome

    def _deciding_fields(self, transition: TransitionSpec, written: frozenset) -> tuple[str, ...] | None:
        """The stored fields a row's outcome depends on: its state and what `when` reads (`may_take`), the old
        values of the fields written (history) and what every rule step reads on this edit (`edit_reads`). Rows
        with the same values of these are checked once, together. None: a step reads more (a portal's own step,
        a transition writing a unique field): each row is checked on its own."""
        read = set(written) | {self.entity.workflow.field}
        if transition.when is not None:
            read |= {path[0] for path in transition.when.names}
        for step in self.rules.steps:
            more = step.edit_reads(self.rules, written)
            if more is None:
                return None
            read |= more
        return tuple(sorted(read))

    def _with_links(self, row, transition: TransitionSpec):
        """The row as `when` reads it: a condition through a link (`worker.active`) gets the linked record."""
        through = {path[0] for path in transition.when.names if len(path) > 1} if transition.when is not None else ()
        if not through:
            return row
        linked = {}
        for name in through:
            f, value = self.entity.field(name), getattr(row, name)
            if f.stores_link and not f.kind.to_users and value is not None:
                linked[name] = self.rules.linked(f, value)
        return SimpleNamespace(**{**vars(row), **linked})

    def _column_values(self, values: dict) -> dict:
        """Values as stored in columns: a linked record (current_user) by its id."""
        return {name: getattr(value, "id", value) if self.entity.field(name).stores_link else value
                for name, value in values.items()}

    def _transition_rows(self, transition, ids, stamps, written, now, outcome) -> None:
        """Every row checked, then written set-based. Rows that agree on every field their outcome depends on
        (`_deciding_fields`) share one check, one changes dict and one UPDATE: approving 10,000 entries of a few
        hundred day rates checks a few hundred records, and each row gets the verdict its values got."""
        grouped = self._grouped_rows(ids, self._deciding_fields(transition, written))
        plans, reasons = self._check_groups(transition, grouped, stamps, written)
        updates: dict[tuple, list[int]] = defaultdict(list)  # new values -> ids: one UPDATE each
        events, done, refused, name = self._events, outcome.done, outcome.refused, transition.name
        for row_id in ids:  # the outcome in the order asked
            row = grouped.rows.get(row_id)
            if row is None:
                refused.append((row_id, not_found()))
                continue
            key = row[grouped.key]
            plan = plans.get(key)
            if plan is None:
                refused.append((row_id, reasons[key]))
                continue
            changes, new_values, parents_noted = plan
            done.append(row_id)
            updates[new_values].append(row_id)
            events.append(history.Event(row_id, history.TRANSITION, changes, name))
            for parents, position in parents_noted:
                parents.add(row[position])
        audit = self.rules.audit_values(False, now)
        version = {VERSION_COLUMN: self.table.c[VERSION_COLUMN] + 1}
        for new_values, group_ids in updates.items():
            columns = {self.entity.field(name).column_name: new for name, new in new_values}
            self.session.execute(update(self.table).where(id_in(self.table.c.id, group_ids, self._dialect))
                                 .values(**columns, **audit, **version))

    def _grouped_rows(self, ids: list[int], deciding: tuple[str, ...] | None) -> "_Grouped":
        """The rows among `ids` in scope, grouped by the values of the `deciding` fields (None: each row alone, every
        field read), with the links that feed rollups after those fields."""
        names = deciding if deciding is not None else tuple(f.name for f in self.entity.fields if not f.kind.multiple)
        feeds = self._rollup_links()
        # SQLite gives decimals as floats and dates as text, converted in Python: rows are grouped by those raw
        # values (the same raw value, the same typed one) and only each group's first row is converted for the
        # checks (10,000 rows' conversions cost more than the checks). PostgreSQL's driver converts them in C.
        raw = self._dialect.name == "sqlite"
        rows = {row[0]: row for row in self._read(ids, [*names, *feeds], raw=raw)}
        width = 1 + len(names)
        key = slice(0 if deciding is None else 1, width)  # the id is part of the key only when each row is alone
        groups: dict[tuple, list[int]] = {}
        for row_id in ids:
            row = rows.get(row_id)
            if row is not None:
                groups.setdefault(row[key], []).append(row_id)
        return _Grouped(names, rows, key, groups, feeds, width,
                        self._typed(names) if raw else [None] * len(names),
                        _stored_row_class(self.entity, names) if deciding is not None else SimpleNamespace)

    def _check_groups(self, transition, grouped: "_Grouped", stamps, written) -> tuple[dict, dict]:
        """Each group's first row through `may_take` and the record rules. Returns (group -> (its changes, its
        UPDATE's new values, the rollup parents to note: (set, position of the link in the row)) for the groups
        that pass, group -> why for the others)."""
        state_field, forced = self.entity.workflow.field, self.rules.forced
        needs = transition.require and gettext(
            "This step needs %(fields)s: take it on each record.",
            fields=", ".join(str(self.entity.field(n).label.get(current_locale())) for n in transition.require))
        reasons: dict[tuple, str] = {}
        refusals = {}  # without `when`, whether a row may take it depends only on its state: asked once per state
        batch, keys = [], []
        for key, members in grouped.groups.items():
            row = grouped.stored(members[0])
            memo = getattr(row, state_field) if transition.when is None else key
            if memo not in refusals:
                refusal = workflows.may_take(self.viewer, self.entity, self._with_links(row, transition), transition)
                refusals[memo] = _reason(refusal) if refusal is not None else needs
            if refusals[memo]:
                reasons[key] = refusals[memo]
                continue
            ctx = self.rules.context({state_field: transition.target, **stamps}, False, workflows.TRANSITION_SOURCE,
                                     current=row, record_id=row.id)
            for name in forced:  # the row is in its scope already: the checks read its own values
                if name not in stamps and name != state_field:
                    ctx.values.pop(name, None)
            batch.append(ctx)
            keys.append(key)
        self._check(batch, written)
        passed = [ctx for ctx in batch if not ctx.errors]
        for step in self.rules.steps:
            # the audit stamp is the UPDATE's (one clock per call); a row keeps its scope; formulas were computed by
            # the check, and no step before them in before_write changes what they read on an existing record
            if not isinstance(step, (AuditStep, RowScopeStep, ExpressionStep)):
                step.before_write_many(passed)
        plans = {}
        watched = self.portal.rollups.watched.get(self.entity.name, {}) if self.portal.rollups else {}
        for key, ctx in zip(keys, batch):
            if ctx.errors:
                reasons[key] = self._errors_text(ctx.errors)
                continue
            changed = self._changed(ctx, written)
            names_changed = {name for name, _, _ in changed}
            plans[key] = ({name: (old, new) for name, old, new in changed},  # shared: history encodes it once
                          tuple((name, new) for name, _, new in changed),
                          [(self._touched[(self.entity.name, link)], grouped.width + i)
                           for i, link in enumerate(grouped.feeds) if watched[link] & names_changed])
        return plans, reasons

    def _changed(self, ctx, written) -> list[tuple]:
        """(field, old, new) of the written fields the record's values change (links as ids)."""
        row, values, links = ctx.current, ctx.values, self._link_names
        changed = []
        for name in written:
            if name in values:
                new, old = values[name], getattr(row, name)
                if name in links and new is not None:
                    new = getattr(new, "id", new)
                if new != old:
                    changed.append((name, old, new))
        return changed

    def _rollup_links(self) -> tuple[str, ...]:
        """The links through which rows of this entity feed rollups (their parents are refreshed after the write)."""
        rollups = self.portal.rollups
        return tuple(sorted(rollups.watched.get(self.entity.name, {}))) if rollups else ()

    def _check(self, batch: list, written=()) -> None:
        """Every rule step's check over the batch. Formulas and `rules:` (ExpressionStep) depend only on the values
        they read, so rows reading the same values share one evaluation (rows of a bulk action mostly repeat a few
        rates, days and hours); uniqueness is checked per row when the written fields touch a unique group; the
        others run `check_many` as on an import chunk."""
        for step in self.rules.steps:
            if isinstance(step, UniqueStep):
                self._check_unique(step, batch, set(written))
                continue
            if not isinstance(step, ExpressionStep):
                step.check_many(batch)
                continue
            for ctx in batch:
                key = tuple(ctx.get(name) for name in self._expression_reads)
                known = self._expression_memo.get(key)
                if known is None:
                    before = {name: len(messages) for name, messages in ctx.errors.items()}
                    step.check(ctx)
                    known = self._expression_memo[key] = (
                        {name: ctx.values[name] for name in self.entity.formula_order},
                        {name: messages[before.get(name, 0):] for name, messages in ctx.errors.items()})
                    continue
                ctx.values.update(known[0])
                for name, messages in known[1].items():
                    for message in messages:
                        ctx.error(name, message)

    def _check_unique(self, step: UniqueStep, batch: list, written: set) -> None:
        """Rows whose written fields touch a unique field or unique_together group: each checked against the table as
        a single transition is (UniqueStep.check), and against the rows before it in this call (not written yet).
        Only the colliding rows are refused, with the duplicate message; the others go on."""
        groups = [(f.name,) for f in self.entity.fields if f.unique] + [tuple(g) for g in self.entity.unique_together]
        groups = [g for g in groups if written & set(g)]
        if not groups:
            return
        taken = set()
        for ctx in batch:
            step.check(ctx)  # skips a row already refused
            if ctx.errors:
                continue
            for group in groups:
                key = (group, tuple(getattr(ctx.get(name), "id", ctx.get(name)) for name in group))
                if any(v is None for v in key[1]):
                    continue  # as the database's unique indexes: nulls never collide
                if key in taken:
                    ctx.error(group[0], duplicate_message(self.entity, group))
                taken.add(key)

    def _errors_text(self, errors: dict) -> str:
        parts = []
        for name, messages in errors.items():
            try:
                label = self.entity.field(name).label.get(current_locale())
            except KeyError:
                label = name
            parts += [f"{label}: {message}" for message in messages]
        return "; ".join(parts)

    # -- delete -----------------------------------------------------------------------------------------
    def delete(self, ids: list[int]) -> BulkOutcome:
        outcome = BulkOutcome()
        now = dt.datetime.now().replace(microsecond=0)
        with history.writing_as(self.path):
            for start in range(0, len(ids), CHUNK):
                self._delete_chunk(ids[start:start + CHUNK], now, outcome)
            self._after_write(now)
        return outcome

    def _delete_chunk(self, ids, now, outcome) -> None:
        self.delete_rows(self.deletable(ids, outcome), outcome)

    def deletable(self, ids, outcome) -> list:
        """The stored rows among `ids` that may go; the others are added to `outcome.refused` with the reason."""
        rows = self._found(ids, outcome)
        present = [i for i in ids if i in rows]
        blocked = {}
        if self.may_delete and present:
            from app.generate.references import locked_dependents  # a locked record must not change with these

            blocked = locked_dependents(self.portal.spec, self.portal.models, self.session, self.entity, present)
            blocked.update(self._blocking_references(present))
        going = []
        for row_id in ids:
            row = rows.get(row_id)
            if row is None:
                continue
            if not self.may_delete:
                reason = gettext("You may not delete these records.")
            else:
                reason = workflows.locked_refusal(self.entity, row) or blocked.get(row_id)
            if reason:
                outcome.refused.append((row_id, str(reason)))
            else:
                going.append(row)
        return going

    def delete_rows(self, going: list, outcome) -> None:
        """Delete rows `deletable` let through: attachments, history, the database's cascades, one DELETE."""
        if not going:
            return
        going_ids = [row.id for row in going]
        touched = self._touched
        self._note_parents(touched, going, None)
        rollups = self.portal.rollups
        connection = self.session.connection()
        if rollups:  # rows the database deletes or unlinks with these (cascade, set_null), while they are there
            rollups.note_database_deletes(connection, {self.entity.name: set(going_ids)}, touched)
        forget_attachments(self.session, self.entity, going_ids)
        if self.entity.history:  # the many fields, as a single delete records them: their rows go with the DELETE
            many = history.many_values(connection, self.entity, self.model, going_ids)
            self._events += [history.Event(row.id, history.DELETE, {
                **{f.name: (getattr(row, f.name), None) for f in history.recorded_fields(self.entity)
                   if not f.kind.multiple and getattr(row, f.name) is not None},
                **{name: (linked[row.id], None) for name, linked in many.items() if linked.get(row.id)}})
                for row in going]
        recorder = self.portal.history
        if recorder is not None and self.entity.name in recorder.database_deletes.relevant:
            # the rows the database nulls or deletes with these (set_null referrers, cascade children), read first
            for name, events in recorder.database_deletes.events(connection, {self.entity.name: set(going_ids)}).items():
                self._database_events.setdefault(name, []).extend(events)
        self.session.execute(delete(self.table).where(self.table.c.id.in_(going_ids)))
        outcome.done += going_ids

    def _blocking_references(self, ids: list[int]) -> dict[int, str]:
        """id -> why it may not go (records still pointing at it through `on_delete: restrict` links), set-based:
        one GROUP BY per such link; the same wording as a single delete (app/generate/references.py)."""
        from app.i18n import lazy

        counts: dict[int, list[str]] = defaultdict(list)
        for source, f in self.portal.spec.links_to(self.entity.name):
            if f.on_delete != "restrict" or not ids:
                continue
            column = self.portal.models[source.name].__table__.c[f.column_name]
            for target, count in self.session.execute(
                    select(column, func.count()).where(column.in_(ids)).group_by(column)):
                counts[target].append(f"{count} × {lazy(source.label)}")
        return {i: gettext("Cannot delete: %(what)s still refer to this record.", what=", ".join(parts))
                for i, parts in counts.items()}

    # -- after the write: history and rollups ---------------------------------------------------------------
    def _note_parents(self, touched: dict, rows, changed: set | None) -> None:
        """The rollup parents the written rows feed (only through links whose rollups read a changed field)."""
        rollups = self.portal.rollups
        if not rollups:
            return
        for link, names in rollups.watched.get(self.entity.name, {}).items():
            if changed is None or names & changed:
                touched[(self.entity.name, link)].update(getattr(row, link) for row in rows)

    def after_write(self, now) -> None:
        self._after_write(now)

    def _after_write(self, now) -> None:
        """One history INSERT for the rows written and one refresh of the rollups they feed."""
        connection = self.session.connection()
        events, touched = self._events, self._touched
        self._events, self._touched = [], defaultdict(set)
        by_entity = self._database_events
        self._database_events = {}
        by_entity[self.entity.name] = events + by_entity.get(self.entity.name, [])
        for name, entity_events in by_entity.items():  # one INSERT per entity
            history.write_history(connection, self.portal.metadata, self.portal.spec.entity(name), entity_events,
                                  self.viewer.user_id, getattr(self.user, "username", None), at=now, path=self.path)
        if self.portal.notifier is not None:  # event reminders hear of the same events (app/rules/notifications.py)
            self.portal.notifier.on_events(connection, self.entity, events, self.viewer.user_id)
        if touched and self.portal.rollups:
            self.portal.rollups.refresh(connection, touched)


def forget_attachments(session, entity: EntitySpec, ids: list[int]) -> None:
    """Attachments of records a bulk delete removes, as a single delete handles them (kept while the entity keeps
    history, else their rows now and their files once the transaction commits)."""
    from app.generate.attachments import files_of_deleted  # the attachments part owns what a delete does with files

    files_of_deleted(session, entity, ids)


def _reason(refusal) -> str:
    return str(getattr(refusal, "message", refusal))


def id_in(column, ids: list[int], dialect):
    """`column IN (ids)` with the ids as one bound value: a JSON array on SQLite (json_each), an array on PostgreSQL
    (= ANY). SQLAlchemy binds and renders each id of an IN list, which costs more than the database's own work at
    thousands of ids, and SQLite binds at most 32,766 values per statement."""
    if dialect.name == "sqlite":
        return column.in_(select(func.json_each(json.dumps(ids)).table_valued("value").c.value))
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, ids, type_=ARRAY(Integer)))
    return column.in_(ids)


@dataclass
class _Grouped:
    """The rows of a bulk transition as read: raw tuples (id, *names, *feeds), grouped by `row[key]`."""

    names: tuple[str, ...]  # the fields the checks read
    rows: dict  # id -> row
    key: slice  # a row's group: the values of its deciding fields (and its id when each row is alone)
    groups: dict  # group -> ids, in the order asked
    feeds: tuple[str, ...]  # links feeding rollups, after the names
    width: int  # where the feeds start
    converters: list  # per name: raw value -> typed value (None: as it is)
    row_class: type

    def stored(self, row_id: int):
        """The row as the checks read it: its fields by name, typed."""
        values = self.rows[row_id][1:self.width]
        return self.row_class(id=row_id, **{name: value if value is None or convert is None else convert(value)
                                            for name, value, convert in zip(self.names, values, self.converters)})


class StoredRow(SimpleNamespace):
    """A stored row as the checks of a bulk transition see it: the fields they read (RuleStep.edit_reads). Reading a
    field that was not read raises, so a step that reads more than it declares fails instead of reading None."""

    unread: frozenset = frozenset()

    def __getattr__(self, name):
        if name in self.unread:
            raise LookupError(f"{name} was not read for a bulk transition: declare it in the rule step's edit_reads")
        raise AttributeError(name)


def _stored_row_class(entity: EntitySpec, names) -> type:
    return type("StoredRow", (StoredRow,), {"unread": frozenset(f.name for f in entity.fields) - set(names)})
