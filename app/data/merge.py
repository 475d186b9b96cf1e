"""Merging two records of one entity: the survivor keeps the chosen values and everything that pointed at the loser.

`merge(rules, survivor, loser, choices)` does it in the caller's transaction (nothing is committed here; any
refusal or error leaves the caller to roll back, so a merge is all or nothing):

1. refuse when either record is in a locked workflow state, or when moving the loser's references would break a
   `unique`/`unique_together` of a referring entity (two contacts of the same name, one on each record, say);
2. re-point every reference to the loser: link fields of every entity (inline lines are link fields too), rows of
   `many` fields (a row already linking both keeps one), history, comments, attachments, notifications and fired
   reminder keys. Referrers get a new row_version and a history event (old -> new) when they keep history; the
   rollups fed through the moved links are brought up to date;
3. delete the loser (its own history records the delete, path "merge");
4. write the values chosen from the loser to the survivor through its RecordRules (formulas, `rules:`,
   uniqueness: the loser is gone by then, so its unique values are free), and add one "merge" history event.

Who may merge (update and delete permission, both records in the row scope, hidden fields never chosen) is checked
by the callers (app/generate/merge.py) with `check_choices` and `merge_refusal`.
"""
from __future__ import annotations

import json

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import aliased

from app.i18n import current_locale
from app.portal import current_portal
from app.data import audit
from app.rules import history
from app.rules.workflows import locked_refusal
from app.schema.spec import VERSION_COLUMN, EntitySpec, FieldSpec, PortalSpec

SURVIVOR, LOSER = "survivor", "loser"
MERGE = "merge"  # the history path and action of a merge
MERGED_KEY = "#merged"  # the merge event's changes: {"#merged": [null, '{"id", "title", "fields"}']} (no field's name)


class MergeRefused(Exception):
    """Why a merge cannot be done: `status` 400 (a bad request), 404, 403, 409 (locked, a conflict), 422 (a rule of
    the survivor broken by the chosen values, `errors` per field); `message` is localized text."""

    def __init__(self, status: int, message, errors: dict | None = None) -> None:
        super().__init__(str(message))
        self.status, self.message, self.errors = status, str(message), errors or {}


# -- what may be chosen --------------------------------------------------------------------------------------------

def choosable_fields(entity: EntitySpec, viewer) -> list[FieldSpec]:
    """Fields whose value the user may take from either record: stored by the write path (not readonly, formula,
    rollup or autonumber: those are computed again), not the workflow state (it changes through transitions only),
    and not hidden from the user. Masked fields may be chosen: the page shows both values masked."""
    hidden = viewer.hidden(entity.name)
    state = entity.workflow.field if entity.workflow else None
    return [f for f in entity.fields if not f.readonly and f.name not in hidden and f.name != state]


def check_choices(entity: EntitySpec, viewer, raw) -> dict[str, str]:
    """The request's `fields` object checked: {field: "survivor" | "loser"}; MergeRefused(400) names each bad key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MergeRefused(400, _l("'fields' must be an object naming, per field, \"survivor\" or \"loser\"."))
    allowed = {f.name for f in choosable_fields(entity, viewer)}
    readonly = {f.name for f in entity.fields if f.name not in viewer.hidden(entity.name)} - allowed
    errors = {}
    for name, side in raw.items():
        if name in readonly:
            errors[name] = [str(_l("This field is computed or read-only: it cannot be chosen."))]
        elif name not in allowed:
            errors[name] = [str(_l("Unknown field."))]  # hidden fields too: nothing tells them apart
        elif side not in (SURVIVOR, LOSER):
            errors[name] = [str(_l("Choose \"survivor\" or \"loser\"."))]
    if errors:
        raise MergeRefused(400, _l("The field choices are not valid."), errors)
    return dict(raw)


def merge_refusal(entity: EntitySpec, survivor, loser) -> MergeRefused | None:
    """A locked workflow state on either record (only transitions change a locked record; a merge would delete or
    change it)."""
    for item in (survivor, loser):
        refusal = locked_refusal(entity, item)
        if refusal:
            return MergeRefused(409, refusal)
    return None


def record_title(entity: EntitySpec, item, viewer=None) -> str:
    """The record's title as text ("#id" without one, or when the title field is hidden or masked for `viewer`)."""
    name = entity.title
    if name is None or (viewer is not None and name in viewer.unreadable(entity.name)):
        return f"#{item.id}"
    value = getattr(item, name, None)
    if value is None or value == "" or hasattr(value, "__table__"):  # empty, or a link: the record's id
        return f"#{item.id}"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


