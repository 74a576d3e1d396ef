"""One attempt of one delivery: its body, its headers, the request, and the verdict.

``http_attempt`` (a coroutine of the process's event loop) and ``deliverer_attempt`` (the
``HOOK_DELIVERER`` extension point, in the worker thread) never raise: whatever the
receiver answers or whatever fails on the way becomes an ``Attempt`` through one
``verdict`` (its outcome, the breaker health, the pause and retry-after the answer asks
for), which the batch acts on and ``record`` writes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from rest_hooks import __version__, metrics
from rest_hooks.conf import address_policy, hook_settings, on_reload, refusal_message
from rest_hooks.delivery import loop
from rest_hooks.delivery.async_http import AsyncDeliveryClient
from rest_hooks.delivery.flow import Result, health, pause_for
from rest_hooks.delivery.http import DeliveryError, HttpOptions, HttpResult
from rest_hooks.delivery.retry import Outcome, RetryPolicy, classify, parse_retry_after
from rest_hooks.models import Delivery, Event
from rest_hooks.security.encryption import DecryptionError
from rest_hooks.security.network import TargetRefused
from rest_hooks.security.signing import signature_headers

logger = logging.getLogger(__name__)

USER_AGENT = f"rest-hooks/{__version__}"


_client: AsyncDeliveryClient | None = None
_client_pid = 0


def http_client() -> AsyncDeliveryClient:
    """The process's delivery client, for the coroutines of its event loop (rebuilt after
    a fork or a setting change)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        s = hook_settings
        _client = AsyncDeliveryClient(
            HttpOptions(
                connect_timeout=s.CONNECT_TIMEOUT,
                read_timeout=s.READ_TIMEOUT,
                pool_timeout=s.POOL_TIMEOUT,
                deadline=s.DEADLINE,
                max_response_bytes=s.MAX_RESPONSE_BYTES,
                policy=address_policy(),
                user_agent=USER_AGENT,
                https_only=bool(s.HTTPS_ONLY),
                max_connections=int(s.MAX_IN_FLIGHT_PER_PROCESS),
            )
        )
        _client_pid = os.getpid()
    return _client


@on_reload
def _forget_client() -> None:
    global _client
    if _client is not None and _client_pid == os.getpid():
        # Its connections belong to the loop it ran on: closed there, not waited for.
        loop.submit(_client.aclose())
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
    before, after = _around_hook(event.payload)
    # Like the capture: a hook's dict() may hold a UUID primary key, a date, a Decimal.
    return before + json.dumps(hook.dict(), cls=DjangoJSONEncoder).encode() + after


#: Stands for the "hook" member while a payload is cut around it; random, so that no
#: payload can contain it.
_HOOK_MARK = f"rest_hooks:hook:{uuid.uuid4().hex}"


@functools.lru_cache(maxsize=16)
def _around_hook(payload: str) -> tuple[bytes, bytes]:
    """The payload's JSON before and after the value of its ``"hook"`` member.

    The deliveries of one event differ only there: each splices its own hook in, and the
    payload is parsed and written once per event, not once per delivery.
    """
    data = json.loads(payload)
    data["hook"] = _HOOK_MARK
    before, after = json.dumps(data, cls=DjangoJSONEncoder).split(json.dumps(_HOOK_MARK), 1)
    return before.encode(), after.encode()


@dataclass
class Attempt:
    """One request of a batch, as it went; recorded with the rest of the batch."""

    delivery: Delivery
    body: bytes
    outcome: Outcome
    result: HttpResult | None
    error: str
    duration_ms: float
    retry_after: float | None
    health: Result
    pause: float | None
    # No lookup of the target's name could start: no request was made (see deliver_claimed).
    resolver_busy: bool = False


def deliverer_attempt(delivery: Delivery, instances: dict[int, Any]) -> Attempt:
    """One attempt through ``HOOK_DELIVERER``, the old extension point that replaces the
    POST: called in the worker thread (it may query the database); an exception means
    "retry". Never raises."""
    hook, event = delivery.hook, delivery.event
    deliverer = hook_settings.HOOK_DELIVERER
    assert deliverer is not None
    delivery.last_attempt_at = timezone.now()
    started = time.monotonic()
    body = b""
    try:
        body = build_body(event, hook)
        deliverer(hook.target, json.loads(body), instance=instance_of(event, instances), hook=hook)
    except Exception as exc:
        return verdict(delivery, started, body, None, exc)
    return verdict(delivery, started, body, None, None)


