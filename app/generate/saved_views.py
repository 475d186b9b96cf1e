"""Saved views: the YAML `views:` and users' personal views (table `portal_saved_views`), on list pages
(`/<entity>/list/?view=<id>`, a view picker, "Save view", a role's default view), in the menu and through
`/api/v1/views/`; and the `highlight:` rules colouring list rows.

A view is a filter of the filter language (app/rules/filters.py `filter_clause`, relative values evaluated per
request), columns and an order. It always adds to the viewer's row scope and search filters, never replaces them;
a column the viewer may not see is left out. YAML views are for their roles: a FAB permission `can_read` on
`View:<id>` (synced with the roles, app/generate/roles.py) shows the menu link and opens the view; Admin has all.
Personal views belong to their owner, or are shared with one role the owner holds. Ids: YAML views by their
name, personal views by number.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

from flask import abort, current_app, flash, g, has_request_context, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, safe
from flask_appbuilder.models.filters import BaseFilter
from flask_babel import gettext
from flask_jwt_extended import verify_jwt_in_request
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, case, delete, func, or_, select
from werkzeug.datastructures import MultiDict

from app.fab import PerRequest
from app.generate import columns as entity_columns
from app.generate.drill import drill_bar, install_drill
from app.generate.input_errors import BadArgument, bounded_int_arg, clean_filter_value, filter_problem_text
from app.generate.paging import count_cap
from app.generate.permissions import saved_view_menu
from app.generate.scoping import without_hidden
from app.i18n import lazy
from app.portal import current_portal
from app.rules.access import current_viewer
from app.rules.filters import context_for, filter_clause
from app.rules.records import FieldError
from app.schema.filters import FilterProblem, filter_json, parse_filter
from app.schema.views import ViewSpec, portal_highlights, portal_views, read_order

SAVED_VIEWS_TABLE = "portal_saved_views"
MAX_LABEL = 100
MAX_VIEWS_PER_USER = 200
MAX_PAGE_SIZE = 100
ALL_RECORDS = "all"  # ?view=all: the list without its default view

# FAB list filters (their arg names) -> the filter language; the others cannot be saved (refused with a message)
FAB_OPERATORS = {"eq": "eq", "neq": "ne", "gt": "gt", "lt": "lt", "ct": "contains", "in": "in", "not_in": "ne"}
FAB_FILTER_ARG = re.compile(r"^_flt_(\d+)_(.+)$")


def saved_views_table(metadata: MetaData) -> Table:
    """Personal views; `filter` is the filter language as JSON, `columns` a JSON list, `order` like `[-due_date]`."""
    if SAVED_VIEWS_TABLE in metadata.tables:
        return metadata.tables[SAVED_VIEWS_TABLE]
    return Table(
        SAVED_VIEWS_TABLE, metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("owner_id", Integer, nullable=False, index=True),
        Column("entity", String(60), nullable=False),
        Column("label", String(MAX_LABEL), nullable=False),
        Column("filter", Text, nullable=False),
        Column("columns", Text, nullable=False),
        Column("order", Text, nullable=False),
        Column("share_with_role", String(64), index=True),
        Column("created_on", DateTime, nullable=False),
    )


@dataclass(frozen=True)
class View:
    """A YAML or personal view as the runtime uses it."""

    id: str | int
    entity: str
    label: object  # text, or a lazy schema label
    filter: tuple
    columns: tuple = ()
    order: tuple = ()  # ((field, "asc" | "desc"), ...)
    home: bool = False
    default: bool = False
    owner_id: int | None = None
    shared_with_role: str | None = None
    spec: ViewSpec | None = None

    @property
    def url(self) -> str:
        return f"/{current_portal().spec.entity(self.entity).snake}/list/?view={self.id}"

    def as_json(self, count: int | None) -> dict:
        return {"id": self.id, "entity": self.entity, "label": str(self.label), "filter": filter_json(self.filter),
                "columns": list(self.columns), "order": order_json(self.order), "home": self.home,
                "shared_with_role": self.shared_with_role, "count": count}


def order_json(order) -> list[str]:
    return [("-" if direction == "desc" else "") + name for name, direction in order]


def _yaml_view(spec: ViewSpec) -> View:
    return View(spec.id, spec.entity, lazy(spec.label), spec.filter, spec.columns, spec.order, spec.home,
                spec.default, spec=spec)


def _stored_view(row) -> View | None:
    """A personal view; None when its filter no longer fits the schema (a field was removed since)."""
    entities = {e.name: e for e in current_portal().spec.entities}
    if row.entity not in entities:
        return None
    try:
        conditions = parse_filter(entities, row.entity, json.loads(row.filter))
    except (FilterProblem, ValueError):
        return None
    names = entities[row.entity].field_names
    columns = tuple(c for c in json.loads(row.columns) if c in names)
    order = tuple((n, d) for n, d in read_order(json.loads(row.order)) if n in names)
    return View(row.id, row.entity, row.label, conditions, columns, order, owner_id=row.owner_id,
                shared_with_role=row.share_with_role)


def filter_unreadable_field(entity_name: str, conditions) -> str | None:
    """The first field of a filter the viewer may not see (hidden or masked; through a link too), or None: a
    filter over it would tell them its values by what it finds."""
    spec, viewer = current_portal().spec, current_viewer()
    entity = spec.entity(entity_name)
    for c in conditions:
        if c.path[0] in viewer.unreadable(entity_name):
            return ".".join(c.path)
        if len(c.path) == 2:
            target = entity.field(c.path[0]).to
            if not viewer.may_read(target) or c.path[1] in viewer.unreadable(target):
                return ".".join(c.path)
    return None


# -- who may use which view ---------------------------------------------------------------------------------

def _sm():
    return current_app.appbuilder.sm


def _user():
    return _sm().current_user


def _role_names(user) -> set[str]:
    return {r.name for r in getattr(user, "roles", None) or []}


def role_label(name: str):
    """A role's label from YAML, in the reader's language; the built-in roles by a translated name."""
    spec = current_portal().spec.role(name)
    if spec is not None:
        return lazy(spec.label)
    return gettext("Administrators") if name == current_app.config["AUTH_ROLE_ADMIN"] else name


def may_read_entity(entity: str) -> bool:
    return _sm().has_access("can_read", entity)


def may_use_yaml(spec: ViewSpec) -> bool:
    return _sm().has_access("can_read", saved_view_menu(spec.id)) and may_read_entity(spec.entity)


def _table():
    return current_portal().metadata.tables[SAVED_VIEWS_TABLE]


def _session():
    return current_app.appbuilder.session


def user_views(entity: str | None = None) -> list[View]:
    """The caller's views: YAML views for their roles, their own, and those shared with a role they hold."""
    user = _user()
    if not user:
        return []
    views = [_yaml_view(v) for v in portal_views(current_portal().spec)
             if (entity is None or v.entity == entity) and may_use_yaml(v)]
    table = _table()
    mine = or_(table.c.owner_id == user.id, table.c.share_with_role.in_(sorted(_role_names(user)) or [""]))
    statement = select(table).where(mine).order_by(table.c.label, table.c.id)
    if entity is not None:
        statement = statement.where(table.c.entity == entity)
    for row in _session().execute(statement):
        view = _stored_view(row)  # a view shared with a role that may not see a field it filters on is left out
        if view is not None and may_read_entity(view.entity) and not filter_unreadable_field(view.entity, view.filter):
            views.append(view)
    return views


class ViewRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def find_view(view_id: str) -> View:
    """The view `view_id` if the caller may use it; ViewRefused(404) if it is unknown or another user's private
    view, ViewRefused(403) for a YAML view of other roles."""
    user = _user()
    if view_id.isdecimal() and len(view_id) < 10:
        row = _session().execute(select(_table()).where(_table().c.id == int(view_id))).first()
        if row is None or not user or (row.owner_id != user.id and row.share_with_role not in _role_names(user)):
            raise ViewRefused(404)
        view = _stored_view(row)
        if view is None or filter_unreadable_field(view.entity, view.filter):
            raise ViewRefused(404)
        if not may_read_entity(view.entity):
            raise ViewRefused(403)
        return view
    spec = next((v for v in portal_views(current_portal().spec) if v.id == view_id), None)
    if spec is None:
        raise ViewRefused(404)
    if not may_use_yaml(spec):
        raise ViewRefused(403)
    return _yaml_view(spec)


def default_view(entity: str) -> View | None:
    """The `default: true` view of `entity` for one of the caller's roles (Admin has none)."""
    names = _role_names(_user())
    for spec in portal_views(current_portal().spec):
        if spec.entity == entity and spec.default and names & set(spec.roles) and may_use_yaml(spec):
            return _yaml_view(spec)
    return None


