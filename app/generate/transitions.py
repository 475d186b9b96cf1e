"""Workflow transitions on pages and the API (app/rules/workflows.py decides; this module serves).

- API (`TransitionsApiMixin`): `GET /api/v1/<entity>/<id>/transitions` lists what the caller may take now,
  `POST /api/v1/<entity>/<id>/transitions/<name>` takes one with the `require` values as a JSON object (If-Match
  as for PUT). 403 role, 404 record out of scope or no such transition, 409 state / `when` / stale version, 422
  missing value or a broken rule (`{"message", "errors": {field: [..]}}`), 400 a body that is not a JSON object.
- Pages (`TransitionsViewMixin`): `/<entity>/transition/<pk>/<name>` (GET: the form of the `require` fields, made
  of the entity's own form fields; POST: take it), the detail page's "workflow" panel (state badge, one button per
  transition the user may take now) and no edit form for a locked record (flash, back to the detail page).

Both load the record with `fab.scoped_get`, so a record outside the viewer's row scope is a 404, never a 403.
Permissions (permissions.py): listing and taking map to READ; who may take a transition is its `roles:`.
"""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import expose, has_access
from flask_appbuilder.api import expose as api_expose, protect, safe
from flask_appbuilder.exceptions import DatabaseException
from flask_appbuilder.forms import DynamicForm
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import SQLAlchemyError
from wtforms import Field
from markupsafe import Markup

from app import fab
from app.generate import versions
from app.generate.show_panels import show_panel
from app.i18n import current_locale, lazy
from app.rules.access import current_viewer
from app.rules.workflows import (
    TransitionRefused,
    available,
    is_locked,
    locked_refusal,
    may_take,
    state_label,
    take,
    transition_label,
)
from app.schema.spec import EntitySpec


def _field_info(entity: EntitySpec, name: str) -> dict:
    f = entity.field(name)
    return {"name": name, "label": f.label.get(current_locale()), "type": f.type}


def transitions_payload(entity: EntitySpec, item, viewer) -> dict:
    """The GET answer: the record's state and the transitions the viewer may take now."""
    state = getattr(item, entity.workflow.field)
    if entity.workflow.field in viewer.unreadable(entity.name):
        state = None  # hidden or masked for this user (and then no transition is offered: may_take)
    return {
        "state": None if state is None else {"key": state, "label": state_label(entity, state)},
        "transitions": [{"name": t.name, "label": transition_label(t), "to": t.target,
                         "require": [_field_info(entity, name) for name in t.require]}
                        for t in available(viewer, entity, item)],
    }


def state_style(entity: EntitySpec, state) -> str:
    """Bootstrap label class of a state's badge: new records' state blue, locked ones green, the rest orange."""
    workflow = entity.workflow
    if state in workflow.locked:
        return "label-success"
    if state == entity.field(workflow.field).default:
        return "label-info"
    return "label-warning"


def unused_routes(entity: EntitySpec, api: bool) -> set[str]:
    """FAB's `exclude_route_methods` of an entity without a workflow: no transition routes, none documented."""
    if entity.workflow is not None:
        return set()
    return {"transitions", "take_transition"} if api else {"transition"}


# -- API -----------------------------------------------------------------------------------------------

