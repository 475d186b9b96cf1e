"""GET /api/v1/<entity>/ on the capped count and keyset paging of paging.py.

Replaces FAB's `get_list` (to validate `q` with a schema compiled once) and `get_list_headless`
(capped count, cursor paging). The response keeps FAB's shape, `count` included, and adds
`count_capped` (true: more rows match than `count`) and `next` (a cursor for the following page,
or null).
"""
from __future__ import annotations

import copy
import functools
import json
import urllib.parse

import jsonschema
import prison
from flask import current_app, request
from flask_appbuilder.api import expose, safe
from flask_appbuilder.exceptions import FABException, InvalidColumnArgsFABException
from flask_appbuilder.security.decorators import permission_name, protect
from flask_babel import gettext

from app import fab
from app.generate.paging import MAX_PAGE_INDEX, CursorError, Position, count_cap, decode_cursor

# FAB's list arguments, with bounds on paging and the cursor; a filter names its column, operator and value,
# and only `in`/`not_in` take a list (FAB would hand any other filter a list and fail with a TypeError)
LIST_ARGS_SCHEMA = copy.deepcopy(fab.LIST_ARGS_SCHEMA_BASE)
SCALAR = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
LIST_ARGS_SCHEMA["properties"]["filters"]["items"] = {
    "type": "object",
    "required": ["col", "opr", "value"],
    "properties": {"col": {"type": "string"}, "opr": {"type": "string"},
                   "value": {"anyOf": [*SCALAR["anyOf"], {"type": "array", "items": SCALAR}]}},
    "if": {"properties": {"opr": {"enum": ["in", "not_in"]}}},
    "then": {"properties": {"value": {"type": "array", "items": SCALAR}}},
    "else": {"properties": {"value": SCALAR}},
}
LIST_ARGS_SCHEMA["properties"].update({
    "page": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE_INDEX},
    "page_size": {"type": "integer", "minimum": 1},
    "after": {"type": "string", "minLength": 1, "maxLength": 2000,
              "description": "the `next` cursor of the previous response: the page that follows it (`page` is ignored)"},
})


def rison(schema: dict):
    """FAB's @rison, with the JSON schema checked once at start-up instead of on every request.

    jsonschema.validate() re-checks the schema against its meta-schema and builds a validator per call
    (~30 % of a list request); here the validator is built once and reused.
    """
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    def decorate(f):
        def wraps(self, *args, **kwargs):
            value = request.args.get(fab.RISON_ARG)
            kwargs["rison"] = {}
            if value:
                try:
                    kwargs["rison"] = prison.loads(value)
                except (prison.decoder.ParserException, RecursionError, IndexError, ValueError):  # "((" recurses
                    try:
                        if not current_app.config.get("FAB_API_ALLOW_JSON_QS", True):
                            raise ValueError(value)
                        kwargs["rison"] = json.loads(urllib.parse.parse_qs(f"{fab.RISON_ARG}={value}")[fab.RISON_ARG][0])
                    except (ValueError, KeyError, IndexError, RecursionError):  # "[[[…" recurses in json
                        return self.response_400(message=gettext("Not a valid Rison argument"))
            error = jsonschema.exceptions.best_match(validator.iter_errors(kwargs["rison"]))
            if error is not None:
                return self.response_400(message=gettext("Not a valid Rison argument: %(reason)s", reason=error.message))
            return f(self, *args, **kwargs)

        return functools.update_wrapper(wraps, f)

    return decorate


