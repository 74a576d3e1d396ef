"""Settings of the demo project.

With ``REDIS_URL`` in the environment it runs the production set-up (Dramatiq's Redis
broker, workers started with ``manage.py rundramatiq``); without it, the embedded one
(an in-process worker: ``runserver`` alone delivers hooks).
"""

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "bookstore_site.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_hooks",
    "bookstore",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BOOKSTORE_DB", str(BASE_DIR / "bookstore.sqlite3")),
        # The hook workers write beside the site: a transaction of the site's that reads,
        # then writes, waits for the lock with IMMEDIATE (SQLite refuses a deferred one's
        # upgrade at once while another connection writes). See the README's "SQLite".
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}

# The HOOK_EVENTS of django-rest-hooks' README, unchanged.
HOOK_EVENTS = {
    "book.added": "bookstore.Book.created",
    "book.changed": "bookstore.Book.updated+",
    "book.removed": "bookstore.Book.deleted",
    "book.read": "bookstore.Book.read",
    "user.logged_in": None,
}

REST_HOOKS: dict[str, Any] = {
    # The demo's receiver listens on 127.0.0.1, which is refused by default.
    "ALLOW_PRIVATE_TARGETS": True,
}


def dramatiq_broker(url: str) -> dict[str, Any]:
    """django-dramatiq's DRAMATIQ_BROKER for Redis, with the middleware rest_hooks needs."""
    return {
        "BROKER": "rest_hooks.broker.PromptRedisBroker",
        "OPTIONS": {"url": url, "socket_connect_timeout": 2, "socket_timeout": 5},
        "MIDDLEWARE": [
            "dramatiq.middleware.AgeLimit",
            "dramatiq.middleware.TimeLimit",
            "dramatiq.middleware.Callbacks",
            "dramatiq.middleware.Retries",
            "django_dramatiq.middleware.DbConnectionsMiddleware",
        ],
    }


REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    INSTALLED_APPS.insert(0, "django_dramatiq")
    DRAMATIQ_BROKER = dramatiq_broker(REDIS_URL)
    # Rate limits and circuit breakers are shared through Redis too.
    REST_HOOKS["REDIS_URL"] = REDIS_URL

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"short": {"format": "%(asctime)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "short"}},
    # Not propagated: under rundramatiq the root logger has Dramatiq's handler, which
    # would print every line a second time.
    "loggers": {"rest_hooks": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
