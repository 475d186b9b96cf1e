"""Record history: who changed which field of which record, when, by which path (entities with `history: true`).

Append-only rows in `portal_history` (app/generate/models.py `history_table`). Every path writes through
`write_history` (one multi-row INSERT per batch): ORM flushes (forms, API, transitions) through the session
listener, imports and bulk actions with their own batches.

`writing_as(path, transition)` names the path of the writes made inside it (a context variable, so it is
per request/thread); outside it, a request's path is "api" under /api/ and "form" otherwise, and "cli" with no
request at all.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal

from app.schema.spec import EntitySpec

CREATE, UPDATE, TRANSITION, DELETE = "create", "update", "transition", "delete"

_path: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar("history_path", default=None)


@dataclass
class Event:
    """One history row: `changes` maps a field name to (old, new) as stored (link ids, not records)."""

    record_id: int
    action: str
    changes: dict = field(default_factory=dict)
    transition: str | None = None


@contextlib.contextmanager
def writing_as(path: str, transition: str | None = None):
    """Writes inside are recorded as made by `path` ("import", "bulk", "transition", ...)."""
    token = _path.set((path, transition))
    try:
        yield
    finally:
        _path.reset(token)


def current_path() -> tuple[str, str | None]:
    """(path, transition) of the writes being made now."""
    given = _path.get()
    if given is not None:
        return given
    from flask import has_request_context, request

    if not has_request_context():
        return "cli", None
    return ("api" if request.path.startswith("/api/") else "form"), None


def json_value(value):
    """A stored value as JSON: numbers as text when they are decimals (exact), moments in ISO form."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(json_value(v) for v in value)
    return str(value)


def write_history(connection, metadata, entity: EntitySpec, events: list[Event], user_id=None, username=None,
                  at: dt.datetime | None = None, path: str | None = None) -> None:
    """Insert `events` of one entity in one statement (executemany), stamped with the user, time and path."""
    if not events or not entity.history:
        return
    at = at or dt.datetime.now().replace(microsecond=0)
    given_path, given_transition = current_path()
    path = path or given_path
    dumped: dict[int, str] = {}  # events sharing one changes dict (a bulk action's rows) are encoded once

    def changes_json(changes: dict) -> str:
        text = dumped.get(id(changes))
        if text is None:
            text = dumped[id(changes)] = "{" + ",".join(f"{json_text(name)}:[{json_text(old)},{json_text(new)}]"
                                                        for name, (old, new) in changes.items()) + "}"
        return text

    insert_rows(connection, metadata, [
        (entity.name, e.record_id, at, user_id, username, path, e.action,
         (e.transition or given_transition) if e.action == TRANSITION else e.transition, changes_json(e.changes))
        for e in events])


ROW_COLUMNS = ("entity", "record_id", "at", "user_id", "username", "path", "action", "transition", "changes")
COPY_FROM = 50  # rows: PostgreSQL takes more than this through COPY (an import chunk's thousands of events)
_encode_text = json.encoder.encode_basestring  # the C encoder, non-ASCII kept as is (as ensure_ascii=False)


def json_text(value) -> str:
    """`json_value(value)` as JSON text, without a json.dumps call for the common plain values."""
    kind = type(value)
    if kind is str:
        return _encode_text(value)
    if value is None:
        return "null"
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is Decimal:
        return f'"{value:f}"'
    if kind is dt.date or kind is dt.datetime:
        return f'"{value.isoformat()}"'
    return json.dumps(json_value(value), ensure_ascii=False, separators=(",", ":"))


def insert_rows(connection, metadata, rows: list[tuple]) -> None:
    """History rows (values in ROW_COLUMNS order) in one statement: a COPY on PostgreSQL for many rows, else one
    driver-level executemany with the columns' own conversions (SQLAlchemy's per-row handling costs more)."""
    from app.generate.models import HISTORY_TABLE  # here: app.generate's modules import this one

    if not rows:
        return
    table = metadata.tables[HISTORY_TABLE]
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c) for c in ROW_COLUMNS)
    if dialect.name == "postgresql" and len(rows) >= COPY_FROM:
        text = "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN", io.StringIO(text))
        finally:
            cursor.close()
        return
    converters = [(i, convert, {}) for i, c in enumerate(ROW_COLUMNS)
                  if (convert := table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) is not None]
    converted = rows
    if converters:  # (SQLite: the time) each distinct value converted once: a batch's rows share most of theirs
        converted = []
        for row in rows:
            row = list(row)
            for i, convert, done in converters:
                value = row[i]
                if value is not None:
                    row[i] = done[value] if value in done else done.setdefault(value, convert(value))
            converted.append(tuple(row))
    marks = ", ".join("?" if dialect.paramstyle == "qmark" else "%s" for _ in ROW_COLUMNS)
    connection.exec_driver_sql(f"INSERT INTO {preparer.format_table(table)} ({columns}) VALUES ({marks})", converted)