def visible_columns(view: View) -> list[str]:
    """The view's columns (or the entity's list columns) without those the viewer may not see."""
    entity = current_portal().spec.entity(view.entity)
    wanted = list(view.columns) or entity_columns.list_columns(entity)
    hidden = current_viewer().hidden(view.entity)
    return [c for c in wanted if c not in hidden]


# -- SQL ------------------------------------------------------------------------------------------------------

def view_condition(view: View, ctx=None):
    """The view's filter and the viewer's row scope, as one SQL condition on the entity's model."""
    portal = current_portal()
    viewer = current_viewer()
    ctx = ctx or context_for(viewer.user_id)
    clause = filter_clause(portal.spec, portal.models, view.entity, view.filter, ctx)
    scope = viewer.row_clause(view.entity, portal.models)
    return clause if scope is None else clause & scope


def view_count(view: View, ctx=None) -> int:
    model = current_portal().models[view.entity]
    return _session().execute(select(func.count()).select_from(model).where(view_condition(view, ctx))).scalar_one()


def capped_view_count(view: View, cap: int) -> tuple[int, bool]:
    """(rows in the view, False), or (cap, True) when more match: counted like the entity's list (PORTAL_COUNT_CAP)."""
    model = current_portal().models[view.entity]
    ids = select(model.id).where(view_condition(view)).limit(cap + 1).subquery()
    found = _session().execute(select(func.count()).select_from(ids)).scalar_one()
    return (cap, True) if found > cap else (found, False)


def paging_args() -> tuple[int, int]:
    """page and page_size as the entity list takes them, `?q=(page:0,page_size:25)` (rison), or as plain arguments."""
    import prison

    if "q" in request.args:
        try:
            q = prison.loads(request.args["q"])
        except Exception:
            raise BadArgument(gettext("q is not valid rison.")) from None
        if not isinstance(q, dict) or set(q) - {"page", "page_size"}:
            raise BadArgument(gettext("q takes page and page_size only."))
        page, size = q.get("page", 0), q.get("page_size", 25)
        if not (isinstance(page, int) and not isinstance(page, bool) and 0 <= page <= 100000):
            raise BadArgument(gettext("%(name)s must be a whole number from %(low)d to %(high)d.", name="page", low=0, high=100000))
        if not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= MAX_PAGE_SIZE):
            raise BadArgument(gettext("%(name)s must be a whole number from %(low)d to %(high)d.", name="page_size", low=1,
                                      high=MAX_PAGE_SIZE))
        return page, size
    return bounded_int_arg("page", 0, 0, 100000), bounded_int_arg("page_size", 25, 1, MAX_PAGE_SIZE)


def view_rows(view: View, page: int, page_size: int) -> list:
    model = current_portal().models[view.entity]
    entity = current_portal().spec.entity(view.entity)
    unreadable = current_viewer().unreadable(view.entity)
    order = [(n, d) for n, d in (view.order or entity.order) if n not in unreadable]
    by = [getattr(model, entity.field(n).column_name).desc() if d == "desc"
          else getattr(model, entity.field(n).column_name).asc() for n, d in order]
    statement = select(model).where(view_condition(view)).order_by(*by, model.id).limit(page_size).offset(page * page_size)
    return list(_session().scalars(statement))


def highlight_styles(entity: str, pks: list) -> dict:
    """pk -> [(name, style)] of the highlight rules each of the given records matches: one query for a page."""
    rules = portal_highlights(current_portal().spec, entity)
    pks = [pk for pk in pks if isinstance(pk, int)]
    if not rules or not pks:
        return {}
    portal = current_portal()
    model = portal.models[entity]
    ctx = context_for(current_viewer().user_id)
    flags = [case((filter_clause(portal.spec, portal.models, entity, h.when, ctx), 1), else_=0) for h in rules]
    result = {}
    for row in _session().execute(select(model.id, *flags).where(model.id.in_(pks))):
        lit = [(h.name, h.style) for h, flag in zip(rules, row[1:]) if flag]
        if lit:
            result[row[0]] = lit
    return result


