"""Request-level protections: CSRF for every cookie-authenticated change, the upload size limit,
session cookie settings and the production secret-key rule.

Request bodies nested too deeply for the JSON parser are refused as bad JSON (BoundedJSONProvider).
Forms get CSRF tokens from Flask-WTF's CSRFProtect. The REST API is exempt from that blanket check
because a client holding a JWT is not exposed to cross-site requests; a browser session calling the
API with its cookie is, so such calls must send the token in an `X-CSRFToken` header.
"""
from __future__ import annotations

import hashlib
import sys

from flask import Flask, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask_appbuilder.api import BaseApi
from flask_babel import gettext
from flask_jwt_extended import verify_jwt_in_request
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect, validate_csrf
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import ValidationError

UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CSRF_HEADERS = ("X-CSRFToken", "X-CSRF-Token")
NO_SESSION_NEEDED = ("/api/v1/security/login", "/api/v1/security/refresh")  # they authenticate, not act


class ConfigurationProblem(RuntimeError):
    """The configuration is unsafe to serve with; the message says what to set."""


def in_production(app: Flask) -> bool:
    """PORTAL_ENV=production, or running under gunicorn (the production server)."""
    return app.config.get("PORTAL_ENV") == "production" or "gunicorn.arbiter" in sys.modules


def require_secret_key(app: Flask) -> None:
    if in_production(app) and not app.config.get("SECRET_KEY"):
        raise ConfigurationProblem(
            "SECRET_KEY is not set. In production (PORTAL_ENV=production or under gunicorn) set SECRET_KEY to a long "
            "random value shared by every worker, e.g. `export SECRET_KEY=$(python3 -c 'import secrets; "
            "print(secrets.token_hex(32))')`; sessions and API tokens are signed with it.")


def purpose_key(config, purpose: str) -> bytes:
    """A 32-byte key for one use of SECRET_KEY (`portal-changes`: the change feed's cursors; `portal-report-cache`:
    report-cache entries on Redis), so no two uses share a key."""
    return hashlib.sha256(f"{purpose}:{config['SECRET_KEY']}".encode()).digest()


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, except that a body nested too deeply for the parser (`[[[[…` a few kB long) is a bad body:
    a ValueError, which `request.get_json` turns into a 400 (or None with silent=True), not a RecursionError (500)."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def protect_requests(app: Flask, appbuilder) -> None:
    app.json = BoundedJSONProvider(app)
    csrf = CSRFProtect(app)
    api_blueprints = set()
    for view in appbuilder.baseviews:
        if isinstance(view, BaseApi):
            csrf.exempt(view.blueprint)
            api_blueprints.add(view.blueprint.name)

    @app.before_request
    def _limit_and_check_api_csrf():
        _refuse_oversized_body()
        if request.blueprint in api_blueprints and request.method in UNSAFE_METHODS:
            return _api_csrf_refusal(app)
        return None

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error):
        limit_mb = (app.config.get("MAX_CONTENT_LENGTH") or 0) / (1024 * 1024)
        message = gettext("The upload is too large: at most %(size)s MB.", size=f"{limit_mb:g}")
        if request.path.startswith("/api/"):
            return jsonify(message=message), 413
        return render_template("portal/error.html", title=gettext("Too large"), message=message), 413


def _refuse_oversized_body() -> None:
    """Refuse a body over MAX_CONTENT_LENGTH before any view reads it (FAB's API would turn the error into a 500)."""
    limit = request.max_content_length
    if limit is None or request.method not in UNSAFE_METHODS:
        return
    if request.content_length is not None:
        if request.content_length > limit:
            raise RequestEntityTooLarge()
    elif request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        request.form  # a chunked body: reading it here enforces the limit outside the view


def _api_csrf_refusal(app: Flask):
    """None when the call may proceed; a 400 when a cookie session changes data without the CSRF token."""
    if not app.config.get("WTF_CSRF_ENABLED", True) or request.path in NO_SESSION_NEEDED:
        return None
    if _authenticated_by_jwt():
        return None
    if not current_user.is_authenticated:
        return None  # neither a token nor a session: FAB answers 401
    token = next((request.headers[h] for h in CSRF_HEADERS if request.headers.get(h)), "")
    try:
        validate_csrf(token)
    except ValidationError:
        return jsonify(message=gettext("The CSRF token is missing or invalid.")), 400
    return None


def _authenticated_by_jwt() -> bool:
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return False
    try:
        return verify_jwt_in_request(optional=True) is not None
    except Exception:  # an invalid or expired token: FAB's own check will answer 401
        return False
