"""The Dramatiq actors: ``dispatch`` (fan-out), ``deliver`` (a batch of POSTs to one
target) and the relay.

Every actor is idempotent, because a message may arrive twice (a worker killed before it
acked, the relay re-sending an event whose first message was merely slow):

- ``dispatch`` advances a cursor on the event with a compare-and-set UPDATE, so one event is
  fanned out once; a unique constraint on (event, hook) backs that up.
- ``deliver`` claims its deliveries in a transaction that takes only rows still due and
  not locked by another worker, and sets a lease, so a delivery that succeeded, failed for
  good, or is in flight elsewhere is not sent again.

Messages carry ids only (and, for a delivery the rate limit holds back, the time of the
slot it reserved): no payload, no target, no secret.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
from django.core.serializers.json import DjangoJSONEncoder
from django.db import router
from django.db.models import F
from django.utils import timezone

from rest_hooks import __version__, gatekeeper, metrics
from rest_hooks.broker import setup_broker
from rest_hooks.conf import address_policy, hook_settings, on_reload, refusal_message
from rest_hooks.delivery.flow import Decision, Reason, Result, health, origin_of, pause_for
from rest_hooks.delivery.http import DeliveryClient, DeliveryError, HttpOptions, HttpResult
from rest_hooks.delivery.retry import Outcome, RetryPolicy, classify, parse_retry_after
from rest_hooks.events import get_hook_model
from rest_hooks.models import Delivery, Event
from rest_hooks.security.encryption import DecryptionError
from rest_hooks.security.network import TargetRefused
from rest_hooks.security.signing import signature_headers
from rest_hooks.signals import hook_disabled, hook_sent_event
from rest_hooks.sql import Expression, Table, write_transaction

logger = logging.getLogger(__name__)

USER_AGENT = f"rest-hooks/{__version__}"
# Messages may be handled slightly before the row says they are due (clock skew).
EARLY_TOLERANCE = timedelta(seconds=1)
# An event goes to the hooks that existed when it was captured: those created no later
# than its ``created_at``, give or take this. Both stamps come from application clocks
# (``Event.created_at`` from the process that saved the instance, ``Hook.created`` from the
# one that saved the hook, often other machines), so a hook made just before an event on
# a machine whose clock runs ahead is still served: a subscriber that existed must not
# miss an event, and one made within this margin after it may get it.
CAPTURE_SKEW = timedelta(seconds=1)
# A target's deliveries are cut into this many batches, or as many as it may have
# requests in flight if fewer, so that batches run side by side.
SPREAD = 10
# A delivery whose host name no lookup could start for waits this long (s, plus jitter).
RESOLVER_BUSY_WAIT = 1.0
# Deliveries planned into batches per query.
LOOKUP_CHUNK = 500

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


def fan_out(event_id: int, *, deliver_here: bool = False) -> int:
    """Create one delivery per matching active hook, chunk by chunk; returns how many.

    Each chunk is one transaction (``_next_chunk``); its deliveries' messages are sent
    once it has committed. Memory stays bounded by the chunk size whatever the number of
    hooks. With ``deliver_here`` (the dispatch actor), the first batch is not sent but
    created claimed and delivered by this thread once the fan-out is done: an event with
    few subscribers reaches them one broker round trip and a few queries sooner. Should a
    later chunk fail (the message is then retried), that batch is given back at once, due
    and enqueued; should this worker die, the relay sends it once its lease is over.
    """
    total = 0
    held: list[Delivery] = []
    try:
        while (chunk := _next_chunk(event_id, hold=deliver_here and not held)) is not None:
            event, batches, kept, done = chunk
            held = held or kept
            _send_each(deliver, batches, "delivery")
            total += sum(map(len, batches)) + len(kept)
            if done:
                metrics.fanned_out(event.name, total)
                logger.info(
                    "Event %s (%s) fanned out to %d hooks.",
                    event_id,
                    event.name,
                    total,
                    extra={"event_id": event_id, "fanout": total},
                )
                break
    except BaseException:
        # Whatever the error (a database, the broker, a time limit), the held batch must
        # not wait for its lease: the retried message resumes after it.
        if held:
            _give_back(held)
        raise
    if held:
        deliver_claimed(held)
    return total


def _next_chunk(
    event_id: int, *, hold: bool
) -> tuple[Event, list[list[str]], list[Delivery], bool] | None:
    """Create the deliveries of the next chunk of hooks after the event's cursor.

    Returns the event, the batches to send, the first batch's deliveries if ``hold`` (then
    created claimed, not among those to send, with their hooks), and whether the
    fan-out is done; None when there is nothing (more) to do: the event is gone or
    dispatched, or another worker moved the cursor first (a compare-and-set, so that a
    duplicate message fans nothing out twice).
    """
    using = router.db_for_write(Event)
    events = Table.of(Event, using)
    hooks = Table.of(get_hook_model(), using)
    chunk_size = int(hook_settings.FANOUT_CHUNK_SIZE)
    now = timezone.now()
    with write_transaction(using):
        found = events.select({"pk": event_id})
        if not found or found[0].status != Event.Status.PENDING:
            return None
        event = found[0]
        if event.hook_id is not None:
            where: dict[str, Any] = {"pk": event.hook_id}
        else:
            # However late it is fanned out, not to hooks made after the event.
            created_by = event.created_at + CAPTURE_SKEW
            where = {"event": event.name, "is_active": True, "created__lte": created_by}
            if event.owner_id is not None:
                where["user"] = event.owner_id
            if event.fanout_cursor:
                where["pk__gt"] = event.fanout_cursor
        # Most events have few subscribers: the dispatch actor reads a batch's worth of
        # hooks whole, so that the batch it delivers needs no second query for them. The
        # hooks of an event with more are planned from three columns a hook, as reading
        # every hook whole would cost more than the query it spares.
        limit = min(chunk_size, max(1, int(hook_settings.DELIVERY_BATCH_SIZE)) + 1)
        read = hooks.select(where, order_by="pk", limit=limit) if hold else []
        if hold and (len(read) < limit or limit == chunk_size):  # the whole chunk
            rows = [(hook.pk, hook.target, hook.rate_limit) for hook in read]
        else:
            columns = ["pk", "target", "rate_limit"]
            rows = hooks.values(columns, where, order_by="pk", limit=chunk_size)
        done = event.hook_id is not None or len(rows) < chunk_size
        progress: dict[str, Any] = {
            "fanout_cursor": str(rows[-1][0]) if rows else event.fanout_cursor
        }
        if done:
            progress.update(status=Event.Status.DISPATCHED, dispatched_at=now)
        expected = {"pk": event_id, "status": Event.Status.PENDING}
        if not events.update(progress, expected | {"fanout_cursor": event.fanout_cursor}):
            return None
        deliveries = [
            Delivery(event=event, hook_id=hook_id, next_attempt_at=now) for hook_id, _, _ in rows
        ]
        batches = plan_batches(
            (d.pk, target, rate) for d, (_, target, rate) in zip(deliveries, rows, strict=True)
        )
        kept: list[Delivery] = []
        if hold and batches:
            first = set(batches.pop(0))
            kept = [d for d in deliveries if str(d.pk) in first]
            for delivery in kept:
                delivery.attempts = 1
                delivery.next_attempt_at = now + _lease(len(kept))
        Table.of(Delivery, using).insert(deliveries)
    if kept:
        known: dict[Any, Any] = {hook.pk: hook for hook in read}
        unread = [d.hook_id for d in kept if d.hook_id not in known]
        if unread:
            known.update(hooks.in_bulk(unread))
        # A hook deleted since the commit took its delivery with it (CASCADE).
        kept = [d for d in kept if d.hook_id in known]
        for delivery in kept:
            delivery.hook = known[delivery.hook_id]
    return event, batches, kept, done


def plan_batches(rows: Iterable[tuple[Any, str, str]]) -> list[list[str]]:
    """Cut deliveries, given as (id, hook target, hook rate limit), into batches.

    A batch is what one ``deliver`` message carries: deliveries to one target under the
    same limits, sent one after the other by one worker thread under one admission of the
    gate, with their database work done a batch at a time. A target with a rate limit gets
    one delivery a message (each waits for a slot of its own). Others are cut into
    ``SPREAD`` batches (fewer if the target may have fewer requests in flight), so that
    batches run side by side, of at most ``DELIVERY_BATCH_SIZE`` deliveries.
    """
    lanes: dict[tuple[str, str], list[str]] = {}
    for delivery_id, target, rate_limit in rows:
        lanes.setdefault((origin_of(target), rate_limit or ""), []).append(str(delivery_id))
    largest = max(1, int(hook_settings.DELIVERY_BATCH_SIZE))
    batches: list[list[str]] = []
    for (origin, rate_limit), ids in lanes.items():
        try:
            limits = gatekeeper.limits_for(origin, rate_limit)
        except ValueError:  # a malformed Hook.rate_limit: the deliver actor reports it
            limits = None
        if limits is None or limits.rate:
            size = 1
        else:
            spread = min(limits.max_in_flight or SPREAD, SPREAD)
            size = max(1, min(largest, math.ceil(len(ids) / spread)))
        batches.extend(ids[i : i + size] for i in range(0, len(ids), size))
    return batches


def enqueue_deliveries(delivery_ids: Iterable[Any]) -> None:
    """Send the messages of these deliveries, in batches (one query per 500 to plan them).

    On a broker error the relay sends the rest later.
    """
    ids = list(delivery_ids)
    for start in range(0, len(ids), LOOKUP_CHUNK):
        rows = (
            Delivery.objects.filter(pk__in=ids[start : start + LOOKUP_CHUNK])
            .order_by("pk")
            .values_list("pk", "hook__target", "hook__rate_limit")
        )
        _send_each(deliver, plan_batches(rows), "delivery")


def _send_each(
    actor: Any,
    ids: Iterable[Any],
    what: str,
    delay: float = 0,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Enqueue one message per id, stopping (with one log line) if the broker fails."""
    for object_id in ids:
        try:
            actor.send_with_options(
                args=(object_id,), kwargs=kwargs, delay=int(delay * 1000) or None
            )
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
                policy=address_policy(),
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


