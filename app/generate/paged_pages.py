"""List pages on the capped count and keyset paging of paging.py.

Replaces FAB's list page (`list_page`: reads page, size, order and cursors from the URL; junk gives a
sensible page, never a 500) and list widget (`list_widgets`: one count and one page query, links loaded
with the rows; FAB's private hooks are mapped onto them in app.fab.ModelViewBoundary) and renders
a pager with first/previous/numbers/next/last links.
"""
from __future__ import annotations

from flask import flash, request, url_for
from flask_appbuilder.widgets import ListWidget
from flask_babel import format_decimal, gettext, lazy_gettext as _l
from sqlalchemy.orm import joinedload, selectinload

from app import fab
from app.generate.input_errors import clean_filters
from app.generate.paging import MAX_PAGE_INDEX, CursorError, Page, Position, count_cap, decode_cursor

MAX_PAGE_SIZE = 100
PAGE_SIZES = (25, 50, 75, 100)
URL_FOR_KEYWORDS = ("_external", "_anchor", "_method", "_scheme")


class PagedListWidget(ListWidget):
    template = "portal/widgets/list.html"


def _int_arg(name: str, default: int | None) -> int | None:
    try:
        return int(request.args.get(name, ""))
    except ValueError:
        return default


class PagedListView:
    """Mixin for a FAB ModelView whose datamodel is a PagedInterface."""

    list_widget = PagedListWidget

    def _list_order(self, say_why: bool = True) -> tuple[str, str]:
        """The order asked for in the URL if the viewer may sort on it, else the default (then id)."""
        name = self.__class__.__name__
        column, direction = request.args.get(f"_oc_{name}"), request.args.get(f"_od_{name}")
        if column in self.order_columns and direction in ("asc", "desc"):
            return column, direction
        if column and say_why:  # hidden, masked, unknown or a relation: never sorted by, and the page says so (API: 400)
            flash(str(_l("This list cannot be sorted by %(column)s.", column=column[:60])), "warning")
        return self.base_order or ("id", "asc")

    def _list_position(self, order_column: str, order_direction: str) -> Position:
        name = self.__class__.__name__
        page = _int_arg(f"page_{name}", 0)
        page = min(max(page, -MAX_PAGE_INDEX), MAX_PAGE_INDEX)
        key = self.datamodel.keyset_column(order_column)
        cursors = {}
        for side in ("after", "before"):
            token = request.args.get(f"{side}_{name}")
            if token and key is not None:
                try:
                    cursors[side] = decode_cursor(token, key, order_column, order_direction)
                except CursorError:
                    pass  # a stale or edited link: fall back to the page number
        return Position(page=page, **cursors)

    def _list_page_size(self) -> int:
        size = _int_arg(f"psize_{self.__class__.__name__}", None)
        return min(size, MAX_PAGE_SIZE) if size and size > 0 else self.page_size

    def list_page(self, **kwargs):
        order_column, order_direction = self._list_order()
        filters = fab.filters_from_url(self)
        for problem in clean_filters(self.entity, filters):  # the list without that filter, and why
            flash(problem, "danger")
        widgets = self.list_widgets(
            filters=filters, order_column=order_column, order_direction=order_direction,
            page_size=self._list_page_size(), position=self._list_position(order_column, order_direction), **kwargs)
        form = self.search_form.refresh()
        self.update_redirect()
        return fab.search_page(self, form, widgets)

    def _list_load_options(self) -> list:
        """Load the links shown in the list with the rows (else one query per row and link)."""
        options = []
        for column in self.list_columns:
            if self.datamodel.is_relation_many_to_one(column) or self.datamodel.is_relation_one_to_one(column):
                options.append(joinedload(getattr(self.datamodel.obj, column)))
            elif self.datamodel.is_relation(column):
                options.append(selectinload(getattr(self.datamodel.obj, column)))
        return options

    def list_widgets(self, filters, actions=None, order_column="", order_direction="", page=None,
                     page_size=None, widgets=None, position: Position | None = None, **kwargs):
        """Also draws the related-record lists of detail pages (FAB passes a plain page number then)."""
        widgets = widgets or {}
        page_size = min(page_size, MAX_PAGE_SIZE) if page_size and page_size > 0 else self.page_size
        if not order_column or order_column not in self.order_columns:
            order_column, order_direction = self.base_order or ("id", "asc")
        order_direction = order_direction if order_direction in ("asc", "desc") else "asc"
        own_links = position is not None  # only our own list_page reads cursors back from the URL
        position = position or Position(page=min(max(page or 0, -MAX_PAGE_INDEX), MAX_PAGE_INDEX))
        joined = fab.joined_filters(self, filters)
        fetch = dict(order_column=order_column, order_direction=order_direction, page_size=page_size,
                     cap=count_cap(), options=self._list_load_options(), clamp=True)
        result = self.datamodel.fetch_page(joined, position=position, **fetch)
        if not result.items and result.count and position != Position():
            # past either end of the list (rows deleted meanwhile, or an edited link): show the page at that end
            beyond_start = position.before is not None or (position.after is None and position.page < 0)
            result = self.datamodel.fetch_page(joined, position=Position(page=0 if beyond_start else -1), **fetch)
        widgets["list"] = self.list_widget(
            label_columns=self.label_columns,
            include_columns=self.list_columns,
            value_columns=self.datamodel.get_values(result.items, self.list_columns),
            order_columns=self.order_columns,
            formatters_columns=self.formatters_columns,
            page=result.page, page_size=page_size, count=result.count,
            pks=self.datamodel.get_keys(result.items),
            actions=actions or self.actions,
            filters=filters,
            modelview_name=self.__class__.__name__,
            pager=Pager(result, self.__class__.__name__, own_links),
            **kwargs,
        )
        return widgets