# -- the merge -----------------------------------------------------------------------------------------------------

def merge(rules, survivor, loser, choices: dict[str, str]) -> dict:
    """Merge `loser` into `survivor` (both loaded in `rules.session`, inside the writer's scope) in the session's
    transaction. Returns the merge event's detail. Raises MergeRefused; the caller rolls back then."""
    entity, session, portal = rules.entity, rules.session, rules.portal
    if survivor.id == loser.id:
        raise MergeRefused(400, _l("A record cannot be merged into itself."))
    refusal = merge_refusal(entity, survivor, loser)
    if refusal is not None:
        raise refusal
    survivor_id, loser_id = survivor.id, loser.id
    # both rows locked to the end: on PostgreSQL no record can be linked to the loser meanwhile (a new row's foreign
    # key check waits for the lock), so nothing is left behind for the delete to cascade or refuse
    model = rules.model
    locked = set(session.scalars(select(model.id).where(model.id.in_([survivor_id, loser_id])).with_for_update()))
    if locked != {survivor_id, loser_id}:  # merged or deleted by another request while this one waited
        raise MergeRefused(404, _l("Not found."))
    loser_title = record_title(entity, loser)

    def same(value):  # a link of the record to itself (or to the other one) means nothing once they are one
        if isinstance(value, list):
            return [v for v in value if v is not survivor and v is not loser]
        return None if value is survivor or value is loser else value

    taken = {}
    for name, side in choices.items():
        if side == LOSER:
            value = getattr(loser, name)
            taken[name] = same(list(value or []) if entity.field(name).kind.multiple else value)
    _refuse_conflicts(portal, rules.models, session, entity, survivor_id, loser_id)

    app_portal = current_portal()
    with history.writing_as(MERGE):
        with session.no_autoflush:
            connection = session.connection()
            touched = _repoint_links(rules, connection, entity, survivor_id, loser_id)
            _repoint_many(rules, connection, entity, survivor_id, loser_id)
            shas = _repoint_record_rows(app_portal.metadata, connection, entity, survivor_id, loser_id, taken,
                                        {name: getattr(survivor, name) for name in _file_names(entity)})
            if touched and app_portal.rollups:
                app_portal.rollups.refresh(connection, touched)
        session.expire_all()  # the survivor's rollups, referrers loaded in the session: read again
        session.delete(loser)
        session.flush()  # the loser's unique values are free now; its delete is in its history
        _write_chosen(rules, survivor, taken)
        detail = {"id": loser_id, "title": loser_title, "fields": sorted(n for n, s in choices.items() if s == LOSER)}
        event = history.Event(survivor_id, MERGE, {MERGED_KEY: (None, json.dumps(detail, ensure_ascii=False))})
        history.write_history(session.connection(), app_portal.metadata, entity, [event], *history.current_author())
        # the access audit (Admin's log): who merged which records, committed or rolled back with the merge
        audit.record_event(audit.MERGE, entity=entity.name, session=session,
                           detail={"survivor": survivor_id, "loser": loser_id, "fields": detail["fields"]})
    if shas:
        from app.generate.attachments import drop_after_commit

        drop_after_commit(session, shas)
    return detail


def _write_chosen(rules, survivor, taken: dict) -> None:
    """The loser's chosen values on the survivor, through the record rules (like an API edit); MergeRefused(422)."""
    ctx = rules.context(dict(taken), False, "api", survivor)
    errors = rules.check(ctx)
    if errors:
        raise MergeRefused(422, _l("The chosen values break a rule of the record."), errors)
    session = rules.session
    with session.no_autoflush:
        rules.apply(survivor, rules.before_write(ctx))
        if not session.is_modified(survivor):  # nothing taken: the survivor still changed (its references)
            setattr(survivor, VERSION_COLUMN, getattr(survivor, VERSION_COLUMN) + 1)
    session.flush()


