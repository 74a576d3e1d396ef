"""Recording a batch's attempts: one write of their results, then what follows from them.

Retries are enqueued, ``hook_sent_event`` is sent, a hook that answered 410 or has
failed for ``DISABLE_AFTER`` is disabled, and each attempt gets its log line and metrics.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django.db import router
from django.utils import timezone

from rest_hooks import metrics
from rest_hooks.conf import hook_settings
from rest_hooks.delivery.http import HttpResult
from rest_hooks.delivery.retry import Outcome
from rest_hooks.models import Delivery, DeliveryAttempt, uuid7
from rest_hooks.signals import hook_disabled, hook_sent_event
from rest_hooks.worker import notices
from rest_hooks.worker.attempt import Attempt, instance_of, retry_policy
from rest_hooks.worker.messages import Batch, send_batches
from rest_hooks.worker.tables import Table

logger = logging.getLogger(__name__)

#: What recording an attempt changes on its delivery.
RECORDED = [
    "last_attempt_at",
    "status",
    "finished_at",
    "next_attempt_at",
    "last_status_code",
    "last_duration_ms",
    "last_error",
    "response_excerpt",
]


def record(attempts: list[Attempt], instances: dict[int, Any]) -> None:
    """Write the batch's results (its deliveries in one query, their attempts' rows in
    another), then act on them: signals, retries, logs."""
    now = timezone.now()
    retries: list[tuple[Delivery, float]] = []
    outcomes: list[str] = []
    for done in attempts:
        delivery = done.delivery
        delivery.last_duration_ms = done.duration_ms
        delivery.last_status_code = done.result.status_code if done.result else None
        delivery.response_excerpt = _storable(_excerpt(done.result))
        delivery.last_error = _storable(done.error)
        delay = None
        if done.outcome is Outcome.RETRY:
            delay = retry_policy().delay(delivery.attempts, done.retry_after)
            if _hook_failed(delivery.hook, now):
                delay = None
        if delay is None:
            delivery.status = (
                Delivery.Status.SUCCESS
                if done.outcome is Outcome.SUCCESS
                else Delivery.Status.FAILED
            )
            delivery.finished_at = now
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            retries.append((delivery, delay))
        outcomes.append(_logged_outcome(done))
    recorded = [done.delivery for done in attempts]
    using = router.db_for_write(Delivery)
    Table.of(Delivery, using).save(recorded, RECORDED)
    Table.of(DeliveryAttempt, using).insert(
        {
            "id": [uuid7() for _ in recorded],
            "delivery": [delivery.pk for delivery in recorded],
            "number": [delivery.attempts for delivery in recorded],
            "started_at": [delivery.last_attempt_at or now for delivery in recorded],
            "outcome": outcomes,
            "status_code": [delivery.last_status_code for delivery in recorded],
            "duration_ms": [delivery.last_duration_ms for delivery in recorded],
            "error": [delivery.last_error for delivery in recorded],
            "response_excerpt": [delivery.response_excerpt for delivery in recorded],
        },
        {},
    )

    for done, reported in zip(attempts, outcomes, strict=True):
        delivery, hook, event = done.delivery, done.delivery.hook, done.delivery.event
        if done.outcome is Outcome.SUCCESS:
            _hook_succeeded(hook)
            if hook_sent_event.has_listeners():
                hook_sent_event.send_robust(
                    sender=type(hook),
                    payload=json.loads(done.body),
                    instance=instance_of(event, instances),
                    hook=hook,
                    delivery=delivery,
                )
        elif done.outcome is Outcome.GONE:
            disable_hook(hook, "The target answered 410 Gone.", cause="gone")
        logger.info(
            "Delivery %s attempt %d to hook %s: %s%s in %.1f ms.",
            delivery.pk,
            delivery.attempts,
            hook.pk,
            reported,
            f" ({done.error})" if done.error else "",
            done.duration_ms,
            extra={
                "delivery_id": str(delivery.pk),
                "hook_id": hook.pk,
                "event": event.name,
                "event_id": event.pk,
                "attempt": delivery.attempts,
                "outcome": reported,
                "status_code": delivery.last_status_code,
                "duration_ms": round(done.duration_ms, 1),
            },
        )
        metrics.attempt_made(
            event_name=event.name,
            event_created_at=event.created_at,
            target=hook.target,
            outcome=reported,
            result=done.result,
            duration_ms=done.duration_ms,
        )
    for delivery, delay in retries:
        send_batches([Batch([str(delivery.pk)])], delay)


def _logged_outcome(done: Attempt) -> str:
    """What the attempt came to (``DeliveryAttempt.Outcome``), its delivery recorded."""
    if done.outcome is Outcome.SUCCESS:
        return DeliveryAttempt.Outcome.SUCCESS.value
    if done.outcome is Outcome.FINAL:
        return DeliveryAttempt.Outcome.BLOCKED.value
    if done.delivery.status == Delivery.Status.PENDING:
        return DeliveryAttempt.Outcome.RETRY.value
    return DeliveryAttempt.Outcome.FAILED.value


def _excerpt(result: HttpResult | None) -> str:
    if result is None:
        return ""
    return result.body[: int(hook_settings.RESPONSE_EXCERPT_BYTES)].decode("utf-8", "replace")


def _storable(text: str) -> str:
    """``text`` as every database stores it: PostgreSQL refuses NUL characters in text,
    and a receiver's body or an error message may hold some."""
    return text.replace("\x00", "\ufffd")


def _hook_succeeded(hook: Any) -> None:
    if hook.failing_since is not None:
        type(hook)._default_manager.filter(pk=hook.pk).update(failing_since=None)


def _hook_failed(hook: Any, now: Any) -> bool:
    """Note the failure; warn the owner of a stage of ``NOTICE_AT`` reached; disable the
    hook if it has failed for too long. True if disabled."""
    if hook.failing_since is None:
        type(hook)._default_manager.filter(pk=hook.pk, failing_since=None).update(failing_since=now)
        return False
    if now - hook.failing_since < timedelta(seconds=float(hook_settings.DISABLE_AFTER)):
        notices.failing(hook, now)
        return False
    disable_hook(
        hook, f"Deliveries have failed since {hook.failing_since.isoformat()}.", cause="failing"
    )
    return True


def disable_hook(hook: Any, reason: str, cause: str = "other") -> None:
    """Switch a hook off, say why, and tell whoever listens to ``hook_disabled``.

    ``cause`` is the bounded label of the metric: ``gone`` (410), ``failing``.
    """
    disabled_at = timezone.now()
    updated = (
        type(hook)
        ._default_manager.filter(pk=hook.pk, is_active=True)
        .update(is_active=False, disabled_reason=reason[:255], disabled_at=disabled_at)
    )
    if updated:
        hook.is_active = False
        hook.disabled_reason = reason[:255]
        logger.warning("Hook %s disabled: %s", hook.pk, reason, extra={"hook_id": hook.pk})
        metrics.hook_disabled(cause)
        hook_disabled.send_robust(sender=type(hook), hook=hook, reason=reason)
        notices.disabled(hook, reason, disabled_at)