def attempt(delivery_ids: list[str], reservation: float | None = None) -> None:
    """The deliver actor: claim the deliveries of a batch still due, and deliver them.

    ``reservation``: the rate-limit slot the gate reserved for it when it deferred it.
    """
    claimed = claim(delivery_ids)
    if not claimed:
        logger.debug("Deliveries %s are not due or not pending; nothing to send.", delivery_ids)
        return
    using = router.db_for_write(Delivery)
    hooks = Table.of(get_hook_model(), using).in_bulk({d.hook_id for d in claimed})
    # A batch is usually one event's: its payload is read once, not once a delivery.
    events = Table.of(Event, using).in_bulk({d.event_id for d in claimed})
    # A hook or an event deleted since the claim took its deliveries with it (CASCADE).
    claimed = [d for d in claimed if d.hook_id in hooks and d.event_id in events]
    for delivery in claimed:
        delivery.hook = hooks[delivery.hook_id]
        delivery.event = events[delivery.event_id]
    if claimed:
        deliver_claimed(claimed, reservation)


def deliver_claimed(claimed: list[Delivery], reservation: float | None = None) -> None:
    """Make one attempt of each delivery of a claimed batch, in order; record them.

    The batch shares one admission of the gate, and one write of its results. It stops at
    the first failure or pause the target answers (the rest go back to the queue, to be
    held back by the gate), and after ``BATCH_BUDGET`` seconds. The claim comes before
    the gate, so that only CPU work stands between the gate's admission and the request:
    a claim that waited for a database lock after it would bunch up requests the gate had
    spaced.
    """
    disabled = [d for d in claimed if not d.hook.is_active]
    if disabled:
        _cancel(disabled, "The hook is disabled.")
        claimed = [d for d in claimed if d.hook.is_active]
        if not claimed:
            return
    try:
        admission = gatekeeper.admit(claimed[0].hook, reservation)
    except ValueError as exc:
        # A Hook.rate_limit stored without full_clean() (bulk_create, update(), raw SQL).
        # A batch shares one rate_limit (plan_batches): it fails for good, with why.
        _record([_refused(d, f"the hook's rate_limit: {exc}") for d in claimed], {})
        return
    if not isinstance(admission, gatekeeper.Admission):
        _defer(claimed, admission)
        return
    if admission.ticket is not None and admission.ticket.probe and len(claimed) > 1:
        # The half-open breaker lets one request through; the others wait for its answer.
        _give_back(claimed[1:])
        claimed = claimed[:1]

    started = time.monotonic()
    budget = float(hook_settings.BATCH_BUDGET)
    attempts: list[Attempt] = []
    instances: dict[int, Any] = {}
    successes = 0
    resolver_busy = False
    for delivery in claimed:
        if attempts and time.monotonic() - started > budget:
            break
        done = _send(delivery, instances)
        if done.resolver_busy:
            # Nothing was tried: it and the rest of the batch (the same host name) wait a
            # moment, their attempts not counted, instead of using up a retry each.
            resolver_busy = True
            break
        attempts.append(done)
        if done.health is Result.SUCCESS:
            successes += 1
        if done.health is Result.FAILURE or done.pause is not None:
            break
    last_health = attempts[-1].health if attempts else Result.NEUTRAL
    last_pause = attempts[-1].pause if attempts else None
    gatekeeper.report(
        admission, last_health, last_pause, successes - (last_health is Result.SUCCESS)
    )
    untried = claimed[len(attempts) :]
    if resolver_busy:
        _defer(untried, Decision(False, RESOLVER_BUSY_WAIT, Reason.RESOLVER_BUSY))
    elif untried:
        _give_back(untried)
    if attempts:
        _record(attempts, instances)


