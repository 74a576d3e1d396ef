"""Embedded mode, zero services: no django_dramatiq, no Redis, an in-process worker.

Used by tests/test_embedded.py in a subprocess, on a fresh SQLite file named by
``REST_HOOKS_EMBEDDED_DB`` (whatever database the main suite runs on).
``REST_HOOKS_TEST_OVERRIDES`` (JSON) adds ``REST_HOOKS`` entries, e.g. a short
``RETRY_SCHEDULE``.
"""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "django_dramatiq"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["REST_HOOKS_EMBEDDED_DB"],
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}

REST_HOOKS = {
    "ALLOW_PRIVATE_TARGETS": True,
    "EMBEDDED_WORKER": True,
    **json.loads(os.environ.get("REST_HOOKS_TEST_OVERRIDES", "{}")),
}
