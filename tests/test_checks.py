"""System checks: each wrong setting is reported with its id and a hint that names the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, run_checks
from django.db import connections
from django.test import override_settings
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import default_middleware

import rest_hooks.checks
from rest_hooks.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent

# A Redis broker is never connected to by the checks: this address need not answer.
UNUSED_REDIS = "redis://127.0.0.1:1/0"


def rest_hooks_setting(**entries: Any) -> override_settings:
    """Override REST_HOOKS entries, keeping the others (REDIS_URL with a Redis broker)."""
    return override_settings(REST_HOOKS={**django_settings.REST_HOOKS, **entries})


def rest_hooks_messages() -> list[CheckMessage]:
    return [m for m in run_checks() if (m.id or "").startswith("rest_hooks.")]


def only(check_id: str) -> list[CheckMessage]:
    """The rest_hooks messages, asserting they all have the id ``check_id``."""
    messages = rest_hooks_messages()
    assert [m.id for m in messages] == [check_id] * len(messages), messages
    assert messages, f"no {check_id} reported"
    return messages


def full_middleware() -> list[Any]:
    from django_dramatiq.middleware import DbConnectionsMiddleware

    return [m() for m in default_middleware] + [DbConnectionsMiddleware()]


@pytest.fixture
def use_broker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the checks see a given broker (the real global one is left alone)."""

    def use(broker: Any) -> Any:
        monkeypatch.setattr(rest_hooks.checks, "current_broker", lambda: broker)
        return broker

    return use


def test_the_test_settings_pass_every_check():
    assert rest_hooks_messages() == []


# -- HOOK_EVENTS ------------------------------------------------------------------------------


def test_hook_events_missing(settings):
    del settings.HOOK_EVENTS
    (error,) = only("rest_hooks.E001")
    assert "HOOK_EVENTS" in error.msg
    assert "HOOK_EVENTS = {" in error.hint


@pytest.mark.parametrize("value", [None, ["book.added"], "bookstore.Book.created"])
def test_hook_events_not_a_dict(value):
    with override_settings(HOOK_EVENTS=value):
        (error,) = only("rest_hooks.E001")
    assert "not a dict" in error.msg
    assert "HOOK_EVENTS = {'book.added': 'bookstore.Book.created'" in error.hint


@pytest.mark.parametrize("spec", ["bookstore.Book", 123, "bookstore.Book.", "bookstore.Book.+"])
def test_malformed_hook_events_entry(spec):
    with override_settings(HOOK_EVENTS={"ok": "bookstore.Book.created", "bad": spec}):
        (error,) = only("rest_hooks.E001")
    assert "HOOK_EVENTS['bad']" in error.msg
    assert repr(spec) in error.msg
    assert "HOOK_EVENTS entry" in error.hint


def test_custom_events_need_no_model():
    with override_settings(HOOK_EVENTS={"user.logged_in": None}):
        assert rest_hooks_messages() == []


@pytest.mark.parametrize(
    "spec", ["bookstore.Nope.created", "nope.Book.created", "bookstore.Book.sub.created"]
)
def test_unknown_model(spec):
    with override_settings(HOOK_EVENTS={"book.added": spec}):
        (error,) = only("rest_hooks.E002")
    assert "HOOK_EVENTS['book.added']" in error.msg
    assert "not installed" in error.msg
    assert "'app_label.ModelName'" in error.hint


def test_model_name_in_the_wrong_case_is_reported():
    # apps.get_model() would find it, but the routing compares labels exactly: it never fires.
    with override_settings(HOOK_EVENTS={"book.added": "bookstore.book.created"}):
        (error,) = only("rest_hooks.E002")
    assert "'bookstore.book'" in error.msg
    assert "'bookstore.Book'" in error.hint


def test_two_events_for_one_model_action():
    events = {"book.added": "bookstore.Book.created", "book.new": "bookstore.Book.created+"}
    with override_settings(HOOK_EVENTS=events):
        (error,) = only("rest_hooks.E003")
    assert "'book.added'" in error.msg
    assert "'book.new'" in error.msg
    assert "bookstore.Book.created" in error.msg
    assert "Keep one of the two entries" in error.hint


