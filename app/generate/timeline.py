"""Reading a record's history (`GET /api/v1/<entity>/<id>/history`) and its timeline on the detail page.

History rows are shown as the viewer sees the record: enum labels, titles of linked records the viewer may read
(`#id` otherwise), usernames for user fields; masked fields as the mask, hidden fields left out (an event whose
changes are all hidden is left out too). Everything is keyset-paged on the (entity, record_id, id) indexes, newest
first, never counted: a record with 10,000 events costs what one with 10 does.

The timeline merges three bounded queries (history, comments, record attachments) by time. Its cursor names the
last id shown of each source (`h120.c7.a3`): the next page reads each source below its own id.
"""
from __future__ import annotations

import json
import re

from flask import abort, current_app, render_template, request
from flask_appbuilder import expose, has_access
from flask_appbuilder.api import expose as api_expose, protect, safe
from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, select

from app import fab
from app.generate.models import ATTACHMENTS_TABLE, COMMENTS_TABLE, HISTORY_TABLE
from app.generate.show_panels import show_panel
from app.i18n import current_locale, lazy
from app.portal import current_portal
from app.rules.access import MASK, current_viewer

PAGE_SIZE = 20       # events per page, unless ?page_size= says otherwise
MAX_PAGE_SIZE = 100
SCAN_ROUNDS = 5      # history rows read at most page_size * this per page (events of hidden fields are skipped)

ACTION_LABELS = {"create": _l("created the record"), "update": _l("changed"), "transition": _l("took the step"),
                 "delete": _l("deleted the record")}
PATH_LABELS = {"form": _l("form"), "api": _l("API"), "import": _l("import"), "bulk": _l("bulk action"),
               "transition": _l("workflow"), "cli": _l("command line"), "demo": _l("demo data"), "merge": _l("merge")}


DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes "²", which int() refuses


class BadCursor(ValueError):
    pass


def page_size_arg() -> int:
    raw = request.args.get("page_size", "")
    if raw == "":
        return PAGE_SIZE
    if not DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadCursor(str(_l("page_size must be a number from 1 to %(max)d.", max=MAX_PAGE_SIZE)))
    return int(raw)


def before_arg() -> int | None:
    raw = request.args.get("before", "")
    if raw == "":
        return None
    if not DIGITS.fullmatch(raw):
        raise BadCursor(str(_l("Not a valid cursor.")))
    return int(raw)


def _table(name: str):
    return current_portal().metadata.tables[name]


def record_exists(model, pk: int, session) -> bool:
    return session.scalar(select(exists().where(model.id == pk))) is True


def history_rows(session, entity: str, pk: int, before: int | None, limit: int) -> list:
    table = _table(HISTORY_TABLE)
    query = select(table).where(table.c.entity == entity, table.c.record_id == pk)
    if before is not None:
        query = query.where(table.c.id < before)
    return list(session.execute(query.order_by(table.c.id.desc()).limit(limit)))


# -- values as the viewer sees them -------------------------------------------------------------------------------