def highlight_view(rule) -> View:
    """The records a highlight rule marks, as a view (the home page's overdue counts)."""
    return View(f"highlight:{rule.name}", rule.entity, lazy(rule.label), rule.when)


def highlight_url(rule) -> str:
    return f"/{current_portal().spec.entity(rule.entity).snake}/list/?highlight={rule.name}"


# -- list pages -----------------------------------------------------------------------------------------------

def active_view(entity_name: str) -> View | None:
    """The view a list page (or its export or bulk action) of `entity_name` shows in this request: `?view=<id>` (the
    role's default view redirects there). Aborts 404/403 for a view the caller may not use."""
    # the list, its export and its bulk actions ("all N matching") must all mean the same rows
    if not has_request_context() or request.endpoint not in (f"{entity_name}View.list", f"{entity_name}View.export_data",
                                                             f"{entity_name}View.bulk"):
        return None
    cache = g.setdefault("portal_active_views", {})
    if entity_name not in cache:
        cache[entity_name] = _resolve_active(entity_name)
    return cache[entity_name]


def _resolve_active(entity_name: str) -> View | None:
    wanted = request.args.get("view")
    lit = request.args.get("highlight")
    if lit and not wanted:  # the home page's overdue counts link to the records a highlight rule marks
        rule = next((h for h in portal_highlights(current_portal().spec, entity_name) if h.name == lit), None)
        if rule is None:
            abort(404)
        return highlight_view(rule)
    if wanted == ALL_RECORDS:
        return None
    if wanted:
        try:
            view = find_view(wanted[:64])
        except ViewRefused as exc:
            abort(exc.status)
        if view.entity != entity_name:
            abort(404)
        return view
    return None


class ActiveViewFilter(BaseFilter):
    """FAB base filter: the active view's filter (app/rules/filters.py) on a list page and its export."""

    name = "Saved view"
    arg_name = "savedview"

    def apply(self, query, entity_name):
        view = active_view(entity_name)
        if view is None:
            return query
        portal = current_portal()
        return query.filter(filter_clause(portal.spec, portal.models, entity_name, view.filter,
                                          context_for(current_viewer().user_id)))


def view_filters(entity) -> list:
    return [["id", ActiveViewFilter, entity.name]]


def _view_list_columns(view, full):
    columns = without_hidden(view, full)
    active = active_view(view.entity.name)
    return visible_columns(active) if active is not None else columns


class SavedViewsPagesMixin:
    """List pages: the active view's columns and order, row highlights, and what the view bar shows."""

    list_columns = PerRequest(_view_list_columns)

    def list_page(self, **kwargs):
        """The list without arguments opens the role's default view: redirected to `?view=<id>`, so that every link
        of the page (pager, sort, export, bulk actions) carries the view."""
        if not request.args:
            default = default_view(self.entity.name)
            if default is not None:
                abort(redirect(f"{self.route_base}/list/?view={default.id}"))
        return super().list_page(**kwargs)

    def _list_order(self, say_why: bool = True):
        view = active_view(self.entity.name)
        name = self.__class__.__name__
        if view is not None and view.order and not request.args.get(f"_oc_{name}"):
            column, direction = view.order[0]
            if column in self.order_columns:
                return column, direction
        return super()._list_order(say_why)

    def list_widgets(self, filters, *args, **kwargs):
        widgets = super().list_widgets(filters, *args, **kwargs)
        listing = widgets.get("list")
        if listing is not None:
            lit = highlight_styles(self.entity.name, list(listing.template_args.get("pks") or []))
            listing.template_args["row_highlights"] = {pk: (" ".join(sorted({s for _, s in hs})), " ".join(n for n, _ in hs))
                                                       for pk, hs in lit.items()}
        return widgets

    def render_template(self, template, **kwargs):
        if template == self.list_template:
            kwargs.update(self._view_bar())
        return super().render_template(template, **kwargs)

    def _view_bar(self) -> dict:
        user = _user()
        active = active_view(self.entity.name)
        views = user_views(self.entity.name) if user else []
        legend = [(h.name, h.style, lazy(h.label)) for h in portal_highlights(current_portal().spec, self.entity.name)]
        roles = [(name, role_label(name)) for name in sorted(_role_names(user))] if user else []
        return dict(view_entity=self.entity.name, saved_views=views, active_view=active, highlight_legend=legend, share_roles=roles,
                    all_records_url=f"{self.route_base}/list/?view={ALL_RECORDS}",
                    save_view_url=url_for("SavedViewPages.save"), list_query=request.query_string.decode(),
                    drill_bar=drill_bar(self.entity.name, f"{self.route_base}/list/?view={ALL_RECORDS}"))


