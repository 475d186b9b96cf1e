"""WTForms fields a type uses instead of the one FAB derives from its column (imported by the types lazily:
WTForms and FAB's widgets are not needed to check a schema)."""
from __future__ import annotations

from flask_appbuilder.fieldwidgets import Select2Widget
from wtforms import SelectField
from wtforms.validators import InputRequired, Optional

from app.i18n import lazy


class ChoiceField(SelectField):
    """A select whose choice check is the schema rule's (one clear message instead of two)."""

    def pre_validate(self, form) -> None:
        pass


def choice_select(field, rule) -> ChoiceField:
    """A Select2 of the field's choices (labels in the user's language; an empty first option unless required)."""
    choices = [(c.key, lazy(c.label)) for c in field.choices]
    if not field.required:
        choices.insert(0, ("", ""))
    return ChoiceField(
        lazy(field.label), choices=choices, description=lazy(field.help) if field.help else "",
        coerce=lambda v: "" if v is None else str(v), default=field.default or "",
        validators=[InputRequired() if field.required else Optional(), rule],
        widget=Select2Widget(),
    )