class ValueShower:
    """Turns stored history values (link ids, enum keys, ...) of one entity into what the viewer sees."""

    def __init__(self, entity, models: dict, session) -> None:
        self.entity, self.models, self.session = entity, models, session
        self.viewer = current_viewer()
        self.hidden = self.viewer.hidden(entity.name)
        self.masked = self.viewer.masked(entity.name)
        self.titles: dict[tuple[str, int], str] = {}

    def prepare(self, changes_list: list[dict]) -> None:
        """Look up, in one query per linked entity, the titles of every record the changes name."""
        wanted: dict[str, set] = {}
        for changes in changes_list:
            for name, pair in changes.items():
                f = self.entity.field(name)
                if f is None or not (f.is_relation or f.files is not None) or name in self.hidden or name in self.masked:
                    continue
                # a file field's values are attachment ids: shown by the file's name
                target = ATTACHMENTS_TABLE if f.files is not None else "ab_user" if f.kind.to_users else f.to
                for value in pair:
                    for pk in (value if isinstance(value, list) else [value]):
                        if isinstance(pk, int):
                            wanted.setdefault(target, set()).add(pk)
        for target, ids in wanted.items():
            self.titles.update({(target, pk): title for pk, title in self._titles(target, sorted(ids))})

    def _titles(self, target: str, ids: list[int]):
        if target == ATTACHMENTS_TABLE:
            table = _table(ATTACHMENTS_TABLE)
            return self.session.execute(select(table.c.id, table.c.name).where(
                table.c.id.in_(ids), table.c.entity == self.entity.name)).all()
        if target == "ab_user":
            user = current_app.appbuilder.sm.user_model
            return self.session.execute(select(user.id, user.username).where(user.id.in_(ids))).all()
        spec = current_portal().spec.entity(target)
        if not self.viewer.may_read(target) or (spec.title and spec.title in self.viewer.unreadable(target)):
            return []
        model = self.models[target]
        query = select(model).where(model.id.in_(ids))
        scope = self.viewer.row_clause(target, self.models)
        if scope is not None:
            query = query.where(scope)
        return [(o.id, str(o)) for o in self.session.scalars(query)]

    def _one(self, f, value):
        if value is None:
            return None
        if f.files is not None:
            return self.titles.get((ATTACHMENTS_TABLE, value), f"#{value}")
        if f.is_relation:
            target = "ab_user" if f.kind.to_users else f.to
            if isinstance(value, list):
                return [self.titles.get((target, v), f"#{v}") for v in value]
            return self.titles.get((target, value), f"#{value}")
        if f.choices:
            label = f.choice_label(value)
            return label.get(current_locale()) if label is not None else value
        return value

    def changes(self, changes: dict) -> list[dict]:
        """[{field, label, old, new}] in the entity's field order; hidden fields left out, masked ones masked."""
        order = {f.name: i for i, f in enumerate(self.entity.fields)}
        shown = []
        for name in sorted(changes, key=lambda n: order.get(n, len(order))):
            if name in self.hidden:
                continue
            old, new = changes[name]
            f = self.entity.field(name)
            if f is None:  # a field since removed from the schema: its stored values
                shown.append({"field": name, "label": name, "old": old, "new": new})
            elif name in self.masked:
                shown.append({"field": name, "label": str(lazy(f.label)), "old": None if old is None else MASK,
                              "new": None if new is None else MASK})
            else:
                shown.append({"field": name, "label": str(lazy(f.label)), "old": self._one(f, old),
                              "new": self._one(f, new)})
        return shown


