"""launchq's settings. Everything that differs between machines comes from the environment.

DATABASE_URL   SQLite in var/launchq.sqlite3 when unset; postgres://user@host:5432/db for production
SECRET_KEY     generated once into var/secret_key when unset
DEBUG          off unless set to 1/true/yes
ALLOWED_HOSTS  comma-separated; 127.0.0.1,localhost when unset
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LAUNCHQ_VAR_DIR", BASE_DIR / "var"))


def _flag(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _flag("DEBUG")
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "launchq",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "launchq.middleware.RefuseNul",  # before anything reads the address's names and filters
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "launchq.middleware.ReadableRefusals",  # inside the others, so the answers it makes get their headers
]

ROOT_URLCONF = "launchq.urls"
WSGI_APPLICATION = "launchq.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["launchq.templatetags.numbers"],  # {{ value|plain }} on every page
        },
    },
]

_default_sqlite = f"sqlite:///{VAR_DIR / 'launchq.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or _default_sqlite,
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Writers queue up instead of failing with "database is locked"; IMMEDIATE
    # takes the write lock at BEGIN, so a dequeue's read-then-write cannot interleave.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests use a real file too, so agents in other processes and threads see real locking.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or str(VAR_DIR / "test.sqlite3")}
elif os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "launchq:launch"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# A config may be up to 256 KiB; leave room for the tiles posted beside it, so
# an oversized config reaches our own check and gets our own message.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 5000

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = _flag("SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

def _no_traceback_for_refusals(record) -> bool:
    """A 403 or 404 is a refusal, not a failure: log its line without a traceback."""
    if getattr(record, "status_code", 500) < 500:
        record.exc_info = record.exc_text = None
    return True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"refusals": {"()": "django.utils.log.CallbackFilter", "callback": _no_traceback_for_refusals}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["refusals"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}

# Launch agents: a lease lasts this long without a heartbeat; a run gets this many leases before it fails.
LAUNCHQ_LEASE_SECONDS = int(os.environ.get("LAUNCHQ_LEASE_SECONDS", "60"))
LAUNCHQ_MAX_ATTEMPTS = int(os.environ.get("LAUNCHQ_MAX_ATTEMPTS", "3"))

# Launch requests: how long an idempotency key is kept (a retry with it gets the run it launched), and how long an
# identical `wandb` push (the client retries without any key) counts as a retry of the first (0 turns that off).
LAUNCHQ_IDEMPOTENCY_KEY_HOURS = int(os.environ.get("LAUNCHQ_IDEMPOTENCY_KEY_HOURS", "24"))
LAUNCHQ_WANDB_REPLAY_SECONDS = int(os.environ.get("LAUNCHQ_WANDB_REPLAY_SECONDS", "60"))
