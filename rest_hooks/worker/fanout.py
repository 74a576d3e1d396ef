"""Fan-out: an event's matching hooks become deliveries, cut into batches.

One chunk of hooks a transaction, the event's cursor moved by compare-and-set so that a
duplicate message fans nothing out twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import router
from django.utils import timezone

from rest_hooks import metrics
from rest_hooks.conf import hook_settings
from rest_hooks.delivery.flow import SEND_HORIZON, origin_of
from rest_hooks.models import Delivery, Event, get_hook_model, uuid7
from rest_hooks.plurals import hooks_text
from rest_hooks.worker import gate
from rest_hooks.worker.batch import deliver_claimed, give_back, lease
from rest_hooks.worker.messages import Batch, send_batches
from rest_hooks.worker.tables import Table, write_transaction

logger = logging.getLogger(__name__)

# An event goes to the hooks that existed when it was captured: those created no later
# than its ``created_at``, give or take this. Both stamps come from application clocks
# (``Event.created_at`` from the process that saved the instance, ``Hook.created`` from the
# one that saved the hook, often other machines), so a hook made just before an event on
# a machine whose clock runs ahead is still served: a subscriber that existed must not
# miss an event, and one made within this margin after it may get it.
CAPTURE_SKEW = timedelta(seconds=1)

#: A target with fewer in-flight slots than batches gets fewer, larger batches, up to this
#: many times ``DELIVERY_BATCH_SIZE``: a batch that finds no free slot is refused and comes
#: back through the broker every 0.25 s, a claim, a gate call and a message each time.
BATCH_GROWTH = 10


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
    lanes = 1
    try:
        while (chunk := _next_chunk(event_id, hold=deliver_here and not held)) is not None:
            event, batches, kept, done = chunk
            if kept is not None:
                held, lanes = kept
                total += len(held)
            send_batches(batches)
            total += sum(len(batch.ids) for batch in batches)
            if done:
                metrics.fanned_out(event.name, total)
                logger.info(
                    "Event %s (%s) fanned out to %s.",
                    event_id,
                    event.name,
                    hooks_text(total),
                    extra={"event_id": event_id, "fanout": total},
                )
                break
    except BaseException:
        # Whatever the error (a database, the broker, a time limit), the held batch must
        # not wait for its lease: the retried message resumes after it.
        if held:
            give_back(held, lanes=lanes)
        raise
    if held:
        deliver_claimed(held, lanes=lanes)
    return total


def _next_chunk(
    event_id: int, *, hold: bool
) -> tuple[Event, list[Batch], tuple[list[Delivery], int] | None, bool] | None:
    """Create the deliveries of the next chunk of hooks after the event's cursor.

    Returns the event, the batches to send, the first batch's deliveries and lanes if
    ``hold`` (then created claimed, not among those to send, with their hooks), and whether the
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
        ids = [uuid7() for _ in rows]
        hook_ids = [hook_id for hook_id, _, _ in rows]
        batches = plan_batches(
            (pk, target, rate) for pk, (_, target, rate) in zip(ids, rows, strict=True)
        )
        # The new deliveries: due now, except the held batch's, claimed by this thread.
        varying: dict[str, list[Any]] = {"id": ids, "hook": hook_ids}
        same: dict[str, Any] = {"event": event, "created_at": now, "next_attempt_at": now}
        kept: list[Delivery] = []
        lanes = 1
        if hold and batches:
            first, lanes = batches.pop(0)
            held_ids = set(first)
            held = [str(pk) in held_ids for pk in ids]
            leased = now + lease(len(first))
            varying["attempts"] = [int(h) for h in held]
            varying["next_attempt_at"] = [leased if h else now for h in held]
            del same["next_attempt_at"]
            kept = [
                _stored(
                    Delivery(
                        id=pk,
                        event=event,
                        hook_id=hook_id,
                        attempts=1,
                        next_attempt_at=leased,
                        created_at=now,
                    ),
                    using,
                )
                for pk, hook_id, h in zip(ids, hook_ids, held, strict=True)
                if h
            ]
        Table.of(Delivery, using).insert(varying, same)
    if kept:
        known: dict[Any, Any] = {hook.pk: hook for hook in read}
        unread = [d.hook_id for d in kept if d.hook_id not in known]
        if unread:
            known.update(hooks.in_bulk(unread))
        # A hook deleted since the commit took its delivery with it (CASCADE).
        kept = [d for d in kept if d.hook_id in known]
        for delivery in kept:
            delivery.hook = known[delivery.hook_id]
    return event, batches, (kept, lanes) if kept else None, done


def plan_batches(rows: Iterable[tuple[Any, str, str]]) -> list[Batch]:
    """Cut deliveries, given as (id, hook target, hook rate limit), into batches.

    A batch is what one ``deliver`` message carries: deliveries to one target under the
    same limits, admitted by the gate in one call and sent on the event loop, with their
    database work done a batch at a time. Each batch costs a message, a claim, an
    admission and a record, so a target's deliveries make as few batches as
    ``DELIVERY_BATCH_SIZE`` allows, of even sizes; under a rate limit, of at most what the
    rate lets go within ``SEND_HORIZON`` (the rest of a bigger batch would only be
    deferred). The batches share the target's in-flight slots out as *lanes*, how many of
    its deliveries each sends at once: twelve deliveries to a target that may have ten
    requests in flight are one batch sending ten at a time; five hundred are ten batches
    of fifty, each sending one at a time; two thousand are ten batches of two hundred
    (``BATCH_GROWTH``), not forty of fifty of which thirty would find no slot. Measured:
    slow receivers (100-150 ms) got 368 deliveries/s from batches of two with a lane
    each, and nginx 687/s from batches that each asked for all of the target's slots (the
    others refused and deferred).
    """
    targets: dict[tuple[str, str], list[str]] = {}
    for delivery_id, target, rate_limit in rows:
        targets.setdefault((origin_of(target), rate_limit or ""), []).append(str(delivery_id))
    batches: list[Batch] = []
    for (origin, rate_limit), ids in targets.items():
        try:
            limits = gate.limits_for(origin, rate_limit)
        except ValueError:  # a malformed Hook.rate_limit: the deliver actor reports it
            batches.extend(Batch([delivery_id]) for delivery_id in ids)
            continue
        size = max(1, int(hook_settings.DELIVERY_BATCH_SIZE))
        grown = size * BATCH_GROWTH if size > 1 else 1  # 1: one delivery a message
        if limits.rate:
            horizon = max(1, math.floor(limits.rate * SEND_HORIZON))
            size, grown = min(size, horizon), min(grown, horizon)
        count = math.ceil(len(ids) / size)
        slots = limits.max_in_flight
        if slots is not None and count > slots:
            count = max(slots, math.ceil(len(ids) / grown))
        size = math.ceil(len(ids) / count)
        lanes = size if slots is None else max(1, min(size, slots // count))
        batches.extend(Batch(ids[i : i + size], lanes) for i in range(0, len(ids), size))
    return batches


def _stored(delivery: Delivery, using: str) -> Delivery:
    """``delivery`` marked as a row of ``using`` (what saving it would have done)."""
    delivery._state.adding = False
    delivery._state.db = using
    return delivery