class TransitionsApiMixin:
    """On EntityApi: the record's transitions (list, take)."""

    @api_expose("/<int:pk>/transitions", methods=["GET"])
    @protect()
    @safe
    def transitions(self, pk):
        """The record's workflow state and the transitions the caller may take now
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200:
              description: the state and the transitions the caller may take now
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      state: {type: object, properties: {key: {type: string}, label: {type: string}}}
                      transitions:
                        type: array
                        items:
                          type: object
                          properties:
                            name: {type: string}
                            label: {type: string}
                            to: {type: string}
                            require: {type: array, items: {type: object, properties: {name: {type: string}, label: {type: string}, type: {type: string}}}}
            404: {description: no such record in the caller's scope, or the entity has no workflow}
        """
        item = fab.scoped_get(self, pk) if self.entity.workflow else None
        if item is None:
            return self.response_404()
        return self.response(200, **transitions_payload(self.entity, item, current_viewer()))

    @api_expose("/<int:pk>/transitions/<name>", methods=["POST"])
    @protect()
    @safe
    def take_transition(self, pk, name):
        """Take a transition: the body holds the values of its `require` fields
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: path, name: name, required: true, schema: {type: string}}
          - {in: header, name: If-Match, required: false, schema: {type: string}, description: 'The ETag ("<row_version>") of the record as read; stale: 409'}
          requestBody:
            content:
              application/json:
                schema: {type: object, description: 'the require fields, e.g. {"resolution": "replaced the pump"}'}
          responses:
            200: {description: 'taken; the record as GET returns it'}
            400: {description: the body is not a JSON object}
            403: {description: the caller's role may not take this transition}
            404: {description: no such record in the caller's scope, or no such transition}
            409: {description: 'not from the current state, its `when` is false, or the record changed (If-Match)'}
            422: {description: 'a required value is missing or a rule is broken: {"message", "errors": {field: [..]}}'}
        """
        workflow = self.entity.workflow
        item = fab.scoped_get(self, pk) if workflow and workflow.transition(name) else None
        if item is None:
            return self.response_404()
        payload, error = self._transition_body()
        if error:
            return error
        stale = versions.refuse_if_stale(self, item, payload)  # If-Match (or row_version in the body), as PUT
        if stale:
            return stale
        session = self.datamodel.session
        try:
            take(self.writer(), item, name, payload)
            session.commit()
        except TransitionRefused as refused:
            session.rollback()
            body = {"message": refused.message}
            if refused.errors:
                body["errors"] = refused.errors
            return self.response(refused.status, **body)
        except (DatabaseException, SQLAlchemyError) as exc:
            session.rollback()
            return versions.conflict(self, item) if versions.is_stale(exc) else self._database_refused(exc)
        body = {"result": self.viewer_record(self.show_model_schema.dump(item)), "id": item.id}
        return versions.with_etag(self.response(200, **body), item)

    def _transition_body(self):
        """The JSON object of `require` values; no body at all is an empty one."""
        if not request.get_data(cache=True):
            return {}, None
        return self._json_object()


# -- pages ---------------------------------------------------------------------------------------------

class StateField(Field):
    """The workflow field on the edit form: shown, never read from the request nor written (transitions change it)."""

    def __init__(self, entity: EntitySpec, **kwargs) -> None:
        spec = entity.field(entity.workflow.field)
        super().__init__(lazy(spec.label), **kwargs)
        self.entity = entity

    def __call__(self, **kwargs):
        state = self.object_data
        return Markup('<p class="form-control-static"><span class="label {}" id="{}">{}</span></p>').format(
            state_style(self.entity, state), kwargs.get("id", self.id),
            state_label(self.entity, state) if state is not None else "")

    def process_formdata(self, valuelist) -> None:
        pass

    def populate_obj(self, obj, name) -> None:
        pass


def show_state(form, view) -> None:
    """A posted edit form shows the stored state too, should it come back with errors (FAB rebuilds it from the
    request alone)."""
    entity, pk = view.entity, fab.edited_pk(form)
    name = entity.workflow.field if entity.workflow else None
    if pk is not None and name in form and isinstance(form[name], StateField):
        item = view.datamodel.session.get(view.datamodel.obj, pk)
        form[name].object_data = getattr(item, name, None)


def form_fields(entity: EntitySpec) -> dict:
    """The edit form's extra field for the workflow state (read-only); the add form leaves the state out."""
    return {entity.workflow.field: StateField(entity)} if entity.workflow else {}


def add_columns(entity: EntitySpec, columns: list[str]) -> list[str]:
    """The add form's columns without the workflow field: new records start in its default state."""
    return [c for c in columns if not entity.workflow or c != entity.workflow.field]


