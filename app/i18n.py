"""Localized text for schema labels: a Label picks its text by the current request's locale."""
from __future__ import annotations

from flask import has_request_context
from flask_babel import LazyString, get_locale

from .schema.spec import Label


def current_locale() -> str:
    if not has_request_context():
        return "en"
    locale = get_locale()
    return str(locale) if locale else "en"


def lazy(label: Label | None) -> LazyString | str:
    """A string that resolves to the label's text in the locale of whoever renders it."""
    if label is None:
        return ""
    return LazyString(lambda: label.get(current_locale()))