# -- saving a view ---------------------------------------------------------------------------------------------

class SaveRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check_new_view(payload) -> dict:
    """A personal view sent by a user, checked: the row to store; SaveRefused(400/403) with a localized reason."""
    if not isinstance(payload, dict):
        raise SaveRefused(400, gettext("Send a JSON object."))
    spec = current_portal().spec
    entities = {e.name: e for e in spec.entities}
    entity_name = payload.get("entity")
    if isinstance(entity_name, str) and entity_name not in entities:  # its API name (ticket) names it too
        entity_name = next((e.name for e in spec.entities if e.snake == entity_name), entity_name)
    if not isinstance(entity_name, str) or entity_name not in entities:
        raise SaveRefused(400, gettext("Unknown entity."))
    if not may_read_entity(entity_name):
        raise SaveRefused(403, gettext("You may not read %(entity)s.", entity=lazy(spec.entity(entity_name).label)))
    entity = entities[entity_name]
    label = payload.get("label")
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
        raise SaveRefused(400, gettext("label must be text of 1 to %(max)d characters.", max=MAX_LABEL))
    raw_filter = payload.get("filter") or {}
    try:
        conditions = parse_filter(entities, entity_name, raw_filter)
    except FilterProblem as exc:
        raise SaveRefused(400, filter_problem_text(exc, entities[entity_name])) from None
    viewer = current_viewer()
    unreadable_field = filter_unreadable_field(entity_name, conditions)
    if unreadable_field:
        raise SaveRefused(400, gettext("The filter may not use %(field)s.", field=unreadable_field))
    columns = payload.get("columns") or []
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or len(columns) > 100:
        raise SaveRefused(400, gettext("columns must be a list of field names."))
    unreadable = viewer.unreadable(entity_name)  # hidden, or masked: a personal view lists what the user sees in full
    for name in columns:
        if name not in entity.field_names or name in unreadable:
            raise SaveRefused(400, gettext("Unknown column: %(column)s", column=name[:60]))
    order = payload.get("order") or []
    if isinstance(order, str):
        order = [order]
    if not isinstance(order, list) or not all(isinstance(o, str) for o in order) or len(order) > 10:
        raise SaveRefused(400, gettext("order must be a list of field names (-name: descending)."))
    for name, _ in read_order(order):
        f = entity.field(name) if name in entity.field_names else None
        if f is None or name in unreadable or f.is_relation or not f.kind.sortable:
            raise SaveRefused(400, gettext("This list cannot be sorted by %(column)s.", column=name[:60]))
    role = payload.get("share_with_role")
    if role is not None and (not isinstance(role, str) or role not in _role_names(_user())):
        raise SaveRefused(403, gettext("You can only share a view with a role you hold."))
    table = _table()
    owned = _session().execute(select(func.count()).select_from(table).where(table.c.owner_id == _user().id)).scalar_one()
    if owned >= MAX_VIEWS_PER_USER:
        raise SaveRefused(400, gettext("You have too many saved views; delete some first."))
    return {"owner_id": _user().id, "entity": entity_name, "label": label.strip(),
            "filter": json.dumps(filter_json(conditions)), "columns": json.dumps(columns),
            "order": json.dumps(order), "share_with_role": role, "created_on": dt.datetime.now().replace(microsecond=0)}


def store_view(row: dict) -> int:
    session = _session()
    try:
        new_id = session.execute(_table().insert().values(**row)).inserted_primary_key[0]
        session.commit()
    except Exception:
        session.rollback()
        raise
    return new_id


