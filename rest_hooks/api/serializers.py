"""What the API reads and writes of a hook.

A hook is validated by the model itself (``full_clean``: the event in ``HOOK_EVENTS``,
the target through the same address policy as the admin and the workers), so the API
accepts exactly what a hook saved any other way may be. On top, what a subscriber may
not decide alone: how many hooks they have, and a rate above the operator's for the
target.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.settings import api_settings

from rest_hooks.conf import hook_settings
from rest_hooks.delivery.flow import origin_of, parse_rate
from rest_hooks.models import Delivery, DeliveryAttempt, get_hook_model
from rest_hooks.worker import gate
from rest_hooks.worker.attempt import build_body

#: The model's field names that the API spells differently.
API_NAMES = {"is_active": "active", NON_FIELD_ERRORS: api_settings.NON_FIELD_ERRORS_KEY}


class HookSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A hook as its owner sees it: never its secret (``HookWithSecretSerializer``)."""

    # Checked by the model alone (full_clean), so that the answer names the setting that
    # would allow a refused address, as the admin's does.
    target = serializers.CharField(
        help_text="The URL deliveries are POSTed to (http or https, at most 255 characters)."
    )
    active = serializers.BooleanField(
        source="is_active",
        default=True,  # a form post without the field too (DRF reads that as false)
        help_text="Deliveries are made while true. The engine sets it to false when the "
        "target answers 410 or keeps failing; setting it to true again re-enables the hook "
        "and starts its failure clock afresh.",
    )
    public_key = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="What an Ed25519 hook's deliveries verify with (whpk_...); null for HMAC.",
    )

    class Meta:
        model = get_hook_model()
        fields = [
            "id",
            "event",
            "target",
            "active",
            "rate_limit",
            "signing",
            "public_key",
            "disabled_reason",
            "disabled_at",
            "created",
            "updated",
        ]
        read_only_fields = ["disabled_reason", "disabled_at", "created", "updated"]
        extra_kwargs = {
            "rate_limit": {
                "help_text": "At most this many deliveries to the target, e.g. '10/s' or "
                "'600/min'; no faster than the operator's limit for the target. Empty: the "
                "operator's limit."
            },
            "signing": {
                "help_text": "How deliveries are signed, chosen at creation: "
                "'hmac-sha256' (a shared secret) or 'ed25519' (a public key)."
            },
        }

    def to_internal_value(self, data: Any) -> Any:
        # Zapier's REST hook subscription names the target "target_url".
        if isinstance(data, Mapping) and "target_url" in data and "target" not in data:
            data = data.copy() if isinstance(data, QueryDict) else dict(data)  # a form's, a dict
            data["target"] = data["target_url"]
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None:
            self._check_room()
        elif "signing" in attrs and attrs["signing"] != self.instance.signing:
            raise serializers.ValidationError(
                {"signing": "The signing scheme is chosen at creation: create a new hook."}
            )
        hook: Any = copy.copy(self.instance) if self.instance is not None else self.Meta.model()
        for name, value in attrs.items():
            setattr(hook, name, value)
        try:
            hook.full_clean(exclude=["user"], validate_unique=False)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                {API_NAMES.get(field, field): errors for field, errors in exc.message_dict.items()}
            ) from exc
        self._check_rate(hook.target, hook.rate_limit)
        return attrs

    def _check_room(self) -> None:
        cap = hook_settings.API_MAX_HOOKS_PER_USER
        user = self.context["request"].user
        if cap is not None and self.Meta.model._default_manager.filter(user=user).count() >= cap:
            raise serializers.ValidationError(
                f"A user may have at most {cap} hooks: delete one before creating another."
            )

    @staticmethod
    def _check_rate(target: str, rate_limit: str) -> None:
        """A subscriber may slow deliveries to their target down, not speed them up past
        what the operator set for it (``RATE_LIMIT``, ``ORIGIN_LIMITS``)."""
        operators = gate.limits_for(origin_of(target)).rate
        wanted = parse_rate(rate_limit)  # full_clean() has refused a malformed one
        if operators is not None and wanted is not None and wanted > operators:
            raise serializers.ValidationError(
                {"rate_limit": f"At most {operators:g} deliveries a second to this target."}
            )


