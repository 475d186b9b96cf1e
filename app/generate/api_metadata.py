"""What `/_info` and `/api/v1/_openapi` tell a role about an entity: only the fields it may see.

FAB builds both from the API's full column lists. `/_info` (FAB 5.3 never calls `pre_info`) lists every
add/edit field with its label, validators and, for links, the linked records; the OpenAPI document (built
per request by FAB's OpenApi view, one `add_api_spec` call per API) describes every column. Here the
viewer's hidden fields are taken out of both, and masked ones out of what may be written, filtered or sorted.
The document also states honestly that date-times are sent as local time without a zone.
"""
from __future__ import annotations

from app.fab import apispec_paths
from app.rules.access import current_viewer

LOCAL_DATETIME = "local date and time without a zone, e.g. 2026-01-31T14:30:00"


def trim_info(api, data: dict) -> None:
    """The `/_info` payload without fields the viewer may not read in full, and link choices without
    records outside the viewer's row scope (those links get their choices from the page's lookup instead)."""
    viewer = current_viewer()
    unreadable = viewer.unreadable(api.entity.name)
    for key in ("add_columns", "edit_columns"):
        if key in data:
            data[key] = [_scoped_choices(api, viewer, c) for c in data[key] if c.get("name") not in unreadable]
    if "filters" in data:
        data["filters"] = {k: v for k, v in data["filters"].items() if k not in unreadable}
    _lines_info(api, viewer, data)


def _lines_info(api, viewer, data: dict) -> None:
    """Inline lines (`lines: [OrderLine]`) as one more add/edit column: a list of the child's records, with the
    child's writable fields (those the viewer may write) and the link back that the portal sets."""
    from app.generate.lines import may
    from app.i18n import lazy

    portal = api.portal
    for key, child_name in api.entity.lines_keys:
        if not may("read", child_name):
            continue
        child = portal.entity(child_name)
        back = portal.back_link(child_name, api.entity.name)
        unreadable = viewer.unreadable(child_name)
        column = {"name": key, "label": str(lazy(child.label)), "type": "Lines", "required": False, "entity": child_name,
                  "link": back.name, "description": LINES_DESCRIPTION,
                  "fields": [f.name for f in child.fields if f.name != back.name and not f.readonly and f.name not in unreadable]}
        for list_key in ("add_columns", "edit_columns"):
            if list_key in data:
                data[list_key].append(column)


LINES_DESCRIPTION = ("the child records, saved with this record in one transaction: lines without id are created, "
                     "with id updated; on PUT lines not listed are deleted, and without this key left alone")


def _scoped_choices(api, viewer, column: dict) -> dict:
    try:
        field = api.entity.field(column.get("name"))
    except KeyError:
        return column
    if field.is_relation and not field.kind.to_users and viewer.scopes(field.to) is not None:
        column = {k: v for k, v in column.items() if k not in ("values", "count")}
    return column


FIELD_ERRORS = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "per field: its error messages"}


# answers any operation may give besides its own (bad q/NUL, no token, no permission, no such id, body
# too large, field errors, rate limit); FAB's docstrings list only some of them
COMMON_ERRORS = ("400", "401", "403", "404", "413", "422", "429")


def trim_openapi(api, api_spec) -> None:
    """Leave the viewer's hidden fields out of this API's component schemas (masked ones out of writes),
    and make the document say what the API really sends (error answers, ids, decimals, /_info lists)."""
    _honest_responses(api_spec)
    _honest_operations(api, api_spec)
    viewer = current_viewer()
    hidden, unreadable = viewer.hidden(api.entity.name), viewer.unreadable(api.entity.name)
    name = api.__class__.__name__
    own_schemas = {f.name: own for f in api.entity.fields if (own := f.kind.openapi_schema(f)) is not None}
    for suffix, leave_out in ((".get_list", hidden), (".get", hidden), (".post", unreadable), (".put", unreadable)):
        schema = api_spec.components.schemas.get(name + suffix)
        if schema is None:
            continue
        properties = schema.get("properties", {})
        for column in list(properties):
            if column.split(".")[0] in leave_out:
                del properties[column]
            else:
                _honest_datetime(properties[column])
                if "$ref" in properties[column]:  # a link: null when empty
                    properties[column] = {"allOf": [properties[column]], "nullable": True}
                if column in own_schemas:  # what the type says its values look like (a decimal: a string)
                    nullable = {"nullable": True} if properties[column].get("nullable") else {}
                    properties[column] = {**own_schemas[column], **nullable}
        if "required" in schema:
            schema["required"] = [c for c in schema["required"] if c in properties]
    _lines_openapi(api, api_spec)


def _lines_openapi(api, api_spec) -> None:
    """Nested lines in the parent's schemas: arrays of the child's records (reads) and of line objects (writes)."""
    for key, child in api.entity.lines_keys:
        for suffix, item in ((".get", {"$ref": f"#/components/schemas/{child}Api.get"}),
                             (".post", {"type": "object", "description": f"a new line: the fields of POST {child}, "
                                                                         "without the link back"}),
                             (".put", {"type": "object", "description": 'a new line, or {"id": n, ...} to change one'})):
            schema = api_spec.components.schemas.get(f"{api.__class__.__name__}{suffix}")
            if schema is not None:
                schema.setdefault("properties", {})[key] = {"type": "array", "items": item,
                                                            "description": f"{child} records: {LINES_DESCRIPTION}"}


def _honest_datetime(prop: dict) -> None:
    if prop.get("format") == "date-time":
        del prop["format"]
        prop["description"] = LOCAL_DATETIME


def _honest_responses(api_spec) -> None:
    """A 422 names the wrong fields: `message` is an object of per-field messages, or one message."""
    for code, description in (("413", "Request body too large"), ("429", "Too many requests")):
        if code not in api_spec.components.responses:
            api_spec.components.response(code, {"description": description, "content": {"application/json": {
                "schema": {"type": "object", "properties": {"message": {"type": "string"}}}}}})
    response = api_spec.components.responses.get("422")
    if response:
        message = response["content"]["application/json"]["schema"]["properties"]["message"]
        if "oneOf" not in message:
            response["content"]["application/json"]["schema"]["properties"]["message"] = {
                "oneOf": [{"type": "string"}, FIELD_ERRORS]}


def _honest_operations(api, api_spec) -> None:
    prefix = f"{api.route_base}/"
    for path, operations in apispec_paths(api_spec).items():
        if not path.startswith(prefix):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in COMMON_ERRORS:
                key = int(code) if any(isinstance(k, int) for k in responses) else code
                if key not in responses and code not in responses and int(code) not in responses:
                    responses[key] = {"$ref": f"#/components/responses/{code}"}
            for response in responses.values():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                props = schema.get("properties", {})
                if method in ("post", "put") and "result" in props:  # the saved record as GET shows it
                    props["result"] = {"$ref": f"#/components/schemas/{api.__class__.__name__}.get"}
                if props.get("id", {}).get("type") == "string":
                    props["id"] = {"type": "integer"}  # FAB declares the new record's id a string; it is sent as a number
                for key in ("add_columns", "edit_columns"):
                    if props.get(key, {}).get("type") == "object":
                        props[key] = {"type": "array", "items": {"type": "object"}}