def filter_from_list_args(view_class, args: MultiDict) -> tuple[dict, list[str]]:
    """A list page's FAB filters (`_flt_<n>_<column>=value`) as the filter language, and the localized reasons
    for the ones it cannot say (starts with, ends with, not contains, a link other than a user = me)."""
    entity = view_class.entity
    filters = view_class.datamodel.get_filters(view_class.search_columns)
    user_id = getattr(_user(), "id", None)
    conditions: dict = {}
    problems = []
    for key in args:
        match = FAB_FILTER_ARG.match(key)
        if not match:
            continue
        index, column = int(match.group(1)), match.group(2)
        choices = filters.get_search_filters().get(column) or []
        if column not in entity.field_names or index >= len(choices):
            continue
        f = entity.field(column)
        flt = choices[index]
        values = args.getlist(key)
        label = lazy(f.label)
        if f.kind.to_users and flt.arg_name in ("rel_o_m", "eq") and values == [str(user_id)]:
            conditions[column] = "$user"
            continue
        op = FAB_OPERATORS.get(flt.arg_name)
        if op is None or f.is_relation:
            problems.append(gettext("The filter on %(column)s (%(operator)s) cannot be saved in a view.",
                                    column=label, operator=str(flt.name)))
            continue
        try:
            value = clean_filter_value(f, flt.arg_name, values if flt.arg_name in ("in", "not_in") else values[0])
        except FieldError as exc:
            problems.append(gettext("Filter on %(column)s: %(reason)s", column=label, reason=exc))
            continue
        if value is None:
            continue
        plain = [_plain(v) for v in value] if isinstance(value, list) else _plain(value)
        given = conditions.setdefault(column, {})
        if isinstance(given, dict):
            given[op] = plain
    return conditions, problems


def _plain(value):
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class SavedViewPages(BaseView):
    """"Save view" on a list page (a form post: the page's CSRF token) and deleting one's own view."""

    route_base = "/saved_views"
    default_view = "save"

    @expose("/save", methods=["POST"])
    def save(self):
        if not _user():
            return current_app.login_manager.unauthorized()
        entity_name = request.form.get("entity", "")
        view_class = next((v for v in self.appbuilder.baseviews
                           if getattr(v, "entity", None) is not None and type(v).__name__ == f"{entity_name}View"), None)
        if view_class is None:
            abort(404)
        back = f"{view_class.route_base}/list/"
        args = MultiDict(_parse_qs(request.form.get("query", "")))
        conditions, problems = filter_from_list_args(view_class, args)
        base = None
        if args.get("view") and args.get("view") != ALL_RECORDS:
            try:
                base = find_view(args["view"][:64])
            except ViewRefused:
                base = None
        raw = filter_json(base.filter) if base is not None and base.entity == entity_name else {}
        for name, condition in conditions.items():  # the page's filters narrow the view it showed
            if name in raw and isinstance(raw[name], dict) and isinstance(condition, dict):
                raw[name] = {**raw[name], **condition}
            else:
                raw[name] = condition
        name = view_class.__class__.__name__
        order = []
        if args.get(f"_oc_{name}"):
            order = [("-" if args.get(f"_od_{name}") == "desc" else "") + args[f"_oc_{name}"]]
        elif base is not None:
            order = order_json(base.order)
        payload = {"entity": entity_name, "label": request.form.get("label", ""), "filter": raw,
                   "columns": [c for c in base.columns if c not in current_viewer().unreadable(entity_name)]
                   if base is not None else [], "order": order,
                   "share_with_role": request.form.get("share_with_role") or None}
        for problem in problems:
            flash(problem, "warning")
        try:
            new_id = store_view(check_new_view(payload))
        except SaveRefused as exc:
            flash(exc.message, "danger")
            return redirect(back)
        flash(gettext("View saved."), "success")
        return redirect(f"{back}?view={new_id}")

    @expose("/<int:view_id>/delete", methods=["POST"])
    def delete(self, view_id: int):
        user = _user()
        table = _table()
        row = _session().execute(select(table).where(table.c.id == view_id)).first()
        if not user or row is None or row.owner_id != user.id:
            abort(404)
        _delete_view(view_id)
        flash(gettext("View deleted."), "success")
        entity = current_portal().spec.entity(row.entity)
        return redirect(f"/{entity.snake}/list/?view={ALL_RECORDS}")


def _parse_qs(query: str):
    from urllib.parse import parse_qsl

    return parse_qsl(query[:8000], keep_blank_values=False)


def _delete_view(view_id: int) -> None:
    session = _session()
    try:
        session.execute(delete(_table()).where(_table().c.id == view_id))
        session.commit()
    except Exception:
        session.rollback()
        raise


# -- the API ------------------------------------------------------------------------------------------------------

