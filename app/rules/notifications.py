"""Notifications: event reminders become `portal_notifications` rows in the write's own transaction, and are read
back per user (the inbox) through that user's Viewer.

Events come from the one gathering of changes, app/rules/history.py: the session listener (forms, API,
transitions) hands each flush's events to `Notifier.on_events`; imports and bulk actions call the same method
with the events they write to history. One INSERT per flush; nothing is rendered in the request: the text is made
when a recipient reads it, in their language and through their Viewer (a record they may not read is left out).
The author of a change is not notified of their own change.
"""
from __future__ import annotations

import datetime as dt
import json
import re

from sqlalchemy import (Column, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, and_,
                        case, false, func, or_, select)

from app.rules.history import CREATE, DELETE, TRANSITION, json_value

NOTIFICATIONS_TABLE = "portal_notifications"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}")
FIRED_TABLE = "portal_reminder_fired"
SETTINGS_TABLE = "portal_notification_settings"


def notifications_table(metadata: MetaData) -> Table:
    """One row per recipient and event (or due date): read_on set when read, dispatched_on once the other
    channels (email, webhooks) have their outbox messages."""
    if NOTIFICATIONS_TABLE in metadata.tables:
        return metadata.tables[NOTIFICATIONS_TABLE]
    return Table(NOTIFICATIONS_TABLE, metadata,
                 Column("id", Integer, primary_key=True, autoincrement=True),
                 Column("user_id", Integer, nullable=False),
                 Column("reminder", String(60), nullable=False),
                 Column("entity", String(60), nullable=False),
                 Column("record_id", Integer, nullable=False),
                 Column("event", String(80), nullable=False),   # create, update, delete, transition:<name>, due
                 Column("fire_on", DateTime),                   # a date reminder's fire time
                 Column("snapshot", Text, nullable=False),      # JSON: the event's field values (a delete renders from it)
                 Column("created_on", DateTime, nullable=False),
                 Column("read_on", DateTime),
                 Column("dispatched_on", DateTime),
                 Index("ix_portal_notifications_inbox", "user_id", "read_on", "id"))


def fired_table(metadata: MetaData) -> Table:
    """A date reminder fires once per (reminder, record, date value): moving the date is a new key."""
    if FIRED_TABLE in metadata.tables:
        return metadata.tables[FIRED_TABLE]
    return Table(FIRED_TABLE, metadata,
                 Column("reminder", String(60), nullable=False),
                 Column("entity", String(60), nullable=False),
                 Column("record_id", Integer, nullable=False),
                 Column("fire_key", String(40), nullable=False),
                 UniqueConstraint("reminder", "entity", "record_id", "fire_key", name="uq_portal_reminder_fired"))


def settings_table(metadata: MetaData) -> Table:
    """A user's mutes (JSON lists); their language is FAB-side, in portal_user_locale."""
    if SETTINGS_TABLE in metadata.tables:
        return metadata.tables[SETTINGS_TABLE]
    return Table(SETTINGS_TABLE, metadata,
                 Column("user_id", Integer, primary_key=True, autoincrement=False),
                 Column("muted_reminders", Text, nullable=False, server_default="[]"),
                 Column("muted_channels", Text, nullable=False, server_default="[]"))


def notification_tables(metadata: MetaData) -> None:
    notifications_table(metadata)
    fired_table(metadata)
    settings_table(metadata)


def role_members(connection, role_names) -> dict[str, list[int]]:
    """role name -> ids of its active users (FAB's ab_user_role)."""
    if not role_names:
        return {}
    from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role

    rows = connection.execute(select(Role.name, assoc_user_role.c.user_id)
                              .join(assoc_user_role, assoc_user_role.c.role_id == Role.id)
                              .join(User, User.id == assoc_user_role.c.user_id)
                              .where(Role.name.in_(sorted(role_names)), User.active.is_(True)))
    found: dict[str, list[int]] = {}
    for name, user_id in rows:
        found.setdefault(name, []).append(user_id)
    return found


