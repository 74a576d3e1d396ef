"""The Dramatiq actors: ``dispatch`` (fan-out), ``deliver`` (one POST) and the relay.

Every actor is idempotent, because a message may arrive twice (a worker killed before it
acked, the relay re-sending an event whose first message was merely slow):

- ``dispatch`` advances a cursor on the event with a compare-and-set UPDATE, so one event is
  fanned out once; a unique constraint on (event, hook) backs that up.
- ``deliver`` claims the delivery with a conditional UPDATE that also sets a lease, so a
  delivery that succeeded, failed for good, or is in flight elsewhere is not sent again.

Messages carry ids only: no payload, no target, no secret.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import dramatiq
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from rest_hooks import __version__, gatekeeper, metrics
from rest_hooks.broker import setup_broker
from rest_hooks.conf import hook_settings, on_reload
from rest_hooks.delivery.flow import Decision, Result, health, pause_for
from rest_hooks.delivery.http import DeliveryClient, DeliveryError, HttpOptions, HttpResult
from rest_hooks.delivery.retry import Outcome, RetryPolicy, classify, parse_retry_after
from rest_hooks.events import get_hook_model
from rest_hooks.models import Delivery, Event
from rest_hooks.security.network import AddressPolicy
from rest_hooks.security.signing import signature_headers
from rest_hooks.signals import hook_disabled, hook_sent_event

logger = logging.getLogger(__name__)

USER_AGENT = f"rest-hooks/{__version__}"
# A claimed attempt keeps the delivery for this long beyond its deadline: if the worker
# dies mid-attempt, the relay may take the delivery over once the lease has run out.
LEASE_MARGIN = timedelta(seconds=60)
# Messages may be handled slightly before the row says they are due (clock skew).
EARLY_TOLERANCE = timedelta(seconds=1)

_broker = setup_broker()


def _actor(fn: Any, actor_name: str, **options: Any) -> Any:
    """Declare an actor with only the options the broker's middleware understands.

    A broker without, say, the TimeLimit middleware would refuse the option at import; the
    system checks name the missing middleware instead (rest_hooks.E006).
    """
    supported = {k: v for k, v in options.items() if k in _broker.actor_options}
    return dramatiq.actor(
        actor_name=actor_name,
        broker=_broker,
        queue_name=hook_settings.QUEUE_NAME,
        **supported,
    )(fn)


# -- fan-out ----------------------------------------------------------------------------------


def fan_out(event_id: int) -> int:
    """Create one delivery per matching active hook, chunk by chunk; returns how many.

    Each chunk is one transaction: read the next hook ids after the event's cursor, move the
    cursor with a compare-and-set (a concurrent duplicate loses and stops), insert the
    deliveries, commit, then enqueue their messages. Memory stays bounded by the chunk size
    whatever the number of hooks.
    """
    hook_model = get_hook_model()
    using = router.db_for_write(Event)
    chunk_size = int(hook_settings.FANOUT_CHUNK_SIZE)
    total = 0
    while True:
        now = timezone.now()
        with transaction.atomic(using=using):
            event = Event.objects.using(using).filter(pk=event_id).first()
            if event is None or event.status != Event.Status.PENDING:
                return total
            if event.hook_id is not None:
                hook_ids: list[Any] = [event.hook_id]
                done = True
            else:
                hooks = hook_model._default_manager.using(using).filter(
                    event=event.name, is_active=True
                )
                if event.owner_id is not None:
                    hooks = hooks.filter(user_id=event.owner_id)
                if event.fanout_cursor:
                    cursor = hook_model._meta.pk.to_python(event.fanout_cursor)
                    hooks = hooks.filter(pk__gt=cursor)
                hook_ids = list(hooks.order_by("pk").values_list("pk", flat=True)[:chunk_size])
                done = len(hook_ids) < chunk_size
            progress: dict[str, Any] = {
                "fanout_cursor": str(hook_ids[-1]) if hook_ids else event.fanout_cursor
            }
            if done:
                progress.update(status=Event.Status.DISPATCHED, dispatched_at=now)
            won = (
                Event.objects.using(using)
                .filter(pk=event_id, status=Event.Status.PENDING, fanout_cursor=event.fanout_cursor)
                .update(**progress)
            )
            if not won:
                return total  # another worker is fanning this event out
            deliveries = [
                Delivery(event_id=event_id, hook_id=hook_id, next_attempt_at=now)
                for hook_id in hook_ids
            ]
            Delivery.objects.using(using).bulk_create(deliveries)
        enqueue_deliveries(d.pk for d in deliveries)
        total += len(deliveries)
        if done:
            metrics.fanned_out(event.name, total)
            logger.info(
                "Event %s (%s) fanned out to %d hooks.",
                event_id,
                event.name,
                total,
                extra={"event_id": event_id, "fanout": total},
            )
            return total


def enqueue_deliveries(delivery_ids: Iterable[Any]) -> None:
    """Send one deliver message each; on a broker error the relay sends the rest later."""
    _send_each(deliver, (str(i) for i in delivery_ids), "delivery")


def _send_each(actor: Any, ids: Iterable[Any], what: str, delay: float = 0) -> None:
    """Enqueue one message per id, stopping (with one log line) if the broker fails."""
    for object_id in ids:
        try:
            actor.send_with_options(args=(object_id,), delay=int(delay * 1000) or None)
        except Exception:
            logger.exception(
                "Could not enqueue %s %s (broker unreachable?); the relay will enqueue it "
                "and the rest later.",
                what,
                object_id,
                extra={f"{what}_id": object_id},
            )
            return


# -- one delivery -----------------------------------------------------------------------------

_client: DeliveryClient | None = None
_client_pid = 0


def http_client() -> DeliveryClient:
    """One pooled, thread-safe client per process (rebuilt after a fork or a setting change)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        s = hook_settings
        _client = DeliveryClient(
            HttpOptions(
                connect_timeout=s.CONNECT_TIMEOUT,
                read_timeout=s.READ_TIMEOUT,
                write_timeout=s.WRITE_TIMEOUT,
                pool_timeout=s.POOL_TIMEOUT,
                deadline=s.DEADLINE,
                max_response_bytes=s.MAX_RESPONSE_BYTES,
                policy=AddressPolicy.from_settings(
                    allow_private=s.ALLOW_PRIVATE_TARGETS, allowed_networks=s.ALLOWED_NETWORKS
                ),
                user_agent=USER_AGENT,
                https_only=bool(s.HTTPS_ONLY),
            )
        )
        _client_pid = os.getpid()
    return _client


