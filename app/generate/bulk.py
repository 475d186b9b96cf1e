"""Bulk actions on the list page and the API (issue 13): `POST /<entity>/bulk` and `POST /api/v1/<entity>/bulk`.

The checks and the set-based writes are app/rules/bulk_actions.py; here the request is read (ids, or the list's
filter: the page's `_flt_*` arguments, the API's `filters` cleaned like the list API's), run in one transaction
and answered: the API with `{"done": [...], "refused": [{"id", "reason"}]}`, the page with a result page.
The list page's checkboxes and action bar are views/templates/portal/list.html and views/static/portal/bulk.js.
"""
from __future__ import annotations

import prison
from flask import render_template, request, url_for
from flask_appbuilder import expose, has_access
from flask_appbuilder.api import protect, safe
from flask_appbuilder.exceptions import FABException
from flask_appbuilder.models.filters import BaseFilter
from flask_babel import gettext, lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app import fab
from app.generate.dataio import export_response
from app.generate.input_errors import FilterValueError, clean_filters
from app.generate.paged_pages import URL_FOR_KEYWORDS
from app.generate.permissions import DELETE, EXPORT, permission
from app.i18n import lazy
from app.portal import current_portal
from app.rules.access import current_viewer
from app.rules import bulk_actions, workflows  # modules, read at call time: app.rules.history imports app.generate

SHOWN_REFUSALS = 500  # rows listed on the result page (the API lists them all)


class _IdIn(BaseFilter):
    """Export selected: only the chosen ids (FAB's documented filter class interface)."""

    name = "id in"
    arg_name = "in"  # FAB applies a list value as one filter only for "in"/"not_in"

    def apply(self, query, value):
        return query.filter(self.model.id.in_(value))


class BulkEndpoint:
    """What the page and the API share: ids from a filter, the run in one transaction."""

    def _matching_ids(self, filters) -> list[int]:
        """Ids of the rows matching `filters` (already joined with the row scope), at most MAX_ROWS."""
        model = self.datamodel.obj
        query = self.datamodel.apply_filters(self.datamodel.session.query(model.id), filters)
        limit = bulk_actions.MAX_ROWS
        ids = [row[0] for row in query.order_by(model.id).limit(limit + 1)]
        if len(ids) > limit:
            raise bulk_actions.too_many()
        return ids

    def _run_bulk(self, action: str, transition: str | None, ids: list[int]):
        """Run the action over `ids` and commit; a database error rolls every row back (raised to the caller)."""
        sm = self.appbuilder.sm
        runner = bulk_actions.BulkAction(current_portal(), self.datamodel.session, current_viewer(), self.entity,
                            user=sm.current_user,
                            may_delete=sm.has_access(permission(DELETE), self.class_permission_name))
        session = self.datamodel.session
        try:
            outcome = runner.transition(transition, ids) if action == bulk_actions.TRANSITION_ACTION else runner.delete(ids)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return outcome


class BulkApiMixin(BulkEndpoint):
    """POST /api/v1/<entity>/bulk."""

    @expose("/bulk", methods=["POST"])
    @protect()
    @safe
    def bulk(self):
        """Apply a transition to, or delete, many records; each row is checked on its own
        ---
        post:
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    action: {type: string, enum: [transition, delete]}
                    transition: {type: string}
                    ids: {type: array, items: {type: integer}, maxItems: 10000}
                    filter: {description: "a Rison string or a list of {col, opr, value}, as the list API's filters"}
          responses:
            200: {description: "{done: [ids], refused: [{id, reason}]}"}
            400: {description: bad request; nothing was written}
            413: {description: more than 10000 rows; nothing was written}
        """
        payload, error = self._json_object()
        if error:
            return error
        try:
            action, transition = _action_of(payload)
            if ("ids" in payload) == ("filter" in payload):
                raise bulk_actions.BulkRequestError(_l("Give either ids or filter."))
            ids = bulk_actions.clean_ids(payload["ids"]) if "ids" in payload else self._matching_ids(
                self._api_filters(payload["filter"]))
            outcome = self._run_bulk(action, transition, ids)
        except bulk_actions.BulkRequestError as exc:
            return self.response(exc.status, message=exc.message)
        except SQLAlchemyError as exc:
            return self._database_refused(exc)
        return self.response(200, **outcome.as_dict())

    def _api_filters(self, raw):
        """The `filter` of a bulk request as the list API reads its `filters`: unknown columns or operators, hidden
        fields and values that do not fit are a 400 (joined with the row scope)."""
        if isinstance(raw, str):
            try:
                raw = prison.loads(raw)
            except (prison.decoder.ParserException, RecursionError, IndexError, ValueError):
                raise bulk_actions.BulkRequestError(_l("The filter is neither Rison nor a JSON list of filters.")) from None
        if isinstance(raw, dict) and set(raw) == {"filters"}:
            raw = raw["filters"]
        if not isinstance(raw, list) or not all(isinstance(f, dict) and {"col", "opr", "value"} <= set(f)
                                                and isinstance(f["col"], str) and isinstance(f["opr"], str) for f in raw):
            raise bulk_actions.BulkRequestError(_l("The filter must be a list of {col, opr, value}."))
        scope_only = len(fab.rest_filters(self, {"filters": []}).filters)
        for one in raw:  # one at a time, so the message names the column
            column = str(one["col"])[:60]
            if one["col"] not in self.search_columns:  # hidden and masked fields are not among them
                raise bulk_actions.BulkRequestError(_l("Cannot filter on %(column)s.", column=column))
            try:
                added = len(fab.rest_filters(self, {"filters": [one]}).filters) - scope_only
            except FilterValueError as exc:
                raise bulk_actions.BulkRequestError(str(exc)) from None
            except FABException:
                added = 0
            if added != 1:  # FAB skips an operator the column does not have instead of refusing it
                raise bulk_actions.BulkRequestError(_l("Filter %(operator)s cannot be used on %(column)s.",
                                                       operator=str(one["opr"])[:30], column=column))
        return fab.rest_filters(self, {"filters": raw})


