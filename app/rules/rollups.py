"""Rollup fields (`rollup: {of: Child.link, measure: sum(amount), where: {...}}`), stored on the parent and
kept exact in the transaction that changes a child.

- Forms and the API write through the ORM: a session `after_flush` listener (`install`) notes the parents of
  every child created, deleted, moved (old and new parent) or edited in a field the rollup reads; its
  `after_flush_postexec` partner refreshes them in the same transaction. A `before_flush` listener adds what the
  session cannot know: a moved child's old parent as stored now (read under a lock), and the parents of rows the
  database deletes or unlinks along with a deleted record (`on_delete: cascade` / `set_null`).
- A refresh that would overflow a rollup column, or make a parent break a rule that reads a rollup, raises
  RollupRefused: the write is refused whole (422 / import error / form flash).
- Imports write with core statements: `app/data/importer.py` calls `Rollups.refresh` once after the rows are
  written, with the parents of the written rows and the old parents of the rows it updated.
- `flask --app run portal recompute [Entity]` rebuilds every value (`Rollups.recompute`); at start
  `fill_new_rollups` rebuilds the rollups whose definition changed (fingerprints in `portal_rollups`).

A refresh is one `UPDATE parent SET f = (SELECT coalesce(agg, 0) FROM child WHERE child.link_id = parent.id
AND where...) WHERE parent.id IN (...)` per rollup and chunk of parent ids, never rows in Python. Then the
parent's formulas that read a rollup (budget_left = budget - labour_cost) are computed again for those parents
(`ExpressionStep`'s compiled formulas and `fit_formula_value`), and a rollup that reads a field changed that way
(a grandparent's rollup over the parent) is refreshed in turn. The maintenance statements set neither
row_version (a user's open form stays valid) nor changed_on/changed_by (nobody edited the parent).
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from decimal import Decimal
from itertools import chain

from flask_babel import gettext
from sqlalchemy import bindparam, event, func, inspect, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.i18n import current_locale, lazy
from app.rules.flushes import CHUNK, chunks, link_ids_in_history, link_values
from app.rules.record_rules import fit_formula_value
from app.rules.filters import context_for, table_conditions
from app.schema.spec import EntitySpec, FieldSpec, PortalSpec

log = logging.getLogger(__name__)


MAX_DEPTH = 32  # rollups over rollups (a tree of records): stop rather than loop on a cycle of entities
UNTOUCHED = ("changed_on", "changed_by_id")  # set to themselves: their onupdate must not fire
TOUCHED_KEY = "portal_rollup_parents"  # session.info: (child entity, link) -> parent ids, between the two events
WRITTEN_KEY = "portal_rollup_readers"  # session.info: entity -> ids of edited records whose formulas read a rollup


class RollupRefused(SQLAlchemyError):
    """A child write whose effect on a parent's rollups is refused whole: the API answers 422 with the message, an
    import reports it, a form flashes it. Nothing is stored: the transaction is rolled back."""


class RollupOverflow(RollupRefused):
    """The write would make a rollup larger than its column holds."""

    def __init__(self, entity: EntitySpec, f: FieldSpec) -> None:
        super().__init__(f"{entity.name}.{f.name} overflows")
        self.entity, self.field = entity, f

    def __str__(self) -> str:
        return gettext("This change would make %(field)s of %(entity)s larger than the field can hold.",
                       field=str(lazy(self.field.label)) or self.field.name,
                       entity=str(lazy(self.entity.label)) or self.entity.name)


class ParentRuleRefused(RollupRefused):
    """The write would make a parent break one of its `rules:` that reads a rollup (spent <= limit)."""

    def __init__(self, entity: EntitySpec, rule) -> None:
        super().__init__(f"{entity.name}: {rule.message.get('en')}")
        self.entity, self.rule = entity, rule

    def __str__(self) -> str:
        return gettext("%(entity)s: %(message)s", entity=str(lazy(self.entity.label)) or self.entity.name,
                       message=self.rule.message.get(current_locale()))


class Rollups:
    """One portal's rollups, worked out once from the spec: which child links feed which parent fields."""

    def __init__(self, spec: PortalSpec, models: dict) -> None:
        self.spec, self.models = spec, models
        self.entity_of_model = {model: name for name, model in models.items()}
        # child entity -> link field -> [(parent entity, rollup field)]
        self.feeds: dict[str, dict[str, list[tuple[EntitySpec, FieldSpec]]]] = defaultdict(lambda: defaultdict(list))
        # child entity -> link field -> attribute names whose change may change a rollup over that link
        self.watched: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for parent in spec.entities:
            for f in parent.fields:
                if f.rollup is None:
                    continue
                child = spec.entity(f.rollup.child)
                self.feeds[child.name][f.rollup.link].append((parent, f))
                watched = self.watched[child.name][f.rollup.link]
                for name in f.rollup.fields_read:
                    watched.update({name, child.field(name).column_name})
        self.dependent = {e.name: _formulas_after_rollups(e) for e in spec.entities}
        # entity -> its `rules:` that read a rollup (or a formula over one): checked again when a child changes it
        self.rules = {e.name: _rules_after_rollups(e, self.dependent[e.name]) for e in spec.entities}
        # entity -> [(child entity, link field, on_delete)]: what the database itself changes when a row goes
        self.database_deletes: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for child in spec.entities:
            for f in child.fields:
                if f.stores_link and not f.kind.to_users and f.on_delete in ("cascade", "set_null"):
                    self.database_deletes[f.to].append((child.name, f.name, f.on_delete))
        self._statements: dict = {}

    def __bool__(self) -> bool:
        return bool(self.feeds)

    # -- the ORM path: gather touched parents at flush, refresh them after it -------------------------------
    def gather(self, session, flush_context=None) -> None:
        """after_flush: the parents whose rollups the flushed children change (pre-flush history is still there)."""
        touched = session.info.setdefault(TOUCHED_KEY, defaultdict(set))
        created_or_deleted = {id(obj) for obj in chain(session.new, session.deleted)}  # not every object hashes
        for obj in session.dirty:
            # an edited record computed its rollup-reading formulas (and checked such rules) from the rollups it
            # loaded, which a child written meanwhile by another transaction may have changed: again after the flush
            name = self.entity_of_model.get(type(obj))
            if name and (self.dependent.get(name) or self.rules.get(name)) and session.is_modified(obj):
                session.info.setdefault(WRITTEN_KEY, defaultdict(set))[name].add(obj.id)
        for obj in chain(session.new, session.dirty, session.deleted):
            name = self.entity_of_model.get(type(obj))
            links = self.watched.get(name) if name else None
            if not links:
                continue
            attrs = inspect(obj).attrs
            for link, names in links.items():
                if id(obj) not in created_or_deleted and not any(attrs[n].history.has_changes() for n in names):
                    continue
                column = self.spec.entity(name).field(link).column_name
                touched[(name, link)].update(link_ids_in_history(obj, link, column))

    def before_flush(self, session, flush_context=None, instances=None) -> None:
        """Note, before the flush writes, the parents the session cannot know:
        - a moved child's old parent as stored now, read under a lock on the child (another transaction, an import
          say, may have moved it since this session loaded it);
        - the parents of rows the database deletes (`on_delete: cascade`, at any depth) or unlinks (`set_null` on a
          field a rollup reads) along with the deleted records, while those rows are still there."""
        touched = session.info.setdefault(TOUCHED_KEY, defaultdict(set))
        moved = defaultdict(set)
        for obj in session.dirty:
            name = self.entity_of_model.get(type(obj))
            links = self.watched.get(name) if name else None
            if not links or obj.id is None:
                continue
            attrs = inspect(obj).attrs
            for link in links:
                column = self.spec.entity(name).field(link).column_name
                if attrs[column].history.has_changes() or attrs[link].history.has_changes():
                    moved[(name, link)].add(obj.id)
        for (name, link), ids in moved.items():
            touched[(name, link)] |= self.linked_ids(session.connection(), name, link, ids, lock=True)
        deleted = defaultdict(set)
        for obj in session.deleted:
            name = self.entity_of_model.get(type(obj))
            if name in self.database_deletes and obj.id is not None:
                deleted[name].add(obj.id)
        if deleted:
            self.note_database_deletes(session.connection(), deleted, touched)

    def note_database_deletes(self, connection, deleted: dict, touched: dict) -> None:
        """Add to `touched` the rollup parents of the rows the database changes when the `deleted` rows
        (entity -> ids) go."""
        for _ in range(MAX_DEPTH):
            going = defaultdict(set)
            for name, ids in deleted.items():
                for child, link, on_delete in self.database_deletes.get(name, ()):
                    for rollup_link, names in self.watched.get(child, {}).items():
                        # link == rollup_link: the parents are the deleted rows themselves
                        if link != rollup_link and (on_delete == "cascade" or link in names):
                            found = self._linked_through(connection, child, link, rollup_link, ids)
                            touched[(child, rollup_link)].update(found)
                    if on_delete == "cascade":
                        going[child] |= self._linked_through(connection, child, link, None, ids)
            deleted = going
            if not deleted:
                break

    def _linked_through(self, connection, entity_name: str, link: str, wanted: str | None, ids) -> set:
        """Distinct `wanted` link values (None: ids) of the `entity_name` rows whose `link` is one of `ids`."""
        entity, table = self.spec.entity(entity_name), self.models[entity_name].__table__
        by = table.c[entity.field(link).column_name]
        column = table.c.id if wanted is None else table.c[entity.field(wanted).column_name]
        found = set()
        for part in chunks(sorted(ids)):
            found.update(connection.scalars(select(column).where(by.in_(part), column.isnot(None)).distinct()))
        return found

    def after_flush(self, session, flush_context=None) -> None:
        """after_flush_postexec: refresh what `gather` noted, in the flush's transaction; expire stale attributes."""
        touched, written = session.info.pop(TOUCHED_KEY, None), session.info.pop(WRITTEN_KEY, None)
        if touched or written:
            changed = self.refresh(session.connection(), touched or {}, written)
            _expire(session, self.models, changed)

    # -- refresh a set of parents --------------------------------------------------------------------------------
    def refresh(self, connection, touched: dict, written: dict | None = None) -> dict[str, tuple[set, set]]:
        """Bring the rollups fed by (child entity, link) -> parent ids up to date, then the parents' formulas that
        read them (and those of the `written` records, entity -> ids), then rollups over those parents in turn.
        Returns entity -> (ids, fields written)."""
        changed: dict[str, tuple[set, set]] = {}
        for _ in range(MAX_DEPTH):
            by_parent: dict[str, tuple[set, set]] = defaultdict(lambda: (set(), set()))
            for name, ids in (written or {}).items():
                for part in chunks(sorted(ids)):
                    self._lock(connection, self.spec.entity(name), part)
                by_parent[name][0].update(ids)
            written = None
            for (child, link), ids in touched.items():
                for parent, f in self.feeds.get(child, {}).get(link, ()):
                    ids_now = {i for i in ids if i is not None}
                    if not ids_now:
                        continue
                    for part in chunks(sorted(ids_now)):
                        self._lock(connection, parent, part)
                        self._execute_fitting(connection, parent, f, self._update(parent, f), {"ids": part})
                    parent_ids, fields = by_parent[parent.name]
                    parent_ids |= ids_now
                    fields.add(f.name)
            if not by_parent:
                break
            touched = defaultdict(set)
            for parent_name, (ids, fields) in by_parent.items():
                fields |= self._formulas(connection, parent_name, ids, enforce=True)[0]
                done_ids, done_fields = changed.setdefault(parent_name, (set(), set()))
                done_ids |= ids
                done_fields |= fields
                # rollups over this parent that read a field just written: their parents are touched next
                for link, names in self.watched.get(parent_name, {}).items():
                    if names & fields:
                        touched[(parent_name, link)] |= self.linked_ids(connection, parent_name, link, ids)
            if not touched:
                break
        return changed

    def recompute(self, connection, entity_name: str | set | None = None) -> list[tuple[str, str, int]]:
        """Rebuild every rollup (of one entity and the rollups over it, or all), children's before their parents',
        then the formulas that read them. Rollups that read their own entity, directly or round a chain of entities
        (a tree's subtotals), are worked out again until nothing changes: each pass settles one more level.
        Returns (entity, field, rows) per statement of the first pass."""
        order = self._parents_in_order(entity_name)
        cyclic = any(self.spec.entity(f.rollup.child) in order[i:]  # a child not before its parent
                     for i, parent in enumerate(order) for f in parent.fields if f.rollup is not None)
        done = []
        for rounds in range(MAX_DEPTH):
            changed = 0
            for parent in order:
                table = self.models[parent.name].__table__
                for f in (f for f in parent.fields if f.rollup is not None):
                    result = self._execute_fitting(connection, parent, f,
                                                   self._update(parent, f, every_row=True, only_changed=rounds > 0))
                    changed += result.rowcount
                    if not rounds:
                        done.append((parent.name, f.name, result.rowcount))
                formulas = self.dependent[parent.name]
                if formulas:
                    last = 0
                    while True:  # every parent, a chunk at a time
                        ids = list(connection.scalars(select(table.c.id).where(table.c.id > last)
                                                      .order_by(table.c.id).limit(CHUNK)))
                        if not ids:
                            break
                        changed += self._formulas(connection, parent.name, ids)[1]
                        last = ids[-1]
                    if not rounds:
                        done.extend((parent.name, f.name, connection.scalar(select(func.count()).select_from(table)))
                                    for f in formulas)
            if not cyclic or (rounds and not changed):
                break
        else:
            log.warning("rollups: still changing after %d rounds (deeper than MAX_DEPTH?)", MAX_DEPTH)
        return done

    def _execute_fitting(self, connection, parent: EntitySpec, f: FieldSpec, statement, parameters=None):
        """Run a rollup UPDATE; RollupOverflow when a value does not fit the column. PostgreSQL refuses it itself
        (numeric/integer out of range); SQLite would store it, so the rows are looked at after the statement."""
        try:
            result = connection.execute(statement, parameters)
        except DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) == "22003":
                raise RollupOverflow(parent, f) from None
            raise
        limit = _largest(f)
        if limit is not None and connection.dialect.name != "postgresql":
            column = self.models[parent.name].__table__.c[f.name]
            check = select(column).where(func.abs(column) > limit)
            if parameters and "ids" in parameters:
                check = check.where(column.table.c.id.in_(parameters["ids"]))
            if connection.execute(check.limit(1)).first() is not None:
                raise RollupOverflow(parent, f)
        return result

    def _parents_in_order(self, entity_name: str | set | None) -> list[EntitySpec]:
        """Entities with rollups, children's before their parents'; with `entity_name` (or a set of names), that
        entity's and those of every entity whose rollups read it (grandparents too)."""
        parents = [e for e in self.spec.entities if any(f.rollup is not None for f in e.fields)]
        order: list[EntitySpec] = []

        def visit(entity, trail):
            if entity in order or entity.name in trail:
                return
            for f in entity.fields:
                if f.rollup is not None:
                    child = self.spec.entity(f.rollup.child)
                    if child in parents:
                        visit(child, trail | {entity.name})
            order.append(entity)

        for parent in parents:
            visit(parent, frozenset())
        if entity_name is None:
            return order
        given = {entity_name} if isinstance(entity_name, str) else set(entity_name)
        wanted = set(given)
        for _ in range(len(parents)):  # every entity whose rollups read one already wanted
            wanted |= {p.name for p in parents if any(f.rollup is not None and f.rollup.child in wanted for f in p.fields)}
        return [e for e in order if e.name in wanted]

    # -- statements ----------------------------------------------------------------------------------------------
    def _update(self, parent: EntitySpec, f: FieldSpec, every_row: bool = False, only_changed: bool = False):
        """UPDATE parent SET f = (aggregate over its children) [WHERE id IN :ids] [AND f differs], built once per
        field."""
        key = (parent.name, f.name, every_row, only_changed)
        if key not in self._statements:
            table = self.models[parent.name].__table__
            statement = table.update().values({f.name: self._aggregate(parent, f), **{c: table.c[c] for c in UNTOUCHED}})
            if not every_row:
                statement = statement.where(table.c.id.in_(bindparam("ids", expanding=True)))
            if only_changed:
                statement = statement.where(table.c[f.name].is_distinct_from(self._aggregate(parent, f)))
            self._statements[key] = statement
        return self._statements[key]

    def _aggregate(self, parent: EntitySpec, f: FieldSpec):
        rollup = f.rollup
        child = self.spec.entity(rollup.child)
        child_table = self.models[child.name].__table__.alias("rollup_child")  # the parent's own table, for a tree
        parent_table = self.models[parent.name].__table__
        if rollup.function == "count":
            value = func.count()
        else:
            value = getattr(func, rollup.function)(child_table.c[child.field(rollup.field).column_name])
            if f.kind.numeric and not f.kind.whole and rollup.function in ("sum", "avg"):
                value = func.round(value, f.scale)  # the column's scale, as a formula's value is fitted
        link = child_table.c[child.field(rollup.link).column_name]
        conditions = table_conditions(child, child_table.c, rollup.where, context_for(None))
        subquery = select(value).where(link == parent_table.c.id, *conditions).scalar_subquery()
        return func.coalesce(subquery, 0) if rollup.function == "sum" else subquery

    def _lock(self, connection, parent: EntitySpec, ids: list) -> None:
        """PostgreSQL: lock the parents (in id order) before the UPDATE. In READ COMMITTED an UPDATE that waited
        for another transaction's lock on the row still aggregates with the snapshot it started with, and would miss
        that transaction's child; a statement after the lock gets a new snapshot that has it. FOR NO KEY UPDATE:
        the child's foreign key already holds a KEY SHARE lock on the parent, which FOR UPDATE would deadlock on."""
        if connection.dialect.name == "postgresql":
            table = self.models[parent.name].__table__
            connection.execute(select(table.c.id).where(table.c.id.in_(ids)).order_by(table.c.id).with_for_update(key_share=True))

    def linked_ids(self, connection, entity_name: str, link: str, ids, lock: bool = False) -> set:
        """The distinct records these rows of `entity_name` link to through `link`. lock: first lock the rows until
        the transaction ends, so that what is read is what the transaction's write replaces."""
        table = self.models[entity_name].__table__
        return link_values(connection, table, table.c[self.spec.entity(entity_name).field(link).column_name], ids, lock)

    def _formulas(self, connection, entity_name: str, ids, enforce: bool = False) -> tuple[set[str], int]:
        """Compute the entity's formulas that read a rollup for these rows again; returns the fields written and the
        number of rows whose values changed. enforce: a row that now breaks one of the entity's rules reading a
        rollup raises ParentRuleRefused (a write path; `portal recompute` only tells the truth)."""
        formulas, rules = self.dependent[entity_name], self.rules[entity_name] if enforce else ()
        if not (formulas or rules):
            return set(), 0
        entity = self.spec.entity(entity_name)
        names, read, write = self._formula_statements(entity, formulas)
        linked = _LinkedValues(self, connection, entity)
        writes = []
        for part in chunks(sorted(ids)):
            for row in connection.execute(read, {"ids": part}):
                values = dict(zip(names, row[1:]))
                new = {}

                def get(path, values=values, new=new):
                    value = new[path[0]] if path[0] in new else values.get(path[0])
                    return value if len(path) == 1 or value is None else linked(path[0], value, path[1])
                for f in formulas:  # in dependency order
                    new[f.name] = fit_formula_value(f, f.formula.run(get))
                for rule in rules:  # null is not a refusal, as in ExpressionStep
                    if rule.check.run(get) is False:
                        raise ParentRuleRefused(entity, rule)
                if any(new[n] != values.get(n) for n in new):
                    writes.append({"_id": row[0], **{f"_{n}": v for n, v in new.items()}})
        if writes:
            connection.execute(write, writes)
        return {f.name for f in formulas}, len(writes)


    def _formula_statements(self, entity: EntitySpec, formulas):
        """(field names, SELECT id + their columns WHERE id IN :ids, UPDATE of the formulas by id), built once."""
        key = ("formulas", entity.name)
        if key not in self._statements:
            table = self.models[entity.name].__table__
            names = [f.name for f in entity.fields if not f.kind.multiple]
            read = select(table.c.id, *(table.c[entity.field(n).column_name] for n in names)).where(
                table.c.id.in_(bindparam("ids", expanding=True)))
            write = table.update().where(table.c.id == bindparam("_id")).values(
                {f.name: bindparam(f"_{f.name}") for f in formulas} | {c: table.c[c] for c in UNTOUCHED})
            self._statements[key] = (names, read, write)
        return self._statements[key]


