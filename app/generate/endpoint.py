"""One mixin for what the current viewer may see and write, shared by generated pages and APIs.

`ViewerScopedEndpoint` owns the three per-viewer rules of app.rules.access.Viewer on an endpoint:

- **scope**: the row scope as FAB base filters (`row_scope_filters`), scope values forced onto saved
  records (`_force_scope`), the viewer's search filters (`request_filters`);
- **hide**: hidden fields out of displayed columns, hidden and masked ones out of search, sort and forms,
  related-record panels only for entities the viewer may read, and the API's metadata
  (`viewer_metadata`, `viewer_info`, `viewer_openapi`);
- **mask**: masked values in API records (`viewer_record`) and on pages (`formatters_columns`: a masked
  field's formatter shows mask_value of the stored value).

FAB builds columns, forms and filters once per class at start-up; the `PerRequest` descriptors of
app.fab let it keep doing that while every read during a request gets the viewer's version.
"""
from __future__ import annotations

from app.generate.api_metadata import trim_info, trim_openapi
from app.fab import PerRequest
from app.generate.scoping import (
    form_without_fields,
    readable_views,
    row_scope_filters,
    without_hidden,
    without_unreadable,
)
from app.rules.access import current_viewer, mask_value
from app.schema.spec import EntitySpec


class ViewerScopedEndpoint:
    """Mixin for a generated ModelView or ModelRestApi of `entity` (put it first in the bases)."""

    entity: EntitySpec

    # hide: what the viewer may not see is left out of columns and forms (the API sets its own
    # add/edit columns and writes through RecordWriter, which applies the same rules)
    list_columns = PerRequest(without_hidden)
    show_columns = PerRequest(without_hidden)
    search_columns = PerRequest(without_unreadable)
    order_columns = PerRequest(without_unreadable)
    add_columns = PerRequest(without_unreadable)
    edit_columns = PerRequest(without_unreadable)
    add_form = PerRequest(form_without_fields)
    edit_form = PerRequest(form_without_fields)
    # mask: what list and show pages display of a masked field
    formatters_columns = PerRequest(lambda endpoint, formatters: endpoint.masked_formatters(formatters))

    # -- scope -----------------------------------------------------------------------------------
    @staticmethod
    def row_scope_filters(entity: EntitySpec) -> list:
        """`base_filters` for the class: every query FAB makes is limited to the viewer's rows."""
        return row_scope_filters(entity.name)

    def _force_scope(self, item) -> None:
        """A saved record gets the values the viewer's scope fixes (e.g. its own team)."""
        for name, value in current_viewer().forced_values(self.entity.name).items():
            setattr(item, name, value)

    def request_filters(self):
        """A fresh search Filters object per request (FAB shares one across threads), on the viewer's columns."""
        return self.datamodel.get_filters(self.search_columns)

    # -- hide --------------------------------------------------------------------------------------
    def readable_related_views(self, related_views):
        return readable_views(self, related_views)

    def viewer_metadata(self, data: dict) -> None:
        """Labels, descriptions and column lists of an API answer without the viewer's hidden fields."""
        hidden = current_viewer().hidden(self.entity.name)
        for key in ("label_columns", "description_columns"):
            for name in list(data.get(key, {})):
                if name.split(".")[0] in hidden:
                    del data[key][name]
        for key in ("list_columns", "show_columns"):
            if key in data:
                data[key] = [c for c in data[key] if c.split(".")[0] not in hidden]

    def viewer_info(self, payload: dict) -> None:
        trim_info(self, payload)

    def viewer_openapi(self, api_spec) -> None:
        trim_openapi(self, api_spec)

    # -- mask --------------------------------------------------------------------------------------
    def masked_formatters(self, formatters: dict) -> dict:
        """The page's column formatters with each masked field's replaced by the mask of the stored value."""
        masked = current_viewer().masked(self.entity.name)
        if not masked:
            return formatters
        return {**formatters, **{name: mask_value for name in masked}}

    def viewer_record(self, record: dict) -> dict:
        """A serialized record as the viewer may see it: hidden fields dropped, masked ones masked."""
        viewer = current_viewer()
        hidden, masked = viewer.hidden(self.entity.name), viewer.masked(self.entity.name)
        for name in hidden:
            record.pop(name, None)
        for name in masked:
            if name in record:
                record[name] = mask_value(record[name])
        return record

    # FAB's read hooks (APIs only; pages render through columns and formatters)
    def pre_get_list(self, data: dict) -> None:
        data["result"] = [self.viewer_record(r) for r in data.get("result", [])]
        self.viewer_metadata(data)

    def pre_get(self, data: dict) -> None:
        if "result" in data:
            self.viewer_record(data["result"])
        self.viewer_metadata(data)
