"""Hook (the subscription), Event (the transactional outbox), Delivery and its
DeliveryAttempts (the log).

``Hook`` keeps the table and columns of django-rest-hooks 1.5 (``rest_hooks_hook``), so an
existing database upgrades in place; the columns added here all have defaults.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import serializers
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from rest_hooks.conf import address_policy, hook_model_label, hook_settings, refusal_message
from rest_hooks.delivery.flow import parse_rate
from rest_hooks.fields import EncryptedSecretField
from rest_hooks.security.encryption import DecryptionError, is_token
from rest_hooks.security.network import TargetRefused, check_url
from rest_hooks.security.signing import generate_secret, generate_signing_key, public_key_for
from rest_hooks.signals import hook_delivery_requested

#: The column of django-rest-hooks 1.5.
TARGET_MAX_LENGTH = 255
RATE_LIMIT_MAX_LENGTH = 32
#: Rotated-out secrets kept signing at once (each adds a signature to every delivery).
MAX_PREVIOUS_SECRETS = 3
#: What re-enabling a disabled hook clears.
REENABLE_CLEARS = ("disabled_at", "disabled_reason", "failing_since")


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7).

    Delivery ids are primary keys written in bulk: time order keeps the index append-only
    instead of scattering random UUIDs over it.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


class AbstractHook(models.Model):
    """A subscription of ``target`` to ``event`` on behalf of ``user``.

    Subclass it for a custom hook model and name that model in ``HOOK_CUSTOM_MODEL``.
    """

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="%(class)ss", on_delete=models.CASCADE
    )
    event = models.CharField("Event", max_length=64, db_index=True)
    target = models.URLField("Target URL", max_length=TARGET_MAX_LENGTH)

    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Overrides REST_HOOKS["RATE_LIMIT"] and ORIGIN_LIMITS for this hook's target: "10/s".
    rate_limit = models.CharField(max_length=RATE_LIMIT_MAX_LENGTH, blank=True, default="")
    # Start of the current run of failed deliveries; cleared by any success.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Signing(models.TextChoices):
        HMAC_SHA256 = "hmac-sha256", "HMAC-SHA256 (v1, shared secret)"
        ED25519 = "ed25519", "Ed25519 (v1a, public key)"

    signing = models.CharField(max_length=16, choices=Signing.choices, default=Signing.HMAC_SHA256)
    # whsec_… (HMAC) or whsk_… (Ed25519 private key), encrypted at rest.
    secret = EncryptedSecretField(default=generate_secret, editable=False)
    # Secrets replaced by rotate_secret(), still used to sign until they expire: JSON
    # [{"secret": ..., "expires": unix seconds}], encrypted at rest.
    previous_secrets = EncryptedSecretField(blank=True, default="", editable=False)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.event} => {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding and self.signing_is_ed25519 and not self.secret.startswith("whsk_"):
            self.secret = generate_signing_key()
        update_fields = kwargs.get("update_fields")
        if (
            self.is_active
            and self.disabled_at is not None
            and (update_fields is None or "is_active" in update_fields)
        ):
            # Re-enabled (the API, the admin, a shell): the failure clock starts afresh,
            # so the hook is not disabled again by the failures that disabled it.
            self.disabled_at, self.disabled_reason, self.failing_since = None, "", None
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, *REENABLE_CLEARS}
        super().save(*args, **kwargs)

    @property
    def signing_is_ed25519(self) -> bool:
        return self.signing == self.Signing.ED25519

    @property
    def public_key(self) -> str | None:
        """What an Ed25519 hook's subscriber verifies with (``whpk_…``); None for HMAC."""
        return public_key_for(self.secret) if self.signing_is_ed25519 else None

    def signing_secrets(self, now: float | None = None) -> list[str]:
        """The current secret, then the rotated-out ones whose grace period still runs.

        Raises ``DecryptionError`` when no configured key decrypts them: this hook's
        deliveries fail (and retry) until the key is back or the secret is rotated.
        """
        if is_token(self.secret) or is_token(self.previous_secrets or ""):
            raise DecryptionError(
                f"Hook {self.pk}: its signing secret cannot be decrypted with any key in "
                "REST_HOOKS['SECRET_KEYS'] (or derived from SECRET_KEY / "
                "SECRET_KEY_FALLBACKS). Put the removed key back, or rotate the hook's "
                f"secret (manage.py rest_hooks_rotate_secret {self.pk}) and give the "
                "subscriber the new one."
            )
        return [self.secret] + [p["secret"] for p in self._still_signing(now)]

    def public_keys(self, now: float | None = None) -> list[tuple[str, float | None]]:
        """An Ed25519 hook's ``whpk_`` public keys that verify its deliveries now, each
        with when it stops (None: the current key): the current one, then those of the
        rotated-out keys still signing. None for an HMAC hook: its secret is not public.
        """
        if not self.signing_is_ed25519:
            return []
        current: list[tuple[str, float | None]] = [(public_key_for(self.secret), None)]
        return current + [
            (public_key_for(p["secret"]), p["expires"]) for p in self._still_signing(now)
        ]

    def rotate_secret(self, grace: timedelta | None = None) -> str:
        """Replace the secret; the old one keeps signing for ``grace`` (default 24 h).

        Returns what the subscriber needs now: the new ``whsec_`` secret, or for an
        Ed25519 hook the new ``whpk_`` public key. During the grace period every delivery
        carries a signature for each valid secret, so subscribers can switch at leisure.
        """
        if grace is None:
            grace = timedelta(seconds=float(hook_settings.SECRET_ROTATION_GRACE))
        now = time.time()
        # Secrets no key decrypts are dropped: rotating is the way out for such a hook.
        previous = [] if is_token(self.previous_secrets or "") else self._previous()
        kept = [p for p in previous if p["expires"] > now]
        if grace.total_seconds() > 0 and not is_token(self.secret):
            kept.insert(0, {"secret": self.secret, "expires": now + grace.total_seconds()})
        # A few at most: every delivery carries one signature per valid secret.
        self.previous_secrets = json.dumps(kept[:MAX_PREVIOUS_SECRETS]) if kept else ""
        self.secret = generate_signing_key() if self.signing_is_ed25519 else generate_secret()
        self.save(update_fields=["secret", "previous_secrets", "updated"])
        return self.public_key or self.secret

    def _previous(self) -> list[dict[str, Any]]:
        return list(json.loads(self.previous_secrets)) if self.previous_secrets else []

    def _still_signing(self, now: float | None) -> list[dict[str, Any]]:
        """The rotated-out secrets whose grace period runs at ``now`` (default: now)."""
        now = time.time() if now is None else now
        return [p for p in self._previous() if p["expires"] > now]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.event not in hook_settings.HOOK_EVENTS:
            errors["event"] = f"Invalid hook event {self.event}."
        try:
            check_url(
                self.target or "",
                https_only=bool(hook_settings.HTTPS_ONLY),
                max_length=TARGET_MAX_LENGTH,
                policy=address_policy(),
            )
        except TargetRefused as exc:
            errors["target"] = refusal_message(exc)
        except ValueError as exc:
            errors["target"] = str(exc)
        # A value over its max_length has its error from clean_fields() already; parsing
        # it too would add a second error, and the parsing time of an arbitrary length.
        if len(self.rate_limit or "") <= RATE_LIMIT_MAX_LENGTH:
            try:
                parse_rate(self.rate_limit)
            except ValueError as exc:
                errors["rate_limit"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def dict(self) -> dict[str, Any]:
        """The ``"hook"`` member of every payload this hook receives."""
        return {"id": self.pk, "event": self.event, "target": self.target}

    def serialize_hook(self, instance: models.Model) -> Any:
        """The payload this hook would receive for ``instance`` (django-rest-hooks API)."""
        return model_payload(instance, self)

    def deliver_hook(self, instance: Any, payload_override: Any = None) -> None:
        """Queue a delivery of ``instance`` (or ``payload_override``) to this hook only.

        django-rest-hooks' ``HOOK_FINDER`` functions call this for each hook they found.
        It posts nothing in the caller's request: it writes an outbox event aimed at this
        hook, and a worker delivers it. The capture that writes it (``rest_hooks.events``)
        receives ``hook_delivery_requested``: it uses the models, so they do not call it.
        """
        hook_delivery_requested.send(
            sender=type(self), hook=self, instance=instance, payload_override=payload_override
        )


class Hook(AbstractHook):
    class Meta(AbstractHook.Meta):
        swappable = "HOOK_CUSTOM_MODEL"


def get_hook_model() -> type[models.Model]:
    """The hook model in use: ``rest_hooks.Hook`` or the one named in HOOK_CUSTOM_MODEL."""
    return apps.get_model(hook_model_label(), require_ready=False)


def default_data(instance: models.Model) -> dict[str, Any]:
    """Django's "python" serialisation: ``{"model", "pk", "fields"}``.

    A hook routed as an event of its own never shows its secret.
    """
    fields = None
    if isinstance(instance, AbstractHook):
        fields = [f.name for f in instance._meta.local_fields if f.name != "secret"]
    data: dict[str, Any] = serializers.serialize("python", [instance], fields=fields)[0]
    data["fields"] = dict(data["fields"])
    return dict(data)


def model_payload(instance: models.Model, hook: Any) -> Any:
    """The payload of a model event, as django-rest-hooks built it, for ``hook``."""
    serialize_hook = getattr(instance, "serialize_hook", None)
    # A hook's own serialize_hook(instance) is the old API for the reverse direction.
    if callable(serialize_hook) and not isinstance(instance, AbstractHook):
        return serialize_hook(hook=hook)
    if hook_settings.HOOK_SERIALIZER is not None:
        return hook_settings.HOOK_SERIALIZER(instance, hook=hook)
    return {"hook": hook.dict(), "data": default_data(instance)}


class Event(models.Model):
    """One event, captured in the transaction of the change that caused it.

    The payload is serialised once, at the moment of the event, and kept as JSON text so
    that its bytes (and the order of its keys) are what every subscriber receives.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DISPATCHED = "dispatched"
        # Its payload could not be captured (see ``error``): it is never delivered.
        REFUSED = "refused"

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=64)
    action = models.CharField(max_length=64, blank=True, default="")
    payload = models.TextField()
    # Whether the payload's "hook" member is ours, to be replaced by each receiving hook's.
    has_hook_member = models.BooleanField(default=False)
    # The owner whose hooks receive the event (a user pk as text); NULL: every owner's.
    owner_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # Set when the event is aimed at one hook only (Hook.deliver_hook, HOOK_FINDER).
    hook = models.ForeignKey(
        hook_model_label(), null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    instance_model = models.CharField(max_length=128, blank=True, default="")
    instance_pk = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Fan-out progress: the pk of the last hook a delivery was created for.
    fanout_cursor = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Why a refused event was refused.
    error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["status", "enqueued_at"], name="rest_hooks_event_relay"),
            # The outbox gauges of /metrics: count and oldest of the few pending events.
            models.Index(
                fields=["created_at"],
                condition=models.Q(status="pending"),
                name="rest_hooks_event_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class Delivery(models.Model):
    """One event to one hook: its state, and the log of its last attempt."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCESS = "success"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    hook = models.ForeignKey(
        hook_model_label(), on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due; while an attempt runs, when its lease expires.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_duration_ms = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    response_excerpt = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "hook"], name="rest_hooks_delivery_once")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="rest_hooks_delivery_due"),
            models.Index(fields=["created_at"], name="rest_hooks_delivery_created"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk}"


