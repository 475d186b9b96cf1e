"""Quick search: records found by title across every entity the user may read, in their row scope.

`GET /api/v1/search?q=..` (JWT or session) → `[{entity, id, title, url}]`; the navbar's box opens `/search/?q=..`,
the same results as a page. Only titles are searched (a title is never hidden or masked, E616), case-insensitive,
anywhere in the title, with `%` and `_` taken literally; at most PER_ENTITY per entity and LIMIT in all.
"""
from __future__ import annotations

import datetime as dt

from flask import current_app, jsonify, request
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, safe
from flask_babel import gettext
from flask_jwt_extended import verify_jwt_in_request
from sqlalchemy import String, cast, select

from app.i18n import lazy
from app.portal import current_portal
from app.rules.access import current_viewer

MAX_QUERY = 100
PER_ENTITY = 5
LIMIT = 30


class SearchRefused(Exception):
    pass


def search_records(text: str) -> list[dict]:
    """[{entity, id, title, url}] of records whose title contains `text`; SearchRefused for a bad text."""
    text = (text or "").strip()
    if not text:
        raise SearchRefused(gettext("Type something to search for."))
    if len(text) > MAX_QUERY or "\x00" in text:
        raise SearchRefused(gettext("Please type at most %(max)d characters.", max=MAX_QUERY))
    portal = current_portal()
    sm = current_app.appbuilder.sm
    viewer = current_viewer()
    session = current_app.appbuilder.session
    results: list[dict] = []
    for entity in portal.spec.entities:
        if len(results) >= LIMIT:
            break
        if not entity.title or entity.title not in entity.field_names or not sm.has_access("can_read", entity.name):
            continue
        title = entity.field(entity.title)
        if title.is_relation or title.name in viewer.unreadable(entity.name):
            continue  # a link title has no text of its own; never search what the user may not see
        model = portal.models[entity.name]
        column = getattr(model, title.column_name)
        searched = column if title.kind.text_search else cast(column, String)
        statement = select(model.id, column).where(searched.icontains(text, autoescape=True))
        scope = viewer.row_clause(entity.name, portal.models)
        if scope is not None:
            statement = statement.where(scope)
        statement = statement.order_by(column, model.id).limit(min(PER_ENTITY, LIMIT - len(results)))
        for record_id, value in session.execute(statement):
            shown = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value if value is not None else "")
            results.append({"entity": entity.name, "entity_label": str(lazy(entity.label)), "id": record_id,
                            "title": shown or f"#{record_id}", "url": f"/{entity.snake}/show/{record_id}"})
    return results


class SearchApi(BaseApi):
    resource_name = "search"
    openapi_spec_tag = "Search"

    @expose("", methods=["GET"])
    @safe
    def search(self):
        """Records whose title contains q, in every entity the caller may read (row scope applied)
        ---
        get:
          parameters:
          - {in: query, name: q, schema: {type: string}}
          responses:
            200: {description: "[{entity, id, title, url}]"}
            400: {description: empty or too long q}
            401: {description: not signed in}
        """
        verify_jwt_in_request(optional=True)
        if not self.appbuilder.sm.current_user:
            return self.response_401()
        try:
            found = search_records(request.args.get("q", ""))
        except SearchRefused as exc:
            return self.response_400(message=str(exc))
        # the shape: a bare list, not FAB's {"result": ...}
        return jsonify([{k: r[k] for k in ("entity", "id", "title", "url")} for r in found])


class SearchPage(BaseView):
    route_base = "/search"
    default_view = "results"

    @expose("/")
    def results(self):
        if not self.appbuilder.sm.current_user:
            return current_app.login_manager.unauthorized()
        query = request.args.get("q", "")
        problem, found = None, []
        try:
            found = search_records(query)
        except SearchRefused as exc:
            problem = str(exc)
        return self.render_template("portal/search.html", query=query[:MAX_QUERY], problem=problem, found=found,
                                    title=gettext("Search")), 400 if problem else 200


def install_quick_search(appbuilder) -> None:
    appbuilder.add_view_no_menu(SearchPage)
    appbuilder.add_api(SearchApi)
