"""Rate limits (Flask-Limiter): failed sign-ins per username and per IP, API calls per user.

Only FAILED sign-ins count (`deduct_when`), so while one username is locked, colleagues behind the
same office NAT still sign in. Counters live in Redis when REDIS_URL is set (shared by every gunicorn
worker), in memory otherwise. If Redis goes away the limiter carries on with in-memory counters per
process and goes back to Redis once it answers again (Flask-Limiter's in-memory fallback; errors
while deducting are swallowed and logged), so a Redis outage never turns sign-in into a 500.
"""
from __future__ import annotations

import logging
import math
import time

from flask import current_app, flash, g, jsonify, make_response, request, session
from flask_appbuilder.api import BaseApi
from flask_appbuilder.security.api import SecurityApi
from flask_appbuilder.security.forms import LoginForm_db
from flask_babel import gettext
from flask_jwt_extended import decode_token
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_login import current_user
from werkzeug.security import generate_password_hash

audit = logging.getLogger("portal.audit")
log = logging.getLogger(__name__)

LOGIN_SCOPES = ("login-user", "login-ip")
API_SCOPE = "api"


def create_limiter(app) -> Limiter:
    """The limiter FAB keeps as `appbuilder.sm.limiter` (called from the security manager)."""
    redis_url = app.config.get("REDIS_URL")
    # a Redis that hangs must not hang sign-in: give up quickly and fall back to memory
    options = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5} if redis_url else {}
    return Limiter(get_remote_address, app=app, storage_uri=redis_url or "memory://", storage_options=options,
                   strategy="moving-window", in_memory_fallback_enabled=True, swallow_errors=True)


def install_rate_limits(app, appbuilder) -> None:
    limiter = appbuilder.sm.limiter
    config = app.config
    login_views = [appbuilder.sm.auth_view.blueprint] + [v.blueprint for v in appbuilder.baseviews if isinstance(v, SecurityApi)]
    by_user = limiter.shared_limit(configured("PORTAL_LOGIN_LIMIT_USER"), scope="login-user", key_func=login_username,
                                   methods=["POST"], deduct_when=login_failed_in_request)
    by_ip = limiter.shared_limit(configured("PORTAL_LOGIN_LIMIT_IP"), scope="login-ip", key_func=client_ip,
                                 methods=["POST"], deduct_when=login_failed_in_request)
    for blueprint in login_views:
        by_user(blueprint)
        by_ip(blueprint)
    per_user = limiter.shared_limit(configured("PORTAL_API_LIMIT"), scope=API_SCOPE, key_func=api_client)
    for view in appbuilder.baseviews:
        if isinstance(view, BaseApi) and not isinstance(view, SecurityApi):
            per_user(view.blueprint)
    app.register_error_handler(RateLimitExceeded, too_many_requests)
    # FAB hashes a dummy password for unknown usernames so they answer as slowly as wrong passwords;
    # make that dummy use the same method as real passwords, whatever FAB_PASSWORD_HASH_METHOD says.
    config["AUTH_DB_FAKE_PASSWORD_HASH_CHECK"] = generate_password_hash(
        "not-a-password", method=config.get("FAB_PASSWORD_HASH_METHOD", "scrypt"),
        salt_length=config.get("FAB_PASSWORD_HASH_SALT_LENGTH", 16))


def configured(name: str):
    """The limit as the app's config says at request time (e.g. "5/minute", "100 per hour")."""
    return lambda: current_app.config[name]


def client_ip() -> str:
    return "ip:" + (get_remote_address() or "unknown")


def login_username() -> str:
    """The username being tried, from the form or the API's JSON; usernames match case-insensitively."""
    name = request.form.get("username")
    if name is None:
        payload = request.get_json(silent=True)
        name = payload.get("username") if isinstance(payload, dict) else None
    name = str(name or "").strip().lower()[:256]
    return "user:" + name if name else ""  # empty: no per-user counter (FAB refuses it anyway)


def api_client() -> str:
    """Who is calling the API: the JWT's user, the browser session's user, or else the IP."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        try:
            return f"user:{decode_token(auth[7:])['sub']}"
        except Exception:  # an invalid token is refused by the view; count it by IP
            pass
    user_id = session.get("_user_id")
    return f"user:{user_id}" if user_id else client_ip()


def note_login_failure(username) -> None:
    """Called by the security manager for every refused username/password."""
    g.portal_login_failed = True
    audit.warning("login failed user=%r ip=%s", str(username)[:256], get_remote_address())


def login_failed_in_request(response) -> bool:
    return bool(g.get("portal_login_failed"))


def too_many_requests(error: RateLimitExceeded):
    seconds = _retry_after(current_app.appbuilder.sm.limiter)
    scope = getattr(error.limit, "scope", None)
    if scope in LOGIN_SCOPES:
        audit.warning("login locked (%s) user=%r ip=%s", scope, login_username()[5:], get_remote_address())
        message = gettext("Too many failed sign-in attempts. Try again in %(seconds)s seconds.", seconds=seconds)
    else:
        message = gettext("Too many requests. Try again in %(seconds)s seconds.", seconds=seconds)
    if request.path.startswith("/api/"):
        response = jsonify(message=message)
    else:
        response = _login_page(message)
    response.status_code = 429
    response.headers["Retry-After"] = str(seconds)
    return response


def _login_page(message: str):
    """FAB's own sign-in form, with the message where FAB shows its 'invalid login' warning."""
    if not hasattr(g, "user"):  # the limiter's check runs before FAB's before_request sets it
        g.user = current_user
    flash(message, "danger")
    view = current_app.appbuilder.sm.auth_view
    return make_response(view.render_template(view.login_template, title=view.title, form=LoginForm_db()))


def _retry_after(limiter: Limiter) -> int:
    try:
        reset_at = limiter.current_limit.reset_at
    except Exception:  # storage gone between the check and now: a safe guess
        log.warning("could not read the rate limit window", exc_info=True)
        return 60
    return max(1, math.ceil(reset_at - time.time()))
