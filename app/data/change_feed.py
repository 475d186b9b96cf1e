"""Pages of an entity's change log (app/data/change_log.py) as one viewer may see them.

One keyset SELECT per page: the log rows after the cursor, in commit order (commit number, seq), left-joined to the
live record and to the titles its links show, limited in SQL to the viewer's rows (a create/update: the record as it
is now, in the viewer's row scope; a delete: the scope's values kept at delete time, `Viewer.values_clause`).

Records as the API's list shows them (links `{id, title}`, users `{id, username}`, many-fields `[{id}]`, decimals
as text, dates ISO; hidden fields left out, masked ones masked), written as JSON text by the database itself
(json_object / json_build_object) and sent as they come: no ORM objects, no Python dicts, no serialising. Python
adds only what the database cannot write exactly (`_Spliced`: masks, many-fields, SQLite's decimals) and each
change's cursor. tests/test_change_feed_render.py holds every value the list API writes against the feed's.

Cursors are `<commit number>-<seq>-<mac>` (hex), the mac a keyed BLAKE2b of the entity and position under the app's
SECRET_KEY: opaque to the client, and a tampered, foreign or malformed cursor is refused (400) rather than read as a
position.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac  # compare_digest
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import (BigInteger, Boolean, Date, DateTime, Float, Integer, Numeric, String, Text, and_, bindparam,
                        case, cast, func, literal, literal_column, null, or_, select, text, true, tuple_, type_coerce,
                        union_all)
from sqlalchemy.orm import aliased
from sqlalchemy.types import NullType

from app.data import change_log
from app.data.change_log import OPS, after_clause, commit_order, ordered_source, pruned_position, scope_paths
from app.portal import current_portal
from app.rules.access import Viewer, mask_value
from app.runtime.protection import purpose_key
from app.schema.filters import mentions
from app.schema.spec import EntitySpec, PortalSpec

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
START = (0, 0)
END_OF_COMMIT = 2 ** 63 - 1  # a cursor's seq after every row of its commit
_HEX = re.compile(r"[0-9a-f]{1,16}")


class CursorRefused(ValueError):
    """A cursor this feed did not hand out (400)."""


class CursorExpired(ValueError):
    """A cursor from before the log's retention horizon (410): changes after it were pruned."""


class _Signer:
    """A keyed BLAKE2b (a MAC) of (entity, position) under the app's SECRET_KEY, 16 hex digits: a cursor from another
    feed, an edited one or a made-up one fails the check. A page signs each of its changes: the keyed hash's state
    is set up once and copied per change (half the cost of keying it each time)."""

    def __init__(self, entity: EntitySpec) -> None:
        key = purpose_key(current_app.config, "portal-changes")
        self._keyed = hashlib.blake2b(entity.name.encode() + b":", key=key, digest_size=8)

    def __call__(self, tx: int, seq: int) -> str:
        mac = self._keyed.copy()
        mac.update(b"%d:%d" % (tx, seq))
        return mac.hexdigest()

    def many(self, positions: list) -> list[str]:
        copy, tags = self._keyed.copy, []
        for tx, seq in positions:
            mac = copy()
            mac.update(b"%d:%d" % (tx, seq))
            tags.append(mac.hexdigest())
        return tags



def encode_cursor(entity: EntitySpec, position: tuple[int, int]) -> str:
    tx, seq = int(position[0]), int(position[1])
    return f"{tx:x}-{seq:x}-{_Signer(entity)(tx, seq)}"


def decode_cursor(entity: EntitySpec, cursor: str) -> tuple[int, int]:
    parts = cursor.split("-")
    if len(parts) != 3 or len(cursor) > 64 or not all(parts) or not all(_HEX.fullmatch(p) for p in parts):
        raise CursorRefused(cursor)
    tx, seq = int(parts[0], 16), int(parts[1], 16)
    if tx >= 2 ** 63 or seq >= 2 ** 63 or not hmac.compare_digest(_Signer(entity)(tx, seq), parts[2]):
        raise CursorRefused(cursor)
    return tx, seq


@dataclass
class Page:
    changes: list  # each change as its JSON text
    next: str

    def json(self) -> str:
        """The answer's body: `{"changes": [...], "next": "..."}` (one f-string: `a + b + c` copied the ~1 MB page
        once per `+`)."""
        return f'{{"changes":[{",".join(self.changes)}],"next":"{self.next}"}}'


@dataclass(frozen=True)
class _Spliced:
    """A record field the database does not write into the record's JSON: appended in Python from its column(s)."""
    key: str  # ',"name":'
    positions: tuple  # of the row's columns it reads
    to_json: object = None  # (*values) -> JSON text
    text_format: str | None = None  # or: the %-format of a value's JSON text ('"%.2f"'), null for None


