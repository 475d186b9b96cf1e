"""List queries whose cost does not grow with the table: capped counts and keyset (seek) paging.

FAB counts every matching row (`count(*)` over a subquery that joins each link) and pages with
OFFSET, so at 1M rows page 1 pays a full count and the last page a full scan. Here:

- the count reads at most PORTAL_COUNT_CAP + 1 ids of the filtered, scoped table, joining only
  what a filter needs; above the cap the list says "10,000+" and the API `count_capped: true`;
- a page next to one already shown seeks from a cursor, the (order column, id) of its edge row;
- the last page reads the order backwards, so it costs what page 1 costs;
- numbered pages still use OFFSET (cheap near the start, where people click them).

Keyset paging needs a NOT NULL order column (SQLite and PostgreSQL sort NULLs differently);
other orders page with OFFSET, still with the capped count.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import current_app
from flask_appbuilder.models.sqla.interface import SQLAInterface
from sqlalchemy import and_, asc, desc, false, func, or_, select

from app.generate.filters import TypedFilterConverter

DEFAULT_COUNT_CAP = 10_000
DEFERRED_JOIN_OFFSET = 2_000  # from this many skipped rows on, skip ids first, then read the page
MAX_PAGE_INDEX = 10_000_000  # beyond any real list; keeps OFFSET inside a 64-bit integer


def count_cap() -> int:
    return int(current_app.config.get("PORTAL_COUNT_CAP", DEFAULT_COUNT_CAP))


class CursorError(ValueError):
    """A cursor that is not ours, or was made for another order."""


@dataclass(frozen=True)
class Cursor:
    """A row's place in one order: the value of the order column and the id (the tie-break)."""

    order_column: str
    order_direction: str
    value: Any
    id: int

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, (dt.date, dt.datetime)) else self.value
        value = str(value) if isinstance(value, Decimal) else value
        raw = json.dumps([self.order_column, self.order_direction, value, self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str, column, order_column: str, order_direction: str) -> Cursor:
    """The cursor in `token`, its value typed like `column`; CursorError if it does not fit this order."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        name, direction, value, row_id = raw
    except (ValueError, TypeError, binascii.Error):
        raise CursorError("not a cursor") from None
    if (name, direction) != (order_column, order_direction):
        raise CursorError("the cursor belongs to another order")
    if type(row_id) is not int:
        raise CursorError("not a cursor")
    return Cursor(order_column, order_direction, _typed(value, column), row_id)


def _typed(value, column):
    """The JSON value of a cursor as the Python type of the order column (never NULL: see keyset_column)."""
    kind = column.type.python_type
    try:
        if kind is dt.datetime:
            return dt.datetime.fromisoformat(value)
        if kind is dt.date:
            return dt.date.fromisoformat(value)
        if kind is Decimal:
            number = Decimal(value if isinstance(value, str) else str(value))
            if number.is_finite():
                return number
        elif kind is bool:
            if isinstance(value, bool):
                return value
        elif kind is int:
            if type(value) is int:
                return value
        elif kind is float:
            if type(value) in (int, float) and math.isfinite(value):
                return float(value)
        elif kind is str:
            if isinstance(value, str):
                return value
    except (TypeError, ValueError, InvalidOperation):
        pass
    raise CursorError("the cursor's value does not fit the order column")


@dataclass(frozen=True)
class Position:
    """Which page to show: `page` >= 0 counts from the start, < 0 from the end (-1 is the last page).

    With `after` (or `before`) the rows are those right after (before) that cursor; `page` is then
    only the number shown for it.
    """

    page: int = 0
    after: Cursor | None = None
    before: Cursor | None = None


@dataclass
class Page:
    items: list
    count: int  # exact, or the cap when `capped`
    capped: bool  # more rows match than the cap
    page: int  # index from the start, or negative from the end when the start is unknown
    page_size: int
    has_prev: bool
    has_next: bool
    first_cursor: str | None  # cursors of the edge rows, when the order allows keyset paging
    last_cursor: str | None

    @property
    def pages(self) -> int:
        """Pages known to exist (all of them unless the count is capped)."""
        return max(1, math.ceil(self.count / self.page_size))


class PagedInterface(SQLAInterface):
    """FAB's SQLAlchemy interface plus the capped count and the keyset page query; filters by field type."""

    filter_converter_class = TypedFilterConverter

    def keyset_column(self, order_column: str):
        """The order column as a model attribute if it can carry a cursor (a NOT NULL column), else None."""
        column = self.list_properties.get(order_column)
        if column is None or not hasattr(column, "columns") or len(column.columns) != 1:
            return None
        table_column = column.columns[0]
        if table_column.nullable and not table_column.primary_key:
            return None
        return getattr(self.obj, order_column)

    def capped_count(self, filters, cap: int) -> tuple[int, bool]:
        """(number of matching rows, False), or (cap, True) when more than `cap` match; joins only for filters."""
        query = self.apply_filters(self.session.query(self.obj), self.get_inner_filters(filters))
        ids = query.with_entities(self.obj.id).limit(cap + 1).subquery()
        found = self.session.scalar(select(func.count()).select_from(ids))
        return (cap, True) if found > cap else (found, False)

    def fetch_page(self, filters, order_column: str, order_direction: str, position: Position, page_size: int,
                   cap: int, select_columns=None, outer_default_load: bool = False, options=(),
                   clamp: bool = False) -> Page:
        """The count and one page of items: two SQL statements whatever the table size or page.

        `clamp`: a page number past the end of an exactly counted list gives its last page (for people;
        the API answers such a page with no items, as FAB does).
        """
        count, capped = self.capped_count(filters, cap)
        key = self.keyset_column(order_column)
        pages = max(1, math.ceil(count / page_size))
        page, seek, backwards, offset = position.page, None, False, 0
        if key is not None and position.after is not None:
            seek = self._seek(key, order_column, order_direction, position.after, forwards=True)
        elif key is not None and position.before is not None:
            seek, backwards = self._seek(key, order_column, order_direction, position.before, forwards=False), True
        else:
            if not capped and page < 0:  # every page number is known: count from the start
                page = max(pages + page, 0)
            if not capped and clamp:
                page = min(page, pages - 1)
            if page >= 0:
                offset = page * page_size
            else:
                backwards, offset = True, (-page - 1) * page_size
        direction = order_direction if not backwards else ("desc" if order_direction == "asc" else "asc")
        items = self._rows(filters, order_column, direction, offset, page_size + 1, seek,
                           select_columns, outer_default_load, options)
        more = len(items) > page_size
        items = items[:page_size]
        if backwards:
            items.reverse()
            has_prev, has_next = more, seek is not None or offset > 0
            if not has_prev:
                page = 0  # reading backwards we reached the first row
        else:
            has_prev, has_next = seek is not None or offset > 0, more
            if not has_next and page < 0:
                page = -1
        if page < 0 and not capped:
            page = max(0, pages + page)
        first = last = None
        if key is not None and items:
            first = Cursor(order_column, order_direction, getattr(items[0], order_column), items[0].id).encode()
            last = Cursor(order_column, order_direction, getattr(items[-1], order_column), items[-1].id).encode()
        return Page(items, count, capped, page, page_size, has_prev, has_next, first, last)

    def _seek(self, column, order_column: str, direction: str, cursor: Cursor, forwards: bool):
        """Rows after (or before) the cursor in the list order: `col >= v AND (col > v OR id > i)`."""
        rising = (direction == "asc") == forwards
        row_id = self.obj.id
        if order_column == "id":
            return row_id > cursor.id if rising else row_id < cursor.id
        if rising:
            return and_(column >= cursor.value, or_(column > cursor.value, row_id > cursor.id))
        return and_(column <= cursor.value, or_(column < cursor.value, row_id < cursor.id))

    def _order(self, order_column: str, direction: str) -> list:
        way = asc if direction == "asc" else desc
        clauses = [way(getattr(self.obj, order_column))]
        return clauses if order_column == "id" else clauses + [way(self.obj.id)]

    def _rows(self, filters, order_column, direction, offset, limit, seek, select_columns, outer_default_load, options):
        """FAB's apply_all with our own order (id tie-break, both directions), seek, offset and limit.

        As in FAB, links shown as dotted columns are joined in; to-many columns are loaded by an
        outer query around the paged ids.
        """
        base = self.session.query(self.obj)
        aliases: dict = {}
        inner = self.apply_inner_select_joins(base, select_columns, aliases)
        inner = self.apply_filters(inner, self.get_inner_filters(filters))
        if seek is not None:
            inner = inner.filter(seek)
        order = self._order(order_column, direction)
        inner = inner.order_by(*order).offset(offset or None).limit(limit)
        if offset >= DEFERRED_JOIN_OFFSET:
            # a deep numbered page: skip `offset` rows reading ids only (an index-only scan with the order
            # index), then load just this page's rows: ~8x less work than skipping whole rows at 500k
            ids = [pk for pk, in inner.with_entities(self.obj.id)]
            return self._rows(filters, order_column, direction, 0, limit, self.obj.id.in_(ids) if ids else false(),
                              select_columns, outer_default_load, options)
        if select_columns and self.exists_col_to_many(select_columns):
            query = self.get_outer_query_from_inner_query(base, inner)
            query = self.apply_outer_select_joins(query, select_columns, outer_default_load=outer_default_load,
                                                  aliases_mapping=aliases).order_by(*order)
        else:
            query = inner
        if options:
            query = query.options(*options)
        rows = query.all()
        # rows are (item, joined link, ...) tuples when FAB added the links as entities
        name = self.obj.__name__
        return [getattr(row, name) for row in rows] if rows and hasattr(rows[0], name) else list(rows)
