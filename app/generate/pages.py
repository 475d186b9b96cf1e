"""Generate one FAB ModelView per entity: list/show/add/edit/delete with schema validation."""
from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import ModelView, expose, has_access
from flask_babel import gettext, lazy_gettext as _l
from wtforms.validators import StopValidation

from app.rules.access import current_viewer
from app.i18n import format_with_schema_text, lazy
from app.rules.records import FieldError, clean_value
from app.schema.spec import VERSION_COLUMN, EntitySpec, FieldSpec, PortalSpec
from app.data.tabular import FORMATS, FileProblem
from app import fab
from app.generate import columns, versions
from app.generate.bulk import BulkViewMixin
from app.generate.endpoint import ViewerScopedEndpoint
from app.generate.attachments import AttachmentsPages
from app.data.round_trip import key_choices
from app.generate.dataio import export_response, keep_upload, run_import, spool_upload, take_upload
from app.generate.input_errors import clean_filters
from app.generate.lines import check_form_lines, lines_form_fields, prefill_lines, write_form_lines
from app.generate import liveform
from app.generate.lookups import form_fields, lookup_response, search_fields
from app.generate.paged_pages import PagedListView
from app.generate.paging import PagedInterface
from app.generate.permissions import DELETE, UPDATE, VIEW_METHODS, entity_permissions, permission
from app.generate.references import delete_refusal
from app.generate.drill import drill_filters
from app.generate.saved_views import SavedViewsPagesMixin, view_filters
from app.generate.show_panels import panels_for
from app.generate import transitions
from app.rules.workflows import is_locked
from app.generate.timeline import TimelinePagesMixin
from app.generate.comments import CommentPagesMixin
from app.generate.merge import MergeViewMixin
from app.generate.duplicates import DuplicatesPagesMixin


class FieldRule:
    """WTForms validator applying the schema's rules to one field; keeps the cleaned value."""

    def __init__(self, field: FieldSpec) -> None:
        self.field = field

    def __call__(self, form, wt_field) -> None:
        try:
            wt_field.data = clean_value(self.field, wt_field.data)
        except FieldError as exc:
            raise StopValidation(str(exc)) from None


def with_record_rules(view, form_class, creating: bool):
    """The form class, whose `validate` also runs the record rules (record_rules.py) once every field is clean.

    Errors land on their field (or are flashed when the field is not on the form); nothing is saved.
    """
    if form_class is None:
        return None

    def validate(form, extra_validators=None):
        if not creating:
            transitions.show_state(form, view)  # read-only on the form, shown again if it comes back
        fields_ok = form_class.validate(form, extra_validators=extra_validators)
        record_ok = fields_ok and view.check_form(form, creating)
        return check_form_lines(view, form, creating) and record_ok  # grid rows show their errors either way

    return type(form_class.__name__, (form_class,), {"validate": validate})


class ValidatorsByColumn(dict):
    """FAB appends its own validators to the list it is given; hand each form a copy."""

    def get(self, key, default=None):
        value = super().get(key, default)
        return list(value) if value is not None else None