class TransitionsViewMixin:
    """On EntityView: the transition page and no edit form for a locked record."""

    @expose("/transition/<int:pk>/<name>", methods=["GET", "POST"])
    @has_access
    def transition(self, pk, name):
        entity = self.entity
        transition = entity.workflow.transition(name) if entity.workflow else None
        item = fab.scoped_get(self, pk) if transition else None
        if item is None:
            abort(404)
        show_url = url_for(f"{self.endpoint}.show", pk=pk)
        refusal = may_take(current_viewer(), entity, item, transition)
        if refusal is not None:
            flash(refusal.message, "danger")
            return redirect(show_url)
        form = self._require_form(transition)
        if request.method == "POST":
            try:
                take(self.writer(), item, name, self._posted_values(transition))
                self.datamodel.session.commit()
            except TransitionRefused as refused:
                self.datamodel.session.rollback()
                if refused.status != 422 or not transition.require:
                    flash(refused.message, "danger")
                    self._flash_errors(refused.errors)
                    return redirect(show_url)
                self._show_errors(form, refused)
            except (DatabaseException, SQLAlchemyError) as exc:
                self.datamodel.session.rollback()
                flash(versions.lost_race_flash(self, exc) or str(_l("The database refused the change: %(reason)s",
                                                                    reason=getattr(exc, "orig", exc))), "danger")
                return redirect(show_url)
            else:
                flash(str(_l("%(transition)s: done.", transition=transition_label(transition))), "success")
                return redirect(show_url)
        elif not transition.require:
            return redirect(show_url)  # nothing to fill in: the detail page's button posts directly
        widgets = {"edit": self.edit_widget(form=form, include_cols=list(transition.require), exclude_cols=[],
                                            fieldsets=[])}
        title = f"{transition_label(transition)} — {lazy(entity.label)}"
        return self.render_template("appbuilder/general/model/edit.html", title=title, widgets=widgets,
                                    form_action=request.path, related_views=[])

    def _require_form(self, transition):
        """A form of the transition's `require` fields, made of the edit form's own fields (same types, pickers)."""
        edit_form = self.edit_form
        fields = {name: getattr(edit_form, name) for name in transition.require if hasattr(edit_form, name)}
        form_class = type(f"{self.entity.name}TransitionForm", (DynamicForm,), fields)
        return form_class(request.form if request.method == "POST" else None)

    def _posted_values(self, transition) -> dict:
        """The posted `require` values as text (links as ids); take() cleans them like any write."""
        values = {}
        for name in transition.require:
            f = self.entity.field(name)
            posted = [v for v in request.form.getlist(name) if v.strip()]
            if f.kind.multiple:
                values[name] = [{"id": int(v)} if v.strip().isdecimal() else v for v in posted]
            elif f.is_relation:
                values[name] = ({"id": int(posted[0])} if posted[0].strip().isdecimal() else posted[0]) if posted else None
            else:
                values[name] = posted[0] if posted else None
        return values

    def _show_errors(self, form, refused: TransitionRefused) -> None:
        """Errors under the form's fields; those of other fields (a broken rule) flashed with the field's label."""
        self._flash_errors({name: messages for name, messages in refused.errors.items() if name not in form})
        for name, messages in refused.errors.items():
            if name in form:
                form[name].errors = list(messages)

    def _flash_errors(self, errors: dict) -> None:
        labels = {f.name: f.label for f in self.entity.fields}
        for name, messages in errors.items():
            for message in messages:
                flash(f"{labels[name].get(current_locale())}: {message}" if name in labels else message, "danger")

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    def edit(self, pk):
        """A locked record has no edit form: say why, back to its detail page."""
        item = fab.scoped_get(self, pk) if self.entity.workflow else None
        if item is not None and is_locked(self.entity, item):
            flash(locked_refusal(self.entity, item), "danger")
            return redirect(url_for(f"{self.endpoint}.show", pk=pk))
        return super().edit(pk)


@show_panel("workflow", "top")
def workflow_panel(view, item) -> dict | None:
    """The state badge and a button per transition the user may take now."""
    entity = view.entity
    if entity.workflow is None or item is None:
        return None
    if entity.workflow.field in current_viewer().unreadable(entity.name):
        return None  # a role that may not see the state sees neither its badge nor buttons that would tell it
    state = getattr(item, entity.workflow.field)
    return {
        "state": state_label(entity, state), "style": state_style(entity, state),
        "transitions": [{"name": t.name, "label": transition_label(t), "form": bool(t.require),
                         "url": url_for(f"{view.endpoint}.transition", pk=item.id, name=t.name)}
                        for t in available(current_viewer(), entity, item)],
    }