def _cancel(deliveries: list[Delivery], reason: str) -> None:
    """End claimed deliveries that are not to be attempted, with the reason in the log."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        status=Delivery.Status.CANCELLED,
        finished_at=timezone.now(),
        next_attempt_at=None,
        last_error=reason,
    )
    logger.info(
        "Deliveries %s (hooks %s) cancelled: %s",
        [str(d.pk) for d in deliveries],
        sorted({d.hook_id for d in deliveries}),
        reason,
        extra={"delivery_id": str(deliveries[0].pk), "hook_id": deliveries[0].hook_id},
    )


def claim(delivery_ids: list[str]) -> list[Delivery]:
    """Take those of the deliveries still due and not taken by anyone else, for one
    attempt each; returns them in the order of ``delivery_ids``.

    ``Table.claim``: the rows another worker is claiming are passed over. The lease lets
    the relay take them over if this worker dies mid-attempt.
    """
    table = Table.of(Delivery, router.db_for_write(Delivery))
    due = {
        "pk__in": delivery_ids,
        "status": Delivery.Status.PENDING,
        "next_attempt_at__lte": timezone.now() + EARLY_TOLERANCE,
    }
    lease = timezone.now() + _lease(len(delivery_ids))
    claimed = table.claim(due, {"next_attempt_at": lease, "attempts": Expression("{} + 1")})
    position = {delivery_id: i for i, delivery_id in enumerate(delivery_ids)}
    claimed.sort(key=lambda d: position.get(str(d.pk), 0))
    return claimed


def _lease(size: int) -> timedelta:
    """How long a claimed batch of ``size`` deliveries is kept from the relay.

    Its attempts end within it (each within ``DEADLINE``, none started after
    ``BATCH_BUDGET``); ``LEASE_MARGIN`` covers the writes around them. Should the worker
    die, the relay takes the batch over once the lease has run out.
    """
    s = hook_settings
    budget = float(s.DEADLINE) + (float(s.BATCH_BUDGET) if size > 1 else 0)
    return timedelta(seconds=budget + float(s.LEASE_MARGIN))


def _give_back(
    deliveries: list[Delivery], delay: float = 0, kwargs: dict[str, Any] | None = None
) -> None:
    """Release claimed deliveries that were not tried, their attempt not counted, and
    enqueue them again (after ``delay`` seconds)."""
    ids = [d.pk for d in deliveries]
    Delivery.objects.filter(pk__in=ids).update(
        next_attempt_at=timezone.now() + timedelta(seconds=delay), attempts=F("attempts") - 1
    )
    _send_each(deliver, [[str(pk) for pk in ids]], "delivery", delay=delay, kwargs=kwargs)


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


def _send(delivery: Delivery, instances: dict[int, Any]) -> Attempt:
    """Make one attempt and say how it went, whatever the receiver answered.

    Everything that can fail is inside the ``try``, from building the body to reading
    the answer's ``Retry-After``: an exception let out here would leave the delivery
    claimed but never recorded, resent by the relay again and again, and its batch's gate
    slot taken.
    """
    hook, event = delivery.hook, delivery.event
    delivery.last_attempt_at = timezone.now()
    started = time.monotonic()
    body = b""
    result: HttpResult | None = None
    retry_after: float | None = None
    error = ""
    # False when the target was never tried (refused, no lookup of its name could start,
    # our own fault): its breaker must learn nothing from the attempt.
    target_asked = True
    resolver_busy = False
    try:
        body = build_body(event, hook)
        if hook_settings.HOOK_DELIVERER is not None:
            # The old extension point replaces the POST; an exception means "retry".
            hook_settings.HOOK_DELIVERER(
                hook.target, json.loads(body), instance=_instance_of(event, instances), hook=hook
            )
            outcome = Outcome.SUCCESS
        else:
            with metrics.deliveries_in_flight.track_inprogress():
                result = http_client().post(
                    hook.target, body, _headers(delivery, event, hook, body)
                )
            outcome = classify(result.status_code)
            retry_after = parse_retry_after(result.headers.get("retry-after"), time.time())
            if retry_after is not None:
                retry_after = retry_policy().clamp_retry_after(retry_after)
    except DeliveryError as exc:
        outcome = classify(None, refused=exc.kind == "refused")
        target_asked = exc.counts_against_target
        resolver_busy = exc.kind == "busy"
        # The address policy's refusals say which setting would allow the target.
        policy_refusal = exc.__cause__
        if isinstance(policy_refusal, TargetRefused):
            error = f"{exc.kind}: {refusal_message(policy_refusal)}"
        else:
            error = f"{exc.kind}: {exc}"
    except DecryptionError as exc:
        # This hook's secret only: the target was not asked, its breaker learns nothing.
        outcome, error, target_asked = Outcome.RETRY, str(exc), False
        logger.warning(
            "Delivery %s not sent: %s",
            delivery.pk,
            exc,
            extra={"delivery_id": str(delivery.pk), "hook_id": hook.pk},
        )
    except Exception as exc:
        culprit = "HOOK_DELIVERER" if hook_settings.HOOK_DELIVERER else "rest_hooks"
        # A fault of rest_hooks says nothing of the target's health; the deliverer's may.
        target_asked = culprit == "HOOK_DELIVERER"
        if culprit == "rest_hooks":
            logger.exception(
                "Delivery %s failed in rest_hooks itself; it will be retried.",
                delivery.pk,
                extra={"delivery_id": str(delivery.pk), "hook_id": hook.pk},
            )
        outcome = Outcome.RETRY
        error = f"{culprit} raised {type(exc).__name__}: {exc}"
    status_code = result.status_code if result else None
    if result is not None and outcome is not Outcome.SUCCESS:
        error = f"HTTP {result.status_code}"
    return Attempt(
        delivery=delivery,
        body=body,
        outcome=outcome,
        result=result,
        error=error,
        duration_ms=(time.monotonic() - started) * 1000,
        retry_after=retry_after,
        health=health(status_code) if target_asked else Result.NEUTRAL,
        pause=pause_for(status_code, retry_after, float(hook_settings.THROTTLE_PAUSE)),
        resolver_busy=resolver_busy,
    )


def _refused(delivery: Delivery, reason: str) -> Attempt:
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


def _record(attempts: list[Attempt], instances: dict[int, Any]) -> None:
    """Write the batch's results in one query, then act on them: signals, retries, logs."""
    now = timezone.now()
    retries: list[tuple[Delivery, float]] = []
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
    recorded = [done.delivery for done in attempts]
    Table.of(Delivery, router.db_for_write(Delivery)).save(recorded, RECORDED)

    for done in attempts:
        delivery, hook, event = done.delivery, done.delivery.hook, done.delivery.event
        if done.outcome is Outcome.SUCCESS:
            _hook_succeeded(hook)
            if hook_sent_event.has_listeners():
                hook_sent_event.send_robust(
                    sender=type(hook),
                    payload=json.loads(done.body),
                    instance=_instance_of(event, instances),
                    hook=hook,
                    delivery=delivery,
                )
            reported = "success"
        elif done.outcome is Outcome.GONE:
            disable_hook(hook, "The target answered 410 Gone.", cause="gone")
            reported = "failed"
        elif done.outcome is Outcome.FINAL:
            reported = "blocked"
        else:
            reported = "retry" if delivery.status == Delivery.Status.PENDING else "failed"
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
        _send_each(deliver, [[str(delivery.pk)]], "delivery", delay=delay)


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