@on_reload
def _forget_client() -> None:
    global _client
    if _client is not None:
        _client.close()
    _client = None


def retry_policy() -> RetryPolicy:
    s = hook_settings
    return RetryPolicy(
        schedule=tuple(s.RETRY_SCHEDULE),
        jitter=float(s.RETRY_JITTER),
        retry_after_min=float(s.RETRY_AFTER_MIN),
        retry_after_max=float(s.RETRY_AFTER_MAX),
    )


def build_body(event: Event, hook: Any) -> bytes:
    """The event's payload as sent to ``hook``: its ``"hook"`` member names this hook."""
    if not event.has_hook_member:
        return event.payload.encode()
    payload = json.loads(event.payload)
    payload["hook"] = hook.dict()
    # Like the capture: a hook's dict() may hold a UUID primary key, a date, a Decimal.
    return json.dumps(payload, cls=DjangoJSONEncoder).encode()


def claim(delivery: Delivery) -> bool:
    """Take the delivery for one attempt, if it is still due and nobody else took it."""
    now = timezone.now()
    lease = now + timedelta(seconds=float(hook_settings.DEADLINE)) + LEASE_MARGIN
    claimed = Delivery.objects.filter(
        pk=delivery.pk,
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now + EARLY_TOLERANCE,
    ).update(next_attempt_at=lease, attempts=F("attempts") + 1, last_attempt_at=now)
    if claimed:
        delivery.attempts += 1
        delivery.next_attempt_at = lease
    return bool(claimed)