class Pager:
    """Links and labels for one list page; URLs keep the current filters and order."""

    NEIGHBOURS = 2  # numbered pages shown on each side of the current one

    def __init__(self, page: Page, view_name: str, use_cursors: bool) -> None:
        self.page, self.view_name, self.use_cursors = page, view_name, use_cursors

    @property
    def count_label(self) -> str:
        number = format_decimal(self.page.count)
        return gettext("%(count)s+", count=number) if self.page.capped else number

    @property
    def visible(self) -> bool:
        return self.page.has_prev or self.page.has_next

    def _args(self):
        """The request's query arguments without cursors and without url_for's own keywords (a 500 in FAB)."""
        name = self.view_name
        args = request.args.copy()
        for key in (f"after_{name}", f"before_{name}", *URL_FOR_KEYWORDS):
            args.pop(key, None)
        return args

    def _build(self, args) -> str:
        return url_for(request.endpoint, **(request.view_args or {}), **args.to_dict(flat=False))

    def order_url(self, column: str) -> str:
        """Sort on `column` (ascending, or flipped if it is the current order), from the first page."""
        name = self.view_name
        args = self._args()
        current = args.get(f"_oc_{name}") == column and args.get(f"_od_{name}") == "asc"
        args[f"_oc_{name}"], args[f"_od_{name}"] = column, "desc" if current else "asc"
        args.pop(f"page_{name}", None)
        return self._build(args)

    def url(self, page: int, after: str | None = None, before: str | None = None, size: int | None = None) -> str:
        name = self.view_name
        args = self._args()
        args[f"page_{name}"] = str(page)
        if after and self.use_cursors:
            args[f"after_{name}"] = after
        if before and self.use_cursors:
            args[f"before_{name}"] = before
        if size is not None:
            args[f"psize_{name}"] = str(size)
        return self._build(args)

    @property
    def first_url(self) -> str | None:
        return self.url(0) if self.page.has_prev else None

    @property
    def prev_url(self) -> str | None:
        if not self.page.has_prev:
            return None
        return self.url(self.page.page - 1, before=self.page.first_cursor)

    @property
    def next_url(self) -> str | None:
        if not self.page.has_next:
            return None
        return self.url(self.page.page + 1, after=self.page.last_cursor)

    @property
    def last_url(self) -> str | None:
        if not self.page.has_next:
            return None
        return self.url(-1 if self.page.capped else self.page.pages - 1)

    @property
    def numbers(self) -> list[tuple[str, str | None]]:
        """(label, url) of pages around the current one; url None for the current page.

        Counted from the end of a capped list the page numbers are unknown: only an ellipsis then.
        """
        current = self.page.page
        if current < 0:
            return [("…", None)]
        links = []
        for number in range(max(0, current - self.NEIGHBOURS), current + self.NEIGHBOURS + 1):
            if number == current:
                links.append((format_decimal(number + 1), None))
            elif number < current or number * self.page.page_size < self.page.count:
                url = self.prev_url if number == current - 1 else self.next_url if number == current + 1 else None
                links.append((format_decimal(number + 1), url or self.url(number)))
            elif number == current + 1 and self.page.has_next:
                links.append((format_decimal(number + 1), self.next_url))
        return links

    def size_links(self) -> list[tuple[int, str, bool]]:
        return [(size, self.url(0, size=size), size == self.page.page_size) for size in PAGE_SIZES]
