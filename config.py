"""Portal configuration; every value can be overridden by the environment or create_app(config)."""
import os
from datetime import timedelta
from pathlib import Path

from flask_babel import lazy_gettext

AUTH_DB = 1  # flask_appbuilder.const.AUTH_DB, written out so reading the config loads no FAB (portal check)

BASE_DIR = Path(__file__).resolve().parent


def _number(kind, name: str, default: str):
    """A number from the environment; a malformed one stops start-up with one line saying which (no traceback)."""
    raw = os.environ.get(name, default) or default
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a {'whole ' if kind is int else ''}number, got {raw!r}") from None


def _int(name: str, default: str) -> int:
    return _number(int, name, default)


def _float(name: str, default: str) -> float:
    return _number(float, name, default)


SECRET_KEY = os.environ.get("SECRET_KEY", "")  # create_app refuses to start in production without one
PORTAL_ENV = os.environ.get("PORTAL_ENV", "development")  # "production": refuse unsafe settings (also under gunicorn)
SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'portal.db'}")
SQLALCHEMY_TRACK_MODIFICATIONS = False
SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}  # after a database restart, stale connections are replaced
PORTAL_SCHEMA_DIR = os.environ.get("PORTAL_SCHEMA_DIR", str(BASE_DIR / "schemas"))
PORTAL_FILES_DIR = os.environ.get("PORTAL_FILES_DIR", str(BASE_DIR / "var" / "files"))  # uploaded files
PORTAL_PAGES = "views"  # package of hand-written pages: INDEX_VIEW and register(appbuilder, portal)
PORTAL_FIELD_TYPES: list = []  # your own field types (FieldType subclasses or dotted paths), see docs/architecture.md
PORTAL_BACKUP_DIR = os.environ.get("PORTAL_BACKUP_DIR", str(BASE_DIR / "var" / "backups"))  # `portal backup`
# list pages and the list API count matching rows up to this many, then show "10,000+" (count_capped)
PORTAL_COUNT_CAP = _int("PORTAL_COUNT_CAP", "10000")
# report results are reused until their tables change, at most this long (0: always query)
PORTAL_CURRENCY = os.environ.get("PORTAL_CURRENCY", "CNY")  # ISO 4217: the `money` format of report measures
PORTAL_REPORT_CACHE_SECONDS = _float("PORTAL_REPORT_CACHE_SECONDS", "300")

APP_NAME = lazy_gettext("Admin Portal")  # rendered per request, so it follows the language
APP_THEME = ""
AUTH_TYPE = AUTH_DB
AUTH_ROLE_ADMIN = "Admin"
AUTH_ROLE_PUBLIC = "Public"

FAB_API_SWAGGER_UI = True
FAB_ADD_SECURITY_API = False  # marshmallow 4 breaks FAB's security CRUD API; the UI manages users
FAB_UPDATE_PERMS = True
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None

# session cookie: not sent on cross-site POSTs; Secure once the portal is served over HTTPS
SESSION_COOKIE_SAMESITE = REMEMBER_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = REMEMBER_COOKIE_SECURE = os.environ.get("PORTAL_COOKIE_SECURE", "0") == "1"
SESSION_COOKIE_HTTPONLY = REMEMBER_COOKIE_HTTPONLY = True
PERMANENT_SESSION_LIFETIME = timedelta(hours=_float("PORTAL_SESSION_HOURS", "12"))
JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=_float("PORTAL_JWT_MINUTES", "60"))  # every token has exp
JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=_float("PORTAL_JWT_REFRESH_DAYS", "7"))

# request bodies (imports, later attachments) above this are refused with 413 before anything reads them
MAX_CONTENT_LENGTH = int(_float("PORTAL_MAX_UPLOAD_MB", "20") * 1024 * 1024)
PORTAL_COMMENT_EDIT_MINUTES = _int("PORTAL_COMMENT_EDIT_MINUTES", "15")  # comments: the author's window