def _copy_text(value) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is dt.datetime:
        return value.isoformat(sep=" ")
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


# -- who ---------------------------------------------------------------------------------------------------------

def current_author() -> tuple[int | None, str | None]:
    """(user id, username) of whoever makes the writes of this request; (None, None) in CLI jobs."""
    from flask import current_app, has_request_context

    if not has_request_context():
        return None, None
    user = current_app.appbuilder.sm.current_user
    return getattr(user, "id", None), getattr(user, "username", None)


# -- what: the fields a history event reads ------------------------------------------------------------------

def recorded_fields(entity: EntitySpec) -> list:
    """Every field whose value is written with the record; rollups change with other records and are left out."""
    # an address's parts (derived_from) follow its value: the address's own change says it
    return [f for f in entity.fields if f.rollup is None and f.derived_from is None]


def _empty(value) -> bool:
    return value is None or value == "" or value == []


def _ids(objects) -> list:
    return sorted(o.id for o in objects if o is not None and getattr(o, "id", None) is not None)


def _current_value(obj, f):
    """A field's value on an ORM object: link ids, sorted id lists for many fields."""
    if f.kind.multiple:
        return _ids(getattr(obj, f.name) or [])
    if f.stores_link:
        value = getattr(obj, f.column_name)
        if value is None:
            value = getattr(obj.__dict__.get(f.name), "id", None)
        return value
    return getattr(obj, f.name)


def _loaded_value(state, f):
    """What the object holds without loading anything (a record already deleted in the database)."""
    data = state.dict
    if f.kind.multiple:
        return _ids(data.get(f.name) or [])
    if f.stores_link:
        value = data.get(f.column_name)
        return value if value is not None else getattr(data.get(f.name), "id", None)
    return data.get(f.name)


def _changed(state, f):
    """(old, new) of one field of a flushed record from its attribute history, or None when unchanged."""
    attrs = state.attrs
    if f.kind.multiple:
        h = attrs[f.name].history
        if not h.added and not h.deleted:
            return None
        old, new = _ids(list(h.unchanged) + list(h.deleted)), _ids(list(h.unchanged) + list(h.added))
    elif f.stores_link:
        h = attrs[f.column_name].history
        if h.added or h.deleted:
            old, new = (h.deleted[0] if h.deleted else None), (h.added[0] if h.added else None)
        else:  # the relationship was set and the flush has not copied its id yet
            h = attrs[f.name].history
            if not h.added and not h.deleted:
                return None
            old = getattr(h.deleted[0], "id", None) if h.deleted else None
            new = getattr(h.added[0], "id", None) if h.added else None
    else:
        h = attrs[f.name].history
        if not h.added and not h.deleted:
            return None
        old, new = (h.deleted[0] if h.deleted else None), (h.added[0] if h.added else None)
    if old == new or (_empty(old) and _empty(new)):
        return None
    return old, new


# -- what the database writes itself: ON DELETE SET NULL / CASCADE ------------------------------------------------

USERS = "<users>"  # the target of `user` fields (FAB's ab_user): their columns are ON DELETE SET NULL
MAX_DEPTH = 10  # cascade levels followed (the same bound as rollups.py)


def many_values(connection, entity: EntitySpec, model, ids: list[int]) -> dict[str, dict[int, list]]:
    """field -> record id -> sorted linked ids of the `many` fields of stored rows (one SELECT per field and chunk)."""
    from sqlalchemy import select

    from app.rules.flushes import chunks

    found: dict[str, dict[int, list]] = {}
    for f in recorded_fields(entity):
        if f.kind.multiple:
            secondary = getattr(model, f.name).property.secondary
            pairs = found[f.name] = {}
            for part in chunks(sorted(ids)):
                for left, right in connection.execute(select(secondary.c.left_id, secondary.c.right_id)
                                                      .where(secondary.c.left_id.in_(part))):
                    pairs.setdefault(left, []).append(right)
            for linked in pairs.values():
                linked.sort()
    return found