# -- references --------------------------------------------------------------------------------------------------

def _links_to(portal: PortalSpec, entity: EntitySpec) -> list[tuple[EntitySpec, FieldSpec]]:
    return [(e, f) for e, f in portal.links_to(entity.name) if not f.kind.to_users]


def _many_to(portal: PortalSpec, entity: EntitySpec) -> list[tuple[EntitySpec, FieldSpec]]:
    return [(e, f) for e in portal.entities for f in e.fields if f.kind.multiple and f.to == entity.name]


def _refuse_conflicts(portal: PortalSpec, models: dict, session, entity: EntitySpec, survivor_id: int,
                      loser_id: int) -> None:
    """MergeRefused(409) when a referring record of the loser would repeat one of the survivor's in a unique field
    or unique_together group that holds the link (say each Contact's name is unique per customer)."""
    for source, f in _links_to(portal, entity):
        groups = ([(f.name,)] if f.unique else []) + [tuple(g) for g in source.unique_together if f.name in g]
        model = models[source.name]
        for group in groups:
            theirs = aliased(model)
            link = getattr(model, f.column_name)
            same = [getattr(theirs, source.field(n).column_name) == getattr(model, source.field(n).column_name)
                    for n in group if n != f.name]
            found = session.scalar(select(func.count()).select_from(model).where(
                link == loser_id, exists().where(getattr(theirs, f.column_name) == survivor_id, *same)))
            if found:
                fields = ", ".join(source.field(n).label.get(current_locale()) for n in group)
                raise MergeRefused(409, _l(
                    "Cannot merge: %(count)s %(entity)s of both records would have the same %(fields)s.",
                    count=found, entity=source.label.get(current_locale()), fields=fields))


def _repoint_links(rules, connection, entity: EntitySpec, survivor_id: int, loser_id: int) -> dict:
    """Every link field pointing at the loser now points at the survivor (a new row_version and changed_on, a history
    event where the referring entity keeps history). Returns the rollup links touched: {(entity, link): {id}}."""
    models, touched = rules.models, {}
    stamp = rules.audit_values(False)
    for source, f in _links_to(rules.portal, entity):
        table = models[source.name].__table__
        column = table.c[f.column_name]
        ids = list(connection.scalars(select(table.c.id).where(column == loser_id)))
        if not ids:
            continue
        connection.execute(update(table).where(column == loser_id).values(
            {column: survivor_id, table.c[VERSION_COLUMN]: table.c[VERSION_COLUMN] + 1,
             **{table.c[name]: value for name, value in stamp.items()}}))
        if source.name == entity.name:  # the survivor pointing at itself (it pointed at the loser): no link
            connection.execute(update(table).where(table.c.id == survivor_id, column == survivor_id).values({column: None}))
        history.write_history(connection, rules.model.metadata, source,
                              [history.Event(pk, history.UPDATE, {f.name: (loser_id, None if pk == survivor_id and
                                                                           source.name == entity.name else survivor_id)})
                               for pk in ids], *history.current_author())
        touched[(source.name, f.name)] = {survivor_id}
    return touched


