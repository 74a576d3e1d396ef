"""System checks: a wrong setting stops start-up with a message that names the fix."""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Warning, register
from django.db import connections
from django.utils.module_loading import import_string
from prometheus_client import values

from rest_hooks.broker import current_broker, is_embedded
from rest_hooks.conf import DEFAULTS, hook_model_label, hook_settings
from rest_hooks.delivery.flow import parse_rate
from rest_hooks.events import BUILT_IN_ACTIONS, parse_hook_events
from rest_hooks.metrics.exposition import multiprocess_dir
from rest_hooks.models import AbstractHook
from rest_hooks.security.encryption import SecretBox
from rest_hooks.security.network import IPNetwork
from rest_hooks.security.signing import decode_secret

#: Middleware the actors rely on in worker processes: (dotted path, why).
REQUIRED_MIDDLEWARE = [
    ("dramatiq.middleware.Retries", "retries a dispatch that hit a database error"),
    ("dramatiq.middleware.TimeLimit", "stops an actor stuck past its time limit"),
    (
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "closes the database connections workers would otherwise leave stale",
    ),
]

NUMBER_SETTINGS = [
    "API_PING_WAIT",
    "RETRY_JITTER",
    "RETRY_AFTER_MIN",
    "RETRY_AFTER_MAX",
    "DISABLE_AFTER",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "POOL_TIMEOUT",
    "DEADLINE",
    "MAX_RESPONSE_BYTES",
    "RESPONSE_EXCERPT_BYTES",
    "RELAY_AFTER",
    "RELAY_INTERVAL",
    "BATCH_BUDGET",
    "LEASE_MARGIN",
    "FANOUT_CHUNK_SIZE",
    "DELIVERY_BATCH_SIZE",
    "MAX_IN_FLIGHT_PER_PROCESS",
    "RETENTION_DAYS",
    "THROTTLE_PAUSE",
    "BREAKER_FAILURES",
    "BREAKER_FAILURE_RATIO",
    "BREAKER_WINDOW",
    "BREAKER_MIN_CALLS",
    "BREAKER_COOLDOWN",
    "BREAKER_MAX_COOLDOWN",
    "EMBEDDED_WORKER_THREADS",
    "EMBEDDED_DRAIN_TIMEOUT",
]


#: Settings of earlier development versions, and what replaced them.
REMOVED_SETTINGS = {
    "WRITE_TIMEOUT": "Remove it: DEADLINE bounds sending a request (the event loop's HTTP "
    "client has no write timeout of its own).",
}