def deleted_row_events(connection, entity: EntitySpec, model, where) -> list[Event]:
    """DELETE events of the stored rows matching `where` (every non-empty recorded field, many fields included),
    read before the statement that deletes them."""
    from sqlalchemy import select

    table = model.__table__
    scalar = [f for f in recorded_fields(entity) if not f.kind.multiple]
    rows = connection.execute(select(table.c.id, *(table.c[f.column_name] for f in scalar)).where(where)).all()
    many = many_values(connection, entity, model, [row[0] for row in rows]) if rows else {}
    events = []
    for row in rows:
        changes = {f.name: (v, None) for f, v in zip(scalar, row[1:]) if not _empty(v)}
        for name, linked in many.items():
            if linked.get(row[0]):
                changes[name] = (linked[row[0]], None)
        events.append(Event(row[0], DELETE, changes))
    return events


class DatabaseDeletes:
    """History of the rows the database changes by itself when records go: `on_delete: set_null` referrers (and
    `user` fields when a user is deleted) get an UPDATE event, `cascade` children a DELETE event. Read before the
    deleting statement, per link (the links rollups.py `note_database_deletes` walks for the rollups)."""

    def __init__(self, spec, models: dict) -> None:
        self.spec, self.models = spec, models
        self.links: dict[str, list] = {}  # target entity (or USERS) -> [(referring entity, link field)]
        for child in spec.entities:
            for f in child.fields:
                if f.stores_link and (f.kind.to_users or f.on_delete in ("cascade", "set_null")):
                    self.links.setdefault(USERS if f.kind.to_users else f.to, []).append((child, f))
        # entities whose deletion can reach a `history: true` entity through these links
        self.relevant = {e.name for e in spec.entities if e.history and e.name in models}
        changed = True
        while changed:
            before = len(self.relevant)
            self.relevant |= {target for target, refs in self.links.items()
                              if any(child.name in self.relevant for child, _ in refs)}
            changed = len(self.relevant) != before

    def events(self, connection, deleted: dict[str, set], user_ids=()) -> dict[str, list[Event]]:
        """entity name -> events, for deleting `deleted` (entity -> ids; their own events are the caller's) and the
        users `user_ids`. Rows the cascade deletes are left out of the SET NULL updates."""
        from sqlalchemy import select

        from app.rules.flushes import chunks

        out: dict[str, list[Event]] = {}
        gone = {name: set(ids) for name, ids in deleted.items() if ids}
        level = dict(gone)
        for _ in range(MAX_DEPTH):  # the cascades first: every row that goes
            going: dict[str, set] = {}
            for name, ids in level.items():
                for child, f in self.links.get(name, ()):
                    if f.on_delete != "cascade" or f.kind.to_users or child.name not in self.relevant:
                        continue
                    model = self.models[child.name]
                    table, column = model.__table__, model.__table__.c[f.column_name]
                    for part in chunks(sorted(ids)):
                        where = column.in_(part)
                        known = gone.get(child.name, set())
                        if child.history:
                            events = [e for e in deleted_row_events(connection, child, model, where)
                                      if e.record_id not in known]
                            out.setdefault(child.name, []).extend(events)
                            new = {e.record_id for e in events}
                        else:
                            new = set(connection.scalars(select(table.c.id).where(where))) - known
                        if new:
                            gone.setdefault(child.name, set()).update(new)
                            going.setdefault(child.name, set()).update(new)
            level = going
            if not level:
                break
        targets = [(name, ids) for name, ids in gone.items()] + ([(USERS, set(user_ids))] if user_ids else [])
        for name, ids in targets:  # then the links the database empties
            for child, f in self.links.get(name, ()):
                if not child.history or not (f.kind.to_users or f.on_delete == "set_null"):
                    continue
                table = self.models[child.name].__table__
                column = table.c[f.column_name]
                staying = gone.get(child.name, set())
                for part in chunks(sorted(ids)):
                    for pk, old in connection.execute(select(table.c.id, column).where(column.in_(part))):
                        if pk not in staying:
                            out.setdefault(child.name, []).append(Event(pk, UPDATE, {f.name: (old, None)}))
        return out


# -- forms, API, transitions: the session listener -------------------------------------------------------------

PENDING_KEY = "portal_history_events"  # session.info: entity name -> [Event], between the flush events
DELETED_KEY = "portal_history_deleted"  # session.info: id() of the records before_flush already read


