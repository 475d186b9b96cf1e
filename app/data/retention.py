"""Retention: apply the entities' `retention:` policies (checked by app/schema/retention.py).

`flask --app run portal retention [--dry-run]` and the worker's daily "retention" pass call `run_retention`. Each
policy selects the records whose `from` field is at least `age` old and that match `when`, in id order, a chunk of
CHUNK records at a time, each chunk in its own transaction (a run over a million records never holds one long
transaction, and what is done stays done if the run stops):

- **anonymize**: one UPDATE per chunk sets each field to its replacement (`replacement` in app/schema/retention.py:
  empty, a placeholder, or `anon-<id>`), empties formula fields that read one of them, removes many fields' links
  and file fields' attachments (rows now, files once the chunk commits), and rewrites the fields' old and new
  values in the records' history to null. Records already anonymized are not selected again (the count is of
  records that change).
- **delete**: as a bulk delete (app/rules/bulk_actions.py `BulkAction`): records still pointed at by a `restrict`
  link (or locked by a workflow) are refused and reported, not forced; cascades, set-null links, history, rollups
  and attachments behave as for any delete.
- **archive**: the records that may be deleted are first copied into `<table>_archive` (the live table's columns;
  no constraints, so an id may appear twice if SQLite reuses a deleted id), then deleted as above. Many-field links
  are not archived.

The dry run selects and checks exactly as the real run does (the same condition, counted at once for anonymize;
for delete and archive the same chunks and refusal checks) and writes nothing, so its counts are what a real run at
the same moment touches.
"""
from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import json
import logging
from decimal import Decimal

from sqlalchemy import (Column, Date, DateTime, Index, MetaData, String, Table, Text, and_, cast, delete, exists,
                        func, insert, literal, not_, select, text, update)
from sqlalchemy.exc import IntegrityError

from app.schema.retention import ARCHIVE_SUFFIX, Replacement, RetentionSpec, replacement
from app.schema.spec import EntitySpec

log = logging.getLogger(__name__)

CHUNK = 1_000
RUNS_TABLE = "portal_retention_runs"
SHOWN_REFUSALS = 20  # refused records listed per policy (the count covers all)


def runs_table(metadata: MetaData) -> Table:
    """One row per day a scheduled run started: the claim that keeps several workers from running it twice."""
    if RUNS_TABLE in metadata.tables:
        return metadata.tables[RUNS_TABLE]
    return Table(RUNS_TABLE, metadata,
                 Column("day", Date, primary_key=True),
                 Column("started_at", DateTime, nullable=False),
                 Column("finished_at", DateTime),
                 Column("summary", Text))


def archive_table_name(entity: EntitySpec) -> str:
    return entity.table + ARCHIVE_SUFFIX


def retention_tables(spec, metadata: MetaData) -> None:
    """The runs table, and `<table>_archive` for each entity with an archive policy: the live table's columns
    (all nullable, no keys or constraints; an index on id), so additive start-up migrations keep it in step."""
    runs_table(metadata)
    for entity in spec.entities:
        if not any(p.action == "archive" for p in entity.retention):
            continue
        name = archive_table_name(entity)
        if name in metadata.tables:
            continue
        live = metadata.tables[entity.table]
        # "ixa_": a prefix no generated index uses (ix_<table>_archive_id could be a field archive_id's index)
        Table(name, metadata, *[Column(c.name, c.type, nullable=True) for c in live.columns],
              Index(f"ixa_{entity.table}", "id"))


# -- when ----------------------------------------------------------------------------------------------------------

def cutoff(now: dt.datetime, policy: RetentionSpec) -> dt.datetime:
    """`now` minus the policy's age, in calendar terms (5y from 29 Feb is 28 Feb; 1m from 31 Mar is 28/29 Feb)."""
    if policy.unit == "d":
        return now - dt.timedelta(days=policy.amount)
    months = policy.amount * (12 if policy.unit == "y" else 1)
    years, month0 = divmod(now.month - 1 - months, 12)
    year, month = now.year + years, month0 + 1
    return now.replace(year=year, month=month, day=min(now.day, calendar.monthrange(year, month)[1]))


def _plain_value(f, value):
    """A placeholder as the column's Python type."""
    if f.type == "date":
        return dt.date.fromisoformat(value)
    if f.type == "datetime":
        return dt.datetime.fromisoformat(value)
    if f.type == "decimal":
        return Decimal(str(value))
    return value