def _entity_api(entity_name: str):
    return next((v for v in current_app.appbuilder.baseviews
                 if isinstance(v, BaseApi) and getattr(v, "entity", None) is not None and v.entity.name == entity_name),
                None)


class SavedViewsApi(BaseApi):
    """`/api/v1/views/`: the caller's views with counts, a view's rows, saving and deleting personal views."""

    resource_name = "views"
    openapi_spec_tag = "Views"

    def _signed_in(self) -> bool:
        verify_jwt_in_request(optional=True)
        return bool(_user())

    @expose("/", methods=["GET"])
    @safe
    def list_views(self):
        """The caller's views with their counts (in the caller's scope)
        ---
        get:
          responses:
            200: {description: "{result: [{id, entity, label, filter, columns, order, home, shared_with_role, count}]}"}
            401: {description: not signed in}
        """
        if not self._signed_in():
            return self.response_401()
        ctx = context_for(current_viewer().user_id)
        result = [v.as_json(view_count(v, ctx)) for v in user_views()]
        return self.response(200, result=result, count=len(result))

    @expose("/<view_id>", methods=["GET"])
    @safe
    def get_view(self, view_id: str):
        """A view's rows, paged like the entity's list (page, page_size)
        ---
        get:
          parameters:
          - {in: path, name: view_id, schema: {type: string}}
          responses:
            200: {description: "{view, result, ids, count}"}
            403: {description: a view of other roles}
            404: {description: no such view}
        """
        if not self._signed_in():
            return self.response_401()
        try:
            view = find_view(view_id[:64])
            page, page_size = paging_args()
        except ViewRefused as exc:
            return self.response_403() if exc.status == 403 else self.response_404()
        except BadArgument as exc:
            return self.response_400(message=str(exc))
        api = _entity_api(view.entity)
        items = view_rows(view, page, page_size)
        wanted = set(visible_columns(view))
        rows = []
        lit = highlight_styles(view.entity, [item.id for item in items])
        for item, record in zip(items, api.list_model_schema.dump(items, many=True)):
            record = api.viewer_record({k: v for k, v in record.items() if k in wanted})
            if item.id in lit:
                record["highlight"] = [name for name, _ in lit[item.id]]
            rows.append(record)
        count, capped = capped_view_count(view, count_cap())
        return self.response(200, view=view.as_json(count), result=rows, ids=[item.id for item in items],
                             count=count, count_capped=capped, page=page, page_size=page_size,
                             list_columns=visible_columns(view))

    @expose("/", methods=["POST"])
    @safe
    def post_view(self):
        """Save a personal view {entity, label, filter, columns, order, share_with_role}
        ---
        post:
          responses:
            201: {description: "{id}"}
            400: {description: bad view}
            403: {description: a role the caller does not hold, or an entity they may not read}
        """
        if not self._signed_in():
            return self.response_401()
        try:
            row = check_new_view(request.get_json(silent=True))
        except SaveRefused as exc:
            return self.response(exc.status, message=exc.message)
        return self.response(201, id=store_view(row))

    @expose("/<view_id>", methods=["DELETE"])
    @safe
    def delete_view(self, view_id: str):
        """Delete one of the caller's own views
        ---
        delete:
          responses:
            200: {description: deleted}
            404: {description: not the caller's view}
        """
        if not self._signed_in():
            return self.response_401()
        table = _table()
        row = None
        if view_id.isdecimal() and len(view_id) < 10:
            row = _session().execute(select(table).where(table.c.id == int(view_id))).first()
        if row is None or row.owner_id != _user().id:
            return self.response_404()
        _delete_view(int(view_id))
        return self.response(200, message="OK")


def install_saved_views(appbuilder, portal) -> None:
    """The view pages, the API and a menu link per YAML view under its module (listed for its roles only)."""
    appbuilder.add_view_no_menu(SavedViewPages)
    install_drill(current_app._get_current_object())  # ?drill= on list pages and the list API: a bad one is a 400
    appbuilder.add_api(SavedViewsApi)
    spec = portal.spec
    for module in spec.modules:
        for view in module.views:
            entity = spec.entity(view.entity)
            appbuilder.add_link(saved_view_menu(view.id), href=f"/{entity.snake}/list/?view={view.id}",
                                label=lazy(view.label), icon="fa-filter", category=module.name)
