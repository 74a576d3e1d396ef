"""Racing: two relays and duplicate dispatch messages at once, while workers deliver.

On PostgreSQL the relays and the workers pass over each other's rows (``FOR UPDATE SKIP
LOCKED``); SQLite has one writer at a time, so there they queue for the lock instead
(``Table.claim``). Either way every delivery is created once and sent once: with no
worker killed, at-least-once has no cause to repeat anything.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count

from bookstore.models import Book
from rest_hooks import tasks
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.worker.relay import relay_pending
from tests.helpers import note, tally, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

EVENTS = 30
HOOKS = 20
#: Small chunks and batches: each event's fan-out takes several compare-and-sets of its
#: cursor, and its deliveries many messages, for the duplicates to race on.
RACY = {"FANOUT_CHUNK_SIZE": 7, "DELIVERY_BATCH_SIZE": 3}
DUPLICATE_DISPATCHES = 3


class Relays:
    """Threads that each run ``relay_pending(everything=True)`` (what ``manage.py
    rest_hooks_relay`` does) over and over, all starting at once, until stopped."""

    def __init__(self, count: int) -> None:
        self.rounds = 0
        self.events = self.deliveries = 0  # re-enqueued, over all rounds
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._start = threading.Barrier(count)
        self._threads = [threading.Thread(target=self._run) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        try:
            self._start.wait()
            while not self._stop.wait(0.05):
                events, deliveries = relay_pending(everything=True)
                self.rounds += 1
                self.events += len(events)
                self.deliveries += len(deliveries)
        except BaseException as exc:  # reported by stop(), not lost in the thread
            self.errors.append(exc)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        assert not self.errors, self.errors


def test_two_relays_and_duplicate_dispatches_send_each_delivery_once(user, receiver, start_workers):
    for i in range(HOOKS):
        Hook.objects.create(user=user, event="book.added", target=receiver.url(f"/{i}"))

    relays = Relays(2)
    try:
        for i in range(EVENTS):
            book = Book.objects.create(user=user, title=f"Race {i}", pages=i + 1, fiction=True)
            event = Event.objects.get(instance_pk=str(book.pk))
            for _ in range(DUPLICATE_DISPATCHES):
                tasks.dispatch.send(event.pk)
        # The relays re-send the pending events while the workers start, and everything
        # pending while they fan out and deliver.
        start_workers(processes=2, threads=4, **RACY)
        wait_until(
            lambda: Delivery.objects.filter(status="success").count() == EVENTS * HOOKS,
            what=f"{EVENTS * HOOKS} successful deliveries",
            timeout=120,
        )
    finally:
        relays.stop()

    assert relays.events > EVENTS
    assert relays.deliveries > 0
    assert not Event.objects.exclude(status="dispatched").exists()
    assert Delivery.objects.count() == EVENTS * HOOKS
    twice = Delivery.objects.values("event", "hook").annotate(n=Count("pk")).filter(n__gt=1)
    assert not twice.exists()
    deliveries = list(Delivery.objects.values_list("pk", flat=True))
    requests = receiver.wait_for(len(deliveries))
    tally(
        f"racing: 2 relays + {DUPLICATE_DISPATCHES} extra dispatches an event "
        f"({connection.vendor})",
        EVENTS,
        deliveries,
        requests,
    )
    note(
        f"racing ({connection.vendor}): the relays re-sent {relays.events} events and "
        f"{relays.deliveries} deliveries in {relays.rounds} rounds"
    )
    repeated = {k: n for k, n in Counter(r.headers["x-hook-id"] for r in requests).items() if n > 1}
    assert repeated == {}, "sent twice with no fault to cause it"