class EntityView(DuplicatesPagesMixin, SavedViewsPagesMixin, BulkViewMixin, AttachmentsPages, ViewerScopedEndpoint, transitions.TransitionsViewMixin,
                 TimelinePagesMixin, CommentPagesMixin, MergeViewMixin, PagedListView, fab.ModelViewBoundary, ModelView):
    """Behaviour shared by every generated view; the factory fills in the class attributes.

    Scope, hide and mask come from ViewerScopedEndpoint (endpoint.py), the list page from PagedListView.
    """

    list_template = "portal/list.html"
    show_template = "portal/show.html"  # FAB's plus Edit / Delete and the features' panels (show_panels.py)

    portal: PortalSpec
    entity: EntitySpec
    models: dict
    writer_factory = None
    method_permission_name = VIEW_METHODS

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # FAB built the forms; saving one runs the record rules like the API and imports do
        self.add_form = with_record_rules(self, self.add_form, creating=True)
        self.edit_form = with_record_rules(self, self.edit_form, creating=False)
        self._link_defaults_may_be_left_empty()

    def _link_defaults_may_be_left_empty(self) -> None:
        """A required field with a default from a link (rate <- worker.day_rate) may be left empty on the form: the
        record rules fill it, and refuse it ("This field is required.") only if it is still empty then."""
        from wtforms.validators import DataRequired, InputRequired, Optional

        for form_class in (self.add_form, self.edit_form):
            for f in self.entity.fields:
                unbound = getattr(form_class, f.name, None) if form_class is not None and f.default_from else None
                if unbound is not None and hasattr(unbound, "kwargs"):
                    unbound.kwargs["validators"] = [Optional()] + [v for v in unbound.kwargs.get("validators") or ()
                                                                   if not isinstance(v, (DataRequired, InputRequired))]

    def check_form(self, form, creating: bool) -> bool:
        """The record rules over a validated form; False (with errors on the form) refuses the save."""
        rules = self.writer()
        values = {name: form[name].data for name in rules.writable
                  if name in form and not isinstance(form[name], transitions.StateField)}  # shown, not written
        current = None if creating else self.datamodel.session.get(self.datamodel.obj, fab.edited_pk(form))
        ctx = rules.context(values, creating, "form", current)
        errors = rules.check(ctx)
        self._show_filled_values(form, values)
        for name, messages in errors.items():
            if name in form:
                form[name].errors = list(form[name].errors) + messages
            else:
                for message in messages:
                    flash(message, "danger")
        return not errors and not self.duplicates_refuse(rules, ctx)  # candidates shown, unless "Save anyway"

    @staticmethod
    def _show_filled_values(form, values: dict) -> None:
        """Values a rule step filled in (a default from a link) go back to the form, which FAB then saves."""
        for name, value in values.items():
            if name in form and form[name].data is None and value is not None:
                form[name].data = value

    def _before_write(self, item, creating: bool) -> None:
        """Forced row-scope values, the audit stamp and any portal rule step (record_rules.py)."""
        rules = self.writer()
        given = {name: getattr(item, name) for name in rules.writable}  # the form's values, populated by FAB
        values = rules.before_write(rules.context(dict(given), creating, "form", None if creating else item))
        rules.apply(item, {name: v for name, v in values.items() if name not in given or given[name] is not v})
        write_form_lines(self, item)  # inline lines checked with the form: saved in the same commit

    def pre_add(self, item) -> None:
        self._before_write(item, creating=True)
        super().pre_add(item)  # the features' mixins (attachments.py: a file field's upload)

    def pre_update(self, item) -> None:
        self._before_write(item, creating=False)
        super().pre_update(item)

    @classmethod
    def writer(cls):
        return cls.writer_factory(cls.entity)

    def save_error_message(self, error):
        """Flashed when a save raises: say so when it lost the race to another save (versions.py)."""
        return versions.lost_race_flash(self, error) or super().save_error_message(error)

    def _current_user_fields(self) -> list[str]:
        return [f.name for f in self.entity.fields if f.kind.to_users and f.default == "current_user"]

    def prefill_add_form(self, form) -> None:
        """A new record's user fields with `default: current_user` start out as the signed-in user."""
        if request.method == "GET":
            for name in self._current_user_fields():
                if name in form:
                    form[name].data = self.appbuilder.sm.current_user

    def prefill_form(self, form, pk) -> None:
        prefill_lines(form, pk)  # the edit form's grids show the stored lines

    def render_template(self, template, **kwargs):
        sm = self.appbuilder.sm
        kwargs.setdefault("can_export", sm.has_access("can_export", self.class_permission_name))
        kwargs.setdefault("can_import", sm.has_access("can_import", self.class_permission_name))
        kwargs.setdefault("export_url", f"{self.route_base}/export/")
        kwargs.setdefault("import_url", f"{self.route_base}/import")
        if template == self.show_template and "pk" in kwargs:
            kwargs.update(self._show_context(kwargs["pk"]))
        return super().render_template(template, **kwargs)

    def _show_context(self, pk) -> dict:
        """Edit / Delete buttons (when the user may use them on this record) and the features' panels."""
        item = fab.scoped_get(self, pk)  # FAB's _show loaded it: the session's identity map has it
        sm = self.appbuilder.sm
        may_edit, may_delete = self.record_actions(item)
        return dict(
            panels=panels_for(self, item),
            can_edit=may_edit and sm.has_access(permission(UPDATE), self.class_permission_name),
            can_delete=may_delete and sm.has_access(permission(DELETE), self.class_permission_name),
            edit_url=url_for(f"{self.endpoint}.edit", pk=pk), delete_url=url_for(f"{self.endpoint}.delete", pk=pk),
        )

    def record_actions(self, item) -> tuple[bool, bool]:
        """(may edit, may delete) this record, apart from the role's permissions (a locked state says no)."""
        locked = is_locked(self.entity, item)
        return not locked, not locked

    @expose("/export/<fmt>")
    @has_access
    def export_data(self, fmt: str):
        """The list as filtered and sorted on screen, in the viewer's scope, as CSV or XLSX."""
        if fmt not in FORMATS:
            abort(404)
        filters = fab.filters_from_url(self)
        problems = clean_filters(self.entity, filters)
        if problems:
            abort(400, description=problems[0])
        order = self._list_order(say_why=False)  # as the list shows it: never by a field the viewer may not sort on
        return export_response(self, fab.joined_filters(self, filters), order, fmt)

    @expose("/lookup/<field>")
    @has_access
    def lookup(self, field: str):
        """Picker choices: ids and titles of the linked records in the viewer's scope, a page at a time."""
        return lookup_response(self, field)

    @expose("/preview", methods=["POST"])
    @has_access
    def preview(self):
        """The live form's formula values and defaults from links for the data typed so far (liveform.py)."""
        return liveform.preview_response(self)

    @expose("/import", methods=["GET", "POST"])
    @has_access
    def import_data(self):
        """Upload, check (every row, nothing saved), then confirm: all rows are saved or none."""
        report, token, key = None, None, request.form.get("key", "")
        if request.method == "POST":
            try:
                if request.form.get("action") == "commit":
                    upload = take_upload(request.form.get("token", ""))
                    if upload is None:
                        flash(str(_l("The checked file has expired; upload it again.")), "danger")
                    else:
                        path, fmt = upload
                        with path.open("rb") as stream:
                            report = run_import(self, stream, f"upload.{fmt}", key, dry_run=False)
                        if report.written:
                            path.unlink(missing_ok=True)
                            flash(str(_l("Imported: %(created)d created, %(updated)d updated.",
                                         created=report.created, updated=report.updated)), "success")
                            return redirect(url_for(f"{self.endpoint}.list"))
                else:
                    upload = request.files.get("file")
                    if upload is None or not upload.filename:
                        flash(str(_l("Choose a file to import.")), "danger")
                    else:
                        with spool_upload(upload) as spool:  # on disk: a big file never sits in memory
                            report = run_import(self, spool, upload.filename, key, dry_run=True)
                            token = keep_upload(spool, upload.filename) if report.ok else None
            except FileProblem as exc:
                flash(str(exc), "danger")
        unreadable = current_viewer().unreadable(self.entity.name)
        keys = key_choices(self.entity, unreadable)  # app/data/round_trip.py: ID, unique fields, unique_together
        return self.render_template("portal/import.html", title=format_with_schema_text(
                                        gettext("Import %(entity)s"), entity=lazy(self.entity.label)),
                                    report=report, token=token, key=key, key_choices=keys)

    def post_add(self, item) -> None:
        if item.id is not None:  # FAB calls this even when the insert failed (it flashed why)
            g.portal_added_pk = item.id
        super().post_add(item)

    def post_add_redirect(self):
        """To the new record's detail page; when the save failed, back to where the user came from, or to the
        list rather than the home page."""
        added = g.pop("portal_added_pk", None)
        if added is not None:
            return redirect(url_for(f"{self.endpoint}.show", pk=added))
        target = self.get_redirect()
        if target in (self.appbuilder.get_url_for_index, "/"):
            target = url_for(f"{self.endpoint}.list")
        return redirect(target)

    def post_delete_redirect(self):
        """Deleted from its detail page: to the list (the page is gone); refused: back to the record."""
        if request.form.get("from") == "show":
            pk = request.view_args.get("pk")
            if pk is not None and fab.scoped_get(self, pk) is not None:
                return redirect(url_for(f"{self.endpoint}.show", pk=pk))
            return redirect(url_for(f"{self.endpoint}.list"))
        return super().post_delete_redirect()

    def pre_delete(self, item) -> None:
        refusal = delete_refusal(self.portal, self.models, self.datamodel.session, self.entity, item)
        if refusal:
            raise FieldError(refusal)
        super().pre_delete(item)  # the features' mixins (attachments.py: the record's files go with it)