def user_roles(connection, user_id) -> list[str]:
    from flask_appbuilder.security.sqla.models import Role, assoc_user_role

    return list(connection.execute(select(Role.name).join(assoc_user_role, assoc_user_role.c.role_id == Role.id)
                                   .where(assoc_user_role.c.user_id == user_id)).scalars())


class Notifier:
    """Turns events of entities with event reminders into notification rows (one INSERT per call)."""

    def __init__(self, spec, models: dict, metadata) -> None:
        self.spec, self.models = spec, models
        self.table = metadata.tables[NOTIFICATIONS_TABLE]
        self.reminders: dict[str, list] = {}
        for r in spec.reminders:
            if r.is_event:
                self.reminders.setdefault(r.entity, []).append(r)

    def watches(self, entity_name: str) -> bool:
        return entity_name in self.reminders

    def on_events(self, connection, entity, events, author_id=None) -> None:
        reminders = self.reminders.get(entity.name)
        if not reminders or not events:
            return
        from app.rules.history import current_path

        path, path_transition = current_path()
        if path == "demo":  # sample data is a seed, not news: nobody is told about it
            return
        fired = []  # (reminder, event, event name)
        for e in events:
            action = DELETE if e.action == DELETE else CREATE if e.action == CREATE else "update"
            transition = (e.transition or path_transition) if e.action == TRANSITION else None
            for r in reminders:
                if r.fires_on(action, set(e.changes), transition):
                    fired.append((r, e, f"transition:{transition}" if transition else action))
        if not fired:
            return
        recipients = self.recipients(connection, entity, [r for r, _, _ in fired], [e for _, e, _ in fired])
        in_scope = self._deleted_in_scope(connection, entity)
        now = dt.datetime.now().replace(microsecond=0)
        rows = []
        for r, e, name in fired:
            snapshot = json.dumps({f: json_value(old if e.action == DELETE else new) for f, (old, new) in e.changes.items()},
                                  ensure_ascii=False, separators=(",", ":"))
            for user_id in recipients(r, e):
                if user_id != author_id and (e.action != DELETE or in_scope(user_id, e)):
                    rows.append({"user_id": user_id, "reminder": r.name, "entity": entity.name,
                                 "record_id": e.record_id, "event": name, "fire_on": None,
                                 "snapshot": snapshot, "created_on": now})
        if rows:
            connection.execute(self.table.insert(), rows)

    def _deleted_in_scope(self, connection, entity):
        """(user id, delete event) -> whether the record's last values were in that user's row scope: the row is
        gone, so the inbox cannot check it later. One SELECT per scoped recipient and deleted record."""
        from types import SimpleNamespace

        from flask import current_app

        from app.rules.access import Viewer

        viewers: dict[int, Viewer] = {}

        def in_scope(user_id, event) -> bool:
            if user_id not in viewers:
                roles = [SimpleNamespace(name=n) for n in user_roles(connection, user_id)]
                viewers[user_id] = Viewer(self.spec, SimpleNamespace(id=user_id, roles=roles),
                                          current_app.config["AUTH_ROLE_ADMIN"])
            viewer = viewers[user_id]
            if not viewer.may_read(entity.name):
                return False
            clause = viewer.values_clause(entity.name, self.models,
                                          {name: old for name, (old, _) in event.changes.items()})
            return clause is None or bool(connection.execute(select(clause)).scalar())

        return in_scope

    def recipients(self, connection, entity, reminders, events):
        """A function (reminder, event) -> user ids. Values of the user fields come from the event (new values;
        old ones for a delete) or, when unchanged, from the stored row; `link.user` fields from the linked row;
        role members once per call."""
        targets = {t for r in reminders for t in r.notify}
        roles = role_members(connection, {t[5:] for t in targets if t.startswith("role:")})
        stored = self._stored_values(connection, entity, targets,
                                     sorted({e.record_id for e in events if e.action != DELETE}))

        def recipients(reminder, event) -> list[int]:
            found: list[int] = []
            row = stored.get(event.record_id, {})
            for target in reminder.notify:
                if target.startswith("role:"):
                    found.extend(roles.get(target[5:], ()))
                    continue
                if event.action == DELETE and "." not in target:
                    value = event.changes.get(target, (None, None))[0]
                else:
                    value = row.get(target)
                if value is not None:
                    found.append(value)
            return list(dict.fromkeys(found))

        return recipients

    def _stored_values(self, connection, entity, targets, ids) -> dict[int, dict]:
        """record id -> {target: user id} for the user-field targets (one hop through links), read in one SELECT."""
        fields = [t for t in targets if not t.startswith("role:")]
        if not ids or not fields:
            return {}
        model = self.models[entity.name]
        table = model.__table__
        columns, joins = [], {}
        for target in fields:
            parts = target.split(".")
            if len(parts) == 1:
                columns.append(table.c[entity.field(target).column_name].label(target))
            else:
                link = entity.field(parts[0])
                linked = joins.setdefault(parts[0], self.models[link.to].__table__.alias(f"j_{parts[0]}"))
                columns.append(linked.c[self.spec.entity(link.to).field(parts[1]).column_name].label(target))
        query = select(table.c.id, *columns).select_from(table)
        for name, linked in joins.items():
            query = query.outerjoin(linked, linked.c.id == table.c[entity.field(name).column_name])
        out = {}
        for row in connection.execute(query.where(table.c.id.in_(ids))):
            out[row[0]] = dict(zip(fields_in_order(columns), row[1:]))
        return out