class HistoryRecorder:
    """Session listener: every flushed create, change and delete of a `history: true` entity becomes an Event,
    inserted after the flush on its connection (one INSERT per entity and flush, in the write's transaction)."""

    def __init__(self, spec, models: dict, metadata) -> None:
        self.metadata = metadata
        # entities whose events someone reads: `history: true`, and those with event reminders (the consumers)
        watched = {r.entity for r in spec.reminders if r.is_event}
        self.entities = {models[e.name]: e for e in spec.entities if (e.history or e.name in watched) and e.name in models}
        # callables(connection, entity, events, user_id) handed every flush's events after the history rows
        # (app/rules/notifications.py): one gathering of old -> new values for every reader
        self.consumers: list = []
        self.names = {models[e.name]: e.name for e in spec.entities if e.name in models}
        self.by_name = {e.name: e for e in self.entities.values()}
        self.database_deletes = DatabaseDeletes(spec, models)

    def __bool__(self) -> bool:
        return bool(self.entities)

    def _pending(self, session) -> dict:
        return session.info.setdefault(PENDING_KEY, {})

    def before_flush(self, session, flush_context=None, instances=None) -> None:
        """Deleted records are read now, while their row (and their many fields) can still be loaded."""
        for obj in session.deleted:
            entity = self.entities.get(type(obj))
            if entity is not None and obj.id is not None:
                changes = {f.name: (v, None) for f in recorded_fields(entity)
                           if not _empty(v := _current_value(obj, f))}
                self._pending(session).setdefault(entity.name, []).append(Event(obj.id, DELETE, changes))
                session.info.setdefault(DELETED_KEY, set()).add(id(obj))
        self._database_deletes(session)

    def _database_deletes(self, session) -> None:
        """Events of the rows the database nulls or deletes with this flush's deletes (records and users)."""
        from flask_appbuilder.security.sqla.models import User

        deleted: dict[str, set] = {}
        users = set()
        for obj in session.deleted:
            if isinstance(obj, User) and obj.id is not None:
                users.add(obj.id)
            elif self.names.get(type(obj)) in self.database_deletes.relevant and obj.id is not None:
                deleted.setdefault(self.names[type(obj)], set()).add(obj.id)
        if not deleted and not users:
            return
        for name, events in self.database_deletes.events(session.connection(), deleted, users).items():
            self._pending(session).setdefault(name, []).extend(events)

    def gather(self, session, flush_context=None) -> None:
        """after_flush: new records have their ids; the attribute history still holds the old values."""
        from sqlalchemy import inspect

        path, _ = current_path()
        update_action = TRANSITION if path == "transition" else UPDATE
        seen_deleted = session.info.pop(DELETED_KEY, set())
        for obj in session.new:
            entity = self.entities.get(type(obj))
            if entity is not None:
                changes = {f.name: (None, v) for f in recorded_fields(entity) if not _empty(v := _current_value(obj, f))}
                self._pending(session).setdefault(entity.name, []).append(Event(obj.id, CREATE, changes))
        recorded = {(name, e.record_id) for name, events in self._pending(session).items() for e in events
                    if e.action == DELETE}  # before_flush read them (the database's cascades included)
        for obj in session.deleted:  # deleted by a cascade during the flush: what was loaded
            entity = self.entities.get(type(obj))
            if entity is not None and id(obj) not in seen_deleted and (entity.name, obj.id) not in recorded:
                state = inspect(obj)
                changes = {f.name: (v, None) for f in recorded_fields(entity) if not _empty(v := _loaded_value(state, f))}
                self._pending(session).setdefault(entity.name, []).append(Event(obj.id, DELETE, changes))
        for obj in session.dirty:
            entity = self.entities.get(type(obj))
            if entity is None or obj in session.deleted:
                continue
            state = inspect(obj)
            changes = {f.name: change for f in recorded_fields(entity) if (change := _changed(state, f)) is not None}
            if changes:
                self._pending(session).setdefault(entity.name, []).append(Event(obj.id, update_action, changes))

    def write(self, session, flush_context=None) -> None:
        """after_flush_postexec: the gathered events, in the flush's transaction."""
        pending = session.info.pop(PENDING_KEY, None)
        if not pending:
            return
        user_id, username = current_author()
        connection = session.connection()
        for name, events in pending.items():
            if events:
                write_history(connection, self.metadata, self.by_name[name], events, user_id, username)
                for consume in self.consumers:
                    consume(connection, self.by_name[name], events, user_id)

    def forget(self, session, *args) -> None:
        session.info.pop(PENDING_KEY, None)
        session.info.pop(DELETED_KEY, None)