def _storable(text: str) -> str:
    """``text`` as every database stores it: PostgreSQL refuses NUL characters in text,
    and a receiver's body or an error message may hold some."""
    return text.replace("\x00", "\ufffd")


def _defer(deliveries: list[Delivery], decision: Decision) -> None:
    """Hold claimed deliveries back for as long as the gate says; they use up no retry.

    A delivery that holds a reserved slot comes back just after it, with it; jitter
    spreads a crowd of other deferred deliveries over time.
    """
    if decision.reservation is not None:
        wait = decision.wait  # RESERVATION_EARLY absorbs a message a hair early
        kwargs = {"reservation": decision.reservation}
    else:
        wait = decision.wait * random.uniform(1.0, 1.1) + 0.01  # noqa: S311
        kwargs = None
    _give_back(deliveries, wait, kwargs)
    reason = decision.reason.value if decision.reason else "unknown"
    metrics.deferrals.labels(reason=reason).inc(len(deliveries))
    logger.debug(
        "Deliveries %s deferred %.2f s (%s).",
        [str(d.pk) for d in deliveries],
        wait,
        reason,
        extra={"delivery_id": str(deliveries[0].pk), "reason": reason},
    )


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


def _instance_of(event: Event, instances: dict[int, Any]) -> Any:
    """The event's model instance, re-read once a batch (None when it is gone or the event
    is raw)."""
    from django.apps import apps

    if not event.instance_model:
        return None
    if event.pk not in instances:
        model = apps.get_model(event.instance_model)
        instances[event.pk] = model._default_manager.filter(pk=event.instance_pk).first()
    return instances[event.pk]