class DeliveryAttempt(models.Model):
    """One attempt of a delivery, as it went: every one is kept, not only the last
    (which its delivery's ``last_*`` fields repeat), until ``rest_hooks_purge`` removes
    the delivery."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"  # a 2xx
        RETRY = "retry"  # failed; another attempt is due
        FAILED = "failed"  # failed for good: no retry left, the hook disabled, a 410
        BLOCKED = "blocked"  # refused before any request (the address policy, a bad URL)

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No foreign-key constraint: the database would check every row a batch writes (one
    # statement a delivery), and refuse the batch's attempts if one delivery had been
    # deleted (its hook with it) while its request was in flight. Django's CASCADE still
    # deletes the attempts with their delivery; rest_hooks_purge removes any left behind.
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempt_log", db_constraint=False
    )
    # The X-Hook-Attempt header it was sent with: 1 for the first attempt, and again for
    # the first after a redelivery, which starts the retry schedule over.
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField()
    error = models.TextField(blank=True, default="")
    response_excerpt = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["started_at", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"


class HookNotice(models.Model):
    """A notice to a hook's owner: failing for a part of ``DISABLE_AFTER``, or disabled.

    One row per hook, *run* and stage, unique: whichever worker writes it first sends it,
    and no other does. A run of failures is keyed by its start (``failing_since``), so a
    hook that recovers and fails anew is warned again; a disabling by the time it was
    disabled.
    """

    class Stage(models.TextChoices):
        FAILING = "failing"
        DISABLED = "disabled"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    hook = models.ForeignKey(hook_model_label(), on_delete=models.CASCADE, related_name="notices")
    stage = models.CharField(max_length=16, choices=Stage.choices)
    # The part of DISABLE_AFTER the hook had failed for, as a percentage (100 when disabled).
    percent = models.PositiveSmallIntegerField()
    run = models.CharField(max_length=40)  # the ISO time the run of failures started
    reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the notify actor as each channel has gone out (a retry skips those done).
    emailed_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hook", "run", "stage", "percent"], name="rest_hooks_notice_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.stage} notice ({self.percent}%) of hook {self.hook_id}"
