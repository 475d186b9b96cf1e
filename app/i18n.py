"""Localized text for schema labels: a Label picks its text by the current request's locale.

Schema texts are written by business admins, so they are data, not markup: `SchemaText` renders
escaped wherever a template or widget asks for HTML (Flask-Babel's LazyString claims to be safe
markup, and Jinja's `_()` marks whatever it returns as safe; both would let `<img onerror=...>` in a
label run in every page's menu).
"""
from __future__ import annotations

from flask import has_request_context
from flask_babel import LazyString, get_locale, get_translations
from markupsafe import Markup, escape

from app.schema.spec import Label


def current_locale() -> str:
    if not has_request_context():
        return "en"
    locale = get_locale()
    return str(locale) if locale else "en"


class SchemaText(LazyString):
    """A label's text in the current locale; escaped when rendered as HTML."""

    def __html__(self) -> Markup:
        return escape(str(self))


def lazy(label: Label | None) -> SchemaText | str:
    """A string that resolves to the label's text in the locale of whoever renders it."""
    if label is None:
        return ""
    return SchemaText(lambda: label.get(current_locale()))


def _template_gettext(string):
    """Jinja's `_()`/`gettext()`: schema texts come back escaped, never translated or trusted."""
    if isinstance(string, SchemaText):
        return escape(str(string))
    return get_translations().ugettext(string)


def install_template_gettext(app) -> None:
    """Replace the `_()` Flask-Babel gave Jinja (after FAB set Babel up) with one that escapes schema texts."""
    app.jinja_env.install_gettext_callables(
        gettext=_template_gettext,
        ngettext=lambda s, p, n: get_translations().ungettext(s, p, n),
        pgettext=lambda c, s: get_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: get_translations().unpgettext(c, s, p, n),
        newstyle=True,
    )


def format_with_schema_text(message: str, **values) -> Markup:
    """A translated message with schema texts filled in escaped, e.g. "Import <entity label>"."""
    return Markup(escape(message)) % values