@dataclasses.dataclass
class PolicyResult:
    entity: str
    index: int                      # the policy's place in the entity's list (from 1)
    policy: RetentionSpec
    touched: int = 0
    refused: int = 0
    reasons: list = dataclasses.field(default_factory=list)  # (id, reason) of the first SHOWN_REFUSALS refused

    def as_dict(self) -> dict:
        return {"entity": self.entity, "policy": self.index, "action": self.policy.action, "age": self.policy.age,
                "from": self.policy.from_field, "touched": self.touched, "refused": self.refused,
                "refusals": [{"id": i, "reason": r} for i, r in self.reasons]}


class PolicyRun:
    """One policy of one entity: its selection, and its action chunk by chunk."""

    def __init__(self, portal, session, entity: EntitySpec, index: int, policy: RetentionSpec, now: dt.datetime):
        self.portal, self.session, self.entity, self.policy = portal, session, entity, policy
        self.model = portal.models[entity.name]
        self.table = self.model.__table__
        self.result = PolicyResult(entity.name, index, policy)
        self.now = now
        self._dialect = session.get_bind().dialect
        self.where = self._selection()

    # -- selection -------------------------------------------------------------------------------------
    def _selection(self):
        from app.rules.filters import context_for, filter_clause

        policy, entity = self.policy, self.entity
        column = getattr(self.model, entity.field(policy.from_field).column_name) \
            if policy.from_field in entity.field_names else getattr(self.model, policy.from_field)
        limit = cutoff(self.now, policy)
        is_date = policy.from_field in entity.field_names and not entity.field(policy.from_field).kind.has_time
        clauses = [column.isnot(None), column <= (limit.date() if is_date else limit)]
        if policy.when:
            clauses.append(filter_clause(self.portal.spec, self.portal.models, entity.name, policy.when,
                                         context_for(None)))
        if policy.action == "anonymize":
            clauses.append(not_(and_(*self._already_anonymized())))
        return and_(*clauses)

    def replacements(self) -> list[tuple]:
        """(field, Replacement) of each field to anonymize, and the formula fields that read them (emptied)."""
        grouped = {name for group in self.entity.unique_together for name in group}
        found = [(self.entity.field(name), replacement(self.entity.field(name), name in grouped))
                 for name in self.policy.fields]
        names = set(self.policy.fields)
        found += [(f, Replacement("null")) for f in self.entity.formulas
                  if f.name not in names and {path[0] for path in f.formula.names} & names]
        return found

    def _token(self, pattern: str):
        before, _, after = pattern.partition("{id}")
        return literal(before) + cast(self.table.c.id, String) + literal(after)

    def _new_value(self, f, rule: Replacement):
        if rule.kind == "token":
            return self._token(rule.value)
        if rule.kind == "value":
            return literal(_plain_value(f, rule.value), type_=self.table.c[f.column_name].type)
        return None

    def _extra_columns(self, f) -> list[str]:
        """Columns that hold parts of the field's value (an address's parsed parts), emptied with it."""
        if not f.kind.siblings:
            return []
        return [f.name + part for part in f.kind.derive(f, None) if f.name + part in self.table.c]

    def _already_anonymized(self) -> list:
        """One condition per anonymized column that holds when it already has its replacement."""
        conditions = []
        for f, rule in self.replacements():
            if rule.kind == "clear":
                link = self.model.__mapper__.relationships[f.name].secondary
                conditions.append(~exists(select(link.c.left_id).where(link.c.left_id == self.table.c.id)))
                continue
            column = self.table.c[f.column_name]
            value = self._new_value(f, rule)
            conditions.append(column.is_(None) if value is None else and_(column.isnot(None), column == value))
            conditions += [self.table.c[name].is_(None) for name in self._extra_columns(f)]
        return conditions

    def ids(self, after: int, lock: bool) -> list[int]:
        """The next chunk of selected ids after `after` (locked for this transaction on PostgreSQL when `lock`)."""
        query = select(self.table.c.id).select_from(self.model).where(self.where, self.table.c.id > after) \
            .order_by(self.table.c.id).limit(CHUNK)
        if lock and self._dialect.name == "postgresql":
            query = query.with_for_update(of=self.table)
        return list(self.session.execute(query).scalars())

    # -- actions ---------------------------------------------------------------------------------------
    def count(self) -> int:
        """How many records the selection holds now (anonymize's dry run: it touches every one of them)."""
        try:
            return self.session.scalar(select(func.count()).select_from(self.model).where(self.where))
        finally:
            self.session.rollback()

    def run(self, dry_run: bool, stopping=lambda: False) -> PolicyResult:
        if dry_run and self.policy.action == "anonymize":
            self.result.touched = self.count()
            return self.result
        after = 0
        action = None
        if self.policy.action in ("delete", "archive"):
            from app.rules.access import system_viewer
            from app.rules.bulk_actions import BulkAction, BulkOutcome

            action = BulkAction(self.portal, self.session, system_viewer(), self.entity, may_delete=True)
            action.path = "retention"
        while not stopping():
            try:
                ids = self.ids(after, lock=not dry_run)
                if not ids:
                    self.session.rollback()
                    break
                after = ids[-1]
                if action is None:
                    self.result.touched += self._anonymize(ids)
                else:
                    outcome = BulkOutcome()
                    going = action.deletable(ids, outcome)
                    self._refused(outcome.refused)
                    if not dry_run and going:
                        if self.policy.action == "archive":
                            self._archive([row.id for row in going])
                        from app.rules import history

                        with history.writing_as("retention"):
                            action.delete_rows(going, outcome)
                            action.after_write(self.now)
                    self.result.touched += len(going)
                if dry_run:
                    self.session.rollback()
                else:
                    self.session.commit()
            except Exception:
                self.session.rollback()
                raise
        return self.result

    def _refused(self, refused: list) -> None:
        self.result.refused += len(refused)
        room = SHOWN_REFUSALS - len(self.result.reasons)
        self.result.reasons += refused[:max(room, 0)]

    def _id_in(self, column, ids: list[int]):
        """`column IN (ids)` with the ids bound as one value (bulk_actions.id_in: no IN list of a thousand binds)."""
        from app.rules.bulk_actions import id_in

        return id_in(column, ids, self._dialect)

    def _archive(self, ids: list[int]) -> None:
        archive = self.portal.metadata.tables[archive_table_name(self.entity)]
        names = [c.name for c in self.table.columns]
        self.session.execute(insert(archive).from_select(
            names, select(*[self.table.c[n] for n in names]).where(self._id_in(self.table.c.id, ids))))

    def _anonymize(self, ids: list[int]) -> int:
        """The chunk's fields replaced, in one UPDATE (plus link rows, attachments and history)."""
        from app.generate.attachments import drop_after_commit

        connection = self.session.connection()
        values, cleared, files, history_fields = {}, [], [], []
        for f, rule in self.replacements():
            history_fields.append(f.name)
            if rule.kind == "clear":
                cleared.append(self.model.__mapper__.relationships[f.name].secondary)
                continue
            values[f.column_name] = self._new_value(f, rule)
            values.update({name: None for name in self._extra_columns(f)})
            if f.files is not None:
                files.append(f.column_name)
        chosen = and_(self._id_in(self.table.c.id, ids), self.where)  # the selection again: a record changed since is left
        touched = list(connection.execute(select(self.table.c.id).where(chosen)).scalars())
        if not touched:
            return 0
        touched_rollups = self._rollup_parents(connection, touched)
        attachment_ids = [i for column in files for i in connection.execute(
            select(self.table.c[column]).where(self._id_in(self.table.c.id, touched), self.table.c[column].isnot(None))).scalars()]
        version = self.table.c.get("row_version")
        if version is not None:
            values["row_version"] = version + 1
        connection.execute(update(self.table).where(self._id_in(self.table.c.id, touched)).values(**values))
        for link in cleared:
            connection.execute(delete(link).where(self._id_in(link.c.left_id, touched)))
        if attachment_ids:
            attachments = self.portal.metadata.tables["portal_attachments"]
            shas = list(connection.execute(select(attachments.c.sha256).where(attachments.c.id.in_(attachment_ids))).scalars())
            connection.execute(delete(attachments).where(attachments.c.id.in_(attachment_ids)))
            drop_after_commit(self.session, shas)
        self._rewrite_history(connection, touched, history_fields)
        if touched_rollups:
            self.portal.rollups.refresh(connection, touched_rollups)
        return len(touched)

    def _rollup_parents(self, connection, ids: list[int]) -> dict:
        """Parents whose rollups read an anonymized field of these records: refreshed after the UPDATE."""
        rollups = self.portal.rollups
        if not rollups:
            return {}
        names = set(self.policy.fields)
        found = {}
        for link, read in rollups.watched.get(self.entity.name, {}).items():
            if read & names:
                column = self.table.c[self.entity.field(link).column_name]
                found[(self.entity.name, link)] = set(connection.execute(
                    select(column).where(self._id_in(self.table.c.id, ids), column.isnot(None))).scalars())
        return {key: value for key, value in found.items() if value}

    def _rewrite_history(self, connection, ids: list[int], names: list[str]) -> None:
        """Old and new values of `names` in these records' history become null (the entries stay: who changed
        the field when)."""
        if not self.entity.history or not names:
            return
        if self._dialect.name == "postgresql":
            connection.execute(text(
                "UPDATE portal_history SET changes = (SELECT jsonb_object_agg(key, CASE WHEN key = ANY(:names) "
                "THEN '[null, null]'::jsonb ELSE value END) FROM jsonb_each(changes::jsonb))::text "
                "WHERE entity = :entity AND record_id = ANY(:ids) AND changes::jsonb ?| CAST(:names AS text[])"),
                {"names": names, "entity": self.entity.name, "ids": ids})
            return
        paths = ", ".join(f"'$.\"{name}\"', json('[null,null]')" for name in names)  # names: [a-z0-9_] (checked)
        has_any = " OR ".join(f"json_type(changes, '$.\"{name}\"') IS NOT NULL" for name in names)
        connection.execute(text(
            f"UPDATE portal_history SET changes = json_replace(changes, {paths}) "
            f"WHERE entity = :entity AND record_id IN (SELECT value FROM json_each(:ids)) AND ({has_any})"),
            {"entity": self.entity.name, "ids": json.dumps(ids)})


