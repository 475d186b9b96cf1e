"""Relations: link (one record of an entity), many (several records), user (one of FAB's users).

Their values are records, resolved with the database by the caller (RecordWriter, the importer, the
lookups); here they declare how they are stored, shown and filtered.
"""
from __future__ import annotations

from app.fieldtypes.base import _l, FieldError, FieldType, LiteralError, is_blank, record_id

ON_DELETE_SQL = {"cascade": "CASCADE", "restrict": "RESTRICT", "set_null": "SET NULL"}


class LinkType(FieldType):
    """A foreign key `<name>_id` to the linked entity's table."""

    name = "link"
    option_keys = ("to", "on_delete", "filter")
    is_relation = True
    sortable = can_be_title = takes_literals = False
    report_filterable = True

    def literal(self, value, options=None):
        raise LiteralError()

    def target_model(self, field, models: dict):
        return models[field.to]

    def target_table(self, field) -> str:
        from app.schema.spec import snake_case

        return snake_case(field.to)

    def on_delete_sql(self, field) -> str:
        return ON_DELETE_SQL[field.on_delete]

    def column_type(self, field):
        from sqlalchemy import Integer

        return Integer()

    def clean_filter(self, field, operator, value):
        if is_blank(value):
            return None
        try:
            return record_id(value)
        except ValueError:
            raise FieldError(_l("Must be the id of a record.")) from None

    def report_value(self, field, raw):
        return record_id(raw)  # a ValueError is the caller's "not a valid value"

    def report_label(self, field, raw, title) -> str:
        return str(title if title is not None else raw)


class UserType(LinkType):
    """A foreign key to `ab_user`; empties itself (SET NULL) when the user is deleted, unless required."""

    name = "user"
    option_keys = ()
    dynamic_defaults = ("current_user",)
    to_users = True

    def target_model(self, field, models: dict):
        from flask_appbuilder.security.sqla.models import User

        return User

    def target_table(self, field) -> str:
        return "ab_user"

    def on_delete_sql(self, field) -> str:
        return "SET NULL" if not field.required else "RESTRICT"


class ManyType(LinkType):
    """An association table `<table>_<name>` (left_id, right_id); no column of its own."""

    name = "many"
    option_keys = ("to", "filter")
    multiple = True
    can_be_unique = listed_by_default = groupable = report_filterable = False

    def column_type(self, field):
        raise ValueError(self.name)

    def display(self, field):
        return lambda items: ", ".join(str(i) for i in items)

