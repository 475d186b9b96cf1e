"""Which language a request is answered in, and remembering each user's choice.

Order: `?_l_=zh` (API clients), the choice made in this browser session, the user's saved
choice, the browser's Accept-Language, the default. Switching with /lang/<locale> saves it
for the user, so it follows them to other browsers and to the API.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import current_app, has_request_context, request, session
from flask_appbuilder import Model
from flask_login import user_logged_in
from sqlalchemy import Column, ForeignKey, Integer, String, select

SESSION_KEY = "portal_locale"


class UserLocale(Model):
    __tablename__ = "portal_user_locale"
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), primary_key=True)
    locale = Column(String(10), nullable=False)


def select_locale(use_saved: bool = True) -> str:
    """use_saved=False: decide without the database (for pages shown while it is down)."""
    config = current_app.config
    languages = config["LANGUAGES"]
    if not has_request_context():
        return config["BABEL_DEFAULT_LOCALE"]
    asked = request.args.get("_l_")
    if asked in languages:
        return asked
    chosen = session.get(SESSION_KEY)
    if chosen in languages:
        return chosen
    saved = _saved_locale() if use_saved else None
    if saved in languages:
        return saved
    return request.accept_languages.best_match(list(languages)) or config["BABEL_DEFAULT_LOCALE"]


def _saved_locale() -> str | None:
    try:
        user = current_app.appbuilder.sm.current_user
    except AttributeError:  # FAB sets g.user before each request: a URL refused before that has no user yet
        return None
    user_id = getattr(user, "id", None)
    if user_id is None:
        return None
    if hasattr(user, "portal_locale"):  # loaded with the user (security.get_user_by_id): no statement of its own
        return user.portal_locale
    return current_app.appbuilder.session.scalar(select(UserLocale.locale).where(UserLocale.user_id == user_id))


def remember_locale(response):
    """After /lang/<locale>: keep the choice in the session and, for a signed-in user, in the database."""
    if request.endpoint == "LocaleView.index" and response.status_code in (301, 302):
        locale = (request.view_args or {}).get("locale")
        if locale in current_app.config["LANGUAGES"]:
            session[SESSION_KEY] = locale
            user_id = getattr(current_app.appbuilder.sm.current_user, "id", None)
            if user_id is not None:
                db = current_app.appbuilder.session
                db.merge(UserLocale(user_id=user_id, locale=locale))
                db.commit()
    return response


def _forget_session_choice(sender, user, **extra) -> None:
    """A fresh sign-in takes the user's saved language, not the previous visitor's."""
    session.pop(SESSION_KEY, None)


def install_locale_handling(app) -> None:
    from flask_babel import get_babel

    from app.i18n import install_template_gettext

    get_babel(app).locale_selector = select_locale
    install_template_gettext(app)
    app.after_request(remember_locale)
    user_logged_in.connect(_forget_session_choice, app)


def compile_catalogs(directory: Path) -> None:
    """Compile every messages.po whose .mo is missing or older (the .mo files are not committed)."""
    for po_path in Path(directory).glob("*/LC_MESSAGES/*.po"):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file)
        # a temporary name of this process's own, then an atomic rename: processes starting at once
        # never read half a file nor rename each other's temporary file away
        with tempfile.NamedTemporaryFile("wb", dir=mo_path.parent, prefix=".messages-", suffix=".mo", delete=False) as mo_file:
            write_mo(mo_file, catalog)
        os.chmod(mo_file.name, 0o644)
        os.replace(mo_file.name, mo_path)