def fields_in_order(columns) -> list[str]:
    return [c.name for c in columns]


def install(session, portal) -> None:
    """Event reminders read every flush's events gathered by the history recorder (installed before this)."""
    notifier = Notifier(portal.spec, portal.models, portal.metadata)
    portal.notifier = notifier
    if notifier.reminders and portal.history is not None:
        portal.history.consumers.append(notifier.on_events)


# -- reading: the inbox, through the reader's Viewer -------------------------------------------------------------

def readable_clause(portal, viewer, table):
    """SQL: the notification is about a record the viewer may read now (it exists and is in their row scope), or is
    the delete event of an entity they may read (rendered from its snapshot). One correlated EXISTS per entity
    with reminders: an index probe per notification row, never a scan of the entity."""
    parts = []
    for name in sorted({r.entity for r in portal.spec.reminders}):
        model = portal.models.get(name)
        if model is None or not viewer.may_read(name):
            continue
        in_scope = select(model.id).where(model.id == table.c.record_id)
        clause = viewer.row_clause(name, portal.models)
        if clause is not None:
            in_scope = in_scope.where(clause)
        parts.append(and_(table.c.entity == name, or_(table.c.event == DELETE, in_scope.exists())))
    return or_(*parts) if parts else false()


def inbox_counts(connection, portal, viewer, user_id) -> tuple[int, int]:
    """(notifications, unread ones) of `user_id` that their Viewer lets them see, in one COUNT."""
    table = portal.metadata.tables[NOTIFICATIONS_TABLE]
    query = (select(func.count(), func.count(case((table.c.read_on.is_(None), 1))))
             .where(table.c.user_id == user_id, readable_clause(portal, viewer, table)))
    total, unread = connection.execute(query).one()
    return total, unread


def inbox_rows(session, portal, viewer, user_id, unread_only: bool, limit: int, offset: int) -> tuple[list, dict]:
    """One page (newest first) of what `inbox_counts` counts, and the records to render it from."""
    table = portal.metadata.tables[NOTIFICATIONS_TABLE]
    query = (select(table.c.id, table.c.reminder, table.c.entity, table.c.record_id, table.c.event,
                    table.c.snapshot, table.c.created_on, table.c.read_on)
             .where(table.c.user_id == user_id, readable_clause(portal, viewer, table)))
    if unread_only:
        query = query.where(table.c.read_on.is_(None))
    rows = session.execute(query.order_by(table.c.id.desc()).limit(limit).offset(offset)).all()
    return visible_notifications(session, portal, viewer, rows)


