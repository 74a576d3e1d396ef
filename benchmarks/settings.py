"""Django settings of this project's side: the production set-up, from the environment.

``ours.py`` and the ``rundramatiq`` workers it starts read:

- ``BENCH_DB``: ``sqlite:///path/to/file`` or ``postgresql://user@host:port/name``;
- ``BENCH_REDIS_URL``: the redis-server: database 0 is Dramatiq's broker, database 1
  the flow-control gate (``REST_HOOKS["REDIS_URL"]``), so the Redis gate runs;
- ``BENCH_GATE_REDIS_URL``: the gate's redis-server instead, when set (``run.py`` starts
  one of its own, so that each server's ``INFO`` counts the broker's or the gate's work);
- ``BENCH_MAX_IN_FLIGHT``: the gate's in-flight cap, set above the total number of
  worker threads so that it never throttles (every hook points at the same receiver),
  except where the slow receivers' parts measure the cap itself (10, the default);
- ``BENCH_RATE_LIMIT``: ``RATE_LIMIT`` (unset or empty: none);
- ``BENCH_CONN_MAX_AGE``: Django's ``CONN_MAX_AGE`` (``ours.py`` passes 60 by default;
  Django's own default, 0, means a new database connection per message, as
  django-dramatiq's middleware closes it after each: see benchmarks/README.md);
- ``BENCH_SQLITE_OPTIONS``: the SQLite database's ``OPTIONS``, as JSON.

Everything a delivery does in production is on: signing, the gate (rate limit, breaker,
in-flight cap), metrics (multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set), the
delivery log and one INFO log line per delivery.
"""

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "example"))

# The demo's events and logging (one INFO line per delivery), its broker set-up.
from bookstore_site.settings import HOOK_EVENTS, LOGGING, dramatiq_broker  # noqa: E402, F401

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django_dramatiq",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_hooks",
    "bookstore",
]

_db = urlsplit(os.environ.get("BENCH_DB", "sqlite:///" + str(ROOT / ".tmp" / "bench.sqlite3")))
_conn_max_age = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))
if _db.scheme == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _db.path,
            "CONN_MAX_AGE": _conn_max_age,
            "OPTIONS": json.loads(os.environ.get("BENCH_SQLITE_OPTIONS", "{}")),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": _db.hostname,
            "PORT": str(_db.port or 5432),
            "USER": _db.username or "postgres",
            "NAME": _db.path.lstrip("/"),
            "CONN_MAX_AGE": _conn_max_age,
        }
    }

_redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
_redis = _redis.rsplit("/", 1)[0] if _redis.count("/") > 2 else _redis
DRAMATIQ_BROKER = dramatiq_broker(f"{_redis}/0")
REST_HOOKS = {
    "REDIS_URL": os.environ.get("BENCH_GATE_REDIS_URL") or f"{_redis}/1",
    "ALLOW_PRIVATE_TARGETS": True,
    "MAX_IN_FLIGHT": int(os.environ.get("BENCH_MAX_IN_FLIGHT", "1000")),
    "RATE_LIMIT": os.environ.get("BENCH_RATE_LIMIT") or None,
}