def _repoint_many(rules, connection, entity: EntitySpec, survivor_id: int, loser_id: int) -> None:
    """`many` rows naming the loser name the survivor; a record that named both keeps one row."""
    for source, f in _many_to(rules.portal, entity):
        model = rules.models[source.name]
        pairs = getattr(model, f.name).property.secondary
        lefts = list(connection.scalars(select(pairs.c.left_id).where(pairs.c.right_id == loser_id)))
        if not lefts:
            continue
        before = history.many_values(connection, source, model, lefts).get(f.name, {}) if source.history else {}
        both = select(pairs.c.left_id).where(pairs.c.right_id == survivor_id).scalar_subquery()
        connection.execute(delete(pairs).where(pairs.c.right_id == loser_id, pairs.c.left_id.in_(both)))
        connection.execute(update(pairs).where(pairs.c.right_id == loser_id).values(right_id=survivor_id))
        if source.name == entity.name:  # the survivor naming itself (it named the loser): not a link
            connection.execute(delete(pairs).where(pairs.c.left_id == survivor_id, pairs.c.right_id == survivor_id))
        table = model.__table__
        connection.execute(update(table).where(table.c.id.in_(lefts)).values(
            {table.c[VERSION_COLUMN]: table.c[VERSION_COLUMN] + 1}))
        if source.history:
            events = []
            for pk in lefts:
                old = before.get(pk, [])
                new = sorted({survivor_id if i == loser_id else i for i in old})
                events.append(history.Event(pk, history.UPDATE, {f.name: (old, new)}))
            history.write_history(connection, rules.model.metadata, source, events, *history.current_author())


def _file_names(entity: EntitySpec) -> list[str]:
    return [f.name for f in entity.fields if f.kind.name == "file"]


def _repoint_record_rows(metadata, connection, entity: EntitySpec, survivor_id: int, loser_id: int, taken: dict,
                         survivor_files: dict) -> list[str]:
    """History, comments, record attachments, notifications and fired reminder keys of the loser are the survivor's.
    A `file` field's file follows the value chosen; the one left behind goes with its record (kept when the entity
    keeps history, as for any deleted record). Returns the sha256 of blobs to drop after the commit."""
    from app.generate.models import ATTACHMENTS_TABLE, COMMENTS_TABLE, HISTORY_TABLE
    from app.rules.notifications import FIRED_TABLE, NOTIFICATIONS_TABLE

    def of(table, pk):
        return and_(table.c.entity == entity.name, table.c.record_id == pk)

    for name in (HISTORY_TABLE, COMMENTS_TABLE, NOTIFICATIONS_TABLE):
        if name in metadata.tables:
            table = metadata.tables[name]
            connection.execute(update(table).where(of(table, loser_id)).values(record_id=survivor_id))
    if FIRED_TABLE in metadata.tables:  # a key both records fired once stays once
        table = metadata.tables[FIRED_TABLE]
        theirs = aliased(table)
        connection.execute(delete(table).where(of(table, loser_id), exists().where(
            theirs.c.entity == entity.name, theirs.c.record_id == survivor_id,
            theirs.c.reminder == table.c.reminder, theirs.c.fire_key == table.c.fire_key)))
        connection.execute(update(table).where(of(table, loser_id)).values(record_id=survivor_id))
    shas: list[str] = []
    if ATTACHMENTS_TABLE in metadata.tables:
        table = metadata.tables[ATTACHMENTS_TABLE]
        connection.execute(update(table).where(of(table, loser_id), table.c.field.is_(None)).values(record_id=survivor_id))
        for name in _file_names(entity):
            if name not in taken:
                continue  # the survivor's file stays; the loser's goes with the loser (below)
            chosen = taken[name]
            if chosen is not None:
                connection.execute(update(table).where(table.c.id == chosen).values(record_id=survivor_id))
            replaced = survivor_files.get(name)
            if replaced is not None and replaced != chosen and not entity.history:
                shas += _remove_attachment(connection, table, replaced)
        if not entity.history:  # what stays with the loser is deleted with it
            gone = list(connection.execute(select(table.c.id).where(of(table, loser_id))).scalars())
            for pk in gone:
                shas += _remove_attachment(connection, table, pk)
    return shas


def _remove_attachment(connection, table, pk) -> list[str]:
    shas = list(connection.execute(select(table.c.sha256).where(table.c.id == pk)).scalars())
    connection.execute(delete(table).where(table.c.id == pk))
    return shas


def merged_detail(changes_text: str) -> dict | None:
    """The loser's {id, title, fields} of a stored merge event (app/generate/timeline.py shows it)."""
    try:
        value = json.loads(changes_text or "{}").get(MERGED_KEY)
        detail = json.loads(value[1])
    except (ValueError, AttributeError, TypeError, IndexError, KeyError):
        return None
    return detail if isinstance(detail, dict) else None