BABEL_DEFAULT_LOCALE = "en"
BABEL_TRANSLATION_DIRECTORIES = str(BASE_DIR / "translations")  # FAB puts its own catalog first; ours wins
LANGUAGES = {
    "en": {"flag": "gb", "name": "English"},
    "zh": {"flag": "cn", "name": "中文"},
}

# Production plumbing (docs/operations.md): rate limits, Redis, metrics, logs
RATELIMIT_ENABLED = os.environ.get("PORTAL_RATELIMIT_ENABLED", "1") != "0"
RATELIMIT_KEY_PREFIX = os.environ.get("PORTAL_RATELIMIT_PREFIX", "portal")
REDIS_URL = os.environ.get("REDIS_URL", "")  # rate limit counters shared by all workers; memory when unset
PORTAL_LOGIN_LIMIT_USER = os.environ.get("PORTAL_LOGIN_LIMIT_USER", "5/minute")  # failed sign-ins per username
PORTAL_LOGIN_LIMIT_IP = os.environ.get("PORTAL_LOGIN_LIMIT_IP", "30/minute")  # failed sign-ins per client IP
PORTAL_API_LIMIT = os.environ.get("PORTAL_API_LIMIT", "1000/minute")  # API calls per user (or IP if anonymous)
PORTAL_METRICS_TOKEN = os.environ.get("PORTAL_METRICS_TOKEN", "")  # unset: /metrics answers localhost only
PORTAL_READYZ_CACHE_SECONDS = _float("PORTAL_READYZ_CACHE_SECONDS", "5")
PORTAL_LOG_LEVEL = os.environ.get("PORTAL_LOG_LEVEL", "INFO")

# Notifications: the outbox worker (`flask --app run portal worker`, README "Notifications: delivery")
PORTAL_WORKER_POLL_SECONDS = _float("PORTAL_WORKER_POLL_SECONDS", "2")  # sleep when nothing is due
PORTAL_RETRY_BASE_SECONDS = _float("PORTAL_RETRY_BASE_SECONDS", "60")  # back-off: base * 2^(n-1)
PORTAL_RETRY_MAX = _int("PORTAL_RETRY_MAX", "8")  # failed attempts before a message is dead
PORTAL_OUTBOX_BATCH = _int("PORTAL_OUTBOX_BATCH", "100")  # messages one worker claims at a time
PORTAL_OUTBOX_LEASE_SECONDS = _float("PORTAL_OUTBOX_LEASE_SECONDS", "300")  # a claim's lifetime
PORTAL_DELIVERY_TIMEOUT_SECONDS = _float("PORTAL_DELIVERY_TIMEOUT_SECONDS", "20")  # SMTP / webhook wait
PORTAL_RETENTION_HOUR = _int("PORTAL_RETENTION_HOUR", "2")  # the worker's daily retention run starts from this hour
# links in notification e-mails and webhooks: where users open the portal (default: where `make run` serves it)
PORTAL_BASE_URL = os.environ.get(
    "PORTAL_BASE_URL", f"http://{os.environ.get('PORTAL_HOST', '127.0.0.1')}:{os.environ.get('PORTAL_PORT', '8080')}")
PORTAL_QUEUE = os.environ.get("PORTAL_QUEUE", "")  # "rq": hand claimed messages to rq workers (REDIS_URL)
# e-mail over SMTP, with Flask-Mail's names; no MAIL_SERVER: e-mails wait in the outbox ("mail not configured")
MAIL_SERVER = os.environ.get("MAIL_SERVER", "")
MAIL_PORT = _int("MAIL_PORT", "0")  # 0: 465 with MAIL_USE_SSL, else 25
MAIL_USERNAME = os.environ.get("MAIL_USERNAME", "")
MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD", "")
MAIL_USE_TLS = os.environ.get("MAIL_USE_TLS", "0").lower() in ("1", "true", "yes")
MAIL_USE_SSL = os.environ.get("MAIL_USE_SSL", "0").lower() in ("1", "true", "yes")
MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "portal@localhost")