def attempt(delivery_id: str) -> None:
    """Make one attempt of a delivery and record what happened."""
    delivery = (
        Delivery.objects.select_related("event", "hook")
        .filter(
            pk=delivery_id,
            status=Delivery.Status.PENDING,
            next_attempt_at__lte=timezone.now() + EARLY_TOLERANCE,
        )
        .first()
    )
    if delivery is None:
        logger.debug("Delivery %s is not due or not pending; nothing to send.", delivery_id)
        return
    hook, event = delivery.hook, delivery.event
    log_extra = {"delivery_id": delivery_id, "hook_id": hook.pk, "event": event.name}
    if not hook.is_active:
        if claim(delivery):
            _finish(delivery, Delivery.Status.CANCELLED, error="The hook is disabled.")
        return
    admission = gatekeeper.admit(hook)
    if not isinstance(admission, gatekeeper.Admission):
        _defer(delivery, admission)
        return
    if not claim(delivery):
        gatekeeper.report(admission, Result.NEUTRAL, None)
        return

    body = build_body(event, hook)
    started = time.monotonic()
    result: HttpResult | None = None
    error = ""
    try:
        if hook_settings.HOOK_DELIVERER is not None:
            # The old extension point replaces the POST; an exception means "retry".
            hook_settings.HOOK_DELIVERER(
                hook.target, json.loads(body), instance=_instance_of(event), hook=hook
            )
            outcome = Outcome.SUCCESS
        else:
            with metrics.deliveries_in_flight.track_inprogress():
                result = http_client().post(
                    hook.target, body, _headers(delivery, event, hook, body)
                )
            outcome = classify(result.status_code)
    except DeliveryError as exc:
        outcome = classify(None, refused=exc.kind == "refused")
        error = f"{exc.kind}: {exc}"
    except Exception as exc:
        if hook_settings.HOOK_DELIVERER is None:
            gatekeeper.report(admission, Result.NEUTRAL, None)
            raise
        outcome = Outcome.RETRY
        error = f"HOOK_DELIVERER raised {type(exc).__name__}: {exc}"
    duration_ms = (time.monotonic() - started) * 1000
    status_code = result.status_code if result else None
    retry_after = (
        parse_retry_after(result.headers.get("retry-after"), time.time()) if result else None
    )
    if retry_after is not None:
        retry_after = retry_policy().clamp_retry_after(retry_after)
    gatekeeper.report(
        admission,
        health(status_code, refused=outcome is Outcome.FINAL),
        pause_for(status_code, retry_after, float(hook_settings.THROTTLE_PAUSE)),
    )

    delivery.last_duration_ms = duration_ms
    delivery.last_status_code = result.status_code if result else None
    delivery.response_excerpt = _excerpt(result)
    if result is not None and outcome is not Outcome.SUCCESS:
        error = f"HTTP {result.status_code}"
    delivery.last_error = error

    if outcome is Outcome.SUCCESS:
        _finish(delivery, Delivery.Status.SUCCESS)
        _hook_succeeded(hook)
        if hook_sent_event.has_listeners():
            hook_sent_event.send_robust(
                sender=type(hook),
                payload=json.loads(body),
                instance=_instance_of(event),
                hook=hook,
                delivery=delivery,
            )
        reported = "success"
    elif outcome is Outcome.GONE:
        _finish(delivery, Delivery.Status.FAILED)
        disable_hook(hook, "The target answered 410 Gone.", cause="gone")
        reported = "failed"
    elif outcome is Outcome.FINAL:
        _finish(delivery, Delivery.Status.FAILED)
        reported = "blocked"
    else:
        reported = "retry" if _retry_or_fail(delivery, hook, retry_after) else "failed"

    logger.info(
        "Delivery %s attempt %d to hook %s: %s%s in %.1f ms.",
        delivery_id,
        delivery.attempts,
        hook.pk,
        reported,
        f" ({error})" if error else "",
        duration_ms,
        extra={
            **log_extra,
            "event_id": event.pk,
            "attempt": delivery.attempts,
            "outcome": reported,
            "status_code": delivery.last_status_code,
            "duration_ms": round(duration_ms, 1),
        },
    )
    metrics.attempt_made(
        event_name=event.name,
        event_created_at=event.created_at,
        target=hook.target,
        outcome=reported,
        result=result,
        duration_ms=duration_ms,
    )