class PagedListApi:
    """Mixin for a FAB ModelRestApi whose datamodel is a PagedInterface."""

    apispec_parameter_schemas = {"portal_get_list_schema": LIST_ARGS_SCHEMA}

    @expose("/", methods=["GET"])
    @protect()
    @safe
    @permission_name("get")
    @rison(LIST_ARGS_SCHEMA)
    @fab.list_metadata
    def get_list(self, **kwargs):
        """Get a page of records (filters, order, page or cursor in the Rison argument `q`)
        ---
        get:
          description: >-
            Records in the caller's row scope, hidden fields left out and masked ones masked.
            `count` stops at the server's count cap (PORTAL_COUNT_CAP, default 10000): when more
            records match, `count` is the cap and `count_capped` is true. Page with `page`/`page_size`
            (OFFSET: fine near the start), or pass the `next` cursor of a response as `after` to get the
            following page at the same cost however deep it is (orders on a required column or id).
          parameters:
          - in: query
            name: q
            content:
              application/json:
                schema:
                  $ref: '#/components/schemas/portal_get_list_schema'
          responses:
            200:
              description: One page of records
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      count:
                        description: matching records, or the count cap when `count_capped`
                        type: integer
                      count_capped:
                        description: true when more records match than `count` (the cap)
                        type: boolean
                      next:
                        description: >-
                          cursor for the page after this one, to pass as `after` in `q`; null when
                          this is the last page or the order cannot carry a cursor (a column that may be empty)
                        type: string
                        nullable: true
                      ids:
                        type: array
                        items:
                          type: integer
                      list_columns:
                        type: array
                        items:
                          type: string
                      order_columns:
                        type: array
                        items:
                          type: string
                      label_columns:
                        type: object
                      description_columns:
                        type: object
                      list_title:
                        type: string
                      result:
                        type: array
                        items:
                          $ref: '#/components/schemas/{{self.__class__.__name__}}.get_list'  # noqa
            400:
              $ref: '#/components/responses/400'
            401:
              $ref: '#/components/responses/401'
            422:
              $ref: '#/components/responses/422'
            500:
              $ref: '#/components/responses/500'
        """
        return self.get_list_headless(**kwargs)

    def get_list_headless(self, **kwargs):
        """FAB's list handler with the capped count and cursor paging (same response keys, plus two)."""
        response: dict = {}
        args = kwargs.get("rison", {})
        try:
            select_columns, pruned_select_cols = fab.rest_columns(self, args)
        except InvalidColumnArgsFABException as exc:
            return self.response_400(message=str(exc))
        fab.response_metadata(self, response, self.get_list, args, **{fab.SELECT_COLUMNS_KEY: pruned_select_cols})
        schema = self.model2schemaconverter.convert(pruned_select_cols) if pruned_select_cols else self.list_model_schema
        try:
            joined_filters = fab.rest_filters(self, args)
            order_column, order_direction = fab.rest_order(self, args)
        except FABException as exc:
            return self.response_400(message=str(exc))
        if not order_column:
            order_column, order_direction = "id", "asc"
        order_direction = order_direction or "asc"
        position = Position(page=args.get("page", 0))
        if args.get("after"):
            key = self.datamodel.keyset_column(order_column)
            if key is None:
                return self.response_400(message=gettext(
                    "Cursor paging needs an order on a required column or on id."))
            try:
                position = Position(after=decode_cursor(args["after"], key, order_column, order_direction))
            except CursorError:
                return self.response_400(message=gettext(
                    "The cursor is not valid for this order; start again from the first page."))
        max_size = self.max_page_size or current_app.config["FAB_API_MAX_PAGE_SIZE"]
        page_size = args.get("page_size") or self.page_size
        if max_size > 0:
            page_size = min(page_size, max_size)  # as FAB: a bigger page size is cut to the maximum
        result = self.datamodel.fetch_page(
            joined_filters, order_column, order_direction, position, page_size, count_cap(),
            select_columns=select_columns, outer_default_load=self.list_outer_default_load)
        response["result"] = schema.dump(result.items, many=True)
        response["ids"] = self.datamodel.get_keys(result.items)
        response["count"] = result.count
        response["count_capped"] = result.capped
        response["next"] = result.last_cursor if result.has_next else None
        self.pre_get_list(response)
        return self.response(200, **response)