@pytest.mark.parametrize(
    ("action", "meant"),
    [
        ("create", "'bookstore.Book.created'"),
        ("Created", "'bookstore.Book.created'"),
        ("UPDATE", "'bookstore.Book.updated'"),
        ("delted", "'bookstore.Book.deleted'"),
        ("craeted+", "'bookstore.Book.created+'"),
        ("added", "'bookstore.Book.created'"),
        ("removed", "'bookstore.Book.deleted'"),
        ("Destroy", "'bookstore.Book.deleted'"),
        ("save", "'bookstore.Book.created' or 'bookstore.Book.updated'"),
    ],
)
def test_a_near_miss_of_a_built_in_action_is_a_warning(action, meant):
    # Nothing but hook_event.send(...) ever sends a custom action: without this warning
    # "create" for "created" passed every check and never wrote an event.
    with override_settings(HOOK_EVENTS={"book.new": f"bookstore.Book.{action}"}):
        (warning,) = only("rest_hooks.W006")
    assert "HOOK_EVENTS['book.new']" in warning.msg
    assert repr(action.removesuffix("+")) in warning.msg
    assert "hook_event.send(" in warning.msg
    assert f"Did you mean {meant}?" in warning.hint
    assert "SILENCED_SYSTEM_CHECKS" in warning.hint


@pytest.mark.parametrize(
    "action", ["read", "published", "shipped", "archived", "moved", "selected", "logged_in"]
)
def test_real_custom_actions_raise_no_warning(action):
    with override_settings(HOOK_EVENTS={"book.it": f"bookstore.Book.{action}+"}):
        assert rest_hooks_messages() == []


# -- REST_HOOKS -------------------------------------------------------------------------------


def test_unknown_key_suggests_the_close_one():
    with rest_hooks_setting(RETRY_SHEDULE=[5]):
        (error,) = only("rest_hooks.E004")
    assert "'RETRY_SHEDULE'" in error.msg
    assert error.hint == "Did you mean 'RETRY_SCHEDULE'?"


def test_unknown_key_without_a_close_one():
    with rest_hooks_setting(COLOUR="blue"):
        (error,) = only("rest_hooks.E004")
    assert "'COLOUR'" in error.msg
    assert error.hint == "Remove it."


def test_a_removed_setting_says_what_replaced_it():
    with rest_hooks_setting(WRITE_TIMEOUT=10):
        (error,) = only("rest_hooks.E004")
    assert "'WRITE_TIMEOUT'" in error.msg
    assert "DEADLINE" in error.hint


@pytest.mark.parametrize("value", [["RETRY_SCHEDULE", [5]], "RETRY_SCHEDULE=[5]"])
def test_rest_hooks_not_a_dict(value, use_broker):
    # Even with a Redis broker, whose checks read REST_HOOKS too: reported, no crash.
    use_broker(RedisBroker(url=UNUSED_REDIS, middleware=full_middleware()))
    with override_settings(REST_HOOKS=value):
        errors = rest_hooks_messages()
    e004 = [e for e in errors if e.id == "rest_hooks.E004"]
    assert len(e004) == 1
    assert "must be a dict" in e004[0].msg
    assert "REST_HOOKS = {" in e004[0].hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RETRY_JITTER", -0.1),
        ("DEADLINE", "30"),
        ("RELAY_AFTER", True),
        ("MAX_RESPONSE_BYTES", None),
        ("RETENTION_DAYS", -1),
        ("EMBEDDED_DRAIN_TIMEOUT", -1),
        ("DEADLINE", float("inf")),
    ],
)
def test_bad_number(key, value):
    with rest_hooks_setting(**{key: value}):
        (error,) = only("rest_hooks.E005")
    assert f"REST_HOOKS[{key!r}]" in error.msg
    assert repr(value) in error.msg
    assert error.hint == f"The default is {DEFAULTS[key]!r}."


@pytest.mark.parametrize(
    "schedule", ["5,300", 300, [5, -1], [5, "300"], [True], {"a": 1}, [float("nan")]]
)
def test_bad_retry_schedule(schedule):
    with rest_hooks_setting(RETRY_SCHEDULE=schedule):
        (error,) = only("rest_hooks.E005")
    assert "RETRY_SCHEDULE" in error.msg
    assert "list of seconds" in error.msg
    assert "[5, 300, 1800]" in error.hint


@pytest.mark.parametrize("schedule", [[], [0], (1, 2.5)])
def test_good_retry_schedule(schedule):
    with rest_hooks_setting(RETRY_SCHEDULE=schedule):
        assert rest_hooks_messages() == []