class ChangeFeed:
    """The feed of one entity for one viewer."""

    def __init__(self, spec: PortalSpec, entity: EntitySpec, models: dict, log, metadata, viewer: Viewer) -> None:
        self.spec, self.entity, self.models, self.log, self.metadata, self.viewer = \
            spec, entity, models, log, metadata, viewer
        self.model = models[entity.name]
        hidden = viewer.hidden(entity.name)
        self.fields = [f for f in entity.fields if f.name not in hidden]
        self.masked = viewer.masked(entity.name)
        self.many_fields = [f for f in self.fields if f.kind.multiple]

    def page(self, session, since: str | None, limit: int = DEFAULT_LIMIT) -> Page:
        position = START if since is None else decode_cursor(self.entity, since)
        connection = session.connection()
        pruned = pruned_position(connection, self.metadata, self.log)
        if since is not None and pruned is not None and position < pruned:
            raise CursorExpired(since)
        statement, spliced = self.prepared(connection.dialect.name)
        with _ordered_scans(connection):
            result = connection.execute(statement, {"after_tx": position[0], "after_seq": position[1],
                                                    "page_limit": limit})
            rows = result.cursor.fetchall()  # plain tuples: the row objects' cost is a fifth of a page's Python
            result.close()
        horizon = rows.pop()[1] if rows and rows[-1][0] is None else None  # PostgreSQL: `_per_commit`
        if self.many_fields:
            spliced = spliced + self._many_spliced(connection, [r[3] for r in rows if r[2] != "d"])
        changes = _assembler(spliced)(rows, _Signer(self.entity).many([(r[1], r[0]) for r in rows]))
        last = (rows[-1][1], rows[-1][0]) if rows else position
        if horizon is not None and len(rows) < limit and (horizon, END_OF_COMMIT) > last:
            # the page read every commit its snapshot sees: the next one starts after the newest of them, so a
            # caught-up client of a quiet entity does not walk again every other table's commits since its last change
            last = (horizon, END_OF_COMMIT)
        return Page(changes, encode_cursor(self.entity, last))

    # -- the one SELECT --------------------------------------------------------------------------------------
    def prepared(self, dialect: str):
        """(SELECT of a page with parameters after_tx, after_seq, page_limit; the fields spliced in Python), built
        once per entity, viewer rule set and day (a scope may say $today) and kept in the portal's bounded cache."""
        viewer = self.viewer
        if mentions(viewer.scopes(self.entity.name), "now"):  # resolved to a moment when built: never kept (review)
            return self.statement(dialect)
        key = ("change_feed", self.entity.name, dialect, viewer.is_admin, tuple(sorted(r.name for r in viewer.roles)),
               viewer.user_id, dt.date.today())
        return current_portal().form_cache.get_or_make(key, lambda: self.statement(dialect))

    def statement(self, dialect: str):
        """(SELECT of one page, the fields spliced in Python). The database writes each record's JSON itself
        (json_object / json_build_object): a page of 1,000 records built as Python dicts and then serialised cost
        three times the query. What it cannot write exactly as the list API does is left to Python (`_Spliced`):
        masked fields (`mask_value`), many-fields (`_many_spliced`) and SQLite's decimals (stored as REAL: SQLite's
        printf rounds 8399.185 up where Python, like the list API, writes 8399.18)."""
        log, model = self.log, self.model
        _, number = ordered_source(log, self.metadata, dialect)  # the commit number (change_log.py)
        columns = [log.c.seq, number.label("number"), log.c.op, log.c.record_id]
        pairs, extra, spliced, joins = [("id", model.id)], [], [], []

        def splice(name: str, *read, to_json=None, text_format=None) -> None:
            """Field `name` written by Python from the columns `read` (after the record's JSON in the row)."""
            extra.extend(read)
            at = len(columns) + len(extra)  # the row: columns, the record's JSON, then `extra`
            spliced.append(_Spliced(f',"{name}":', tuple(range(at - len(read) + 1, at + 1)), to_json, text_format))

        for f in self.fields:
            if f.kind.multiple:
                continue  # _many_spliced
            column = getattr(model, f.column_name)
            if f.name in self.masked:  # plain values only (`maskable` field types)
                expression, convert = _api_text(column, dialect)
                splice(f.name, expression, to_json=_masked_json(convert))
            elif f.kind.is_relation:
                target, title_name, title = self._link_title(f)
                if title is not None:
                    joins.append((target, target.id == column))
                title_json = None if title is None else _json_sql(title, dialect)
                if title is not None and title_json is None:  # SQLite decimal title: in Python
                    expression, convert = _api_text(title, dialect)
                    splice(f.name, column, expression, to_json=_link_json(title_name, convert))
                    continue
                link = [("id", column)] + ([(title_name, title_json)] if title is not None else [])
                pairs.append((f.name, _nested(case((column.is_(None), None), else_=_json_object(link, dialect)), dialect)))
            elif (written := _json_sql(column, dialect)) is None:  # a SQLite decimal
                splice(f.name, column, text_format=_decimal_text_format(column))
            else:
                pairs.append((f.name, written))
        for name in ("created_on", "changed_on", "row_version"):
            pairs.append((name, _json_sql(getattr(model, name), dialect)))
        columns.append(_json_text(pairs, dialect).label("record"))
        columns.extend(column.label(f"x{n}") for n, column in enumerate(extra))
        source = log.outerjoin(model, and_(model.id == log.c.record_id, log.c.op != "d"))
        for target, onclause in joins:
            source = source.outerjoin(target, onclause)
        after = (bindparam("after_tx", type_=BigInteger), bindparam("after_seq", type_=BigInteger))
        limit = bindparam("page_limit", type_=Integer)
        if dialect != "postgresql":  # one writer at a time: seq (the rowid) is commit order
            statement = (select(*columns).select_from(source)
                         .where(after_clause(number, log.c.seq, dialect, after), self._scope(log, model))
                         .order_by(*commit_order(log, number, dialect)).limit(limit))
            return statement, tuple(spliced)
        return self._per_commit(columns, source, after, limit), tuple(spliced)

    def _per_commit(self, columns: list, source, after: tuple, limit):
        """PostgreSQL: the page in (commit number, seq) order, read one commit at a time. For each commit from the
        cursor's on (by the commit-number index), its log rows in seq order (the (tx, seq) index), joined, scoped
        and cut at the page's size inside the commit (LATERAL); the commits' rows follow each other in number
        order. Joining the log to the commits and sorting by (number, seq) instead read, joined and sorted every
        row of the cursor's transaction: 200 ms a page inside a 200,000-row import, seconds inside a 1M one."""
        log, model = self.log, self.model
        commits = change_log.commit_tables(self.metadata)
        inner = [c for c in columns if c.name != "number"]
        rows = (select(*inner).select_from(source)
                .where(log.c.tx == commits.c.tx,
                       # (tx, seq) > ...: only the (tx, seq) index can use it, never the seq key alone (which the
                       # planner liked, then walked from seq 0 past every earlier transaction's rows)
                       tuple_(log.c.tx, log.c.seq) > tuple_(commits.c.tx, case((commits.c.n == after[0], after[1]),
                                                                               else_=literal(0, BigInteger))),
                       self._scope(log, model))
                .order_by(log.c.seq).limit(limit).lateral("commit_rows"))
        picked = [rows.c.seq, commits.c.n.label("number")] + [rows.c[c.name] for c in inner[1:]]
        page = (select(*picked).select_from(commits.join(rows, true())).where(commits.c.n >= after[0])
                .order_by(commits.c.n, rows.c.seq).limit(limit).subquery("page"))
        # and, in the same statement (so the same snapshot), one last row: seq NULL, number = the newest commit
        # number visible, which `page` uses to move the cursor past commits of other tables (ChangeFeed.page)
        newest = select(func.max(commits.c.n)).scalar_subquery()
        horizon = select(*[(newest if c.name == "number" else null()).label(c.name) for c in page.c])
        return (union_all(select(*page.c), horizon)
                .order_by(literal_column("number"), literal_column("seq").asc().nulls_last()))

    def _link_title(self, f):
        """(aliased linked model, title's name, title column or None) of a link field: `{id, <title>: ..}`."""
        target = aliased(f.kind.target_model(f, self.models))
        if f.kind.to_users:
            return target, "username", target.username
        title_name = self.spec.entity(f.to).title
        title_field = self.spec.entity(f.to).field(title_name) if title_name else None
        if title_field is None or title_field.is_relation:
            return target, title_name, None
        return target, title_name, getattr(target, title_name)

    def _scope(self, log, model):
        """Creates and updates of live records in the viewer's scope; deletes whose kept values were in it."""
        live = model.id.isnot(None)
        rows = self.viewer.row_clause(self.entity.name, self.models)
        if rows is not None:
            live = and_(live, rows)
        kept = {c.name: c for c in log.columns}
        values = {f.name: kept[f.column_name] for f in self.entity.fields  # fields not kept: NULL
                  if not f.kind.multiple and f.column_name in kept}
        for path in scope_paths(self.spec, self.entity):  # a hop through a link: its value at delete time
            values[(path.link.name, path.target.name)] = (kept[path.column], kept[path.pending])
        gone = self.viewer.values_clause(self.entity.name, self.models, values)
        deleted = log.c.op == "d" if gone is None else and_(log.c.op == "d", gone)
        return or_(and_(log.c.op != "d", live), deleted)

    def _many_spliced(self, connection, ids: list) -> tuple:
        """The page's many-fields as `[{"id": ..}, ..]` (one query per many-field), spliced by record id."""
        spliced = []
        for f in self.many_fields:
            secondary = getattr(self.model, f.name).property.secondary
            found: dict = {}
            if ids:
                query = (select(secondary.c.left_id, secondary.c.right_id).where(secondary.c.left_id.in_(sorted(set(ids))))
                         .order_by(secondary.c.left_id, secondary.c.right_id))
                for left, right in connection.execute(query):
                    found.setdefault(left, []).append(right)
            texts = {left: "[" + ",".join(f'{{"id":{right}}}' for right in rights) + "]" for left, rights in found.items()}
            spliced.append(_Spliced(f',"{f.name}":', (3,), lambda pk, texts=texts: texts.get(pk, "[]")))
        return tuple(spliced)


