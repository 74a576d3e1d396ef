"""The settings object: every setting rest_hooks reads, with its default, in one place.

The old ``HOOK_*`` names of django-rest-hooks keep their meaning; everything new lives in
one dict, ``settings.REST_HOOKS``. Values are read at call time through ``hook_settings``
and cached; the cache is dropped on Django's ``setting_changed`` signal, so
``override_settings`` just works (the same pattern as DRF's ``APISettings``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from rest_hooks.security.encryption import SecretBox, derive_key
from rest_hooks.security.network import AddressPolicy, TargetRefused

#: Defaults of ``settings.REST_HOOKS``. The README documents each one.
DEFAULTS: dict[str, Any] = {
    # Shared state (rate limits, breakers). None: in-process memory (embedded mode).
    "REDIS_URL": None,
    # Dramatiq queue the actors use.
    "QUEUE_NAME": "rest_hooks",
    # Embedded mode: start an in-process Dramatiq worker when the broker is a StubBroker.
    "EMBEDDED_WORKER": True,
    "EMBEDDED_WORKER_THREADS": 4,
    # Embedded mode: a process at exit waits at most this many seconds for what it queued,
    # and it and a command wait for retries and held deliveries due within this time.
    "EMBEDDED_DRAIN_TIMEOUT": 30,
    # Seconds to wait before each retry; its length is the number of retries.
    "RETRY_SCHEDULE": [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
    # Each retry delay is multiplied by a random factor in [1 - JITTER, 1 + JITTER].
    "RETRY_JITTER": 0.1,
    # A Retry-After answer is obeyed but clamped to [MIN, MAX] seconds.
    "RETRY_AFTER_MIN": 1,
    "RETRY_AFTER_MAX": 86400,
    # A hook whose deliveries have failed without a success for this long is disabled.
    "DISABLE_AFTER": 5 * 86400,
    # HTTP, per attempt (seconds, bytes).
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 10.0,
    "POOL_TIMEOUT": 5.0,
    "DEADLINE": 30.0,
    "MAX_RESPONSE_BYTES": 64 * 1024,
    # How much of a response body the delivery log keeps.
    "RESPONSE_EXCERPT_BYTES": 1024,
    # Targets: loopback and private addresses are refused unless allowed here.
    "ALLOW_PRIVATE_TARGETS": False,
    "ALLOWED_NETWORKS": [],
    # Refuse http:// targets, at subscription and at delivery.
    "HTTPS_ONLY": False,
    # Fernet keys that encrypt hook secrets at rest, newest first. None: one key derived
    # from SECRET_KEY (and one from each of SECRET_KEY_FALLBACKS, to decrypt).
    "SECRET_KEYS": None,
    # After Hook.rotate_secret(), deliveries are signed with the old secret too for this long.
    "SECRET_ROTATION_GRACE": 86400,
    # An event whose JSON payload is larger than this many bytes is refused at capture
    # (kept as a "refused" Event row, counted in /metrics). None: no cap.
    "MAX_PAYLOAD_BYTES": 256 * 1024,
    # Fire hooks for fixture loading (post_save with raw=True)?
    "FIRE_ON_RAW_SAVE": False,
    # Outbox relay: pending events/deliveries older than this many seconds are re-enqueued,
    # by the workers every RELAY_INTERVAL seconds and by `manage.py rest_hooks_relay`.
    "RELAY_AFTER": 60,
    "RELAY_INTERVAL": 30,
    # A batch starts no request after BATCH_BUDGET seconds (the rest go back to the queue).
    # A claimed batch is kept from the relay for DEADLINE + BATCH_BUDGET + LEASE_MARGIN
    # seconds (a lone delivery: DEADLINE + LEASE_MARGIN): what a killed worker delays it.
    "BATCH_BUDGET": 60,
    "LEASE_MARGIN": 60,
    # `manage.py rest_hooks_purge` deletes finished deliveries and events older than this.
    "RETENTION_DAYS": 30,
    # Flow control per target (the origin of a hook's URL), shared by all workers.
    # RATE_LIMIT: e.g. "50/s", "600/min"; None: no limit. RATE_BURST: None = 1 s worth.
    "RATE_LIMIT": None,
    "RATE_BURST": None,
    "MAX_IN_FLIGHT": 10,
    # {"https://api.example.com": {"RATE_LIMIT": "10/s", "RATE_BURST": 5, "MAX_IN_FLIGHT": 2}}
    "ORIGIN_LIMITS": {},
    # 429 or 503 without Retry-After pauses the target this long (seconds).
    "THROTTLE_PAUSE": 5,
    "BREAKER_FAILURES": 5,
    "BREAKER_FAILURE_RATIO": 0.5,
    "BREAKER_WINDOW": 60,
    "BREAKER_MIN_CALLS": 20,
    "BREAKER_COOLDOWN": 30,
    "BREAKER_MAX_COOLDOWN": 600,
    # Redis unreachable: "open" lets deliveries through unchecked, "closed" holds them.
    "FLOW_ON_REDIS_ERROR": "open",
    # Fan-out reads hooks and writes deliveries in chunks of this size. A chunk's batches
    # share their targets' in-flight slots out as lanes (plan_batches); the next chunk's
    # only compete for them, so a chunk holds a large event's hooks whole.
    "FANOUT_CHUNK_SIZE": 5000,
    # At most this many deliveries to one target go in one deliver message (a batch).
    "DELIVERY_BATCH_SIZE": 50,
    # At most this many requests open at once in one worker process, all targets together
    # (they are coroutines of its event loop, not threads). A worker thread with a batch
    # to send waits while its process is at the cap.
    "MAX_IN_FLIGHT_PER_PROCESS": 500,
    # /metrics: a bearer token, and/or the client networks allowed to read it. Neither:
    # loopback clients only.
    "METRICS_TOKEN": None,
    "METRICS_ALLOWED_NETWORKS": None,
    # Add the target's host as a label of the delivery metrics (mind the cardinality).
    "METRICS_TARGET_HOST": False,
    # The subscription API (rest_hooks.api): hooks a user may have at most (None: no cap),
    # and requests a user may make to it (DRF's rate syntax, "120/min"; None: no throttle).
    "API_MAX_HOOKS_PER_USER": 100,
    "API_THROTTLE_RATE": "120/min",
    # POST .../ping waits at most this many seconds for the test delivery's attempt.
    "API_PING_WAIT": 10,
    # Owners are told when their hook has failed for these percentages of DISABLE_AFTER,
    # and when it is disabled: the hook_failing / hook_disabled signals, an e-mail
    # (NOTICE_EMAIL, from NOTICE_EMAIL_FROM or DEFAULT_FROM_EMAIL) and, with a URL, an
    # operational webhook signed with NOTICE_WEBHOOK_SECRET (a whsec_ secret).
    "NOTICE_AT": [50, 90],
    "NOTICE_EMAIL": True,
    "NOTICE_EMAIL_FROM": None,
    "NOTICE_WEBHOOK_URL": None,
    "NOTICE_WEBHOOK_SECRET": None,
}


class HookSettings:
    """Attribute access to ``REST_HOOKS`` entries and the old ``HOOK_*`` settings."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown rest_hooks setting: {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        self.__dict__[name] = value  # cached until the next setting_changed
        return value

    @cached_property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "REST_HOOKS", None) or {}
        # Not a dict: the system checks say so (rest_hooks.E004) instead of crashing here.
        return dict(value) if isinstance(value, dict) else {}

    # -- the settings of django-rest-hooks 1.5 -------------------------------------------

    @cached_property
    def HOOK_EVENTS(self) -> dict[str, str | None]:
        return dict(getattr(settings, "HOOK_EVENTS", None) or {})

    @cached_property
    def HOOK_SERIALIZER(self) -> Callable[..., Any] | None:
        return _import_optional("HOOK_SERIALIZER")

    @cached_property
    def HOOK_DELIVERER(self) -> Callable[..., Any] | None:
        return _import_optional("HOOK_DELIVERER")

    @cached_property
    def HOOK_FINDER(self) -> Callable[..., Any] | None:
        return _import_optional("HOOK_FINDER")

    def reload(self) -> None:
        self.__dict__.clear()


