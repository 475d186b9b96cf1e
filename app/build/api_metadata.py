"""What `/_info` and `/api/v1/_openapi` tell a role about an entity: only the fields it may see.

FAB builds both from the API's full column lists. `/_info` (FAB 5.3 never calls `pre_info`) lists every
add/edit field with its label, validators and, for links, the linked records; the OpenAPI document (built
per request by FAB's OpenApi view, one `add_api_spec` call per API) describes every column. Here the
viewer's hidden fields are taken out of both, and masked ones out of what may be written, filtered or sorted.
The document also states honestly that date-times are sent as local time without a zone.
"""
from __future__ import annotations

from ..access import current_viewer

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


def _scoped_choices(api, viewer, column: dict) -> dict:
    try:
        field = api.entity.field(column.get("name"))
    except KeyError:
        return column
    if field.type in ("link", "many") and viewer.scopes(field.to) is not None:
        column = {k: v for k, v in column.items() if k not in ("values", "count")}
    return column


def trim_openapi(api, api_spec) -> None:
    """Leave the viewer's hidden fields out of this API's component schemas (masked ones out of writes)."""
    viewer = current_viewer()
    hidden, unreadable = viewer.hidden(api.entity.name), viewer.unreadable(api.entity.name)
    name = api.__class__.__name__
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
        if "required" in schema:
            schema["required"] = [c for c in schema["required"] if c in properties]


def _honest_datetime(prop: dict) -> None:
    if prop.get("format") == "date-time":
        del prop["format"]
        prop["description"] = LOCAL_DATETIME