@register()
def check_hook_events(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    hook_events = getattr(settings, "HOOK_EVENTS", None)
    if not isinstance(hook_events, dict):
        return [
            Error(
                "settings.HOOK_EVENTS is missing or not a dict.",
                hint="Define HOOK_EVENTS = {'book.added': 'bookstore.Book.created', ...}.",
                id="rest_hooks.E001",
            )
        ]
    routes, problems = parse_hook_events(hook_events)
    errors = [
        Error(
            problem,
            hint="Keep one of the two entries, or route the other to another action.",
            id="rest_hooks.E003",
        )
        if "both route" in problem
        else Error(problem, hint="Fix or remove this HOOK_EVENTS entry.", id="rest_hooks.E001")
        for problem in problems
    ]
    for (model_label, _action), route in routes.items():
        try:
            model = apps.get_model(model_label)
        except (LookupError, ValueError):
            errors.append(
                Error(
                    f"HOOK_EVENTS[{route.event_name!r}] names the model {model_label!r}, "
                    "which is not installed.",
                    hint="Use 'app_label.ModelName' of an installed model (case matters).",
                    id="rest_hooks.E002",
                )
            )
            continue
        if model._meta.proxy:
            errors.append(
                Error(
                    f"HOOK_EVENTS[{route.event_name!r}] names the proxy model {model_label!r}; "
                    "events are routed by the concrete model, so it would never fire.",
                    hint=f"Write {model._meta.concrete_model._meta.label!r}.",
                    id="rest_hooks.E002",
                )
            )
        elif model._meta.label != model_label:
            # get_model() ignores the case of the model name; the routing does not.
            errors.append(
                Error(
                    f"HOOK_EVENTS[{route.event_name!r}] names the model {model_label!r}, "
                    "which matches no model exactly, so the event would never fire.",
                    hint=f"Write {model._meta.label!r} (case matters).",
                    id="rest_hooks.E002",
                )
            )
    return errors


#: Custom actions people write for a built-in one, and the built-in ones they mean.
ACTION_SYNONYMS = {
    "add": ("created",),
    "added": ("created",),
    "change": ("updated",),
    "changed": ("updated",),
    "save": ("created", "updated"),
    "saved": ("created", "updated"),
    "remove": ("deleted",),
    "removed": ("deleted",),
    "destroy": ("deleted",),
    "destroyed": ("deleted",),
}


@register()
def check_hook_event_actions(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """A custom action that looks like a built-in one: ``create`` for ``created``.

    Only ``hook_event.send(...)`` sends a custom action; a near miss of a built-in action
    would otherwise pass every check and never write an event.
    """
    hook_events = getattr(settings, "HOOK_EVENTS", None)
    if not isinstance(hook_events, dict):
        return []  # E001
    warnings = []
    for (model_label, action), route in parse_hook_events(hook_events)[0].items():
        meant = _built_in_actions_meant(action)
        if not meant or action in BUILT_IN_ACTIONS:
            continue
        plus = "+" if route.all_owners else ""
        suggestions = " or ".join(repr(f"{model_label}.{m}{plus}") for m in meant)
        warnings.append(
            Warning(
                f"HOOK_EVENTS[{route.event_name!r}] routes the custom action {action!r} of "
                f"{model_label}: nothing sends it but your own hook_event.send(sender=..., "
                f"action={action!r}, instance=...), so it never fires on a save or delete.",
                hint=f"Did you mean {suggestions}? If your code sends {action!r} itself, "
                "add 'rest_hooks.W006' to SILENCED_SYSTEM_CHECKS.",
                id="rest_hooks.W006",
            )
        )
    return warnings


def _built_in_actions_meant(action: str) -> tuple[str, ...]:
    """The built-in actions ``action`` looks like a spelling of, if any.

    Close spellings of ``created``/``create``... (case aside), or a known synonym. The
    cut-off keeps a one-letter slip (``crated``, ``craeted``) and lets real custom actions
    pass (``read``, ``selected``, ``moved``).
    """
    word = action.strip().lower()
    if word in ACTION_SYNONYMS:
        return ACTION_SYNONYMS[word]
    stems = {built_in.removesuffix("d"): built_in for built_in in BUILT_IN_ACTIONS}
    close = difflib.get_close_matches(word, [*BUILT_IN_ACTIONS, *stems], n=1, cutoff=0.85)
    return (stems.get(close[0], close[0]),) if close else ()


@register()
def check_rest_hooks_setting(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    user_settings = getattr(settings, "REST_HOOKS", None) or {}
    if not isinstance(user_settings, dict):
        return [
            Error(
                "settings.REST_HOOKS must be a dict.",
                hint="Define REST_HOOKS = {'RETRY_SCHEDULE': [5, 300], ...}.",
                id="rest_hooks.E004",
            )
        ]
    errors = []
    for key in user_settings:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else "Remove it."
            errors.append(
                Error(
                    f"REST_HOOKS has an unknown key {key!r}.",
                    hint=REMOVED_SETTINGS.get(key, hint),
                    id="rest_hooks.E004",
                )
            )
    for key in NUMBER_SETTINGS:
        value = getattr(hook_settings, key)
        if not _is_seconds(value):
            errors.append(
                Error(
                    f"REST_HOOKS[{key!r}] must be a non-negative number, not {value!r}.",
                    hint=f"The default is {DEFAULTS[key]!r}.",
                    id="rest_hooks.E005",
                )
            )
    cap = hook_settings.MAX_PAYLOAD_BYTES
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
        errors.append(
            Error(
                f"REST_HOOKS['MAX_PAYLOAD_BYTES'] must be a positive whole number of bytes "
                f"or None, not {cap!r}.",
                hint=f"The default is {DEFAULTS['MAX_PAYLOAD_BYTES']} (256 KiB); None: no cap.",
                id="rest_hooks.E005",
            )
        )
    keys = hook_settings.SECRET_KEYS
    if keys is not None:
        try:
            SecretBox(list(keys))
        except Exception:
            errors.append(
                Error(
                    "REST_HOOKS['SECRET_KEYS'] must be a non-empty list of Fernet keys.",
                    hint="Make one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'. Newest first.",
                    id="rest_hooks.E010",
                )
            )
    schedule = hook_settings.RETRY_SCHEDULE
    if not isinstance(schedule, list | tuple) or not all(_is_seconds(s) for s in schedule):
        errors.append(
            Error(
                f"REST_HOOKS['RETRY_SCHEDULE'] must be a list of seconds, not {schedule!r}.",
                hint="For example [5, 300, 1800]; [] means no retries.",
                id="rest_hooks.E005",
            )
        )
    return errors


def _is_seconds(value: Any) -> bool:
    """A non-negative, finite number (not a bool, not NaN)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


ORIGIN_LIMIT_KEYS = {"RATE_LIMIT", "RATE_BURST", "MAX_IN_FLIGHT"}


@register()
def check_flow_control(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """RATE_LIMIT, RATE_BURST, MAX_IN_FLIGHT (also per origin) and FLOW_ON_REDIS_ERROR."""
    s = hook_settings
    problems = _limit_problems("REST_HOOKS", {k: getattr(s, k) for k in ORIGIN_LIMIT_KEYS})
    overrides = s.ORIGIN_LIMITS
    if not isinstance(overrides, dict):
        problems.append("REST_HOOKS['ORIGIN_LIMITS'] must be a dict of origin -> limits.")
        overrides = {}
    for origin, limits in overrides.items():
        where = f"REST_HOOKS['ORIGIN_LIMITS'][{origin!r}]"
        if not isinstance(origin, str) or not origin.startswith(("http://", "https://")):
            problems.append(f"{where}: the key must be an origin like 'https://api.example.com'.")
        if not isinstance(limits, dict) or not set(limits) <= ORIGIN_LIMIT_KEYS:
            problems.append(f"{where} must be a dict with keys among {sorted(ORIGIN_LIMIT_KEYS)}.")
            continue
        problems += _limit_problems(where, limits)
    if s.FLOW_ON_REDIS_ERROR not in ("open", "closed"):
        problems.append(
            f"REST_HOOKS['FLOW_ON_REDIS_ERROR'] must be 'open' or 'closed', "
            f"not {s.FLOW_ON_REDIS_ERROR!r}."
        )
    return [
        Error(
            p,
            hint="For example RATE_LIMIT '50/s', RATE_BURST 10, MAX_IN_FLIGHT 5 (None: no cap).",
            id="rest_hooks.E011",
        )
        for p in problems
    ]


def _limit_problems(where: str, limits: dict[str, Any]) -> list[str]:
    problems = []
    try:
        parse_rate(limits.get("RATE_LIMIT"))
    except ValueError as exc:
        problems.append(f"{where} RATE_LIMIT: {exc}")
    for key in ("RATE_BURST", "MAX_IN_FLIGHT"):
        value = limits.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            problems.append(
                f"{where} {key} must be a positive whole number or None, not {value!r}."
            )
    return problems


@register()
def check_extension_points(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for name in ("HOOK_SERIALIZER", "HOOK_DELIVERER", "HOOK_FINDER"):
        path = getattr(settings, name, None)
        if not path:
            continue
        try:
            import_string(path)
        except ImportError as exc:
            errors.append(
                Error(
                    f"settings.{name} = {path!r} cannot be imported: {exc}",
                    hint="Give the dotted path of a function, e.g. 'myapp.hooks.deliver'.",
                    id="rest_hooks.E008",
                )
            )
    label = hook_model_label()
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        errors.append(
            Error(
                f"HOOK_CUSTOM_MODEL names {label!r}, which is not an installed model.",
                hint="Use 'app_label.ModelName'.",
                id="rest_hooks.E009",
            )
        )
    else:
        if not issubclass(model, AbstractHook):
            errors.append(
                Error(
                    f"HOOK_CUSTOM_MODEL {label!r} does not subclass AbstractHook.",
                    hint="Subclass rest_hooks.models.AbstractHook.",
                    id="rest_hooks.E009",
                )
            )
    return errors


@register()
def check_broker(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    broker = current_broker()
    if broker is None or is_embedded(broker):
        return []
    errors: list[Error | Warning] = []
    present = {f"{type(m).__module__}.{type(m).__name__}" for m in broker.middleware}
    present |= {
        f"{type(m).__module__.rsplit('.', 1)[0]}.{type(m).__name__}" for m in broker.middleware
    }
    for path, why in REQUIRED_MIDDLEWARE:
        if path not in present:
            errors.append(
                Error(
                    f"The Dramatiq broker lacks the middleware {path} ({why}).",
                    hint=f"Add {path!r} to DRAMATIQ_BROKER['MIDDLEWARE'].",
                    id="rest_hooks.E006",
                )
            )
    if "Redis" in type(broker).__name__ and not hook_settings.REDIS_URL:
        errors.append(
            Error(
                "The Dramatiq broker is Redis but REST_HOOKS['REDIS_URL'] is not set, so "
                "rate limits and circuit breakers would live in each worker's memory.",
                hint="Set REST_HOOKS['REDIS_URL'] (it may be the broker's Redis).",
                id="rest_hooks.E007",
            )
        )
    return errors + _check_worker_connections()


def _check_worker_connections() -> list[Error | Warning]:
    """django-dramatiq closes a worker's database connections after every message unless
    they may live longer (CONN_MAX_AGE): with a server database, every batch of deliveries
    would pay for a new connection (a PostgreSQL backend is a new process)."""
    warnings: list[Error | Warning] = []
    for alias in connections:
        db = connections.settings[alias]
        if not db["ENGINE"].endswith("sqlite3") and db.get("CONN_MAX_AGE", 0) == 0:
            warnings.append(
                Warning(
                    f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is 0: Dramatiq workers open a new "
                    "database connection for every message.",
                    hint=f"Set DATABASES[{alias!r}]['CONN_MAX_AGE'] = 60 (or None) and "
                    "'CONN_HEALTH_CHECKS': True.",
                    id="rest_hooks.W005",
                )
            )
    return warnings


#: Seconds a SQLite connection keeps trying for the write lock if ``timeout`` is not set
#: (Python's sqlite3's default), and the fewest the workers live with: with 1 s, one
#: event to 3,000 hooks through 2 processes of 8 threads already met a "database is
#: locked" on the benchmark's (shared, 2-core) machine.
SQLITE_DEFAULT_TIMEOUT = 5.0
SQLITE_MIN_TIMEOUT = 5.0


@register()
def check_sqlite(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    """Workers (embedded or not) write to a SQLite database alongside the application.

    rest_hooks' own transactions take the write lock up front (``write_transaction``),
    waiting for it up to the connection's ``timeout``: without one, a worker that finds
    the database busy fails at once. The application's transactions that read before
    they write take it only at their first write, and SQLite refuses that at once, with
    no wait, while a worker writes: ``transaction_mode`` IMMEDIATE makes them wait too.
    """
    broker = current_broker()
    if (broker is None or is_embedded(broker)) and not hook_settings.EMBEDDED_WORKER:
        return []  # no worker writes alongside this process
    messages: list[Error | Warning] = []
    for alias in connections:
        db = connections.settings[alias]
        if not db["ENGINE"].endswith("sqlite3"):
            continue
        options = db.get("OPTIONS") or {}
        timeout = options.get("timeout", SQLITE_DEFAULT_TIMEOUT)
        if _is_seconds(timeout) and timeout < SQLITE_MIN_TIMEOUT:
            messages.append(
                Error(
                    f"DATABASES[{alias!r}]['OPTIONS']['timeout'] is {timeout!r}: a hook "
                    "worker that finds the SQLite database busy (another writes, many times "
                    "a second) fails with 'database is locked' instead of waiting its turn.",
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS']['timeout'] = 20 (seconds); "
                    "at least 5, Python's default.",
                    id="rest_hooks.E016",
                )
            )
        if str(options.get("transaction_mode") or "").upper() not in ("IMMEDIATE", "EXCLUSIVE"):
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] is SQLite without transaction_mode IMMEDIATE: "
                    "while the hook workers write, your own transactions that read before "
                    "they write (the admin's, ATOMIC_REQUESTS) fail with 'database is "
                    "locked' at once, without waiting for the lock.",
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS']['transaction_mode'] = "
                    "'IMMEDIATE' (rest_hooks' own transactions take the lock up front "
                    "either way).",
                    id="rest_hooks.W001",
                )
            )
    return messages


#: DRF's rate syntax: a count, a slash, a period that starts with s, m, h or d.
API_RATE = re.compile(r"[0-9]+/[smhd][a-z]*")


@register()
def check_api_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """API_MAX_HOOKS_PER_USER and API_THROTTLE_RATE (rest_hooks.api)."""
    s = hook_settings
    problems = []
    cap = s.API_MAX_HOOKS_PER_USER
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        problems.append(
            f"REST_HOOKS['API_MAX_HOOKS_PER_USER'] must be a whole number of at least 1 or "
            f"None, not {cap!r}."
        )
    rate = s.API_THROTTLE_RATE
    if rate is not None and not (isinstance(rate, str) and API_RATE.fullmatch(rate)):
        problems.append(
            f"REST_HOOKS['API_THROTTLE_RATE'] must be a rate in Django REST framework's "
            f"syntax or None, not {rate!r}."
        )
    return [
        Error(
            p,
            hint="For example API_MAX_HOOKS_PER_USER 100 (None: no cap), API_THROTTLE_RATE "
            "'120/min' or '10/s' (None: no throttle).",
            id="rest_hooks.E017",
        )
        for p in problems
    ]


@register()
def check_notice_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """NOTICE_AT, NOTICE_EMAIL and the operational webhook's URL and secret."""
    s = hook_settings
    problems = []
    stages = s.NOTICE_AT
    if not isinstance(stages, list | tuple) or not all(
        _is_seconds(p) and 0 < p < 100 for p in stages
    ):
        problems.append(
            f"REST_HOOKS['NOTICE_AT'] must be a list of percentages of DISABLE_AFTER "
            f"between 0 and 100, not {stages!r}."
        )
    if not isinstance(s.NOTICE_EMAIL, bool):
        problems.append("REST_HOOKS['NOTICE_EMAIL'] must be True or False.")
    url = s.NOTICE_WEBHOOK_URL
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        problems.append("REST_HOOKS['NOTICE_WEBHOOK_URL'] must be an http(s) URL or None.")
    if url is not None:
        try:
            decode_secret(s.NOTICE_WEBHOOK_SECRET)
        except ValueError:
            problems.append(
                "REST_HOOKS['NOTICE_WEBHOOK_SECRET'] must be a whsec_ secret when "
                "NOTICE_WEBHOOK_URL is set: the operational webhook is signed like a delivery."
            )
    return [
        Error(
            p,
            hint="For example NOTICE_AT [50, 90], NOTICE_WEBHOOK_URL "
            "'https://ops.example.com/hooks', NOTICE_WEBHOOK_SECRET os.environ[...] (make one "
            "with: python -c 'from rest_hooks.security.signing import generate_secret; "
            "print(generate_secret())').",
            id="rest_hooks.E018",
        )
        for p in problems
    ]


@register()
def check_metrics_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """METRICS_TOKEN, METRICS_ALLOWED_NETWORKS and METRICS_TARGET_HOST."""
    s = hook_settings
    problems = []
    if s.METRICS_TOKEN is not None and (
        not isinstance(s.METRICS_TOKEN, str) or not s.METRICS_TOKEN
    ):
        problems.append("REST_HOOKS['METRICS_TOKEN'] must be a non-empty string or None.")
    networks = s.METRICS_ALLOWED_NETWORKS
    if networks is not None and _read_networks(networks) is None:
        problems.append(
            "REST_HOOKS['METRICS_ALLOWED_NETWORKS'] must be None or a list of networks "
            f"like '10.0.0.0/8', not {networks!r}."
        )
    if not isinstance(s.METRICS_TARGET_HOST, bool):
        problems.append("REST_HOOKS['METRICS_TARGET_HOST'] must be True or False.")
    return [
        Error(
            p,
            hint="For example METRICS_TOKEN os.environ['METRICS_TOKEN'], "
            "METRICS_ALLOWED_NETWORKS ['10.8.0.0/16'].",
            id="rest_hooks.E012",
        )
        for p in problems
    ]


@register()
def check_settings_that_never_work(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Settings that pass the checks of their form yet can never work as written: a
    METRICS_TOKEN no header can match (E013), networks with host bits set (E014, E015)."""
    errors = []
    token = hook_settings.METRICS_TOKEN
    if isinstance(token, str) and token != token.strip():
        errors.append(
            Error(
                "REST_HOOKS['METRICS_TOKEN'] begins or ends with white space (a token read "
                "from a file keeps its newline): no Authorization header can ever match it.",
                hint="Strip it, e.g. Path('/run/secrets/metrics-token').read_text().strip() "
                "or os.environ['METRICS_TOKEN'].strip().",
                id="rest_hooks.E013",
            )
        )
    errors += _host_bits_errors(
        "METRICS_ALLOWED_NETWORKS",
        _read_networks(hook_settings.METRICS_ALLOWED_NETWORKS) or {},
        "/metrics would answer every request with an error (500)",
        "rest_hooks.E014",
    )
    delivery_networks = hook_settings.ALLOWED_NETWORKS
    read = _read_networks(delivery_networks)
    if read is None:
        errors.append(
            Error(
                "REST_HOOKS['ALLOWED_NETWORKS'] must be a list of networks, not "
                f"{delivery_networks!r}: every delivery would fail and be retried.",
                hint="Write a list such as ['10.20.0.0/16', 'fd00::/8'] (an address alone "
                "is one host); [] opens no exception.",
                id="rest_hooks.E015",
            )
        )
    errors += _host_bits_errors(
        "ALLOWED_NETWORKS",
        read or {},
        "every delivery would fail and be retried",
        "rest_hooks.E015",
    )
    return errors


def _read_networks(networks: Any) -> dict[Any, IPNetwork] | None:
    """Each entry of a list of networks (``'10.0.0.0/8'``, ``'::1'`` or ipaddress network
    objects) with the network it names, host bits or not; None if it is no such list."""
    if isinstance(networks, str) or not isinstance(networks, list | tuple):
        return None
    read = {}
    for entry in networks:
        if not isinstance(entry, str | IPv4Network | IPv6Network):
            return None
        try:
            read[entry] = ip_network(entry, strict=False)
        except ValueError:
            return None
    return read


def _host_bits_errors(
    key: str, read: dict[Any, IPNetwork], consequence: str, check_id: str
) -> list[Error]:
    """An error naming the network meant for each entry whose host bits are set: the
    settings are read strictly, so that a typo cannot open another range than written."""
    errors = []
    for entry, network in read.items():
        try:
            ip_network(entry)
        except ValueError:
            errors.append(
                Error(
                    f"REST_HOOKS[{key!r}] has {str(entry)!r}, a network with host bits set "
                    f"(is it the network or one host?): {consequence}.",
                    hint=f"Write {str(network)!r} for the network, or "
                    f"'{str(entry).partition('/')[0]}/{network.max_prefixlen}' for the one host.",
                    id=check_id,
                )
            )
    return errors


@register()
def check_metrics_multiprocess(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """The multiprocess set-up of prometheus-client, whose mistakes lose counts silently."""
    path = multiprocess_dir()
    if path is None:
        return []
    warnings = []
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        warnings.append(
            Warning(
                f"PROMETHEUS_MULTIPROC_DIR={path!r} is not a writable directory; metrics "
                "cannot be written or served.",
                hint="Create it (empty) before starting web and worker processes, e.g. "
                "in the service's start-up script, and let their user write to it.",
                id="rest_hooks.W002",
            )
        )
    if not getattr(values.ValueClass, "_multiprocess", False):
        warnings.append(
            Warning(
                "PROMETHEUS_MULTIPROC_DIR is set, but prometheus_client was imported before "
                "it was: this process's metrics stay in its memory and /metrics misses them.",
                hint="Set PROMETHEUS_MULTIPROC_DIR in the environment of the process (the "
                "service definition), not in settings.py or code.",
                id="rest_hooks.W003",
            )
        )
    dramatiq_prometheus = sys.modules.get("dramatiq.middleware.prometheus")
    broker = current_broker()
    uses_it = broker is not None and any(
        type(m).__module__ == "dramatiq.middleware.prometheus" for m in broker.middleware
    )
    if dramatiq_prometheus is not None and uses_it:
        dramatiq_path = getattr(dramatiq_prometheus, "DB_PATH", None)
        if dramatiq_path and os.path.realpath(dramatiq_path) != os.path.realpath(path):
            warnings.append(
                Warning(
                    f"Dramatiq's Prometheus middleware points the workers' "
                    f"PROMETHEUS_MULTIPROC_DIR at {dramatiq_path!r}, not {path!r}: the "
                    "rest_hooks metrics of the workers would not reach /metrics.",
                    hint="Set the environment variable dramatiq_prom_db to the same "
                    "directory as PROMETHEUS_MULTIPROC_DIR.",
                    id="rest_hooks.W004",
                )
            )
    return warnings
