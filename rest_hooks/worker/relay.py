"""The relay: what the broker lost, or never got, is enqueued again.

Events still pending and deliveries overdue by ``RELAY_AFTER`` are claimed (so that
relays running at once in several processes take each row once) and sent again; a replay
(``redeliver``) starts deliveries over with their own ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import router
from django.utils import timezone

from rest_hooks.conf import hook_settings
from rest_hooks.models import Delivery, Event
from rest_hooks.plurals import deliveries_text, events_text
from rest_hooks.worker.fanout import plan_batches
from rest_hooks.worker.messages import DISPATCH, send_batches, send_each
from rest_hooks.worker.tables import Table

logger = logging.getLogger(__name__)

# Deliveries planned into batches per query.
LOOKUP_CHUNK = 500


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
        send_batches(plan_batches(rows))


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
    send_each(DISPATCH, events, "event")
    deliveries = _take_batches(
        Delivery,
        {"status": Delivery.Status.PENDING, "next_attempt_at__lte": cutoff},
        {"next_attempt_at": now},
        batch_size,
    )
    enqueue_deliveries(deliveries)
    if events or deliveries:
        logger.info(
            "Relayed %s and %s.", events_text(len(events)), deliveries_text(len(deliveries))
        )
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
