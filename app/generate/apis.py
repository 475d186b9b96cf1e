"""Generate one FAB ModelRestApi per entity at /api/v1/<snake_case>/.

Reads use FAB's marshmallow schemas; writes go through RecordWriter so the API accepts
and rejects exactly what the forms do, with per-field localized errors.
"""
from __future__ import annotations

from flask import request
from flask_appbuilder.api import ModelRestApi, expose, protect, safe
from flask_appbuilder.exceptions import DatabaseException, FABException
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import SQLAlchemyError

from app.i18n import lazy
from app.schema.spec import VERSION_COLUMN, EntitySpec, PortalSpec
from app.data.tabular import FORMATS, FileProblem
from app import fab
from app.generate.drill import drill_filters
from app.generate import columns, versions
from app.generate.bulk import BulkApiMixin
from app.generate.endpoint import ViewerScopedEndpoint
from app.generate.attachments import AttachmentsApi
from app.generate.dataio import export_response, run_import, spool_upload
from app.generate.input_errors import check_filters
from app.generate.lines import add_lines_to_record, check_api_lines, take_api_lines, write_lines
from app.generate.paged_api import LIST_ARGS_SCHEMA, PagedListApi, rison
from app.generate.paging import PagedInterface
from app.generate.permissions import API_METHODS, entity_permissions
from app.generate.references import delete_refusal
from app.generate.transitions import TransitionsApiMixin, unused_routes
from app.generate.timeline import HistoryApiMixin
from app.generate.comments import CommentsApiMixin
from app.generate.merge import MergeApiMixin
from app.generate.duplicates import DuplicatesApiMixin, openapi_with_duplicates
from app.generate.change_feed import ChangeFeedApiMixin


def _read_columns(portal: PortalSpec, entity: EntitySpec) -> list[str]:
    """Scalar columns as they are; links as nested {id, title}; raw FK columns never (FAB + marshmallow 4)."""
    result = ["id"]
    for f in entity.fields:
        if f.stores_link and not f.kind.to_users:
            result.append(f"{f.name}.id")
            title = portal.entity(f.to).title
            target_title = portal.entity(f.to).field(title) if title else None
            if target_title and not target_title.is_relation:
                result.append(f"{f.name}.{title}")
        elif f.kind.to_users:
            result += [f"{f.name}.id", f"{f.name}.username"]
        elif f.kind.multiple:
            result.append(f"{f.name}.id")
        else:
            result.append(f.name)
    return result + ["created_on", "changed_on", VERSION_COLUMN]


class EntityApi(ChangeFeedApiMixin, DuplicatesApiMixin, BulkApiMixin, AttachmentsApi, ViewerScopedEndpoint, TransitionsApiMixin,
                HistoryApiMixin, CommentsApiMixin, MergeApiMixin, PagedListApi, fab.RestApiBoundary, ModelRestApi):
    """Scope, hide and mask come from ViewerScopedEndpoint (endpoint.py), the list from PagedListApi."""

    portal: PortalSpec
    entity: EntitySpec
    models: dict
    writer_factory = None
    allow_browser_login = True
    method_permission_name = API_METHODS

    def writer(self):
        return self.writer_factory(self.entity)

    def add_api_spec(self, api_spec) -> None:
        super().add_api_spec(api_spec)
        self.viewer_openapi(api_spec)

    def check_request_filters(self, filters) -> None:
        """Every filter value of `q` checked against its field (a FilterValueError is a 400)."""
        check_filters(self.entity, filters)

    def _database_refused(self, exc):
        reason = getattr(exc, "orig", None) or exc.__cause__ or exc
        return self.response_422(message=str(_l("The database refused the change: %(reason)s", reason=reason)))

    def _json_object(self):
        if not request.is_json:
            return None, self.response_400(message=str(_l("Request is not JSON")))
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            return None, self.response_400(message=str(_l("Request body must be a JSON object")))
        return payload, None

    def _save(self, item, payload: dict, creating: bool):
        rules = self.writer()  # record_rules.py: the same rules as forms and imports
        given_lines = take_api_lines(self.entity, payload)  # nested `lines` (lines.py): saved with the record
        values, errors = rules.parse(payload, creating)
        ctx = rules.context(values, creating, "api", None if creating else item, errors)
        errors = rules.check(ctx)
        line_edits, line_errors = check_api_lines(self, given_lines, None if creating else item, ctx.values)
        if errors or line_errors:
            self.datamodel.session.rollback()
            return self.response_422(message={**errors, **line_errors})
        conflict = self.duplicates_conflict(rules, ctx)  # 409 with the candidates unless ?allow_duplicate=1
        if conflict is not None:
            return conflict
        rules.apply(item, rules.before_write(ctx))
        write_lines(line_edits, item)  # in the session: committed with the record, or not at all
        try:
            if creating:
                self.pre_add(item)
                self.datamodel.add(item)
                self.post_add(item)
            else:
                self.pre_update(item)
                self.datamodel.edit(item)
                self.post_update(item)
        except (DatabaseException, SQLAlchemyError) as exc:
            return versions.conflict(self, item) if versions.is_stale(exc) else self._database_refused(exc)
        body = {"result": self.viewer_record(self.show_model_schema.dump(item)), "id": item.id}
        add_lines_to_record(self, body["result"], item.id)
        return versions.with_etag(self.response(201 if creating else 200, **body), item)

    def pre_get(self, data: dict) -> None:
        super().pre_get(data)
        add_lines_to_record(self, data.get("result"), data.get("id"))

    def after_get(self, response):
        return versions.with_etag(response)

    def create_record(self):
        payload, error = self._json_object()
        if error:
            return error
        return self._save(self.datamodel.obj(), payload, creating=True)

    def update_record(self, pk):
        item = fab.scoped_get(self, pk)
        if not item:
            return self.response_404()
        payload, error = self._json_object()
        if error:
            return error
        refusal = versions.refuse_if_stale(self, item, payload)  # If-Match / row_version in the body
        return refusal or self._save(item, payload, creating=False)

    def delete_record(self, pk):
        item = fab.scoped_get(self, pk)
        if not item:
            return self.response_404()
        stale = versions.refuse_if_stale(self, item)
        if stale:
            return stale
        refusal = delete_refusal(self.portal, self.models, self.datamodel.session, self.entity, item)
        if refusal:
            return self.response_422(message=str(refusal))
        try:
            self.pre_delete(item)
            self.datamodel.delete(item)
            self.post_delete(item)
        except (DatabaseException, SQLAlchemyError) as exc:
            return versions.conflict(self, item) if versions.is_stale(exc) else self._database_refused(exc)
        return self.response(200, message="OK")


