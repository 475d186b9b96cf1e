"""Build SQLAlchemy models from the checked spec, on a declarative base and MetaData of the app's own."""
from __future__ import annotations

import datetime as dt

from flask import current_app, has_request_context
from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import (
    BigInteger,
    Column,
    PrimaryKeyConstraint,
    String,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import declarative_base, relationship

from app.fieldtypes import type_of
from app.generate.filters import ENTITY_ATTRIBUTE
from app.schema.spec import VERSION_COLUMN, EntitySpec, FieldSpec, PortalSpec

# A B-tree entry holds at most ~2.7 KB on PostgreSQL: unbounded text (and strings that may exceed that in
# UTF-8) is indexed on a prefix, so long values still fit; the index keeps the name a plain one would get.
PREFIX_INDEX_CHARS = 100
LONG_STRING_CHARS = 600


def current_user_id() -> int | None:
    """Id of the user behind this request (browser session or JWT); None in CLI jobs."""
    if not has_request_context():
        return None
    user = current_app.appbuilder.sm.current_user
    return getattr(user, "id", None)


def _now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


def _column_default(f: FieldSpec):
    if f.rollup is not None:  # a new parent has no children yet
        return f.rollup.empty
    if f.default == "now":
        return _now
    if f.default == "today":
        return dt.date.today
    if f.default == "current_user":
        return current_user_id
    return f.default


def _indexed(entity: EntitySpec, f: FieldSpec) -> bool:
    sorted_on = {name for name, _ in entity.order}
    return bool(f.index or f.name in entity.search or f.name in sorted_on or f.name == entity.title) and not f.unique


def _long_values(f: FieldSpec) -> bool:
    """Values that may not fit one B-tree index entry."""
    ftype = type_of(f)
    return ftype.long_values or (ftype.max_length(f) or 0) > LONG_STRING_CHARS


def portal_metadata() -> MetaData:
    """A MetaData for one app's generated tables that still resolves foreign keys to FAB's `ab_user`."""
    metadata = MetaData()
    # SQLAlchemy private API (one line): FK strings resolve within a MetaData, and `ab_user` must be FAB's
    # own Table object (not a copy) so relationships to `User` find their join. create_all skips it (exists).
    metadata._add_table(User.__table__.name, User.__table__.schema, User.__table__)
    return metadata


COUNTERS_TABLE = "portal_counters"


def counters_table(metadata: MetaData) -> Table:
    """Autonumber counters (app/rules/autonumber.py): the last number given per entity, field and period."""
    if COUNTERS_TABLE in metadata.tables:
        return metadata.tables[COUNTERS_TABLE]
    return Table(
        COUNTERS_TABLE, metadata,
        Column("entity", String(60), nullable=False),
        Column("field", String(60), nullable=False),
        Column("period", String(10), nullable=False),  # "" (never restarts), "2026", "2026-11" or "2026-11-26"
        Column("value", BigInteger, nullable=False),
        PrimaryKeyConstraint("entity", "field", "period"),
    )


ROLLUPS_TABLE = "portal_rollups"


def rollups_table(metadata: MetaData) -> Table:
    """The definition each stored rollup column was computed with (app/rules/rollups.py `fill_new_rollups`): a
    changed definition is computed again at start."""
    if ROLLUPS_TABLE in metadata.tables:
        return metadata.tables[ROLLUPS_TABLE]
    return Table(
        ROLLUPS_TABLE, metadata,
        Column("entity", String(60), nullable=False),
        Column("field", String(60), nullable=False),
        Column("definition", String(64), nullable=False),  # sha256 of the rollup and its column type
        PrimaryKeyConstraint("entity", "field"),
    )


HISTORY_TABLE, COMMENTS_TABLE, ATTACHMENTS_TABLE = "portal_history", "portal_comments", "portal_attachments"
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")  # SQLite numbers only INTEGER PRIMARY KEY rows itself


def _table(metadata: MetaData, name: str, *columns) -> Table:
    if name in metadata.tables:
        return metadata.tables[name]
    return Table(name, metadata, Column("id", _SERIAL, primary_key=True, autoincrement=True),
                 Column("entity", String(60), nullable=False), Column("record_id", Integer, nullable=False),
                 *columns, Index(f"ix_{name}_record", "entity", "record_id", "id"))


def history_table(metadata: MetaData) -> Table:
    """Append-only record history (app/rules/history.py): one row per create, change, transition or delete,
    with who, when, by which path and each field's old and new value (JSON). No foreign keys: a deleted record
    or user keeps its history (the user's name is copied)."""
    return _table(metadata, HISTORY_TABLE,
                  Column("at", DateTime, nullable=False),
                  Column("user_id", Integer), Column("username", String(256)),
                  Column("path", String(20), nullable=False),      # form, api, import, bulk, transition, cli, ...
                  Column("action", String(20), nullable=False),    # create, update, transition, delete
                  Column("transition", String(40)),
                  Column("changes", Text, nullable=False),         # {"field": [old, new], ...}
                  Index("ix_portal_history_user", "user_id", "id"))  # the home page's "recent records" of a user


def comments_table(metadata: MetaData) -> Table:
    """Comments on records of entities with `comments: true` (app/generate/comments.py)."""
    return _table(metadata, COMMENTS_TABLE,
                  Column("author_id", Integer), Column("author_name", String(256)),
                  Column("created_on", DateTime, nullable=False), Column("edited_on", DateTime),
                  Column("text", Text, nullable=False),
                  Column("mentions", Text, nullable=False, server_default="[]"))  # JSON list of user ids


def attachments_table(metadata: MetaData) -> Table:
    """Files of records (`attachments:`) and of `file` fields (`field` set): metadata here, the bytes outside the
    database, content-addressed by sha256 (app/data/files.py)."""
    return _table(metadata, ATTACHMENTS_TABLE,
                  Column("field", String(60)),                      # None: an attachment of the record
                  Column("name", String(255), nullable=False),      # the uploaded file's name, for downloads only
                  Column("size", BigInteger, nullable=False),
                  Column("content_type", String(120), nullable=False),
                  Column("sha256", String(64), nullable=False, index=True),
                  Column("uploaded_by_id", Integer), Column("uploaded_by_name", String(256)),
                  Column("uploaded_on", DateTime, nullable=False))


def _server_default(entity: EntitySpec, f: FieldSpec):
    """Defaults the database itself keeps, for writes that skip Python defaults (COPY, driver executemany, SQL by
    hand) and for rows that exist when the column is added: an empty count or sum is 0; a workflow's state starts
    at its default state (records older than the workflow start there too)."""
    if f.rollup is not None and f.rollup.empty == 0:
        return text("0")
    if entity.workflow is not None and f.name == entity.workflow.field and isinstance(f.default, str):
        return f.default  # a choice key: letters, digits, _ and - only (the checker's E412), quoted by SQLAlchemy
    return None


def notification_tables(metadata: MetaData) -> None:
    from app.rules.notifications import notification_tables as tables

    tables(metadata)


def build_models(spec: PortalSpec, metadata: MetaData) -> dict[str, type]:
    """The spec's models, on `metadata` (see portal_metadata) and a declarative registry of their own."""
    from app.data.duplicates import duplicate_indexes  # the search owns its indexes
    base = declarative_base(metadata=metadata, name="PortalModel")
    counters_table(metadata)
    rollups_table(metadata)
    history_table(metadata)
    comments_table(metadata)
    attachments_table(metadata)
    notification_tables(metadata)  # app/rules/notifications.py: inbox rows, fired date reminders, mutes
    models: dict[str, type] = {}
    for entity in spec.entities:
        models[entity.name] = _build_model(entity, models, base)
    for entity in spec.entities:
        _order_index(entity, models)
        duplicate_indexes(entity, models[entity.name].__table__)  # one per `duplicates:` rule
    for report in spec.reports:
        _report_index(spec, report, models)
    for reminder in spec.reminders:
        _reminder_index(spec, reminder, models)
    return models


def _reminder_index(spec: PortalSpec, reminder, models: dict) -> None:
    """A date reminder's scan reads the due rows through an index on its date column."""
    if reminder.date is None:
        return
    table = models[reminder.entity].__table__
    column = spec.entity(reminder.entity).field(reminder.date).column_name
    name = f"ix_{table.name}_{column}"[:60]
    if not any(ix.name == name for ix in table.indexes) and not any(
            [c.name for c in ix.columns] == [column] for ix in table.indexes):
        Index(name, table.c[column])


def order_index_name(table: str) -> str:
    return f"ix_{table}_by_order"


def _order_index(entity: EntitySpec, models: dict) -> None:
    """The list's default order plus id (its tie-break), so a deep page finds its ids in the index alone."""
    columns = [entity.field(name).column_name for name, _ in entity.order if entity.field(name) is not None]
    if columns and columns != ["id"]:
        table = models[entity.name].__table__
        Index(order_index_name(entity.table), *(table.c[c] for c in columns), table.c.id)


def _report_index(spec: PortalSpec, report, models: dict) -> None:
    """A covering index per report (filters, groups, measures) so its GROUP BY reads the index only; a
    cross-entity report gets one per source (filter, key, measures)."""
    if report.sources:
        parts = [(s.entity, s.filter, [] if s.key == "id" else [s.key_field], s.measures, f"ix_report_{report.id}_{s.name}")
                 for s in report.sources]
    else:
        groups = [g.field for g in report.group_by] + ([report.columns.field] if report.columns else [])
        parts = [(report.entity, report.filter, groups, report.measures, f"ix_report_{report.id}")]
    for entity_name, conditions, groups, measures, name in parts:
        entity = spec.entity(entity_name)
        names = [c.path[0] for c in conditions] + groups + [f for m in measures for f in m.fields]
        columns = list(dict.fromkeys(entity.field(n).column_name for n in names if not type_of(entity.field(n)).multiple))
        if columns:
            table = models[entity.name].__table__
            Index(name[:63], *(table.c[c] for c in columns[:16]))


def _build_model(entity: EntitySpec, models: dict, base) -> type:
    attrs: dict = {
        "__tablename__": entity.table,
        "__module__": "portal_models",  # each app's registry is its own: names never clash
        "id": Column(Integer, primary_key=True),
    }
    table_args: list = []
    prefix_indexed = []
    for f in entity.fields:
        ftype = type_of(f)
        if ftype.multiple:
            attrs[f.name] = _many_relationship(entity, f, models, base.metadata)
        elif ftype.is_relation:
            attrs.update(_link_columns(entity, f, models))
        else:
            indexed = _indexed(entity, f)
            if indexed and _long_values(f):
                prefix_indexed.append(f.name)
            attrs[f.name] = Column(
                type_of(f).column_type(f), nullable=not (f.required and type_of(f).required_in_column), unique=f.unique or None,
                index=(indexed and not _long_values(f)) or None, default=_column_default(f),
                server_default=_server_default(entity, f),
            )
    attrs.update(_audit_columns())
    # every ORM UPDATE adds 1 and checks the old value in its WHERE: a concurrent save raises StaleDataError
    version = Column(VERSION_COLUMN, Integer, nullable=False, server_default=text("1"))
    attrs[VERSION_COLUMN] = version
    attrs["__mapper_args__"] = {"version_id_col": version}
    for group in entity.unique_together:
        columns = [entity.field(name).column_name for name in group]
        table_args.append(UniqueConstraint(*columns, name=f"uq_{entity.table}_{'_'.join(group)}"[:63]))
    if entity.history or entity.comments or entity.attachments is not None:
        # history, comments and files outlive their record (no FKs): SQLite must never hand a deleted record's id
        # to a new one (without AUTOINCREMENT it reuses the highest id), or the new record would show them
        table_args.append({"sqlite_autoincrement": True})
    attrs["__table_args__"] = tuple(table_args)
    attrs[ENTITY_ATTRIBUTE] = entity  # which filters a column offers depends on its field's type (filters.py)
    attrs["__str__"] = _title_function(entity)
    attrs["__repr__"] = lambda self: f"<{entity.name} {self.id}>"
    attrs["to_json"] = Model.to_json  # what FAB's own Model base adds
    model = type(entity.name, (base,), attrs)
    for name in prefix_indexed:
        Index(f"ix_{entity.table}_{name}", func.substr(model.__table__.c[name], 1, PREFIX_INDEX_CHARS))
    return model


def _link_columns(entity: EntitySpec, f: FieldSpec, models: dict) -> dict:
    ftype = type_of(f)
    target = lambda: ftype.target_model(f, models)  # noqa: E731 - resolved after every model exists
    column = Column(
        ftype.column_type(f), ForeignKey(f"{ftype.target_table(f)}.id", ondelete=ftype.on_delete_sql(f)),
        nullable=not f.required, index=True, unique=f.unique or None, default=_column_default(f),
    )
    options = {"foreign_keys": [column]}
    if f.to == entity.name:
        options["remote_side"] = lambda: [models[f.to].id]
    return {f.column_name: column, f.name: relationship(target, **options)}


def _many_relationship(entity: EntitySpec, f: FieldSpec, models: dict, metadata: MetaData):
    target_table = type_of(f).target_table(f)
    table = Table(
        f"{entity.table}_{f.name}", metadata,
        Column("left_id", Integer, ForeignKey(f"{entity.table}.id", ondelete="CASCADE"), primary_key=True),
        Column("right_id", Integer, ForeignKey(f"{target_table}.id", ondelete="CASCADE"), primary_key=True, index=True),
    )
    if f.to != entity.name:
        return relationship(lambda: models[f.to], secondary=table)
    # both foreign keys point at this table: say which side is which
    return relationship(
        lambda: models[f.to], secondary=table,
        primaryjoin=lambda: models[entity.name].id == table.c.left_id,
        secondaryjoin=lambda: models[f.to].id == table.c.right_id,
    )


def _audit_columns() -> dict:
    created_by = Column(Integer, ForeignKey("ab_user.id", ondelete="SET NULL"), default=current_user_id)
    changed_by = Column(
        Integer, ForeignKey("ab_user.id", ondelete="SET NULL"), default=current_user_id, onupdate=current_user_id,
    )
    return {
        "created_on": Column(DateTime, default=_now, nullable=False, index=True),
        "changed_on": Column(DateTime, default=_now, onupdate=_now, nullable=False),
        "created_by_id": created_by,
        "changed_by_id": changed_by,
        "created_by": relationship(User, foreign_keys=[created_by]),
        "changed_by": relationship(User, foreign_keys=[changed_by]),
    }


def _title_function(entity: EntitySpec):
    title = entity.title

    def __str__(self) -> str:
        value = getattr(self, title, None) if title else None
        if value is None or value == "":
            return f"#{self.id}"
        return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)

    return __str__