def _action_of(payload: dict) -> tuple[str, str | None]:
    action = payload.get("action")
    if action not in bulk_actions.ACTIONS:
        raise bulk_actions.BulkRequestError(_l("Unknown action: use transition or delete."))
    transition = payload.get("transition")
    if action == bulk_actions.TRANSITION_ACTION and not isinstance(transition, str):
        raise bulk_actions.BulkRequestError(_l("Name the transition to take."))
    return action, transition if action == bulk_actions.TRANSITION_ACTION else None


def _list_args() -> dict:
    """The list's query arguments (its filter, order, page), kept on the bulk form's URL and the way back to the
    list; never url_for's own keywords (`_external=1` in a URL is a 500 in url_for)."""
    args = request.args.to_dict(flat=False)
    for key in URL_FOR_KEYWORDS:
        args.pop(key, None)
    return args


class BulkViewMixin(BulkEndpoint):
    """The list page's checkboxes and action bar, and POST /<entity>/bulk with its result page."""

    def list_widgets(self, filters, *args, position=None, **kwargs):
        if position is not None:  # the entity's own list (not a related-records panel): rows can be selected
            kwargs.setdefault("bulk_select", bool(self.bulk_choices()))
        return super().list_widgets(filters, *args, position=position, **kwargs)

    def render_template(self, template, **kwargs):
        if template == self.list_template:
            kwargs.setdefault("bulk_choices", self.bulk_choices())
            kwargs.setdefault("bulk_url", url_for(f"{self.endpoint}.bulk", **_list_args()))
        return super().render_template(template, **kwargs)

    def bulk_choices(self) -> list[tuple[str, str]]:
        """(value, label) of the actions this user may pick on the list: transitions their role may take,
        Delete, Export selected."""
        sm, name = self.appbuilder.sm, self.class_permission_name
        choices = []
        workflow = self.entity.workflow
        if workflow and sm.has_access(permission("read"), name):
            viewer = current_viewer()
            choices += [(f"transition:{t.name}", lazy(t.label) if t.label else t.name)
                        for t in workflow.transitions if workflows.role_may_take(viewer, t)]
        if sm.has_access(permission(DELETE), name):
            choices.append(("delete", gettext("Delete")))
        if sm.has_access(permission(EXPORT), name):
            choices += [("export:csv", gettext("Export selected (CSV)")), ("export:xlsx", gettext("Export selected (Excel)"))]
        return choices

    @expose("/bulk", methods=["POST"])
    @has_access
    def bulk(self):
        kind, _, name = request.form.get("action", "").partition(":")
        if f"{kind}:{name}".rstrip(":") not in {value for value, _ in self.bulk_choices()}:
            return self._refused_page(gettext("Choose an action you may take."), 400)
        try:
            if kind == "export":
                return export_response(self, self._chosen_filters(), self._list_order(say_why=False), name)
            ids = self._matching_ids(self._chosen_filters()) if request.form.get("scope") == "filter" else \
                bulk_actions.clean_ids(request.form.getlist("rowid"))
            action = bulk_actions.TRANSITION_ACTION if kind == "transition" else bulk_actions.DELETE_ACTION
            outcome = self._run_bulk(action, name or None, ids)
        except bulk_actions.BulkRequestError as exc:
            return self._refused_page(exc.message, exc.status)
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc.__cause__ or exc
            return self._refused_page(gettext("The database refused the change: %(reason)s", reason=reason), 422)
        label = dict(self.bulk_choices()).get(request.form.get("action"), "")
        return self.render_template("portal/bulk_result.html", title=lazy(self.entity.label), action_label=label,
                                    done=len(outcome.done), refused=self._refused_rows(outcome.refused),
                                    refused_count=len(outcome.refused),
                                    back_url=url_for(f"{self.endpoint}.list", **_list_args()))

    def _chosen_filters(self):
        """The list's own filter (its `_flt_*` arguments, kept on the form's URL) when "all matching" was chosen,
        else the ticked ids; either way joined with the row scope."""
        if request.form.get("scope") == "filter":
            filters = fab.filters_from_url(self)
            problems = clean_filters(self.entity, filters)
            if problems:
                raise bulk_actions.BulkRequestError(problems[0])
        else:
            filters = self.datamodel.get_filters([])
            filters.add_filter("id", _IdIn, bulk_actions.clean_ids(request.form.getlist("rowid")))
        return fab.joined_filters(self, filters)

    def _refused_rows(self, refused: list) -> list[tuple]:
        """(id, title, show url or None, reason) of the first refused rows; titles only of rows in scope."""
        shown = refused[:SHOWN_REFUSALS]
        model = self.datamodel.obj
        query = select(model).where(model.id.in_([i for i, _ in shown]))
        scope = current_viewer().row_clause(self.entity.name, current_portal().models)
        if scope is not None:
            query = query.where(scope)
        titles = {item.id: str(item) for item in self.datamodel.session.scalars(query)} if shown else {}
        return [(i, titles.get(i, f"#{i}"), url_for(f"{self.endpoint}.show", pk=i) if i in titles else None, reason)
                for i, reason in shown]

    def _refused_page(self, message: str, status: int):
        return render_template("portal/error.html", title=gettext("Bulk action refused"), message=message), status

