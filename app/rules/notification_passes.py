"""The worker's two notification passes (app/data/worker.py `add_worker_pass`):

- "reminders": each date reminder's due rows, found in SQL through the index on its date column, fire once per
  (reminder, record, date value): `portal_reminder_fired` takes the key with INSERT … ON CONFLICT DO NOTHING
  RETURNING, so of concurrent workers only one gets a key, and only the keys it got become notifications (in the
  same transaction).
- "notify": notifications whose reminder has `email` / `webhook:*` channels are rendered for each recipient (their
  saved language, their Viewer) and handed to the outbox (`enqueue`) in the transaction that marks them dispatched.

The window of a date reminder (fire time = the date, midnight for a date field, + offset): it fires once the fire
time has come and while the date itself has not passed (offset ≤ 0), or during the fire day (offset > 0: "overdue
by a day" fires on that day, not on every later day). A record created or moved into the window fires on the next
scan; a moved date is a new key and fires again.
"""
from __future__ import annotations

import datetime as dt
import json

from flask import Flask
from sqlalchemy import select, text, update

from app.rules.history import Event, json_value
from app.rules.notifications import FIRED_TABLE, NOTIFICATIONS_TABLE, SETTINGS_TABLE

CHUNK = 500  # keys per INSERT … RETURNING (bound parameters stay far below every driver's limit)
FANOUT_BATCH = 200
ANALYZE_AFTER = 200  # fire keys taken in one scan after which their statistics are refreshed (PostgreSQL)


def install(app: Flask) -> None:
    from app.data.worker import add_worker_pass

    add_worker_pass(app, "reminders", scan_pass)
    add_worker_pass(app, "notify", notify_pass)


def _engine(app):
    return app.appbuilder.session.get_bind()


def _portal(app):
    from app.portal import portal_of

    return portal_of(app)


# -- the date reminder scan ----------------------------------------------------------------------------------------

def window(reminder, is_date: bool, now: dt.datetime) -> tuple:
    """(lowest, highest) stored date values whose reminder is due now (both inclusive)."""
    offset = dt.timedelta(minutes=reminder.offset_minutes)
    midnight = dt.datetime.combine(now.date(), dt.time())
    highest = now - offset  # fire time = value + offset <= now
    lowest = midnight - offset if offset > dt.timedelta(0) else (midnight if is_date else now)
    if not is_date:
        return lowest, highest
    first = lowest.date() if lowest.time() == dt.time() else lowest.date() + dt.timedelta(days=1)
    return first, highest.date()


def due_rows(connection, portal, reminders, now: dt.datetime, fired_table=None) -> list[tuple]:
    """(reminder, record id, date value, fire key) of every record whose date reminder is due, for all `reminders`
    in one statement per kind of date field (date or datetime: a UNION of one kind keeps the value's type on
    both databases): per reminder an index range on its date column, plus `when`, less the keys already fired
    (with `fired_table`). The key is the date as the database writes it as text (the same expression here and in
    the NOT EXISTS)."""
    rows = []
    for is_date in (True, False):
        group = [r for r in reminders if _is_date(portal, r) is is_date]
        if not group:
            continue
        params = {}
        for i, reminder in enumerate(group):
            params[f"lowest_{i}"], params[f"highest_{i}"] = window(reminder, is_date, now)
        statement = _due_statement(portal, group, fired_table, now)
        rows.extend((group[i], pk, value, key) for i, pk, value, key in connection.execute(statement, params))
    return rows


def _is_date(portal, reminder) -> bool:
    return portal.spec.entity(reminder.entity).field(reminder.date).type == "date"


def _due_statement(portal, reminders, fired_table, now):
    """The scan's SELECT with the windows as parameters; built once per set of reminders (and day, when a `when`
    has $today or $now values) — it runs every few seconds."""
    from sqlalchemy import String, and_, bindparam, cast, exists, literal, union_all

    from app.rules.filters import context_for, filter_clause
    from app.schema.filters import Relative

    relative = any(isinstance(v, Relative) for r in reminders for c in r.when
                   for v in (c.value if isinstance(c.value, tuple) else (c.value,)))
    cache = portal.__dict__.setdefault("_due_statements", {})
    key = (tuple(r.name for r in reminders), fired_table is not None, now if relative else None)
    if key in cache:
        return cache[key]
    parts = []
    for i, reminder in enumerate(reminders):
        table = portal.models[reminder.entity].__table__
        column = table.c[portal.spec.entity(reminder.entity).field(reminder.date).column_name]
        fire_key = cast(column, String)
        query = (select(literal(i).label("reminder"), table.c.id.label("id"), column.label("value"),
                        fire_key.label("fire_key"))
                 .where(column >= bindparam(f"lowest_{i}"), column <= bindparam(f"highest_{i}")))
        if reminder.when:
            query = query.where(filter_clause(portal.spec, portal.models, reminder.entity, reminder.when,
                                              context_for(None)))
        if fired_table is not None:
            f = fired_table.c
            query = query.where(~exists().where(and_(f.reminder == reminder.name, f.entity == reminder.entity,
                                                     f.record_id == table.c.id, f.fire_key == fire_key)))
        parts.append(query)
    # in (reminder, id) order: concurrent scans take the fire keys in one order (no deadlock, one winner per key)
    query = parts[0].order_by("reminder", "id") if len(parts) == 1 else union_all(*parts).order_by("reminder", "id")
    if not relative:
        cache[key] = query
    return query