class DataApiMixin:
    """GET <entity>/export?format=csv|xlsx&q=(filters...) and POST <entity>/import (multipart)."""

    @expose("/export", methods=["GET"])
    @protect()
    @safe
    @rison(LIST_ARGS_SCHEMA)
    def export_data(self, **kwargs):
        """Export the (filtered) records as CSV or XLSX
        ---
        get:
          parameters:
          - {in: query, name: format, schema: {type: string, enum: [csv, xlsx]}}
          - {in: query, name: q, content: {application/json: {schema: {$ref: '#/components/schemas/portal_get_list_schema'}}}}
          responses:
            200: {description: the file}
        """
        fmt = request.args.get("format", "csv")
        if fmt not in FORMATS:
            return self.response_400(message=str(_l("Upload a .csv or .xlsx file.")))
        try:
            filters = fab.rest_filters(self, kwargs.get("rison", {}))
            order = fab.rest_order(self, kwargs.get("rison", {}))
        except FABException as exc:
            return self.response_400(message=str(exc))
        return export_response(self, filters, order, fmt)

    @expose("/import", methods=["POST"])
    @protect()
    @safe
    def import_data(self):
        """Import a CSV/XLSX file: all rows or none; dry_run=true only checks
        ---
        post:
          requestBody:
            content:
              multipart/form-data:
                schema:
                  type: object
                  properties:
                    file: {type: string, format: binary}
                    key: {type: string, description: 'update the records matching by: id, a unique field or a unique_together set (a,b)'}
                    dry_run: {type: boolean}
          responses:
            200: {description: imported (or checked) with counts}
            422: {description: per-row errors; nothing was written}
        """
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return self.response_400(message=str(_l("Choose a file to import.")))
        dry_run = request.form.get("dry_run", "false").lower() in ("1", "true", "yes")
        try:
            with spool_upload(upload) as spool:  # on disk: a big file never sits in memory
                report = run_import(self, spool, upload.filename, request.form.get("key"), dry_run=dry_run)
        except FileProblem as exc:
            return self.response_400(message=str(exc))
        return self.response(200 if report.ok else 422, **report.as_dict())


def build_api(portal: PortalSpec, entity: EntitySpec, models: dict, writer_factory) -> type:
    read_columns = _read_columns(portal, entity)
    write_columns = columns.form_columns(entity)
    attrs = dict(
        portal=portal, entity=entity, models=models, writer_factory=staticmethod(writer_factory),
        datamodel=PagedInterface(models[entity.name]),
        resource_name=entity.snake,
        class_permission_name=entity.name, base_permissions=entity_permissions(),
        openapi_spec_tag=entity.name, openapi_spec_methods=openapi_with_duplicates(entity, versions.openapi_spec_methods(f"{entity.name}Api")),
        full_list_columns=read_columns, full_show_columns=read_columns,
        add_columns=write_columns, edit_columns=write_columns,
        full_search_columns=[f.name for f in entity.fields if not f.kind.multiple],
        full_order_columns=[f.name for f in entity.fields if not f.is_relation] + ["id", "created_on", "changed_on"],
        base_filters=EntityApi.row_scope_filters(entity) + drill_filters(entity),  # scope, then ?drill= (app/generate/drill.py)
        label_columns=columns.label_columns(entity),
        description_columns=columns.description_columns(entity),
        list_title=lazy(entity.label), show_title=lazy(entity.label),
        exclude_route_methods=unused_routes(entity, api=True),
    )
    if entity.order:
        attrs["base_order"] = entity.order[0]
    return type(f"{entity.name}Api", (DataApiMixin, EntityApi), attrs)
