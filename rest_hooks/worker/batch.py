"""A batch of deliveries to one target: claimed, admitted by the gate, attempted, recorded.

The claim comes before the gate, so that only CPU work stands between the gate's
admission and the requests. What was not tried (the gate refused, the target answered a
failure or a pause, the batch's time was up) goes back, its attempt not counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import timedelta
from typing import Any

from django.db import router
from django.db.models import F
from django.utils import timezone

from rest_hooks import metrics
from rest_hooks.conf import hook_settings
from rest_hooks.delivery.async_http import AsyncDeliveryClient
from rest_hooks.delivery.flow import (
    SEND_HORIZON,
    Decision,
    Limits,
    Reason,
    Result,
    Tally,
    origin_of,
)
from rest_hooks.models import Delivery, Event, get_hook_model
from rest_hooks.worker import attempt, gate, handoff
from rest_hooks.worker.attempt import Attempt
from rest_hooks.worker.messages import Batch, send_batches
from rest_hooks.worker.record import record
from rest_hooks.worker.tables import Expression, Table

logger = logging.getLogger(__name__)

# Messages may be handled slightly before the row says they are due (clock skew).
EARLY_TOLERANCE = timedelta(seconds=1)
# A delivery whose host name no lookup could start for waits this long (s, plus jitter).
RESOLVER_BUSY_WAIT = 1.0
# A batch that a rate spreads over more than this many seconds sends over half of its
# target's in-flight slots (lanes_for).
SPREAD_LANES_AFTER = 0.1


def deliver_batch(
    delivery_ids: list[str], reservation: float | None = None, lanes: int = 1
) -> None:
    """The deliver actor: claim the deliveries of a batch still due, and deliver them.

    ``reservation``: the rate-limit slot the gate reserved for it when it deferred it.
    """
    claimed = claim(delivery_ids)
    if not claimed:
        logger.debug("Deliveries %s are not due or not pending; nothing to send.", delivery_ids)
        return
    using = router.db_for_write(Delivery)
    try:
        hooks = Table.of(get_hook_model(), using).in_bulk({d.hook_id for d in claimed})
        # A batch is usually one event's: its payload is read once, not once a delivery.
        events = Table.of(Event, using).in_bulk({d.event_id for d in claimed})
    except BaseException:
        # Nothing was tried (a database error, a time limit): the batch goes back now,
        # not when its lease ends; the message is retried meanwhile.
        give_back(claimed, lanes=lanes)
        raise
    # A hook or an event deleted since the claim took its deliveries with it (CASCADE).
    claimed = [d for d in claimed if d.hook_id in hooks and d.event_id in events]
    for delivery in claimed:
        delivery.hook = hooks[delivery.hook_id]
        delivery.event = events[delivery.event_id]
    if claimed:
        deliver_claimed(claimed, reservation, lanes)


def deliver_claimed(
    claimed: list[Delivery], reservation: float | None = None, lanes: int = 1
) -> None:
    """Make one attempt of each delivery of a claimed batch, at the gate's pace; record them.

    The gate admits the batch in one call: it gives each delivery it admits a send time
    (at once without a rate limit; one rate slot apart with one, within ``SEND_HORIZON``)
    and the batch in-flight slots to send them over, up to its ``lanes`` (``lanes_for``);
    what it did not admit goes back deferred, with its booked slots. The requests are
    made on the process's event loop (``handoff``). The batch stops starting requests at
    the first failure or pause the target answers (the rest go back to the queue, to be
    held back by the gate) and after ``BATCH_BUDGET`` seconds. The claim comes before the
    gate, so that only CPU work stands between the gate's admission and the requests: a
    claim that waited for a database lock after it would bunch up requests the gate had
    spaced.
    """
    try:
        admitted = _admit(claimed, reservation, lanes)
    except BaseException:
        # Nothing of the batch was tried: what is still to send goes back now, not when
        # its lease ends.
        give_back([d for d in claimed if d.hook.is_active], lanes=lanes)
        raise
    if admitted is None:
        return
    admission, sending = admitted

    def finish(ended: list[Attempt]) -> None:
        _finish(admission, sending, ended)

    if hook_settings.HOOK_DELIVERER is not None:
        finish(_through_deliverer(sending))
        return
    client = attempt.http_client()
    handoff.run(admission.lanes, lambda lanes: _send(admission, sending, lanes, client), finish)


def _stops_batch(done: Attempt) -> bool:
    """Whether the target's answer holds back the rest of its batch: a failure, a pause,
    or no lookup of its name could start (the same host name for all of them)."""
    return done.resolver_busy or done.health is Result.FAILURE or done.pause is not None


async def _send(
    admission: gate.Admission, sending: list[Delivery], lanes: int, client: AsyncDeliveryClient
) -> list[Attempt]:
    """Send each delivery at its time over ``lanes`` concurrent lanes; the attempts made,
    in the order they ended."""
    clock = time.monotonic
    started = clock()
    budget = float(hook_settings.BATCH_BUDGET)
    origin = origin_of(sending[0].hook.target)
    queue = iter(zip(sending, admission.send_at, strict=True))
    ended: list[Attempt] = []
    stopped = False

    def stopping() -> bool:
        """Whether to start no more requests: the batch's own target answered a failure or
        a pause, its breaker opened (seen by another batch of this process), or its
        time is up."""
        return (
            stopped
            or gate.opened_since(origin, started)
            or bool(ended and clock() - started > budget)
        )

    async def lane() -> None:
        nonlocal stopped
        for delivery, send_at in queue:  # the lanes share the queue: each takes the next
            if stopping():
                return
            if (wait := started + send_at - clock()) > 0:
                await asyncio.sleep(wait)
                if stopping():
                    return
            done = await attempt.http_attempt(delivery, client)
            ended.append(done)
            stopped = stopped or _stops_batch(done)

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return ended


def _through_deliverer(sending: list[Delivery]) -> list[Attempt]:
    """The batch through ``HOOK_DELIVERER``, one delivery after the other in this thread."""
    started = time.monotonic()
    budget = float(hook_settings.BATCH_BUDGET)
    instances: dict[int, Any] = {}
    ended: list[Attempt] = []
    for delivery in sending:
        if ended and (_stops_batch(ended[-1]) or time.monotonic() - started > budget):
            break
        ended.append(attempt.deliverer_attempt(delivery, instances))
    return ended


def _finish(admission: gate.Admission, sending: list[Delivery], ended: list[Attempt]) -> None:
    """Tell the gate how the batch went, put back what was not tried, record the rest."""
    tried = [a for a in ended if not a.resolver_busy]
    pauses = [a.pause for a in tried if a.pause is not None]
    gate.report(admission, Tally.of(*(a.health for a in tried)), max(pauses, default=None))
    done = {a.delivery.pk for a in tried}
    untried = [d for d in sending if d.pk not in done]
    if len(tried) < len(ended):
        # No lookup could start for the host name: it and the rest of the batch (the same
        # name) wait a moment, their attempts not counted, instead of using up a retry.
        _defer(untried, Decision(False, RESOLVER_BUSY_WAIT, Reason.RESOLVER_BUSY))
    elif untried:
        give_back(untried)
    if tried:
        record(tried, {})


def _admit(
    claimed: list[Delivery], reservation: float | None, lanes: int
) -> tuple[gate.Admission, list[Delivery]] | None:
    """The gate's admission of a batch, and the deliveries to send under it; None when
    none is to be sent now (cancelled, refused, deferred: each recorded or enqueued).
    What the gate did not admit of the batch goes back deferred."""
    disabled = [d for d in claimed if not d.hook.is_active]
    if disabled:
        _cancel(disabled, "The hook is disabled.")
        claimed = [d for d in claimed if d.hook.is_active]
        if not claimed:
            return None
    hook = claimed[0].hook
    try:
        limits = gate.limits_for(origin_of(hook.target), getattr(hook, "rate_limit", ""))
        most = lanes_for(limits, len(claimed), lanes)
        admission = gate.admit(hook, reservation, len(claimed), SEND_HORIZON, most)
    except ValueError as exc:
        # A Hook.rate_limit stored without full_clean() (bulk_create, update(), raw SQL).
        # A batch shares one rate_limit (plan_batches): it fails for good, with why.
        record([attempt.refused_attempt(d, f"the hook's rate_limit: {exc}") for d in claimed], {})
        return None
    if not isinstance(admission, gate.Admission):
        _defer(claimed, admission, lanes)
        return None
    sending, rest = claimed[: len(admission.send_at)], claimed[len(admission.send_at) :]
    if rest and admission.rest is not None:
        _defer(rest, admission.rest, lanes)
    elif rest:
        # The half-open breaker lets one request through; the others wait for its answer.
        give_back(rest)
    return admission, sending


def lanes_for(limits: Limits, count: int, planned: int) -> int:
    """How many of a batch's ``count`` deliveries it sends at once, at most.

    As planned (``plan_batches``): a batch holds its in-flight slots until its last
    request has ended, so the batches of a target share its slots out, and one that took
    more would hold the others back (deferred, to ask again) and send its own no sooner.
    A batch that a binding rate spreads over more than ``SPREAD_LANES_AFTER`` seconds is
    the exception: the batches of such a target run one after the other, each over the
    next second's slots, and few lanes would keep the pace of the rate only with a
    receiver answering within an interval. It gets half of the target's slots, so that it
    and the next batch can overlap.
    """
    if limits.rate and count / limits.rate >= SPREAD_LANES_AFTER:
        planned = (limits.max_in_flight or count) // 2
    return max(1, min(count, planned))


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
    leased_until = timezone.now() + lease(len(delivery_ids))
    claimed = table.claim(due, {"next_attempt_at": leased_until, "attempts": Expression("{} + 1")})
    position = {delivery_id: i for i, delivery_id in enumerate(delivery_ids)}
    claimed.sort(key=lambda d: position.get(str(d.pk), 0))
    return claimed


def lease(size: int) -> timedelta:
    """How long a claimed batch of ``size`` deliveries is kept from the relay.

    Its attempts end within it (each within ``DEADLINE``, none started after
    ``BATCH_BUDGET`` nor later than ``SEND_HORIZON`` after its admission);
    ``LEASE_MARGIN`` covers the writes around them. Should the worker die, the relay
    takes the batch over once the lease has run out.
    """
    s = hook_settings
    budget = float(s.DEADLINE) + SEND_HORIZON + (float(s.BATCH_BUDGET) if size > 1 else 0)
    return timedelta(seconds=budget + float(s.LEASE_MARGIN))


def give_back(
    deliveries: list[Delivery],
    delay: float = 0,
    reservation: float | None = None,
    lanes: int = 1,
) -> None:
    """Release claimed deliveries that were not tried, their attempt not counted, and
    enqueue them again as one batch (after ``delay`` seconds)."""
    ids = [d.pk for d in deliveries]
    Delivery.objects.filter(pk__in=ids).update(
        next_attempt_at=timezone.now() + timedelta(seconds=delay), attempts=F("attempts") - 1
    )
    send_batches([Batch([str(pk) for pk in ids], lanes)], delay, reservation)


def _defer(deliveries: list[Delivery], decision: Decision, lanes: int = 1) -> None:
    """Hold claimed deliveries back for as long as the gate says; they use up no retry.

    A delivery that holds a reserved slot comes back just after it, with it; jitter
    spreads a crowd of other deferred deliveries over time.
    """
    if decision.reservation is not None:
        wait = decision.wait  # RESERVATION_EARLY absorbs a message a hair early
    else:
        wait = decision.wait * random.uniform(1.0, 1.1) + 0.01  # noqa: S311
    give_back(deliveries, wait, decision.reservation, lanes)
    reason = decision.reason.value if decision.reason else "unknown"
    metrics.deferrals.labels(reason=reason).inc(len(deliveries))
    logger.debug(
        "Deliveries %s deferred %.2f s (%s).",
        [str(d.pk) for d in deliveries],
        wait,
        reason,
        extra={"delivery_id": str(deliveries[0].pk), "reason": reason},
    )