# -- extension points -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["nowhere.deliver", "rest_hooks.tasks.no_such_function", "deliver"]
)
@pytest.mark.parametrize("name", ["HOOK_DELIVERER", "HOOK_SERIALIZER", "HOOK_FINDER"])
def test_extension_point_not_importable(name, path):
    with override_settings(**{name: path}):
        (error,) = only("rest_hooks.E008")
    assert f"settings.{name} = {path!r} cannot be imported" in error.msg
    assert "dotted path of a function" in error.hint


def test_importable_extension_point_passes():
    with override_settings(HOOK_DELIVERER="rest_hooks.events.find_and_fire_hook"):
        assert rest_hooks_messages() == []


def test_custom_hook_model_not_installed():
    with override_settings(HOOK_CUSTOM_MODEL="nope.Hook"):
        errors = rest_hooks_messages()
    (error,) = [e for e in errors if e.id == "rest_hooks.E009"]
    assert "'nope.Hook'" in error.msg
    assert "'app_label.ModelName'" in error.hint


def test_custom_hook_model_in_the_old_dotted_form_is_accepted():
    with override_settings(HOOK_CUSTOM_MODEL="rest_hooks.models.Hook"):
        assert rest_hooks_messages() == []


def test_custom_hook_model_must_subclass_abstract_hook():
    with override_settings(HOOK_CUSTOM_MODEL="bookstore.Book"):
        errors = rest_hooks_messages()
    (error,) = [e for e in errors if e.id == "rest_hooks.E009"]
    assert "does not subclass AbstractHook" in error.msg
    assert "rest_hooks.models.AbstractHook" in error.hint


# -- the broker -------------------------------------------------------------------------------


def test_broker_without_the_required_middleware(use_broker):
    use_broker(RedisBroker(url=UNUSED_REDIS, middleware=[]))
    with override_settings(REST_HOOKS={"REDIS_URL": UNUSED_REDIS}):
        errors = only("rest_hooks.E006")
    missing = {path for path, _why in rest_hooks.checks.REQUIRED_MIDDLEWARE}
    assert len(errors) == len(missing) == 3
    for path in missing:
        (error,) = [e for e in errors if path in e.msg]
        assert error.hint == f"Add {path!r} to DRAMATIQ_BROKER['MIDDLEWARE']."


def test_broker_lacking_one_middleware(use_broker):
    middleware = [m for m in full_middleware() if type(m).__name__ != "TimeLimit"]
    use_broker(RedisBroker(url=UNUSED_REDIS, middleware=middleware))
    with override_settings(REST_HOOKS={"REDIS_URL": UNUSED_REDIS}):
        (error,) = only("rest_hooks.E006")
    assert "dramatiq.middleware.TimeLimit" in error.msg
    assert "'dramatiq.middleware.TimeLimit'" in error.hint


def test_real_broker_with_the_required_middleware_passes(use_broker):
    use_broker(RedisBroker(url=UNUSED_REDIS, middleware=full_middleware()))
    with override_settings(REST_HOOKS={"REDIS_URL": UNUSED_REDIS}):
        assert rest_hooks_messages() == []


def test_the_global_broker_is_what_the_checks_see():
    import dramatiq

    original = dramatiq.get_broker()
    dramatiq.set_broker(RedisBroker(url=UNUSED_REDIS, middleware=[]))
    try:
        with override_settings(REST_HOOKS={"REDIS_URL": UNUSED_REDIS}):
            ids = {m.id for m in rest_hooks_messages()}
    finally:
        dramatiq.set_broker(original)
    assert ids == {"rest_hooks.E006"}
    assert dramatiq.get_broker() is original


def test_redis_broker_without_redis_url(use_broker):
    use_broker(RedisBroker(url=UNUSED_REDIS, middleware=full_middleware()))
    with override_settings(REST_HOOKS={"ALLOW_PRIVATE_TARGETS": True}):
        (error,) = only("rest_hooks.E007")
    assert "REDIS_URL" in error.msg
    assert "REST_HOOKS['REDIS_URL']" in error.hint


def test_stub_broker_needs_no_redis_url(use_broker):
    use_broker(StubBroker(middleware=[]))
    with override_settings(REST_HOOKS={"EMBEDDED_WORKER": False}):
        assert rest_hooks_messages() == []