class HookWithSecretSerializer(HookSerializer):
    """A hook as the response that made its secret shows it, once."""

    secret = serializers.SerializerMethodField(
        help_text="The HMAC signing secret (whsec_...), shown only in this response: keep it. "
        "Null for an Ed25519 hook, whose deliveries verify with public_key."
    )

    class Meta(HookSerializer.Meta):
        fields = [*HookSerializer.Meta.fields, "secret"]

    def get_secret(self, hook: Any) -> str | None:
        # An Ed25519 hook's secret is its private key: it never leaves the server.
        return None if hook.signing_is_ed25519 else hook.secret


class DeliveryAttemptSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "started_at",
            "outcome",
            "status_code",
            "duration_ms",
            "error",
            "response_excerpt",
        ]


class DeliverySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """One event sent to one hook: its state and every attempt of it."""

    event = serializers.CharField(source="event.name", read_only=True)
    attempt_log = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "status",
            "attempts",
            "created_at",
            "next_attempt_at",
            "finished_at",
            "attempt_log",
        ]
        extra_kwargs = {
            "id": {"help_text": "The webhook-id header of every attempt of it."},
            "attempts": {"help_text": "How many attempts were made."},
            "next_attempt_at": {"help_text": "When the next attempt is due, while pending."},
        }


class DeliveryWithPayloadSerializer(DeliverySerializer):
    """A delivery with the body its attempts POSTed."""

    payload = serializers.SerializerMethodField(help_text="The JSON body that was sent.")

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "payload"]

    def get_payload(self, delivery: Delivery) -> Any:
        return json.loads(build_body(delivery.event, delivery.hook))


class DeliveryFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The query of a hook's deliveries: a status, and a range of creation times."""

    status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)
    since = serializers.DateTimeField(required=False, help_text="Created at or after this.")
    until = serializers.DateTimeField(required=False, help_text="Created before this.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and until <= since:
            raise serializers.ValidationError({"until": "It must be after since."})
        return attrs


class RecoverSerializer(DeliveryFilterSerializer):
    """Which failed deliveries of a hook to send again: those created in a range."""

    status = None  # type: ignore[assignment]  # failed ones only
    since = serializers.DateTimeField(help_text="Created at or after this.")


class RecoveredSerializer(serializers.Serializer):  # type: ignore[type-arg]
    redelivered = serializers.IntegerField(help_text="How many deliveries were queued again.")


class HookFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The query of a user's hooks. Read it partial: a form's missing boolean is false."""

    event = serializers.CharField(required=False, help_text="Only the hooks of this event.")
    active = serializers.BooleanField(
        required=False, help_text="Only the active (or disabled) ones."
    )


class SampleQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    event = serializers.CharField(help_text="An event name of HOOK_EVENTS.")

    def validate_event(self, event: str) -> str:
        if event not in hook_settings.HOOK_EVENTS:
            raise serializers.ValidationError(f"Invalid hook event {event}.")
        return event


class JwkSerializer(serializers.Serializer):  # type: ignore[type-arg]
    kty = serializers.CharField(help_text="OKP")
    crv = serializers.CharField(help_text="Ed25519")
    x = serializers.CharField(help_text="The public key, base64url.")
    kid = serializers.CharField(help_text="Its RFC 7638 thumbprint.")
    use = serializers.CharField(help_text="sig")
    alg = serializers.CharField(help_text="EdDSA")
    exp = serializers.IntegerField(
        required=False, help_text="A rotated-out key: when it stops signing (Unix seconds)."
    )


class JwksSerializer(serializers.Serializer):  # type: ignore[type-arg]
    keys = JwkSerializer(many=True)


class QueuedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    detail = serializers.CharField(help_text="Why there is nothing to show yet.")