# -- relay ------------------------------------------------------------------------------------


def relay_pending(
    *, everything: bool = False, batch_size: int = 500
) -> tuple[list[Any], list[Any]]:
    """Re-enqueue events and deliveries whose message seems lost; returns their ids.

    Normally only what is overdue by ``RELAY_AFTER`` seconds; ``everything=True`` (the
    management command) takes every pending event and every due delivery at once.
    """
    now = timezone.now()
    cutoff = now if everything else now - timedelta(seconds=float(hook_settings.RELAY_AFTER))
    events = _take_batches(
        Event,
        {"status": Event.Status.PENDING, "enqueued_at__lte": cutoff},
        {"enqueued_at": now},
        batch_size,
    )
    _send_each(dispatch, events, "event")
    deliveries = _take_batches(
        Delivery,
        {"status": Delivery.Status.PENDING, "next_attempt_at__lte": cutoff},
        {"next_attempt_at": now},
        batch_size,
    )
    enqueue_deliveries(deliveries)
    if events or deliveries:
        logger.info("Relayed %d events and %d deliveries.", len(events), len(deliveries))
    return events, deliveries


def _take_batches(
    model: Any, where: dict[str, Any], changes: dict[str, Any], batch_size: int
) -> list[Any]:
    """Claim the rows that match (``Table.claim``: those no one else is taking) in batches
    in order of primary key, making ``changes``; returns their primary keys."""
    table = Table.of(model, router.db_for_write(model))
    taken: list[Any] = []
    while True:
        after = {"pk__gt": taken[-1]} if taken else {}
        claimed = table.claim(where | after, changes, order_by="pk", limit=batch_size, names=["pk"])
        pks = sorted(pk for (pk,) in claimed)
        taken.extend(pks)
        if len(pks) < batch_size:
            return taken


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
    fan_out(event_id, deliver_here=True)


def _relay() -> None:
    relay_pending()


dispatch = _actor(_dispatch, "rest_hooks.dispatch", max_retries=10, min_backoff=1000)
deliver = _actor(attempt, "rest_hooks.deliver", max_retries=3, min_backoff=1000)
relay = _actor(_relay, "rest_hooks.relay", max_retries=0)
