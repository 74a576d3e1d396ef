"""The test settings with a custom user model and a custom hook model (tests/custom_models).

``AUTH_USER_MODEL`` cannot change once Django has started, so tests/test_swappable.py runs
these settings in a subprocess of their own, on a fresh SQLite file named by
``REST_HOOKS_CUSTOM_DB`` (whatever database the main suite runs on), with the embedded
broker: no django_dramatiq, no Redis.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, REST_HOOKS

INSTALLED_APPS = [
    *(app for app in INSTALLED_APPS if app not in {"django_dramatiq", "bookstore"}),
    "tests.custom_models",
]

AUTH_USER_MODEL = "custom_models.Member"
HOOK_CUSTOM_MODEL = "custom_models.TeamHook"

HOOK_EVENTS = {
    "note.added": "custom_models.Note.created",
    "note.changed": "custom_models.Note.updated+",
}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["REST_HOOKS_CUSTOM_DB"],
        "OPTIONS": {"timeout": 20},
    }
}

# The embedded broker (a StubBroker, django_dramatiq is not installed); the subprocess
# calls the actors' functions itself.
REST_HOOKS = {k: v for k, v in REST_HOOKS.items() if k != "REDIS_URL"}
REST_HOOKS["EMBEDDED_WORKER"] = False