@contextmanager
def _ordered_scans(connection):
    """PostgreSQL: no bitmap scans for the page's statement (then as before, in this transaction). The planner
    estimates a transaction's log rows as the average transaction's; for a large import among small writes that
    is a few rows, and it read them all through a bitmap and sorted them rather than walk the (tx, seq) index in
    order and stop at the page's size (`_per_commit`): every row of the import after the cursor read, joined and
    sorted for each page. Without bitmap scans the index walk needs no sort and is always chosen."""
    if connection.dialect.name != "postgresql":
        yield
        return
    before = connection.execute(text("SELECT current_setting('enable_bitmapscan'), "
                                     "set_config('enable_bitmapscan', 'off', true)")).scalar()
    yield
    # not in a `finally`: after an error PostgreSQL refuses every statement until the rollback, which undoes the
    # setting anyway; restoring there would replace the error with "current transaction is aborted"
    connection.execute(text("SELECT set_config('enable_bitmapscan', :before, true)"), {"before": before})


_ASSEMBLERS: dict = {}


def _assembler(spliced: tuple):
    """rows, their cursors' tags -> each change's JSON text. Written as Python source for the page's shape (which
    columns each spliced field reads, and how) and compiled once: a general loop over the spliced fields cost a
    generator and a list per change, more than the rest of the change's Python together. The source holds no
    schema text: keys, formats and converters are passed in by position."""
    shape = tuple((s.positions, s.text_format is not None) for s in spliced)
    if shape not in _ASSEMBLERS:
        lines, pieces, arguments = [], "", ""
        for n, (positions, formatted) in enumerate(shape):
            arguments += f", k{n}, f{n}"
            if formatted:  # a format for the value's text: 'null' or e.g. '"%.2f"' % value
                lines.append(f"        s{n} = 'null' if (v := row[{positions[0]}]) is None else f{n} % v\n")
            else:
                lines.append(f"        s{n} = f{n}({', '.join(f'row[{at}]' for at in positions)})\n")
            pieces += f"{{k{n}}}{{s{n}}}"
        record = f"{{row[4][:-1]}}{pieces}}}}}" if shape else "{row[4]}"
        source = (
            f"def assemble(rows, tags, OPS{arguments}):\n"
            "    changes = []\n"
            "    add = changes.append\n"
            "    for row, tag in zip(rows, tags):\n"
            "        op = row[2]\n"
            "        if op == 'd' or row[4] is None:\n"
            "            add(f'{{\"op\":\"{OPS[op]}\",\"id\":{row[3]},\"record\":null,\"cursor\":\"{row[1]:x}-{row[0]:x}-{tag}\"}}')\n"
            "            continue\n"
            + "".join(lines) +
            f"        add(f'{{{{\"op\":\"{{OPS[op]}}\",\"id\":{{row[3]}},\"record\":{record},\"cursor\":\"{{row[1]:x}}-{{row[0]:x}}-{{tag}}\"}}}}')\n"
            "    return changes\n")
        namespace: dict = {}
        exec(compile(source, f"<change feed assembler {shape}>", "exec"), namespace)
        _ASSEMBLERS[shape] = namespace["assemble"]
    assemble = _ASSEMBLERS[shape]
    bound = [OPS]
    for s in spliced:
        bound += [s.key, s.text_format if s.text_format is not None else s.to_json]
    return lambda rows, tags: assemble(rows, tags, *bound)