def claim_keys(connection, fired_table, reminder, rows) -> list[tuple]:
    """The (record id, date value) of `rows` ((record id, date value, fire key)) whose fire key this transaction
    took (not fired before, by anyone)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    values = {(pk, key): value for pk, value, key in rows}
    taken = []
    keys = list(values)
    for start in range(0, len(keys), CHUNK):
        part = keys[start:start + CHUNK]
        statement = (insert(fired_table)
                     .values([{"reminder": reminder.name, "entity": reminder.entity, "record_id": pk, "fire_key": key}
                              for pk, key in part])
                     .on_conflict_do_nothing()
                     .returning(fired_table.c.record_id, fired_table.c.fire_key))
        taken.extend((pk, values[(pk, key)]) for pk, key in connection.execute(statement))
    return taken


def scan(app: Flask, now: dt.datetime | None = None) -> int:
    """Fire every due date reminder; returns the notifications written."""
    portal = _portal(app)
    notifier = portal.notifier
    reminders = [r for r in portal.spec.reminders if r.date is not None]
    if not reminders:
        return 0
    now = now or dt.datetime.now().replace(microsecond=0)
    fired_table = portal.metadata.tables[FIRED_TABLE]
    table = portal.metadata.tables[NOTIFICATIONS_TABLE]
    written = taken_now = 0
    # connect, not begin: the steady state (nothing due) ends with the read's rollback, no commit round trip
    with _engine(app).connect() as connection:
        due = {}
        for reminder, pk, value, key in due_rows(connection, portal, reminders, now, fired_table):
            due.setdefault(reminder.name, (reminder, []))[1].append((pk, value, key))
        if not due:
            return 0
        for reminder, rows in due.values():
            taken = claim_keys(connection, fired_table, reminder, rows)
            taken_now += len(taken)
            if not taken:
                continue
            entity = portal.spec.entity(reminder.entity)
            events = [Event(pk, "due", {reminder.date: (None, value)}) for pk, value in taken]
            recipients = notifier.recipients(connection, entity, [reminder], events)
            offset = dt.timedelta(minutes=reminder.offset_minutes)
            out = []
            for e in events:
                value = e.changes[reminder.date][1]
                fire_on = (value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())) + offset
                snapshot = json.dumps({reminder.date: json_value(value)})
                out.extend({"user_id": user_id, "reminder": reminder.name, "entity": reminder.entity,
                            "record_id": e.record_id, "event": "due", "fire_on": fire_on, "snapshot": snapshot,
                            "created_on": now} for user_id in recipients(reminder, e))
            if out:
                connection.execute(table.insert(), out)
            written += len(out)
        connection.commit()  # the keys taken and their notifications together
    if taken_now >= ANALYZE_AFTER and _engine(app).dialect.name == "postgresql":
        # the scan's anti join is planned from the fired keys' statistics: after a burst of new keys (the day's
        # reminders at midnight) stale ones make PostgreSQL loop over a seq scan per due row (quadratic) until
        # autovacuum catches up; refreshing them now keeps every later scan on the hash or index plan
        with _engine(app).connect() as fresh:
            fresh.execute(text(f"ANALYZE {FIRED_TABLE}"))
            fresh.commit()
    return written


def scan_pass(app: Flask) -> int:
    """Worker pass: 0 when nothing fired (the loop sleeps)."""
    return scan(app)


# -- fan-out to the outbox -----------------------------------------------------------------------------------------

def _reading_roles_hide(portal, entity_name: str) -> frozenset:
    """Fields some role that reads the entity may not see in full: left out of webhook messages."""
    out = set()
    for role in portal.spec.roles:
        if "read" in role.actions(entity_name):
            out |= role.hidden(entity_name) | role.masked(entity_name)
    return frozenset(out)


def _record_data(portal, entity, record, left_out) -> dict:
    data = {"id": record.id}
    for f in entity.fields:
        if f.name in left_out or f.kind.multiple:
            continue
        value = getattr(record, f.column_name if f.stores_link else f.name, None)
        data[f.name] = json_value(value)
    return data


def notify_pass(app: Flask) -> int:
    """Render and enqueue the email / webhook messages of undispatched notifications; returns the rows handled."""
    from html import escape

    from flask_appbuilder.security.sqla.models import User
    from flask_babel import force_locale, gettext

    from app.data.channels.email import text_as_html
    from app.data.outbox import enqueue

    from app.generate.inbox import record_url_for
    from app.rules.access import Viewer
    from app.rules.notifications import render_text, visible_notifications
    from app.runtime.locale import UserLocale

    portal = _portal(app)
    outward = {r.name: r for r in portal.spec.reminders if any(c != "inbox" for c in r.channels)}
    if not outward:
        return 0
    table = portal.metadata.tables[NOTIFICATIONS_TABLE]
    settings = portal.metadata.tables[SETTINGS_TABLE]
    admin_role = app.config["AUTH_ROLE_ADMIN"]
    base_url = app.config.get("PORTAL_BASE_URL", "http://localhost:8080").rstrip("/")
    default_locale = app.config.get("BABEL_DEFAULT_LOCALE", "en")
    session = app.appbuilder.session
    try:
        connection = session.connection()
        rows = connection.execute(select(table).where(table.c.dispatched_on.is_(None),
                                                      table.c.reminder.in_(sorted(outward)))
                                  .order_by(table.c.id).limit(FANOUT_BATCH).with_for_update(skip_locked=True)
                                  if connection.dialect.name == "postgresql" else
                                  select(table).where(table.c.dispatched_on.is_(None), table.c.reminder.in_(sorted(outward)))
                                  .order_by(table.c.id).limit(FANOUT_BATCH)).all()
        if not rows:
            session.rollback()
            return 0
        user_ids = sorted({r.user_id for r in rows})
        users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
        locales = {u.user_id: u.locale for u in session.scalars(select(UserLocale).where(UserLocale.user_id.in_(user_ids)))}
        mutes = {uid: (set(json.loads(mr)), set(json.loads(mc))) for uid, mr, mc in connection.execute(
            select(settings.c.user_id, settings.c.muted_reminders, settings.c.muted_channels)
            .where(settings.c.user_id.in_(user_ids)))}
        messages = []
        webhook_sent = set()
        for row in rows:
            reminder = outward[row.reminder]
            user = users.get(row.user_id)
            muted_reminders, muted_channels = mutes.get(row.user_id, (set(), set()))
            # a webhook goes once per event (not per recipient), with what every reading role may see
            event_key = (row.reminder, row.entity, row.record_id, row.event, row.created_on)
            hooks = [c for c in reminder.channels if c.startswith("webhook:")]
            if hooks and event_key not in webhook_sent and not _earlier_row(connection, table, row):
                webhook_sent.add(event_key)
                record = session.get(portal.models[row.entity], row.record_id) if row.event != "delete" else None
                entity = portal.spec.entity(row.entity)
                left_out = _reading_roles_hide(portal, row.entity)
                data = (_record_data(portal, entity, record, left_out) if record is not None else
                        {k: v for k, v in json.loads(row.snapshot).items() if k not in left_out} | {"id": row.record_id})
                for hook in hooks:
                    messages.append({"channel": hook, "user_id": None, "notification_id": row.id,
                                     "payload": {"event": f"reminder.{row.reminder}",
                                                 "data": {"entity": row.entity, "record_id": row.record_id,
                                                          "event": row.event, "record": data}}})
            if ("email" not in reminder.channels or user is None or not user.active or not user.email
                    or row.reminder in muted_reminders or "email" in muted_channels):
                continue
            viewer = Viewer(portal.spec, user, admin_role)
            kept, records = visible_notifications(session, portal, viewer, [row])
            if not kept:
                continue  # a record this recipient may not read: nothing
            locale = locales.get(row.user_id, default_locale)
            record = records.get(row.entity, {}).get(row.record_id)
            link = f"{base_url}{record_url_for(portal.spec, row.entity, row.record_id)}" if record is not None else ""
            with app.test_request_context(base_url=base_url):
                text = render_text(portal, viewer, locale, row, record)
                with force_locale(locale):
                    open_label = gettext("Open the record")
                body = text_as_html(text) + (f'<p><a href="{escape(link)}">{escape(open_label)}</a></p>' if link else "")
            messages.append({"channel": "email", "user_id": user.id, "notification_id": row.id,
                             "payload": {"to": user.email, "subject": text[:200],
                                         "text": text + (f"\n\n{link}\n" if link else "\n"), "html": body}})
        enqueue(connection, messages)
        connection.execute(update(table).where(table.c.id.in_([r.id for r in rows]))
                           .values(dispatched_on=dt.datetime.now().replace(microsecond=0)))
        session.commit()
        return len(rows)
    except Exception:
        session.rollback()
        raise
    finally:
        session.remove()


def _earlier_row(connection, table, row) -> bool:
    """Another recipient's row of the same event came first (its pass sent the webhook)."""
    return connection.execute(select(table.c.id).where(
        table.c.reminder == row.reminder, table.c.entity == row.entity, table.c.record_id == row.record_id,
        table.c.event == row.event, table.c.created_on == row.created_on, table.c.id < row.id).limit(1)).first() is not None