@pytest.fixture
def sqlite_databases(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the checks see these SQLite databases (alias -> OPTIONS) and a PostgreSQL one."""
    connections["default"]  # created with the real settings before the patch

    def use(**options: dict[str, Any]) -> None:
        databases = {
            alias: {"ENGINE": "django.db.backends.sqlite3", "OPTIONS": opts, "CONN_MAX_AGE": 0}
            for alias, opts in options.items()
        }
        pg = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}, "CONN_MAX_AGE": 60}
        monkeypatch.setattr(connections, "settings", {**databases, "pg": pg})

    return use


@pytest.mark.parametrize("embedded", [True, False])
def test_workers_on_sqlite_without_immediate(use_broker, sqlite_databases, embedded):
    if embedded:
        use_broker(StubBroker(middleware=[]))
    else:
        use_broker(RedisBroker(url=UNUSED_REDIS, middleware=full_middleware()))
    sqlite_databases(
        default={"timeout": 20},
        fine={"transaction_mode": "IMMEDIATE"},
        lower={"transaction_mode": "exclusive"},
    )
    with rest_hooks_setting(EMBEDDED_WORKER=True, REDIS_URL=UNUSED_REDIS):
        (warning,) = only("rest_hooks.W001")
    assert "DATABASES['default']" in warning.msg
    assert "DATABASES['default']['OPTIONS']['transaction_mode'] = 'IMMEDIATE'" in warning.hint


def test_no_worker_no_sqlite_checks(use_broker, sqlite_databases):
    use_broker(StubBroker(middleware=[]))
    sqlite_databases(default={"timeout": 0})
    with override_settings(REST_HOOKS={"EMBEDDED_WORKER": False}):
        assert rest_hooks_messages() == []


@pytest.mark.parametrize("timeout", [0, 2.5])
def test_sqlite_without_a_busy_timeout(use_broker, sqlite_databases, timeout):
    use_broker(RedisBroker(url=UNUSED_REDIS, middleware=full_middleware()))
    sqlite_databases(
        default={"timeout": timeout, "transaction_mode": "IMMEDIATE"},
        unset={"transaction_mode": "IMMEDIATE"},
        waits={"timeout": 5, "transaction_mode": "IMMEDIATE"},
    )
    with rest_hooks_setting(REDIS_URL=UNUSED_REDIS):
        (error,) = only("rest_hooks.E016")
    assert f"DATABASES['default']['OPTIONS']['timeout'] is {timeout}" in error.msg
    assert "DATABASES['default']['OPTIONS']['timeout'] = 20" in error.hint


def test_workers_without_persistent_database_connections(use_broker, monkeypatch):
    use_broker(RedisBroker(url=UNUSED_REDIS, middleware=full_middleware()))
    connections["default"]  # created with the real settings before the patch
    pg = "django.db.backends.postgresql"
    monkeypatch.setattr(
        connections,
        "settings",
        {
            "default": {"ENGINE": pg, "CONN_MAX_AGE": 0},
            "kept": {"ENGINE": pg, "CONN_MAX_AGE": 60},
            "forever": {"ENGINE": pg, "CONN_MAX_AGE": None},
            "local": {
                "ENGINE": "django.db.backends.sqlite3",
                "CONN_MAX_AGE": 0,
                "OPTIONS": {"transaction_mode": "IMMEDIATE"},
            },
        },
    )
    with override_settings(REST_HOOKS={"REDIS_URL": UNUSED_REDIS}):
        (warning,) = only("rest_hooks.W005")
    assert "DATABASES['default']['CONN_MAX_AGE'] is 0" in warning.msg
    assert "DATABASES['default']['CONN_MAX_AGE'] = 60" in warning.hint


def test_proxy_model_is_reported():
    with override_settings(HOOK_EVENTS={"paperback.added": "bookstore.Paperback.created"}):
        (error,) = only("rest_hooks.E002")
    assert "proxy" in error.msg
    assert error.hint == "Write 'bookstore.Book'."


@pytest.mark.parametrize(
    "entries",
    [
        {"RATE_LIMIT": "fast"},
        {"RATE_LIMIT": "0/s"},
        {"RATE_BURST": 0},
        {"MAX_IN_FLIGHT": "2"},
        {"FLOW_ON_REDIS_ERROR": "maybe"},
        {"ORIGIN_LIMITS": ["https://a.example"]},
        {"ORIGIN_LIMITS": {"a.example": {"RATE_LIMIT": "1/s"}}},
        {"ORIGIN_LIMITS": {"https://a.example": {"RATE": "1/s"}}},
        {"ORIGIN_LIMITS": {"https://a.example": {"RATE_LIMIT": "1 per second"}}},
    ],
)
def test_bad_flow_control_settings(entries):
    with rest_hooks_setting(**entries):
        (error,) = only("rest_hooks.E011")
    assert "RATE_LIMIT '50/s'" in error.hint


def test_good_flow_control_settings():
    with rest_hooks_setting(
        RATE_LIMIT="600/min",
        RATE_BURST=10,
        MAX_IN_FLIGHT=None,
        FLOW_ON_REDIS_ERROR="closed",
        ORIGIN_LIMITS={"https://a.example": {"RATE_LIMIT": "1/s", "MAX_IN_FLIGHT": 2}},
    ):
        assert rest_hooks_messages() == []


# -- the subscription API ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ({"API_MAX_HOOKS_PER_USER": 0}, "API_MAX_HOOKS_PER_USER"),
        ({"API_MAX_HOOKS_PER_USER": "100"}, "API_MAX_HOOKS_PER_USER"),
        ({"API_MAX_HOOKS_PER_USER": True}, "API_MAX_HOOKS_PER_USER"),
        ({"API_THROTTLE_RATE": "120 per minute"}, "API_THROTTLE_RATE"),
        ({"API_THROTTLE_RATE": "120/week"}, "API_THROTTLE_RATE"),
        ({"API_THROTTLE_RATE": 120}, "API_THROTTLE_RATE"),
    ],
)
def test_malformed_api_setting(entries, named):
    with rest_hooks_setting(**entries):
        (message,) = only("rest_hooks.E017")
    assert named in message.msg


@pytest.mark.parametrize(
    "entries",
    [
        {"API_MAX_HOOKS_PER_USER": None, "API_THROTTLE_RATE": None},
        {"API_MAX_HOOKS_PER_USER": 1, "API_THROTTLE_RATE": "10/s"},
        {"API_THROTTLE_RATE": "1000/day"},
    ],
)
def test_good_api_settings_pass(entries):
    with rest_hooks_setting(**entries):
        assert rest_hooks_messages() == []


# -- notices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ({"NOTICE_AT": 50}, "NOTICE_AT"),
        ({"NOTICE_AT": [50, 100]}, "NOTICE_AT"),
        ({"NOTICE_AT": [0.5, -1]}, "NOTICE_AT"),
        ({"NOTICE_EMAIL": "yes"}, "NOTICE_EMAIL"),
        (
            {"NOTICE_WEBHOOK_URL": "ops.example.com", "NOTICE_WEBHOOK_SECRET": "whsec_" + "A" * 32},
            "NOTICE_WEBHOOK_URL",
        ),
        ({"NOTICE_WEBHOOK_URL": "https://ops.example.com/"}, "NOTICE_WEBHOOK_SECRET"),
        (
            {"NOTICE_WEBHOOK_URL": "https://ops.example.com/", "NOTICE_WEBHOOK_SECRET": "s3cr3t"},
            "NOTICE_WEBHOOK_SECRET",
        ),
    ],
)
def test_malformed_notice_setting(entries, named):
    with rest_hooks_setting(**entries):
        (message,) = only("rest_hooks.E018")
    assert named in message.msg
    assert "s3cr3t" not in message.msg + (message.hint or "")


def test_good_notice_settings_pass():
    entries = {
        "NOTICE_AT": [25, 50, 99.5],
        "NOTICE_EMAIL": False,
        "NOTICE_WEBHOOK_URL": "https://ops.example.com/hooks",
        "NOTICE_WEBHOOK_SECRET": "whsec_" + "A" * 32,
    }
    with rest_hooks_setting(**entries):
        assert rest_hooks_messages() == []
    with rest_hooks_setting(NOTICE_AT=[]):
        assert rest_hooks_messages() == []


# -- metrics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ({"METRICS_TOKEN": ""}, "METRICS_TOKEN"),
        ({"METRICS_TOKEN": 1234}, "METRICS_TOKEN"),
        ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8"}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_ALLOWED_NETWORKS": ["10.0.0.0/33"]}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_ALLOWED_NETWORKS": [10]}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_ALLOWED_NETWORKS": 10}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_TARGET_HOST": "yes"}, "METRICS_TARGET_HOST"),
    ],
)
def test_malformed_metrics_setting(entries, named):
    with rest_hooks_setting(**entries):
        (message,) = only("rest_hooks.E012")
    assert named in message.msg


def test_good_metrics_settings_pass():
    entries = {
        "METRICS_TOKEN": "x" * 32,
        "METRICS_ALLOWED_NETWORKS": ["10.8.0.0/16", "::1"],
        "METRICS_TARGET_HOST": True,
    }
    with rest_hooks_setting(**entries):
        assert rest_hooks_messages() == []


@pytest.mark.parametrize("token", ["s3cr3t-token-from-a-file\n", " s3cr3t-token", "\ttoken\r\n"])
def test_metrics_token_with_surrounding_white_space(token):
    # An Authorization header cannot carry that white space: such a token never matches.
    with rest_hooks_setting(METRICS_TOKEN=token):
        (error,) = only("rest_hooks.E013")
    assert "METRICS_TOKEN" in error.msg
    assert ".strip()" in error.hint


@pytest.mark.parametrize(
    ("networks", "meant"),
    [(["10.0.0.1/8"], "10.0.0.0/8"), (["::1", "fd00::1/64"], "fd00::/64")],
)
def test_metrics_allowed_network_with_host_bits(networks, meant):
    with rest_hooks_setting(METRICS_ALLOWED_NETWORKS=networks):
        (error,) = only("rest_hooks.E014")
    assert repr(networks[-1]) in error.msg
    assert f"Write {meant!r} for the network" in error.hint
    host = networks[-1].partition("/")[0]
    assert f"or '{host}/{32 if '.' in host else 128}' for the one host" in error.hint


@pytest.mark.parametrize(
    ("networks", "hint"),
    [
        (["10.20.0.1/16"], "Write '10.20.0.0/16'"),
        (["10.20.0.0/16", "2001:db8::1/32"], "Write '2001:db8::/32'"),
        (["10.20.0.0/33"], "'10.20.0.0/16'"),
        (["10.20.0.0.0/16"], "'10.20.0.0/16'"),
        (["10.20.0.0/16", 10], "'10.20.0.0/16'"),
        ("10.20.0.0/16", "a list"),
        (None, "a list"),
    ],
)
def test_malformed_allowed_networks(networks, hint):
    with rest_hooks_setting(ALLOWED_NETWORKS=networks):
        (error,) = only("rest_hooks.E015")
    assert "ALLOWED_NETWORKS" in error.msg
    assert hint in error.hint


def test_good_allowed_networks_pass():
    from ipaddress import IPv4Network

    networks = ["10.20.0.0/16", "fd00::/8", "192.0.2.7", IPv4Network("172.16.0.0/12")]
    with rest_hooks_setting(ALLOWED_NETWORKS=networks, METRICS_ALLOWED_NETWORKS=networks[:3]):
        assert rest_hooks_messages() == []


def test_multiproc_dir_missing_or_not_a_directory(tmp_path, monkeypatch):
    """W002, and W003: this test process imported prometheus_client without the variable."""
    for path in (tmp_path / "missing", tmp_path / "a-file"):
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
        (tmp_path / "a-file").write_text("")
        assert sorted(m.id for m in rest_hooks_messages()) == [
            "rest_hooks.W002",
            "rest_hooks.W003",
        ]


def test_multiproc_dir_set_after_prometheus_client_was_imported(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (message,) = only("rest_hooks.W003")
    assert "imported before" in message.msg


def test_multiproc_dir_set_before_start_passes(tmp_path):
    """The right way: the variable in the environment of the process, from its start."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("REST_HOOKS_TEST_OVERRIDES", None)
    proc = subprocess.run(
        [sys.executable, "-m", "django", "check", "--fail-level", "WARNING"],
        env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rest_hooks.W00" not in proc.stdout + proc.stderr


def test_dramatiq_prometheus_middleware_with_another_dir(tmp_path, monkeypatch, use_broker):
    from dramatiq.middleware import prometheus

    monkeypatch.setattr(prometheus, "DB_PATH", str(tmp_path / "dramatiq"))
    use_broker(StubBroker(middleware=[*full_middleware(), prometheus.Prometheus()]))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    ids = sorted(m.id for m in rest_hooks_messages())
    assert ids == ["rest_hooks.W003", "rest_hooks.W004"]
    monkeypatch.setattr(prometheus, "DB_PATH", str(tmp_path))
    assert [m.id for m in rest_hooks_messages()] == ["rest_hooks.W003"]
