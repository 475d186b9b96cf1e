"""The navbar's menu, rendered once per permission set, language and URL prefix and kept.

FAB renders its menu on every page: a permission check per item and category (~120), a `url_for` and a label
translation per item — 3–4 ms of every page, the same text each time for everyone with the same permissions.
views/templates/appbuilder/navbar.html (FAB's, copied) calls `portal_navbar_menu()` where FAB includes
appbuilder/navbar_menu.html; the menu's items are all registered at start-up, so the text depends only on which
items the user may see (their permission set, `PortalSecurityManager.signed_in_permissions`), the language and
the URL prefix. Anyone else (not signed in, an API key) gets FAB's menu rendered as before.
"""
from __future__ import annotations

from flask import current_app, render_template, request
from markupsafe import Markup

from app.i18n import current_locale
from app.portal import current_portal


def portal_navbar_menu() -> Markup:
    appbuilder = current_app.appbuilder

    def render() -> Markup:
        return Markup(render_template("appbuilder/navbar_menu.html", menu=appbuilder.menu))

    granted = appbuilder.sm.signed_in_permissions()
    if granted is None:
        return render()
    key = ("navbar menu", granted, current_locale(), request.script_root)
    return current_portal().form_cache.get_or_make(key, render)


def register(app) -> None:
    app.jinja_env.globals["portal_navbar_menu"] = portal_navbar_menu