def _masked_json(convert):
    def to_json(value) -> str:
        return json.dumps(mask_value(convert(value) if convert is not None and value is not None else value),
                          ensure_ascii=False)
    return to_json


def _link_json(title_name: str, convert):
    def to_json(fk, title) -> str:
        if fk is None:
            return "null"
        return json.dumps({"id": fk, title_name: convert(title) if title is not None else None}, ensure_ascii=False)
    return to_json


def _decimal_text_format(column) -> str:
    """A SQLite decimal's JSON text, as SQLAlchemy's Numeric reads the stored REAL for the list API."""
    return f'"%.{int(column.type.scale)}f"'


def _json_object(pairs: list, dialect: str):
    """A JSON object of at most 50 (key, SQL value) pairs (PostgreSQL's functions take at most 100 arguments)."""
    arguments = []
    for key, value in pairs:
        arguments += [literal(key, String), value]
    return (func.json_object if dialect == "sqlite" else func.json_build_object)(*arguments)


def _json_text(pairs: list, dialect: str):
    """The JSON object of (key, SQL value) pairs as text; more than 50 keys are written in parts joined as text."""
    parts = [type_coerce(_json_object(pairs[first:first + 50], dialect) if dialect == "sqlite"
                         else cast(_json_object(pairs[first:first + 50], dialect), Text), String)
             for first in range(0, len(pairs), 50)]
    text_ = parts[0]
    for part in parts[1:]:  # '{..}' + '{..}' -> '{..,..}'
        text_ = func.substr(text_, 1, func.length(text_) - 1) + "," + func.substr(part, 2)
    return type_coerce(text_, String)