def history_page(entity, models: dict, session, pk: int, before: int | None, size: int) -> tuple[list[dict], int | None]:
    """(events newest first, cursor of the next page or None): at most `size` events the viewer may see."""
    shower = ValueShower(entity, models, session)
    events, cursor = [], before
    for _ in range(SCAN_ROUNDS):
        rows = history_rows(session, entity.name, pk, cursor, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        parsed = [(row, json.loads(row.changes or "{}")) for row in rows]
        merges = [merged_event(entity, changes) for _, changes in parsed]  # app/data/merge.py: who was merged in
        shower.prepare([changes for _, changes in parsed])
        for (row, changes), merged in zip(parsed, merges):
            shown = shower.changes(changes)
            if changes and not shown:
                continue  # only hidden fields changed: the viewer never learns of it
            events.append(event_json(row, shown, merged))
        if rows:
            cursor = rows[-1].id
        if len(events) >= size or not more:
            break
    if len(events) > size:
        events = events[:size]
        cursor = events[-1]["id"]
        more = True
    return events, (cursor if more else None)


def event_json(row, changes: list[dict], merged: dict | None = None) -> dict:
    event = {"id": row.id, "at": row.at.isoformat() if row.at else None, "user": row.username, "path": row.path,
             "action": row.action, "transition": row.transition, "changes": changes}
    if merged is not None:
        event["merged"] = merged
    return event


def merged_event(entity, changes: dict) -> dict | None:
    """A merge event's loser {id, title, fields} (taken out of `changes`), its title and the fields taken from it as
    the viewer may see them (hidden fields left out, a hidden or masked title as "#id")."""
    from app.data.merge import MERGED_KEY, merged_detail

    if MERGED_KEY not in changes:
        return None
    detail = merged_detail(json.dumps({MERGED_KEY: changes.pop(MERGED_KEY)})) or {}
    viewer = current_viewer()
    hidden, unreadable = viewer.hidden(entity.name), viewer.unreadable(entity.name)
    title = detail.get("title") if entity.title not in unreadable else None
    loser = f"#{detail.get('id')}"
    fields = [entity.field(n) for n in detail.get("fields", []) if entity.field(n) is not None and n not in hidden]
    return {"id": detail.get("id"), "title": f"{title} ({loser})" if title and title != loser else loser,
            "fields": [str(lazy(f.label)) for f in fields]}


# -- the API ------------------------------------------------------------------------------------------------------

class HistoryApiMixin:
    """GET /api/v1/<entity>/<id>/history: newest first, `?before=<id>&page_size=`; nothing edits it (405)."""

    @api_expose("/<int:pk>/history", methods=["GET"])
    @protect()
    @safe
    def get_history(self, pk):
        """The record's history, newest first
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: query, name: before, schema: {type: integer}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 100}}
          responses:
            200: {description: 'events: [{id, at, user, path, action, transition, changes}], next'}
            404: {description: no such record in the caller's scope}
        """
        if not self.entity.history:
            return self.response_404()
        session = self.datamodel.session
        if fab.scoped_get(self, pk) is None and not self._deleted_for_admin(pk):
            return self.response_404()
        try:
            before, size = before_arg(), page_size_arg()
        except BadCursor as exc:
            return self.response_400(message=str(exc))
        events, cursor = history_page(self.entity, self.models, session, pk, before, size)
        return self.response(200, events=events, next=None if cursor is None else str(cursor))

    def _deleted_for_admin(self, pk: int) -> bool:
        """A deleted record's history stays at its URL, for Admin only (others get 404 as for any unknown id)."""
        session = self.datamodel.session
        if not current_viewer().is_admin or record_exists(self.datamodel.obj, pk, session):
            return False
        return bool(history_rows(session, self.entity.name, pk, None, 1))


# -- the timeline on the detail page ------------------------------------------------------------------------------

_CURSOR = re.compile(r"(?:h([0-9]{1,18}))?(?:\.?c([0-9]{1,18}))?(?:\.?a([0-9]{1,18}))?")


def parse_timeline_cursor(raw: str) -> dict[str, int | None]:
    match = _CURSOR.fullmatch(raw or "")
    if not match:
        raise BadCursor(str(_l("Not a valid cursor.")))
    h, c, a = match.groups()
    return {"h": int(h) if h else None, "c": int(c) if c else None, "a": int(a) if a else None}


def format_timeline_cursor(cursor: dict) -> str:
    return ".".join(f"{key}{value}" for key, value in cursor.items() if value is not None)


def _comment_rows(session, entity: str, pk: int, before, limit: int) -> list:
    table = _table(COMMENTS_TABLE)
    query = select(table).where(table.c.entity == entity, table.c.record_id == pk)
    if before is not None:
        query = query.where(table.c.id < before)
    return list(session.execute(query.order_by(table.c.id.desc()).limit(limit)))


def _attachment_rows(session, entity: str, pk: int, before, limit: int) -> list:
    table = _table(ATTACHMENTS_TABLE)
    query = select(table).where(table.c.entity == entity, table.c.record_id == pk, table.c.field.is_(None))
    if before is not None:
        query = query.where(table.c.id < before)
    return list(session.execute(query.order_by(table.c.id.desc()).limit(limit)))


def merged_label(event: dict) -> str | None:
    merged = event.get("merged")
    if merged is None:
        return None
    label = str(_l("merged %(record)s into this record", record=merged["title"]))
    if merged["fields"]:
        label += " · " + str(_l("values kept from it: %(fields)s", fields=", ".join(merged["fields"])))
    return label


def timeline_page(view, pk: int, cursor: dict, size: int = PAGE_SIZE) -> tuple[list[dict], str | None]:
    """One page of the timeline: each source read below its cursor (at most size+1 rows each), merged by time."""
    from app.generate.comments import comment_entry

    entity, session = view.entity, view.datamodel.session
    candidates = []  # (time, source, id, entry)
    history_next = None  # history rows left after scanning (some may have been hidden changes only)
    if entity.history:
        events, history_next = history_page(entity, view.models, session, pk, cursor["h"], size + 1)
        for e in events:
            candidates.append((e["at"] or "", "h", e["id"], {"kind": "history", **e,
                               "action_label": merged_label(e) or ACTION_LABELS.get(e["action"], e["action"]),
                               "path_label": PATH_LABELS.get(e["path"], e["path"])}))
    if entity.comments:
        for row in _comment_rows(session, entity.name, pk, cursor["c"], size + 1):
            entry = comment_entry(row)
            candidates.append((entry["at"], "c", row.id, entry))
    if entity.attachments is not None:
        for row in _attachment_rows(session, entity.name, pk, cursor["a"], size + 1):
            candidates.append((row.uploaded_on.isoformat(), "a", row.id, {
                "kind": "attachment", "id": row.id, "at": row.uploaded_on.isoformat(), "user": row.uploaded_by_name,
                "name": row.name, "size": row.size, "url": f"/{entity.snake}/attachment/{row.id}"}))
    # newest first; within one second, the source's own order (ids grow with time)
    candidates.sort(key=lambda c: (c[0], c[2]), reverse=True)
    taken = candidates[:size]
    next_cursor = dict(cursor)
    for _, source, pk_, _ in taken:
        next_cursor[source] = pk_ if next_cursor[source] is None else min(next_cursor[source], pk_)
    # a source nothing was taken from keeps its place: its rows are read again for the next page
    more = len(candidates) > size
    if history_next is not None and all(s != "h" for _, s, _, _ in candidates[size:]):
        next_cursor["h"], more = int(history_next), True  # every history event read was shown: go on below
    return [entry for *_, entry in taken], (format_timeline_cursor(next_cursor) if more else None)


@show_panel("timeline", "bottom")
def timeline_panel(view, item):
    entity = view.entity
    if not (entity.history or entity.comments or entity.attachments is not None):
        return None
    from app.generate.comments import COMMENT_MAX

    entries, cursor = timeline_page(view, item.id, {"h": None, "c": None, "a": None})
    return {"entries": entries, "next": cursor, "comments": entity.comments, "max_length": COMMENT_MAX,
            "older_url": f"/{entity.snake}/timeline/{item.id}", "add_comment_url": f"/{entity.snake}/comments/{item.id}",
            "comment_url": f"/{entity.snake}/comment/"}


class TimelinePagesMixin:
    """GET /<entity>/timeline/<pk>?before=<cursor>: the next page of the timeline, as an HTML fragment."""

    @expose("/timeline/<int:pk>")
    @has_access
    def timeline(self, pk):
        if fab.scoped_get(self, pk) is None:
            abort(404)
        try:
            cursor = parse_timeline_cursor(request.args.get("before", ""))
        except BadCursor as exc:
            abort(400, description=str(exc))
        entries, next_cursor = timeline_page(self, pk, cursor)
        panel = {"entries": entries, "next": next_cursor, "comments": self.entity.comments,
                 "older_url": f"/{self.entity.snake}/timeline/{pk}", "comment_url": f"/{self.entity.snake}/comment/"}
        return render_template("portal/timeline_entries.html", panel=panel)