def install(session, portal) -> None:
    """Record history on every ORM flush of `session` (the app's own scoped session)."""
    from sqlalchemy import event

    recorder = HistoryRecorder(portal.spec, portal.models, portal.metadata)
    portal.history = recorder
    if recorder:
        event.listen(session, "before_flush", recorder.before_flush)
        event.listen(session, "after_flush", recorder.gather)
        event.listen(session, "after_flush_postexec", recorder.write)
        event.listen(session, "after_rollback", recorder.forget)


# -- imports: created and updated rows, one INSERT per chunk -----------------------------------------------------

class ImportHistory:
    """History of an import's bulk write (app/data/bulk.py): new rows from their ids, updated rows against their old
    values read once per chunk before the UPDATE."""

    def __init__(self, metadata, entity: EntitySpec, table, columns: list[str], many: dict, user,
                 notifier=None) -> None:
        self.metadata, self.entity, self.table = metadata, entity, table
        self.notifier = notifier  # app/rules/notifications.py Notifier when the entity has event reminders
        self.user_id, self.username = getattr(user, "id", None), getattr(user, "username", None)
        by_column = {f.column_name: f for f in recorded_fields(entity) if not f.kind.multiple}
        self.scalar = [(i, by_column[c].name) for i, c in enumerate(columns) if c in by_column]  # spool positions
        self.many = many  # many-field name -> its table of pairs
        self.at = dt.datetime.now().replace(microsecond=0)  # one import, one moment

    def _write(self, connection, events: list[Event]) -> None:
        write_history(connection, self.metadata, self.entity, events, self.user_id, self.username, at=self.at,
                      path="import")
        if self.notifier is not None:
            self.notifier.on_events(connection, self.entity, events, self.user_id)

    def created(self, connection, rows: list[tuple], links: list[dict], ids: list[int]) -> None:
        """The chunk's new rows: every non-empty field (None -> value), their JSON written straight from the row."""
        if self.notifier is not None:
            self.notifier.on_events(connection, self.entity, [
                Event(pk, CREATE, {name: (None, row[i]) for i, name in self.scalar if row[i] is not None and row[i] != ""})
                for pk, row in zip(ids, rows)], self.user_id)
        if not self.entity.history:
            return
        keys = [(i, json_text(name) + ":[null,") for i, name in self.scalar]
        out = []
        for n, (pk, row) in enumerate(zip(ids, rows)):
            parts = [key + json_text(row[i]) + "]" for i, key in keys if row[i] is not None and row[i] != ""]
            for name in self.many:
                wanted = links[n].get(name) if links else None
                if wanted:
                    parts.append(f"{json_text(name)}:[null,{json_text(sorted(set(wanted)))}]")
            out.append((self.entity.name, pk, self.at, self.user_id, self.username, "import", CREATE, None,
                        "{" + ",".join(parts) + "}"))
        insert_rows(connection, self.metadata, out)

    def updating(self, connection, rows: list[tuple], links: list[tuple]) -> None:
        """Before the UPDATE of a chunk (rows end with their id): the old values of those rows, read in bulk."""
        from sqlalchemy import select

        ids = [row[-1] for row in rows]
        names = [name for _, name in self.scalar]
        columns = [self.table.c[self.entity.field(n).column_name] for n in names]
        old = {r[0]: r[1:] for r in connection.execute(select(self.table.c.id, *columns).where(self.table.c.id.in_(ids)))}
        old_links: dict[str, dict] = {}
        for name, secondary in self.many.items():
            found = old_links[name] = {pk: [] for pk in ids}
            for left, right in connection.execute(select(secondary.c.left_id, secondary.c.right_id)
                                                  .where(secondary.c.left_id.in_(ids))):
                found[left].append(right)
        new_links = dict(links or [])
        events = []
        for row in rows:
            pk, before = row[-1], old.get(row[-1])
            if before is None:
                continue
            changes = {}
            for (i, name), was in zip(self.scalar, before):
                if was != row[i] and not (_empty(was) and _empty(row[i])):
                    changes[name] = (was, row[i])
            for name in self.many:
                if pk in new_links and name in new_links[pk]:
                    was, now = sorted(old_links[name][pk]), sorted(set(new_links[pk][name] or []))
                    if was != now:
                        changes[name] = (was, now)
            if changes:
                events.append(Event(pk, UPDATE, changes))
        self._write(connection, events)
