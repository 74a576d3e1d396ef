"""A worker process killed with SIGKILL, mid-batch and mid-fan-out: nothing is lost.

What a killed worker held comes back by itself (README, Guarantees): the deliveries it
had claimed once their lease has run out (``DEADLINE`` + ``BATCH_BUDGET`` +
``LEASE_MARGIN``) and ``RELAY_AFTER`` has passed, at the next relay (every
``RELAY_INTERVAL``, give or take half); its in-flight slots of the target after the same
lease; the event it was fanning out and the messages it had fetched ``RELAY_AFTER``
after they were enqueued. Here with short values, so that a test takes seconds.

Each test kills the worker *process* that holds the work (a child of ``rundramatiq``'s
main process, which then stops); a second ``rundramatiq`` takes the work over, as another
machine would. That one is started first and frozen (SIGSTOP) until the kill, so that
the work goes to the victim and the kill comes while it is under way.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Delivery, Event, Hook
from tests.helpers import (
    SHORT_LEASES,
    Workers,
    tally,
    time_to_deliver,
    wait_until,
    worker_processes,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

#: The README's bound after a kill, for a batch claimed at the kill: its lease, then
#: RELAY_AFTER, then the next relay (at most 1.5 RELAY_INTERVAL later).
BOUND = (
    SHORT_LEASES["DEADLINE"]
    + SHORT_LEASES["BATCH_BUDGET"]
    + SHORT_LEASES["LEASE_MARGIN"]
    + SHORT_LEASES["RELAY_AFTER"]
    + 1.5 * SHORT_LEASES["RELAY_INTERVAL"]
)
#: What a slow shared VM may add to the bound: the delivering itself, a busy machine.
SLACK = 10


def victim_and_survivor(start_workers: Callable[..., Workers], **limits: Any) -> tuple[int, int]:
    """Two ``rundramatiq``s of one worker process each; the survivor's frozen for now."""
    (victim,) = worker_processes(start_workers(processes=1, threads=2, **limits))
    (survivor,) = worker_processes(start_workers(processes=1, threads=2, **limits))
    os.kill(survivor, signal.SIGSTOP)
    return victim, survivor


def test_killed_mid_batch(user, receiver, start_workers):
    """Both of a target's in-flight slots are held by batches of the killed worker."""
    hooks = Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=receiver.url(f"/{n}")) for n in range(12)
    )
    # Two slots: the 12 deliveries go in two batches of 6, one a worker thread.
    victim, survivor = victim_and_survivor(start_workers, **SHORT_LEASES, MAX_IN_FLIGHT=2)
    receiver.default = Answer(200, delay=SHORT_LEASES["DEADLINE"])  # held until the kill
    Book.objects.create(user=user, title="Mid-batch", pages=1, fiction=True)
    wait_until(lambda: receiver.arrived == 2, what="both batches in flight")
    receiver.default = Answer(200)
    claimed = Delivery.objects.filter(status="pending", attempts=1).count()
    os.kill(victim, signal.SIGKILL)
    os.kill(survivor, signal.SIGCONT)
    killed_at = time.monotonic()
    assert claimed == len(hooks), f"{claimed} deliveries claimed, not {len(hooks)}"

    expected = list(Delivery.objects.values_list("pk", flat=True))
    time_to_deliver(lambda: receiver.requests, expected, BOUND + SLACK)
    recovered = time.monotonic() - killed_at
    # The two requests held when the worker died are answered (to nobody) and recorded too.
    wait_until(lambda: len(receiver.requests) == receiver.arrived, what="held requests")
    requests = receiver.requests
    assert all(r.headers["x-hook-id"] == r.headers["webhook-id"] for r in requests)
    # A repeat is the same delivery's next attempt, not a new delivery.
    attempts = Counter((r.headers["x-hook-id"], r.headers["x-hook-attempt"]) for r in requests)
    assert set(attempts.values()) == {1}
    tally(f"worker killed mid-batch (all in {recovered:.1f} s)", 1, expected, requests)


def test_killed_mid_fan_out(user, receiver, start_workers):
    """The event's cursor has moved, its status is still pending: the rest is fanned
    out by the other worker, from the cursor on."""
    hooks = Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=receiver.url(f"/{n}")) for n in range(150)
    )
    # One transaction a hook: a long fan-out.
    victim, survivor = victim_and_survivor(start_workers, **SHORT_LEASES, FANOUT_CHUNK_SIZE=1)
    Book.objects.create(user=user, title="Mid-fan-out", pages=1, fiction=True)
    event = Event.objects.get()
    wait_until(
        lambda: Event.objects.filter(pk=event.pk).exclude(fanout_cursor="").exists(),
        what="the fan-out under way",
        interval=0.002,
    )
    os.kill(victim, signal.SIGKILL)
    event.refresh_from_db()  # as the victim left it
    os.kill(survivor, signal.SIGCONT)
    killed_at = time.monotonic()
    assert event.status == "pending", "the fan-out ended before the kill: add hooks"

    wait_until(
        lambda: Event.objects.exclude(fanout_cursor=event.fanout_cursor).filter(pk=event.pk),
        what="the fan-out going on",
        timeout=SHORT_LEASES["RELAY_AFTER"] + 1.5 * SHORT_LEASES["RELAY_INTERVAL"] + SLACK,
    )
    resumed = time.monotonic() - killed_at
    # What is left is fanned out and delivered at the pace of one process of 2 threads.
    wait_until(lambda: Delivery.objects.count() == len(hooks), what="a delivery a hook")
    expected = list(Delivery.objects.values_list("pk", flat=True))
    time_to_deliver(lambda: receiver.requests, expected, BOUND + SLACK)
    recovered = time.monotonic() - killed_at
    event.refresh_from_db()
    assert event.status == "dispatched"
    wait_until(lambda: len(receiver.requests) == receiver.arrived, what="open requests")
    tally(
        f"worker killed mid-fan-out (fan-out resumed in {resumed:.1f} s, all in {recovered:.1f} s)",
        1,
        expected,
        receiver.requests,
    )