def visible_notifications(session, portal, viewer, rows) -> tuple[list, dict]:
    """The rows the viewer may still see, and entity -> {id: record} of the records to render them from, loaded in
    `session` (the caller's: its records' links load lazily while the texts are rendered). A record outside their
    scope, of an entity they no longer read, or deleted (unless the row is the delete event, shown from its
    snapshot) leaves its notifications out."""
    wanted: dict[str, set] = {}
    for row in rows:
        if row.event != DELETE and viewer.may_read(row.entity) and row.entity in portal.models:
            wanted.setdefault(row.entity, set()).add(row.record_id)
    records: dict[str, dict] = {}
    for entity, ids in wanted.items():
        model = portal.models[entity]
        query = select(model).where(model.id.in_(sorted(ids)))
        clause = viewer.row_clause(entity, portal.models)
        if clause is not None:
            query = query.where(clause)
        records[entity] = {r.id: r for r in session.scalars(query)}
    kept = [row for row in rows if viewer.may_read(row.entity) and
            (row.event == DELETE or row.record_id in records.get(row.entity, {}))]
    return kept, records


def unread_count(user_id, viewer=None) -> int:
    """Unread notifications of `user_id` about records they may still read."""
    from flask import current_app

    from app.portal import current_portal
    from app.rules.access import viewer_for

    portal = current_portal()
    if viewer is None:
        viewer = viewer_for(current_app.appbuilder.sm.get_user_by_id(user_id))
    table = portal.metadata.tables[NOTIFICATIONS_TABLE]
    query = select(func.count()).where(table.c.user_id == user_id, table.c.read_on.is_(None),
                                       readable_clause(portal, viewer, table))
    return current_app.appbuilder.session.execute(query).scalar()


def render_text(portal, viewer, locale: str, row, record) -> str:
    """The notification's text in `locale`: its message with {field} / {link.field} filled through the Viewer
    (hidden fields left empty, masked ones masked), or a default sentence."""
    from flask_babel import force_locale, gettext

    from app.rules.access import mask_value

    entity = portal.spec.entity(row.entity)
    reminder = next((r for r in portal.spec.reminders if r.name == row.reminder), None)
    snapshot = json.loads(row.snapshot or "{}")

    def value_of(path: str) -> str:
        parts = path.split(".")
        owner, f = entity, entity.field(parts[0])
        if f is None:
            return ""
        if record is None:  # a deleted record: what the snapshot kept (no link hops)
            value = snapshot.get(parts[0]) if len(parts) == 1 else None
        else:
            value = getattr(record, f.name, None)
            if len(parts) == 2:
                owner = portal.spec.entity(f.to)
                f = owner.field(parts[1])
                value = getattr(value, f.name, None) if value is not None else None
        if f.name in viewer.hidden(owner.name) or value is None or value == "":
            return ""
        if len(parts) == 2 and (parts[0] in viewer.unreadable(entity.name) or not viewer.may_read(owner.name)):
            return ""  # the hop goes through a field they may not see, or to an entity they may not read
        if f.stores_link and len(parts) == 1:
            if record is None or (f.to and not f.kind.to_users and not viewer.may_read(f.to)):
                return ""  # a deleted record keeps the linked id only; a linked entity they may not read
        if f.stores_link and not f.kind.to_users and len(parts) == 1 and record is not None:
            value = str(value)
        text = value if isinstance(value, str) else f.kind.display(f)(value)
        return mask_value(text) if f.name in viewer.masked(owner.name) else str(text)

    with force_locale(locale):
        if reminder is not None and reminder.message is not None:
            # {field} / {link.field}, checked by the checker (E561); not str.format: a dot there reads an attribute
            return PLACEHOLDER.sub(lambda m: value_of(m.group(1)), reminder.message.get(locale))
        title = value_of(entity.title) if entity.title else ""
        label = entity.label.get(locale)
        what = f"{label} {title or '#' + str(row.record_id)}"
        event = row.event
        if event == CREATE:
            return gettext("%(record)s was created", record=what)
        if event == DELETE:
            return gettext("%(record)s was deleted", record=what)
        if event.startswith("transition:"):
            return gettext("%(record)s went through %(transition)s", record=what, transition=event[11:])
        if event == "due":
            return gettext("%(record)s is due", record=what)
        return gettext("%(record)s was updated", record=what)