def _nested(expression, dialect: str):
    """A JSON object as a value inside another: SQLite's json() marks it as JSON (else it would be a quoted string);
    PostgreSQL's json_build_object nests a json value as it is."""
    return func.json(expression) if dialect == "sqlite" else expression


def _json_sql(column, dialect: str):
    """The SQL expression writing `column` as the list API shows it, for json_object / json_build_object; None when
    the database cannot write it exactly (SQLite decimals: `_decimal_text_format`)."""
    kind = column.type
    if isinstance(kind, DateTime) and dialect == "sqlite":  # stored 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        return func.replace(func.replace(column, ".000000", ""), " ", "T")
    if isinstance(kind, Boolean) and dialect == "sqlite":  # stored 0/1
        return func.json(case((column.is_(None), None), (column != 0, "true"), else_="false"))
    if isinstance(kind, Numeric) and not isinstance(kind, Float) and kind.scale is not None and dialect == "sqlite":
        return None
    expression, convert = _api_text(column, dialect)
    assert convert is None, column
    return expression


def _api_text(column, dialect: str):
    """(expression, Python converter or None): a date, datetime or decimal column read as the text the API's schema
    writes (ISO dates, `2026-01-02T03:04:05` with microseconds only when there are some, decimals with their scale),
    never parsed into a Python object only to be written out again. SQLite stores them as text and REAL: they are
    read as stored and cut or formatted by one string operation in Python (a SQL CASE per datetime cost more: it
    doubled the query's time). PostgreSQL formats them in SQL (psycopg2 would otherwise build datetime and Decimal
    objects). Other columns as they are."""
    kind = column.type
    if isinstance(kind, DateTime):
        if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS[.ffffff]'
            return type_coerce(column, NullType()), _sqlite_datetime_text
        seconds = type_coerce(func.to_char(column, 'YYYY-MM-DD"T"HH24:MI:SS'), String)
        text_ = case((cast(func.extract("microseconds", column), Integer) % 1000000 == 0, seconds),
                     else_=seconds + type_coerce(func.to_char(column, ".US"), String))
        return type_coerce(text_, String), None
    if isinstance(kind, Date):  # PostgreSQL: to_char, not ::text (which follows the server's DateStyle)
        return type_coerce(column if dialect == "sqlite" else func.to_char(column, "YYYY-MM-DD"), String), None
    if isinstance(kind, Numeric) and not isinstance(kind, Float) and kind.scale is not None:
        if dialect == "sqlite":  # REAL: formatted as SQLAlchemy's Numeric does ('%.<scale>f')
            return type_coerce(column, NullType()), f"%.{kind.scale}f".__mod__
        return type_coerce(cast(column, String), String), None
    return column, None


def _sqlite_datetime_text(stored: str) -> str:
    if len(stored) <= 19 or stored.endswith(".000000"):
        return stored[:10] + "T" + stored[11:19]
    return stored[:10] + "T" + stored[11:]
