"""Django settings for the test suite.

The test command (`scripts/test`) starts redis-server and PostgreSQL and passes their
addresses through the environment:

- ``REST_HOOKS_TEST_DB``: ``sqlite`` (default) or ``postgres``.
- ``REST_HOOKS_TEST_PG_HOST`` / ``_PG_PORT`` / ``_PG_USER``: the PostgreSQL server.
- ``REST_HOOKS_TEST_REDIS_URL``: the redis-server, e.g. ``redis://127.0.0.1:6390/0``.
- ``REST_HOOKS_TEST_DB_NAME``: set by the test fixtures for the worker processes they
  start, so that those processes use the test database pytest-django created.
- ``REST_HOOKS_TEST_SQLITE_TIMEOUT``: seconds a SQLite statement waits for a lock (20);
  the fault suite gives its workers less, to lock them out for real.
- ``REST_HOOKS_TEST_SQLITE_OPTIONS``: the SQLite database's ``OPTIONS`` (JSON) instead of
  the suite's, for worker processes a test starts with a user's settings.
"""

import json
import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# The bookstore app and settings of the demo project (example/) are the tests' too.
sys.path.insert(0, str(BASE_DIR / "example"))

import bookstore_site.settings as demo  # noqa: E402

TMP_DIR = Path(os.environ.get("REST_HOOKS_TEST_TMP", BASE_DIR / ".tmp"))
TMP_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "drf_spectacular",
    "rest_hooks",
    "bookstore",
]

# The subscription API (rest_hooks.api), as its README section mounts it.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = demo.TEMPLATES

# Worker processes a test starts write their e-mails (hook notices) as files there.
if os.environ.get("REST_HOOKS_TEST_EMAIL_DIR"):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["REST_HOOKS_TEST_EMAIL_DIR"]

# Users log in (the admin, the API's Basic authentication) with passwords: hashing them
# the real way costs a fifth of a second a request.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_db_name = os.environ.get("REST_HOOKS_TEST_DB_NAME")
if os.environ.get("REST_HOOKS_TEST_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("REST_HOOKS_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("REST_HOOKS_TEST_PG_PORT", "5432"),
            "USER": os.environ.get("REST_HOOKS_TEST_PG_USER", "postgres"),
            "NAME": _db_name or "rest_hooks",
            "TEST": {"NAME": "test_rest_hooks"},
            # As in production: a worker keeps its connection between messages.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    }
else:
    # A file, not ":memory:", so that the worker processes the tests start share it.
    _sqlite_path = str(TMP_DIR / f"test-{os.getpid()}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _db_name or _sqlite_path,
            "TEST": {"NAME": _db_name or _sqlite_path},
            "OPTIONS": json.loads(os.environ.get("REST_HOOKS_TEST_SQLITE_OPTIONS", "null"))
            or {
                "timeout": float(os.environ.get("REST_HOOKS_TEST_SQLITE_TIMEOUT", 20)),
                "transaction_mode": "IMMEDIATE",
            },
        }
    }

HOOK_EVENTS = demo.HOOK_EVENTS

REST_HOOKS = {
    "ALLOW_PRIVATE_TARGETS": True,
    # Unit tests call the actors' functions directly; integration tests start workers.
    "EMBEDDED_WORKER": False,
    # Worker processes started by a test get that test's settings through this variable.
    **json.loads(os.environ.get("REST_HOOKS_TEST_OVERRIDES", "{}")),
}

# With a redis-server (the test command starts one), the suite runs the production set-up:
# the Redis broker through django-dramatiq, and real worker processes for integration tests.
REDIS_URL = os.environ.get("REST_HOOKS_TEST_REDIS_URL")
if REDIS_URL:
    INSTALLED_APPS.insert(0, "django_dramatiq")
    DRAMATIQ_BROKER = demo.dramatiq_broker(REDIS_URL)
    REST_HOOKS.setdefault("REDIS_URL", REDIS_URL)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"rest_hooks": {"handlers": ["console"], "level": "INFO"}},
}