def _headers(delivery: Delivery, event: Event, hook: Any, body: bytes) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Hook-Event": event.name,
        "X-Hook-Attempt": str(delivery.attempts),
    }
    headers.update(
        signature_headers(hook.signing_secrets(), str(delivery.pk), int(time.time()), body)
    )
    return headers


def _excerpt(result: HttpResult | None) -> str:
    if result is None:
        return ""
    return result.body[: int(hook_settings.RESPONSE_EXCERPT_BYTES)].decode("utf-8", "replace")


def _finish(delivery: Delivery, status: str, *, error: str | None = None) -> None:
    delivery.status = status
    delivery.finished_at = timezone.now()
    delivery.next_attempt_at = None
    if error is not None:
        delivery.last_error = error
    _save_attempt(delivery)


def _save_attempt(delivery: Delivery) -> None:
    delivery.save(
        update_fields=[
            "status",
            "finished_at",
            "next_attempt_at",
            "last_status_code",
            "last_duration_ms",
            "last_error",
            "response_excerpt",
        ]
    )


def _retry_or_fail(delivery: Delivery, hook: Any, retry_after: float | None) -> bool:
    """Schedule the next attempt; False when there is none (the delivery failed)."""
    now = timezone.now()
    delay = retry_policy().delay(delivery.attempts, retry_after)
    if _hook_failed(hook, now):
        delay = None
    if delay is None:
        _finish(delivery, Delivery.Status.FAILED)
        return False
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    _save_attempt(delivery)
    _send_each(deliver, [str(delivery.pk)], "delivery", delay=delay)
    return True


def _defer(delivery: Delivery, decision: Decision) -> None:
    """Hold the delivery back for as long as the gate says; it uses up no retry.

    The compare-and-set on ``next_attempt_at`` lets one of several duplicate messages
    re-enqueue it; jitter spreads a crowd of deferred deliveries over time.
    """
    wait = decision.wait * random.uniform(1.0, 1.1) + 0.01  # noqa: S311
    updated = Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, next_attempt_at=delivery.next_attempt_at
    ).update(next_attempt_at=timezone.now() + timedelta(seconds=wait))
    reason = decision.reason.value if decision.reason else "unknown"
    metrics.deferrals.labels(reason=reason).inc()
    logger.debug(
        "Delivery %s deferred %.2f s (%s).",
        delivery.pk,
        wait,
        reason,
        extra={"delivery_id": str(delivery.pk), "reason": reason},
    )
    if updated:
        _send_each(deliver, [str(delivery.pk)], "delivery", delay=wait)


def _hook_succeeded(hook: Any) -> None:
    if hook.failing_since is not None:
        type(hook)._default_manager.filter(pk=hook.pk).update(failing_since=None)


def _hook_failed(hook: Any, now: Any) -> bool:
    """Note the failure; disable the hook if it has failed for too long. True if disabled."""
    if hook.failing_since is None:
        type(hook)._default_manager.filter(pk=hook.pk, failing_since=None).update(failing_since=now)
        return False
    if now - hook.failing_since < timedelta(seconds=float(hook_settings.DISABLE_AFTER)):
        return False
    disable_hook(
        hook, f"Deliveries have failed since {hook.failing_since.isoformat()}.", cause="failing"
    )
    return True