async def http_attempt(delivery: Delivery, client: AsyncDeliveryClient) -> Attempt:
    """One attempt: sign the body and POST it from the event loop. Never raises.

    Everything that can fail is inside the ``try``, from building the body to reading
    the answer: an exception let out here would leave the delivery claimed but never
    recorded, resent by the relay again and again, and its batch's gate slots taken.
    """
    hook, event = delivery.hook, delivery.event
    delivery.last_attempt_at = timezone.now()
    started = time.monotonic()
    body = b""
    try:
        body = build_body(event, hook)
        headers = _headers(delivery, event, hook, body)
        with metrics.deliveries_in_flight.track_inprogress():
            result = await client.post(hook.target, body, headers)
    except Exception as exc:
        return verdict(delivery, started, body, None, exc)
    return verdict(delivery, started, body, result, None)


def verdict(
    delivery: Delivery,
    started: float,
    body: bytes,
    result: HttpResult | None,
    error: Exception | None,
) -> Attempt:
    """The one verdict of an attempt: what the answer (``result``) or the ``error`` means
    for the delivery (outcome, retry-after, the reported error) and for its target (the
    breaker's health, the pause it asks for). Never raises."""
    hook = delivery.hook
    retry_after: float | None = None
    message = ""
    # False when the target was never tried (refused, no lookup of its name could start,
    # our own fault): its breaker must learn nothing from the attempt.
    target_asked = True
    resolver_busy = False
    if error is None and result is None:  # HOOK_DELIVERER returned
        outcome = Outcome.SUCCESS
    elif error is None and result is not None:
        outcome = classify(result.status_code)
        try:
            retry_after = parse_retry_after(result.headers.get("retry-after"), time.time())
            if retry_after is not None:
                retry_after = retry_policy().clamp_retry_after(retry_after)
        except Exception as exc:  # our own fault: the answer still counts as it came
            logger.exception(
                "Delivery %s: reading the answer's Retry-After failed.",
                delivery.pk,
                extra={"delivery_id": str(delivery.pk), "hook_id": hook.pk},
            )
            message = f"rest_hooks raised {type(exc).__name__}: {exc}"
        if outcome is not Outcome.SUCCESS:
            message = f"HTTP {result.status_code}"
    elif isinstance(error, DeliveryError):
        outcome = classify(None, refused=error.kind == "refused")
        target_asked = error.counts_against_target
        resolver_busy = error.kind == "busy"
        # The address policy's refusals say which setting would allow the target.
        policy_refusal = error.__cause__
        if isinstance(policy_refusal, TargetRefused):
            message = f"{error.kind}: {refusal_message(policy_refusal)}"
        else:
            message = f"{error.kind}: {error}"
    elif isinstance(error, DecryptionError):
        # This hook's secret only: the target was not asked, its breaker learns nothing.
        outcome, message, target_asked = Outcome.RETRY, str(error), False
        logger.warning(
            "Delivery %s not sent: %s",
            delivery.pk,
            error,
            extra={"delivery_id": str(delivery.pk), "hook_id": hook.pk},
        )
    else:
        culprit = "HOOK_DELIVERER" if hook_settings.HOOK_DELIVERER else "rest_hooks"
        # A fault of rest_hooks says nothing of the target's health; the deliverer's may.
        target_asked = culprit == "HOOK_DELIVERER"
        if culprit == "rest_hooks":
            logger.error(
                "Delivery %s failed in rest_hooks itself; it will be retried.",
                delivery.pk,
                exc_info=error,
                extra={"delivery_id": str(delivery.pk), "hook_id": hook.pk},
            )
        outcome = Outcome.RETRY
        message = f"{culprit} raised {type(error).__name__}: {error}"
    status_code = result.status_code if result else None
    return Attempt(
        delivery=delivery,
        body=body,
        outcome=outcome,
        result=result,
        error=message,
        duration_ms=(time.monotonic() - started) * 1000,
        retry_after=retry_after,
        health=health(status_code) if target_asked else Result.NEUTRAL,
        pause=pause_for(status_code, retry_after, float(hook_settings.THROTTLE_PAUSE)),
        resolver_busy=resolver_busy,
    )


def refused_attempt(delivery: Delivery, reason: str) -> Attempt:
    """An attempt refused before any request: it fails the delivery for good."""
    delivery.last_attempt_at = timezone.now()
    return Attempt(
        delivery=delivery,
        body=b"",
        outcome=Outcome.FINAL,
        result=None,
        error=f"refused: {reason}",
        duration_ms=0.0,
        retry_after=None,
        health=Result.NEUTRAL,
        pause=None,
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


def instance_of(event: Event, instances: dict[int, Any]) -> Any:
    """The event's model instance, re-read once a batch (None when it is gone or the event
    is raw)."""
    if not event.instance_model:
        return None
    if event.pk not in instances:
        model = apps.get_model(event.instance_model)
        instances[event.pk] = model._default_manager.filter(pk=event.instance_pk).first()
    return instances[event.pk]