def build_view(portal: PortalSpec, entity: EntitySpec, models: dict, writer_factory) -> type:
    # a type may bring its own form field (enum: a select of labels); the others keep the one FAB derives
    own_fields = {f.name: own for f in entity.fields if (own := f.kind.form_field(f, FieldRule(f))) is not None}
    extra = {name: own for name, own in own_fields.items() if not entity.field(name).readonly}
    extra.update(form_fields(entity, writer_factory))  # type-ahead pickers, never the whole linked table
    extra.update(lines_form_fields(portal, entity))  # inline lines: a grid of the child records (lines.py)
    extra.update(liveform.formula_form_fields(entity))  # formulas: read-only, kept current as the user types
    version_rule = versions.VersionRule(None)  # the edit form's hidden row_version; the view is set below
    edit_extra = {**extra, **transitions.form_fields(entity),  # the workflow state: shown, changed by transitions
                  VERSION_COLUMN: versions.VersionField(validators=[version_rule])}
    validators = ValidatorsByColumn(
        (f.name, [FieldRule(f)]) for f in entity.fields if not f.is_relation and f.name not in own_fields)
    attrs = dict(
        portal=portal, entity=entity, models=models, writer_factory=staticmethod(writer_factory),
        datamodel=PagedInterface(models[entity.name]),
        class_permission_name=entity.name, base_permissions=entity_permissions(),
        route_base=f"/{entity.snake}",
        list_title=lazy(entity.label), show_title=lazy(entity.label),
        add_title=lazy(entity.label), edit_title=lazy(entity.label),
        full_list_columns=columns.list_columns(entity),
        full_show_columns=columns.show_columns(entity),
        full_add_columns=transitions.add_columns(entity, liveform.form_columns(entity)) + [key for key, _ in entity.lines_keys],
        full_edit_columns=liveform.form_columns(entity) + [key for key, _ in entity.lines_keys] + [VERSION_COLUMN],
        full_search_columns=list(entity.search) or columns.list_columns(entity),
        base_filters=EntityView.row_scope_filters(entity) + view_filters(entity) + drill_filters(entity),  # scope, view, drill
        search_form_extra_fields=search_fields(entity),
        label_columns=columns.label_columns(entity),
        description_columns=columns.description_columns(entity),
        full_formatters_columns=columns.formatters(entity),
        add_form_extra_fields=extra, edit_form_extra_fields=edit_extra,
        validators_columns=validators,
        exclude_route_methods=transitions.unused_routes(entity, api=False),
    )
    if entity.order:
        attrs["base_order"] = entity.order[0]
    view = type(f"{entity.name}View", (EntityView,), attrs)
    version_rule.view_class = view
    return view