def disable_hook(hook: Any, reason: str, cause: str = "other") -> None:
    """Switch a hook off, say why, and tell whoever listens to ``hook_disabled``.

    ``cause`` is the bounded label of the metric: ``gone`` (410), ``failing``.
    """
    updated = (
        type(hook)
        ._default_manager.filter(pk=hook.pk, is_active=True)
        .update(is_active=False, disabled_reason=reason[:255], disabled_at=timezone.now())
    )
    if updated:
        hook.is_active = False
        hook.disabled_reason = reason[:255]
        logger.warning("Hook %s disabled: %s", hook.pk, reason, extra={"hook_id": hook.pk})
        metrics.hook_disabled(cause)
        hook_disabled.send_robust(sender=type(hook), hook=hook, reason=reason)


def _instance_of(event: Event) -> Any:
    """The event's model instance, re-read (None when it is gone or the event is raw)."""
    from django.apps import apps

    if not event.instance_model:
        return None
    model = apps.get_model(event.instance_model)
    return model._default_manager.filter(pk=event.instance_pk).first()


# -- relay ------------------------------------------------------------------------------------


def relay_pending(*, everything: bool = False, batch_size: int = 500) -> tuple[int, int]:
    """Re-enqueue events and deliveries whose message seems lost; returns the counts.

    Normally only what is overdue by ``RELAY_AFTER`` seconds; ``everything=True`` (the
    management command) takes every pending event and every due delivery at once.
    """
    now = timezone.now()
    cutoff = now if everything else now - timedelta(seconds=float(hook_settings.RELAY_AFTER))
    events = _take_batches(
        Event.objects.filter(status=Event.Status.PENDING, enqueued_at__lte=cutoff),
        {"enqueued_at": now},
        batch_size,
    )
    _send_each(dispatch, events, "event")
    deliveries = _take_batches(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=cutoff),
        {"next_attempt_at": now},
        batch_size,
    )
    enqueue_deliveries(deliveries)
    if events or deliveries:
        logger.info("Relayed %d events and %d deliveries.", len(events), len(deliveries))
    return len(events), len(deliveries)


def _take_batches(queryset: Any, changes: dict[str, Any], batch_size: int) -> list[Any]:
    """Claim the rows in batches (SKIP LOCKED where the database has it) and touch them."""
    using = router.db_for_write(queryset.model)
    skip_locked = connections[using].features.has_select_for_update_skip_locked
    taken: list[Any] = []
    while True:
        with transaction.atomic(using=using):
            rows = queryset.filter(pk__gt=taken[-1]) if taken else queryset
            rows = rows.order_by("pk")
            if skip_locked:
                rows = rows.select_for_update(skip_locked=True)
            ids = list(rows.values_list("pk", flat=True)[:batch_size])
            if not ids:
                return taken
            queryset.model._default_manager.filter(pk__in=ids).update(**changes)
        taken.extend(ids)


def redeliver(deliveries: Any) -> int:
    """Send deliveries again (admin action, ``rest_hooks_replay``), with the same ids.

    Receivers de-duplicate on the delivery id, so a replay reaches only those that never
    processed it. Attempts start again from the first step of the retry schedule.
    """
    # A pending delivery may be in flight: resetting it would let a second worker send it.
    ids = list(deliveries.exclude(status=Delivery.Status.PENDING).values_list("pk", flat=True))
    Delivery.objects.filter(pk__in=ids).update(
        status=Delivery.Status.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        finished_at=None,
    )
    enqueue_deliveries(ids)
    return len(ids)


# -- the actors -------------------------------------------------------------------------------

# Actors return nothing: Dramatiq would warn about a result with no Results middleware.


def _dispatch(event_id: int) -> None:
    fan_out(event_id)


def _relay() -> None:
    relay_pending()


dispatch = _actor(_dispatch, "rest_hooks.dispatch", max_retries=10, min_backoff=1000)
deliver = _actor(attempt, "rest_hooks.deliver", max_retries=3, min_backoff=1000)
relay = _actor(_relay, "rest_hooks.relay", max_retries=0)
