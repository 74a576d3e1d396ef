"""Routing and capture: from a model change or a signal to one row in the outbox.

This is the only part of rest_hooks that runs in the request that changed the data, so it
does a fixed amount of work whatever the number of subscribers: one dict lookup to route,
one serialisation of the payload, one INSERT of an ``Event``. Finding the hooks and calling
them happens later, in workers (``rest_hooks.tasks`` and ``rest_hooks.worker``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, router, transaction

from rest_hooks import metrics, tasks
from rest_hooks.conf import hook_settings, on_reload
from rest_hooks.models import Event, get_hook_model, model_payload

logger = logging.getLogger(__name__)

BUILT_IN_ACTIONS = ("created", "updated", "deleted")
#: The longest event name an Event and a hook can hold (their columns).
EVENT_NAME_MAX_LENGTH = 64


@dataclass(frozen=True)
class Route:
    """Where a (model, action) pair goes: the event name, and whether to every owner."""

    event_name: str
    all_owners: bool


def parse_hook_events(
    hook_events: Mapping[str, Any],
) -> tuple[dict[tuple[str, str], Route], list[str]]:
    """Turn ``HOOK_EVENTS`` into a lookup table keyed by (``app_label.Model``, action).

    Returns the table and the problems found (the system checks report them).
    """
    routes: dict[tuple[str, str], Route] = {}
    problems: list[str] = []
    for event_name, spec in hook_events.items():
        if len(str(event_name)) > EVENT_NAME_MAX_LENGTH:
            problems.append(
                f"HOOK_EVENTS[{event_name!r}]: the event name is longer than the "
                f"{EVENT_NAME_MAX_LENGTH} characters a hook and an event can hold."
            )
            continue
        if spec is None:
            continue  # a custom event, fired with raw_hook_event
        if not isinstance(spec, str) or spec.count(".") < 2:
            problems.append(
                f"HOOK_EVENTS[{event_name!r}] = {spec!r}: expected 'app_label.Model.action'"
                " (append '+' to send to every owner's hooks) or None for a custom event."
            )
            continue
        model_label, action = spec.rsplit(".", 1)
        all_owners = action.endswith("+")
        action = action.removesuffix("+")
        if not action:
            problems.append(f"HOOK_EVENTS[{event_name!r}] = {spec!r}: the action is empty.")
            continue
        key = (model_label, action)
        if key in routes:
            problems.append(
                f"HOOK_EVENTS[{event_name!r}] and HOOK_EVENTS[{routes[key].event_name!r}] "
                f"both route {model_label}.{action}; each model action may have one event."
            )
            continue
        routes[key] = Route(event_name, all_owners)
    return routes, problems


_routes: dict[tuple[str, str], Route] | None = None


def get_routes() -> dict[tuple[str, str], Route]:
    """The routing table, parsed once and again only when ``HOOK_EVENTS`` changes."""
    global _routes
    if _routes is None:
        _routes = parse_hook_events(hook_settings.HOOK_EVENTS)[0]
    return _routes


@on_reload
def _forget_routes() -> None:
    global _routes
    _routes = None


def model_label(instance: models.Model) -> str:
    return instance._meta.concrete_model._meta.label  # type: ignore[union-attr]


# -- owners ---------------------------------------------------------------------------------


class NoOwner(Exception):
    """The instance has no user to scope the event to."""


def owner_of(instance: Any, user: Any) -> str | None:
    """The pk (as text) of the user whose hooks get the event; None for every user's.

    The rules of django-rest-hooks: ``user=False`` means every owner; an explicit ``user``
    wins; else ``instance.user``; else the instance itself when it is a user.
    """
    if user is False:
        return None
    if user is not None and user is not True:
        return str(user.pk if isinstance(user, models.Model) else user)
    if instance is None:
        raise NoOwner("no user was given")
    try:
        field = instance._meta.get_field("user")
    except Exception:  # no such field: maybe a property
        field = None
    if field is not None and field.many_to_one:
        # The column, not the descriptor: no query for the related user.
        user_id = getattr(instance, field.attname)
        if user_id is None:
            raise NoOwner(f"{instance!r}.user is empty")
        return str(user_id)
    if hasattr(instance, "user"):
        owner = instance.user
        if owner is None:
            raise NoOwner(f"{instance!r}.user is empty")
        return str(owner.pk)
    if isinstance(instance, get_user_model()):
        return str(instance.pk)
    raise NoOwner(f"{instance!r} has no `user`")


# -- payloads ------------------------------------------------------------------------------


def placeholder_hook(event_name: str, owner_id: str | None) -> Any:
    """An unsaved hook that stands for every receiver while the payload is built once.

    Each delivery then replaces the payload's ``"hook"`` member with its own hook's.
    """
    return get_hook_model()(event=event_name, target="", user_id=owner_id)


# -- capture -------------------------------------------------------------------------------


class EventRefused(Exception):
    """An event that is not captured; ``reason`` is the bounded label of the metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def encode_event(event_name: str, payload: Any) -> str:
    """The payload as the JSON text every subscriber receives.

    Raises :class:`EventRefused` for a name longer than a hook can subscribe to, when
    strict JSON cannot encode the payload (a set, an object, NaN; dates, ``Decimal`` and
    ``UUID`` are encoded by ``DjangoJSONEncoder``), or when it is larger than
    ``MAX_PAYLOAD_BYTES``.
    """
    if len(event_name) > EVENT_NAME_MAX_LENGTH:
        raise EventRefused(
            "name_too_long",
            f"The event name is {len(event_name)} characters, over the "
            f"{EVENT_NAME_MAX_LENGTH} a hook can subscribe to. Use a shorter name.",
        )
    try:
        # allow_nan=False: NaN and Infinity are not JSON, and receivers' parsers refuse them.
        text = json.dumps(payload, cls=DjangoJSONEncoder, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventRefused(
            "unencodable",
            f"JSON cannot encode {_unencodable_part(payload)} ({exc}). Return only what "
            "DjangoJSONEncoder encodes (dicts with string keys, lists, strings, finite "
            "numbers, booleans, None, dates, Decimal, UUID) from serialize_hook, "
            "HOOK_SERIALIZER or the raw_hook_event payload.",
        ) from exc
    cap = hook_settings.MAX_PAYLOAD_BYTES
    size = len(text)  # in bytes too: json.dumps escapes every character beyond ASCII
    if cap is not None and size > cap:
        raise EventRefused(
            "too_large",
            f"The payload is {size:,} bytes of JSON, over REST_HOOKS['MAX_PAYLOAD_BYTES'] "
            f"({cap:,}). Send less (e.g. an id the receiver fetches the rest with), or "
            "raise the cap.",
        )
    return text


def _unencodable_part(payload: Any) -> str:
    """Where the first value JSON cannot encode sits: ``payload['data']['tags']``."""
    encoder = DjangoJSONEncoder()
    seen: set[int] = set()

    def find(value: Any, path: str) -> str | None:
        if value is None or isinstance(value, str | int):
            return None
        if isinstance(value, float):
            return None if math.isfinite(value) else path
        if id(value) in seen:
            return f"{path} (a circular reference)"
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not (key is None or isinstance(key, str | int | float)):
                    return f"the key {key!r} of {path}"
                if (found := find(item, f"{path}[{key!r}]")) is not None:
                    return found
            return None
        if isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if (found := find(item, f"{path}[{index}]")) is not None:
                    return found
            return None
        try:
            encoder.default(value)
        except TypeError:
            return path
        return None

    try:
        return find(payload, "payload") or "the payload"
    except RecursionError:
        return "the payload (nested too deeply)"


def capture(
    *,
    event_name: str,
    payload: Any,
    names_hook: bool,
    owner_id: str | None,
    using: str,
    action: str = "",
    instance: Any = None,
    hook: Any = None,
) -> Any:
    """Write the outbox row and enqueue its dispatch when the transaction commits.

    ``names_hook``: the payload's ``"hook"`` member (if any) describes the hook; each
    delivery replaces it with its own hook's ``dict()``. False for payloads that are the
    caller's own (``raw_hook_event`` with ``send_hook_meta=False``).

    An event that cannot be captured (:func:`encode_event`) never breaks the save that
    caused it: it is written ``refused``, with the reason, logged and counted, and
    delivered to no one.
    """
    described = {
        "name": event_name[:EVENT_NAME_MAX_LENGTH],
        "action": action,
        "owner_id": owner_id,
        "hook": hook,
        "instance_model": model_label(instance) if isinstance(instance, models.Model) else "",
        "instance_pk": str(instance.pk) if isinstance(instance, models.Model) else "",
    }
    try:
        text = encode_event(event_name, payload)
    except EventRefused as exc:
        event = Event.objects.using(using).create(
            **described, payload="", status=Event.Status.REFUSED, error=str(exc)
        )
        logger.error(
            "Event %s (%s) refused: %s",
            event.pk,
            event_name,
            exc,
            extra={"event_id": event.pk, "event": event_name, "reason": exc.reason},
        )
        metrics.event_refused(event_name, exc.reason, using)
        return event
    event = Event.objects.using(using).create(
        **described,
        payload=text,
        has_hook_member=names_hook and isinstance(payload, dict) and "hook" in payload,
    )
    transaction.on_commit(partial(enqueue_dispatch, event.pk), using=using)
    metrics.event_captured(event_name, using)
    return event


def enqueue_dispatch(event_id: int) -> None:
    """Send the dispatch message; if the broker is down the event waits for the relay."""
    try:
        tasks.dispatch.send(event_id)
    except Exception:
        logger.exception(
            "Could not enqueue event %s; it stays pending and the relay will enqueue it.",
            event_id,
            extra={"event_id": event_id},
        )


def capture_model_event(
    route: Route, instance: models.Model, action: str, user: Any, using: str
) -> None:
    user_override = False if route.all_owners else user
    if hook_settings.HOOK_FINDER is not None:
        # The old extension point: the finder picks hooks and calls hook.deliver_hook().
        hook_settings.HOOK_FINDER(route.event_name, instance, user_override=user_override)
        return
    find_and_fire_hook(route.event_name, instance, user_override, action=action, using=using)


def capture_for_hook(
    sender: Any, hook: Any, instance: Any, payload_override: Any = None, **kwargs: Any
) -> Event:
    """An event for one given hook: the receiver of ``hook_delivery_requested``, which
    ``Hook.deliver_hook`` sends, and the API's ping."""
    placeholder = placeholder_hook(hook.event, None)
    payload = (
        payload_override if payload_override is not None else model_payload(instance, placeholder)
    )
    return capture(
        event_name=hook.event,
        payload=payload,
        names_hook=True,
        owner_id=str(hook.user_id),
        using=router.db_for_write(type(hook), instance=hook),
        instance=instance,
        hook=hook,
    )


def find_and_fire_hook(
    event_name: str,
    instance: Any,
    user_override: Any = None,
    payload_override: Any = None,
    *,
    action: str = "",
    using: str | None = None,
) -> None:
    """Capture a model event for its owner's hooks (every owner's with ``user_override=False``).

    Also django-rest-hooks' default finder, kept for HOOK_FINDER functions that wrap it.
    """
    try:
        owner_id = owner_of(instance, user_override)
    except NoOwner as exc:
        logger.warning(
            "Event %s not sent: %s. Give the model a `user`, pass user= to hook_event, "
            "or end the HOOK_EVENTS entry with '+' to send it to every owner's hooks.",
            event_name,
            exc,
        )
        return
    hook = placeholder_hook(event_name, owner_id)
    capture(
        event_name=event_name,
        payload=payload_override if payload_override is not None else model_payload(instance, hook),
        names_hook=True,
        owner_id=owner_id,
        using=using or _db_for(instance),
        action=action,
        instance=instance,
    )


def _db_for(instance: Any) -> str:
    if isinstance(instance, models.Model) and instance._state.db:
        return instance._state.db
    return router.db_for_write(Event)


# -- signal receivers (connected in RestHooksConfig.ready) -----------------------------------


def on_post_save(
    sender: Any, instance: models.Model, created: bool, raw: bool, using: str, **kwargs: Any
) -> None:
    if raw and not hook_settings.FIRE_ON_RAW_SAVE:
        return
    action = "created" if created else "updated"
    route = get_routes().get((model_label(instance), action))
    if route is not None:
        capture_model_event(route, instance, action, None, using)


def on_pre_delete(sender: Any, instance: models.Model, using: str, **kwargs: Any) -> None:
    # pre_delete, not post_delete: the row (and its many-to-many links) still exist, and
    # Django sends it inside the deletion's transaction.
    route = get_routes().get((model_label(instance), "deleted"))
    if route is not None:
        capture_model_event(route, instance, "deleted", None, using)


def on_hook_event(
    sender: Any, action: str, instance: models.Model, user: Any = None, **kwargs: Any
) -> None:
    route = get_routes().get((model_label(instance), action))
    if route is not None:
        capture_model_event(route, instance, action, user, _db_for(instance))


def on_raw_hook_event(
    sender: Any,
    event_name: str,
    payload: Any,
    user: Any = None,
    send_hook_meta: bool = True,
    instance: Any = None,
    **kwargs: Any,
) -> None:
    try:
        owner_id = owner_of(None, user)
    except NoOwner:
        logger.warning(
            "Raw event %s not sent: no user. Pass user=<a user> or user=False (every owner).",
            event_name,
        )
        return
    member = placeholder_hook(event_name, owner_id).dict()
    capture(
        event_name=event_name,
        payload={"hook": member, "data": payload} if send_hook_meta else payload,
        names_hook=send_hook_meta,
        owner_id=owner_id,
        using=_db_for(instance),
        instance=instance,
    )