class _LinkedValues:
    """`link.field` of a formula, read with one SELECT per linked record (memoized for the refresh)."""

    def __init__(self, rollups: Rollups, connection, entity: EntitySpec) -> None:
        self.rollups, self.connection, self.entity, self.memo = rollups, connection, entity, {}

    def __call__(self, link: str, record_id, name: str):
        f = self.entity.field(link)
        key = (f.to, record_id)
        if key not in self.memo:
            table = self.rollups.models[f.to].__table__
            row = self.connection.execute(select(table).where(table.c.id == record_id)).mappings().first()
            self.memo[key] = dict(row) if row is not None else {}
        target = self.rollups.spec.entity(f.to)
        return self.memo[key].get(target.field(name).column_name) if name in target.field_names else None


def _largest(f: FieldSpec):
    """The largest absolute value the rollup's column holds, when a rollup may exceed it (None: it cannot, or a date)."""
    if f.rollup.function == "count" or not f.kind.numeric:
        return None
    if f.kind.whole:
        return 2**31 - 1  # PostgreSQL INTEGER, as app/fieldtypes/numbers.py
    return Decimal(10) ** (f.precision - f.scale) - Decimal(1).scaleb(-f.scale)


def _formulas_after_rollups(entity: EntitySpec) -> tuple[FieldSpec, ...]:
    """The entity's formulas that read a rollup field, directly or through another formula, in dependency order."""
    inputs = {f.name for f in entity.fields if f.rollup is not None}
    dependent = []
    for f in entity.formulas:
        if any(len(path) == 1 and path[0] in inputs for path in f.formula.names):
            dependent.append(f)
            inputs.add(f.name)
    return tuple(dependent)


