"""The endpoints: a user's hooks, and what can be done to one of them.

Every query starts from the requesting user's hooks, so another user's hook is not found
(404) rather than forbidden: the API does not tell which ids exist.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.db import connections, models, router
from django.db.models import Q, QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.throttling import UserRateThrottle

from rest_hooks.api.serializers import (
    DeliveryFilterSerializer,
    DeliverySerializer,
    DeliveryWithPayloadSerializer,
    HookFilterSerializer,
    HookSerializer,
    HookWithSecretSerializer,
    JwksSerializer,
    QueuedSerializer,
    RecoveredSerializer,
    RecoverSerializer,
    SampleQuerySerializer,
)
from rest_hooks.conf import hook_settings
from rest_hooks.events import capture_for_hook
from rest_hooks.models import Delivery, Event, get_hook_model
from rest_hooks.security.signing import public_jwk
from rest_hooks.worker.attempt import build_body
from rest_hooks.worker.relay import redeliver

#: Payloads the sample endpoint answers with at most.
SAMPLES = 3
#: How often a ping looks for its attempt (seconds).
PING_POLL = 0.05


class HookThrottle(UserRateThrottle):
    """``REST_HOOKS["API_THROTTLE_RATE"]`` requests per user (or client address, for
    requests that are refused before a user is known)."""

    scope = "rest_hooks"

    def get_rate(self) -> str | None:
        return hook_settings.API_THROTTLE_RATE


class NewestFirst(CursorPagination):
    """Pages that stay consistent while rows are added (a cursor, not an offset)."""

    ordering = "-pk"
    page_size = 50


class NewestDeliveriesFirst(NewestFirst):
    # Delivery ids are time-ordered to the millisecond only: the creation time first.
    ordering = ("-created_at", "-pk")  # type: ignore[assignment]


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def refuse_if_disabled(hook: Any) -> None:
    """Nothing is sent to a disabled hook: say so rather than queue what would be
    cancelled."""
    if not hook.is_active:
        raise Conflict('The hook is disabled: re-enable it first (PATCH {"active": true}).')


def filtered(deliveries: QuerySet[Delivery], query: dict[str, Any]) -> QuerySet[Delivery]:
    """``deliveries`` of a status, created in [since, until), as validated."""
    if "status" in query:
        deliveries = deliveries.filter(status=query["status"])
    if "since" in query:
        deliveries = deliveries.filter(created_at__gte=query["since"])
    if "until" in query:
        deliveries = deliveries.filter(created_at__lt=query["until"])
    return deliveries


@extend_schema_view(
    list=extend_schema(summary="The user's hooks, newest first", parameters=[HookFilterSerializer]),
    create=extend_schema(
        summary="Subscribe a target URL to an event",
        responses={201: HookWithSecretSerializer},
    ),
    retrieve=extend_schema(summary="One of the user's hooks"),
    partial_update=extend_schema(summary="Change a hook's event, target, rate limit or state"),
    destroy=extend_schema(summary="Unsubscribe: delete the hook"),
)
class HookViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    serializer_class = HookSerializer
    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [HookThrottle]
    pagination_class = NewestFirst
    # Partial updates only: a PUT that forgot a field would reset it.
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the types
            return get_hook_model()._default_manager.none()
        hooks = get_hook_model()._default_manager.filter(user=self.request.user)
        if self.action != "list":
            return hooks
        query = HookFilterSerializer(data=self.request.query_params, partial=True)
        query.is_valid(raise_exception=True)
        if "event" in query.validated_data:
            hooks = hooks.filter(event=query.validated_data["event"])
        if "active" in query.validated_data:
            hooks = hooks.filter(is_active=query.validated_data["active"])
        return hooks

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hook = serializer.save(user=request.user)
        return self._with_secret(hook, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Replace the hook's signing secret",
        description="The response carries the new secret (or public key) once. Deliveries "
        "are signed with the old one too for REST_HOOKS['SECRET_ROTATION_GRACE'] seconds, so "
        "that the subscriber can switch without missing one.",
        request=None,
        responses={200: HookWithSecretSerializer},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        hook = self.get_object()
        hook.rotate_secret()
        return self._with_secret(hook, status.HTTP_200_OK)

    @extend_schema(
        summary="Send the hook's failed deliveries of a time range again",
        description="Every failed delivery of the hook created in [since, until) starts over "
        "from the first step of the retry schedule, each with the id it had (receivers that "
        "processed it already can drop it).",
        request=RecoverSerializer,
        responses={202: RecoveredSerializer},
    )
    @action(detail=True, methods=["post"])
    def recover(self, request: Request, pk: str | None = None) -> Response:
        hook = self.get_object()
        refuse_if_disabled(hook)
        query = RecoverSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        failed = filtered(
            Delivery.objects.filter(hook=hook),
            {"status": Delivery.Status.FAILED, **query.validated_data},
        )
        return Response({"redelivered": redeliver(failed)}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="The public keys that verify an Ed25519 hook's deliveries (JWKS)",
        description="The current key, then those rotated out whose grace period still runs "
        "(with exp). An HMAC hook has none: its secret is shared, not published.",
        responses={200: JwksSerializer},
    )
    @action(detail=True, methods=["get"])
    def keys(self, request: Request, pk: str | None = None) -> Response:
        hook = self.get_object()
        keys = [
            public_jwk(key) | ({} if expires is None else {"exp": int(expires)})
            for key, expires in hook.public_keys()
        ]
        return Response({"keys": keys})

    @extend_schema(
        summary="Recent payloads of an event, as the user's hook receives them",
        description="For Zapier's perform-list, and to see what a subscription would get: "
        "the bodies of the event's latest deliveries the user can see (their own, and those "
        "sent to every subscriber), newest first; an empty list if there is none yet.",
        parameters=[SampleQuerySerializer],
        responses={200: {"type": "array", "items": {"type": "object"}}},
    )
    @action(detail=False, methods=["get"])
    def sample(self, request: Request) -> Response:
        query = SampleQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        name = query.validated_data["event"]
        user = request.user
        hook = self.get_queryset().filter(event=name).first() or get_hook_model()(event=name)
        events = (
            Event.objects.filter(name=name)
            .exclude(status=Event.Status.REFUSED)
            .filter(Q(owner_id=None) | Q(owner_id=str(user.pk)))
            .filter(Q(hook=None) | Q(hook__user=user))
            .order_by("-pk")[:SAMPLES]
        )
        return Response([json.loads(build_body(event, hook)) for event in events])

    @extend_schema(
        summary="Send the hook a test delivery now, and answer with how it went",
        description='A ping event (body {"hook": {...}, "ping": true}, the hook\'s event '
        "name in X-Hook-Event) goes through the workers like any delivery: signed, through "
        "the target's rate limit and breaker. The answer waits at most "
        "REST_HOOKS['API_PING_WAIT'] seconds for its first attempt: 200 with the delivery and "
        "its attempt, or 202 with the delivery still pending (follow it in deliveries/).",
        request=None,
        responses={
            200: DeliverySerializer,
            202: PolymorphicProxySerializer(
                component_name="PingPending",
                serializers=[DeliverySerializer, QueuedSerializer],
                resource_type_field_name=None,
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def ping(self, request: Request, pk: str | None = None) -> Response:
        hook = self.get_object()
        refuse_if_disabled(hook)
        using = router.db_for_write(type(hook))
        # Under ATOMIC_REQUESTS the event is only sent once this answer has committed.
        wait = 0.0 if connections[using].in_atomic_block else float(hook_settings.API_PING_WAIT)
        event = capture_for_hook(
            type(hook), hook, None, payload_override={"hook": hook.dict(), "ping": True}
        )
        deadline = time.monotonic() + wait
        while True:
            delivery = Delivery.objects.filter(event=event).prefetch_related("attempt_log").first()
            tried = delivery is not None and delivery.attempt_log.all()
            if tried or time.monotonic() >= deadline:
                break
            time.sleep(PING_POLL)
        if delivery is None:  # not even fanned out: no worker running?
            queued = QueuedSerializer(
                {"detail": "The test delivery is queued; no worker has taken it yet."}
            )
            return Response(queued.data, status=status.HTTP_202_ACCEPTED)
        code = status.HTTP_200_OK if tried else status.HTTP_202_ACCEPTED
        return Response(DeliverySerializer(delivery).data, status=code)

    def _with_secret(self, hook: Any, code: int) -> Response:
        serializer: BaseSerializer[Any] = HookWithSecretSerializer(
            hook, context=self.get_serializer_context()
        )
        return Response(serializer.data, status=code)


#: The hook model's primary key: an integer, unless HOOK_CUSTOM_MODEL says otherwise.
HOOK_ID = int if isinstance(get_hook_model()._meta.pk, models.AutoField) else str
HOOK_PK = OpenApiParameter("hook_pk", HOOK_ID, OpenApiParameter.PATH, description="The hook's id.")


@extend_schema_view(
    list=extend_schema(
        summary="The hook's deliveries, newest first, each with its attempts",
        parameters=[HOOK_PK, DeliveryFilterSerializer],
    ),
    retrieve=extend_schema(
        summary="One delivery, its attempts and the body sent", parameters=[HOOK_PK]
    ),
)
class DeliveryViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    """The deliveries of one of the user's hooks (another user's hook: 404)."""

    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [HookThrottle]
    pagination_class = NewestDeliveriesFirst

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return DeliveryWithPayloadSerializer if self.action == "retrieve" else DeliverySerializer

    def hook(self) -> Any:
        hooks = get_hook_model()._default_manager.filter(user=self.request.user)
        return get_object_or_404(hooks, pk=self.kwargs["hook_pk"])

    def get_queryset(self) -> QuerySet[Delivery]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the types
            return Delivery.objects.none()
        deliveries = (
            Delivery.objects.filter(hook=self.hook())
            .select_related("event", "hook")
            .prefetch_related("attempt_log")
        )
        if self.action != "list":
            return deliveries
        query = DeliveryFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return filtered(deliveries, query.validated_data)

    @extend_schema(
        summary="Send the delivery again",
        description="It starts over from the first step of the retry schedule, with the "
        "same id. A pending delivery is attempted anyway: 409.",
        parameters=[HOOK_PK],
        request=None,
        responses={202: DeliverySerializer},
    )
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, hook_pk: str, pk: str | None = None) -> Response:
        delivery = self.get_object()
        refuse_if_disabled(delivery.hook)
        if not redeliver(Delivery.objects.filter(pk=delivery.pk)):
            raise Conflict("The delivery is pending: its next attempt comes anyway.")
        delivery.refresh_from_db()
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