def run_retention(app, dry_run: bool, trigger: str = "cli", stopping=lambda: False) -> list[PolicyResult]:
    """Every policy of every entity, in schema order; each policy's outcome in the audit log (one entry each)."""
    from app.data import audit
    from app.portal import current_portal

    portal = current_portal()
    session = app.appbuilder.session
    now = dt.datetime.now().replace(microsecond=0)
    results = []
    for entity in portal.spec.entities:
        for index, policy in enumerate(entity.retention, start=1):
            if stopping():
                break
            result = PolicyRun(portal, session, entity, index, policy, now).run(dry_run, stopping)
            results.append(result)
            audit.record_event(audit.RETENTION, entity=entity.name,
                               detail={**result.as_dict(), "dry_run": dry_run, "trigger": trigger})
    return results


# -- the worker's daily run ----------------------------------------------------------------------------------------

def _claim_today(engine, today: dt.date, now: dt.datetime) -> bool:
    """Insert today's run row; False when another worker (or an earlier turn) already has."""
    table = runs_table(MetaData())
    try:
        with engine.begin() as connection:
            connection.execute(table.insert().values(day=today, started_at=now))
        return True
    except IntegrityError:
        return False


def daily_pass(app) -> int:
    """Once a day, from PORTAL_RETENTION_HOUR (local time) on: the first worker to claim the day's row runs every
    policy. Returns 1 when it ran (work was done), else 0."""
    from app.data.worker import stopping
    from app.portal import current_portal

    if not any(e.retention for e in current_portal().spec.entities):
        return 0
    now = dt.datetime.now().replace(microsecond=0)
    state = app.extensions.setdefault("portal_retention", {})
    if state.get("day") == now.date() or now.hour < int(app.config.get("PORTAL_RETENTION_HOUR", 2)):
        return 0
    engine = app.appbuilder.session.get_bind()
    claimed = _claim_today(engine, now.date(), now)
    state["day"] = now.date()  # claimed here or elsewhere: this process asks again tomorrow
    if not claimed:
        return 0
    results = run_retention(app, dry_run=False, trigger="worker", stopping=lambda: stopping(app))
    summary = json.dumps([r.as_dict() for r in results], ensure_ascii=False, default=str)
    table = runs_table(MetaData())
    with engine.begin() as connection:
        connection.execute(table.update().where(table.c.day == now.date())
                           .values(finished_at=dt.datetime.now().replace(microsecond=0), summary=summary))
    log.info("retention: %s", "; ".join(f"{r.entity} #{r.index} {r.policy.action}: {r.touched} touched, "
                                        f"{r.refused} refused" for r in results))
    return 1


def install(app) -> None:
    """The worker's "retention" pass (app/data/worker.py)."""
    from app.data.worker import add_worker_pass

    add_worker_pass(app, "retention", daily_pass)
