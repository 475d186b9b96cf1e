"""A database outage answers 503 (a localized page, or JSON for the API), never a traceback.

Recovery needs nothing: `pool_pre_ping` (config.py) replaces dead pooled connections once the
database is back. FAB's API views catch every exception themselves and answer 500; the
engine's `handle_error` event marks the request so that such a 500 becomes the same 503.
(Redis outages never reach here: the rate limiter falls back to memory, see app/runtime/ratelimit.py.)
"""
from __future__ import annotations

import logging

from flask import current_app, g, has_request_context, jsonify, make_response, request
from flask_babel import force_locale, gettext
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from app.runtime.locale import select_locale

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 30


def install_outage_pages(app, engine) -> None:
    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(DisconnectionError, database_error)
    event.listen(engine, "handle_error", _note_database_failure)
    app.after_request(_outage_instead_of_500)


def is_outage(error: BaseException) -> bool:
    return isinstance(error, (OperationalError, DisconnectionError)) or bool(getattr(error, "connection_invalidated", False))


def database_error(error):
    if not is_outage(error):
        raise error  # a bug, not an outage: the usual 500
    log.error("database unavailable: %s", error.__class__.__name__, exc_info=error)
    return unavailable_response()


def unavailable_response():
    # the user's saved language lives in the database that just failed: choose without it
    lang = select_locale(use_saved=False)
    with force_locale(lang):
        title = gettext("Service temporarily unavailable")
        message = gettext("The database cannot be reached right now. Please try again in a moment.")
        if request.path.startswith("/api/"):
            response = jsonify(message=message)
        else:
            # rendered straight from the Jinja environment: Flask's context processors
            # (Flask-Login's current_user) would go to the database again
            template = current_app.jinja_env.get_template("portal/unavailable.html")
            response = make_response(template.render(title=title, message=message, lang=lang))
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _note_database_failure(context) -> None:
    if has_request_context() and (context.is_disconnect or isinstance(context.sqlalchemy_exception, OperationalError)):
        g.portal_database_failed = True


def _outage_instead_of_500(response):
    if response.status_code == 500 and g.get("portal_database_failed"):
        return unavailable_response()
    return response