def _import_optional(name: str) -> Callable[..., Any] | None:
    path = getattr(settings, name, None)
    return import_string(path) if path else None


def secret_box() -> SecretBox:
    """The encryption of hook secrets at rest, from the settings (cached)."""
    global _secret_box
    if _secret_box is None:
        keys = hook_settings.SECRET_KEYS
        if not keys:
            passphrases = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
            keys = [derive_key(p) for p in passphrases]
        _secret_box = SecretBox(keys)
    return _secret_box


_secret_box: SecretBox | None = None


def hook_model_label() -> str:
    """``app_label.ModelName`` of the hook model (``HOOK_CUSTOM_MODEL`` swaps it)."""
    label: str = getattr(settings, "HOOK_CUSTOM_MODEL", None) or "rest_hooks.Hook"
    # django-rest-hooks accepted "app.models.Model" too.
    return label.replace(".models.", ".")


hook_settings = HookSettings()


def address_policy() -> AddressPolicy:
    """The addresses the workers may deliver to: ``ALLOW_PRIVATE_TARGETS`` and
    ``ALLOWED_NETWORKS``."""
    return AddressPolicy.from_settings(
        allow_private=bool(hook_settings.ALLOW_PRIVATE_TARGETS),
        allowed_networks=hook_settings.ALLOWED_NETWORKS,
    )


def refusal_message(refused: TargetRefused) -> str:
    """Why the address policy refused a target, and the settings that would allow it."""
    network = f'"{refused.network}"' if refused.network else "its network"
    return (
        f"{refused.reason}; to deliver to it, add {network} to "
        'REST_HOOKS["ALLOWED_NETWORKS"], or set REST_HOOKS["ALLOW_PRIVATE_TARGETS"] = True '
        "if every subscriber is trusted"
    )


_WATCHED = {
    "REST_HOOKS",
    "HOOK_EVENTS",
    "HOOK_SERIALIZER",
    "HOOK_DELIVERER",
    "HOOK_FINDER",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
}
_reload_callbacks: list[Callable[[], None]] = []


def on_reload(callback: Callable[[], None]) -> Callable[[], None]:
    """Register a function that drops a cache derived from the settings."""
    _reload_callbacks.append(callback)
    return callback


@receiver(setting_changed)
def _reload_hook_settings(*, setting: str, **kwargs: Any) -> None:
    global _secret_box
    if setting in _WATCHED:
        hook_settings.reload()
        _secret_box = None
        for callback in _reload_callbacks:
            callback()