def _rules_after_rollups(entity: EntitySpec, dependent) -> tuple:
    """The entity's `rules:` that read a rollup field or a formula over one."""
    inputs = {f.name for f in entity.fields if f.rollup is not None} | {f.name for f in dependent}
    return tuple(rule for rule in entity.rules if any(path[0] in inputs for path in rule.check.names))


def _expire(session, models: dict, changed: dict) -> None:
    """Parents loaded in the session forget the values the statements replaced (read again on next access)."""
    wanted = {models[name]: (ids, fields) for name, (ids, fields) in changed.items()}
    for (model, pk, _), obj in list(session.identity_map.items()):
        entry = wanted.get(model)
        if entry is not None and pk[0] in entry[0]:
            session.expire(obj, list(entry[1]))


def install(session, portal) -> None:
    """Keep `portal`'s rollups on every ORM flush of `session` (the app's own scoped session)."""
    rollups = Rollups(portal.spec, portal.models)
    portal.rollups = rollups
    if rollups:
        event.listen(session, "before_flush", rollups.before_flush)
        event.listen(session, "after_flush", rollups.gather)
        event.listen(session, "after_flush_postexec", rollups.after_flush)


def fill_new_rollups(engine, portal) -> None:
    """Start-up (under the start-up lock): compute once, with the formulas that read them, the rollups whose stored
    values may not match their definition: a rollup column just added to an existing table (it starts empty), one
    whose definition (of, measure, where, column type) changed since the values were computed, or one not known to
    have been kept (no fingerprint: an older database, or a field that was not a rollup for a while). The
    fingerprints are kept in `portal_rollups`."""
    rollups = portal.rollups
    if not rollups:
        return
    from app.generate.models import rollups_table

    table = rollups_table(portal.metadata)
    added = set(portal.schema_changes)
    fingerprints = {(e.name, f.name): _fingerprint(f) for e in rollups.spec.entities for f in e.fields if f.rollup}
    with engine.begin() as connection:
        stored = {(entity, field): definition for entity, field, definition in connection.execute(
            select(table.c.entity, table.c.field, table.c.definition))}
        stale = {entity for (entity, field), definition in fingerprints.items()
                 if stored.get((entity, field)) != definition
                 and f"created table {rollups.spec.entity(entity).table}" not in added}  # a new table is empty
        if stale:
            for name, field, rows in rollups.recompute(connection, stale):
                log.info("rollups: computed %s.%s for %d records", name, field, rows)
        if stored != fingerprints:
            connection.execute(table.delete().where(table.c.entity.in_([e.name for e in rollups.spec.entities])))
            connection.execute(table.insert(), [{"entity": entity, "field": field, "definition": definition}
                                                for (entity, field), definition in fingerprints.items()])


def _fingerprint(f: FieldSpec) -> str:
    """What the stored values of a rollup field depend on."""
    r = f.rollup
    text = repr((r.child, r.link, r.function, r.field, r.where, f.type, f.precision, f.scale))
    return hashlib.sha256(text.encode()).hexdigest()
