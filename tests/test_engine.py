"""The delivery engine end to end: requests in flight are coroutines, not worker threads.

Real ``rundramatiq`` workers against the suite's redis-server and PostgreSQL or SQLite,
and receivers that hold their requests until told to answer (``HoldingReceiver``), so
that what is in flight at once can be counted.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from bookstore.models import Book
from rest_hooks.models import Delivery, Hook
from tests.helpers import HoldingReceiver, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def hooks_on(user: Any, receiver: HoldingReceiver, count: int, event: str = "book.added") -> None:
    Hook.objects.bulk_create(
        Hook(user=user, event=event, target=receiver.url(f"/h{i}")) for i in range(count)
    )


def add_book(user: Any) -> Book:
    return Book.objects.create(user=user, title="Engine", pages=1, fiction=True)


def succeeded(count: int) -> bool:
    return Delivery.objects.filter(status="success").count() == count


@pytest.fixture
def holding() -> Any:
    receivers: list[HoldingReceiver] = []

    def start(hold: bool = True) -> HoldingReceiver:
        receivers.append(HoldingReceiver(hold=hold))
        return receivers[-1]

    yield start
    for receiver in receivers:
        receiver.close()


def test_one_worker_thread_holds_many_requests_and_a_fast_target_still_gets_through(
    user, holding, start_workers
):
    slow, fast = holding(), holding(hold=False)
    # One thread: with a request in flight a thread, one request would be open at a time.
    start_workers(processes=1, threads=1, MAX_IN_FLIGHT=50, DELIVERY_BATCH_SIZE=1)
    hooks_on(user, slow, 30)
    hooks_on(user, fast, 5)
    add_book(user)

    wait_until(lambda: slow.held == 30, timeout=20, what="30 requests held at once")
    # The fast target is delivered while the slow one holds all of its requests.
    wait_until(lambda: fast.answered == 5, timeout=20, what="the fast target's deliveries")
    wait_until(lambda: succeeded(5), timeout=20, what="the fast deliveries recorded")
    assert slow.answered == 0

    slow.release()
    wait_until(lambda: succeeded(35), timeout=20, what="every delivery")
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_batch_sends_over_as_many_lanes_as_its_target_has_slots(user, holding, start_workers):
    first, second = holding(), holding()
    start_workers(processes=1, threads=1, MAX_IN_FLIGHT=3)
    # One batch a target: the dispatch actor sends one itself, the other goes by message.
    hooks_on(user, first, 6)
    hooks_on(user, second, 6)
    add_book(user)

    wait_until(lambda: (first.held, second.held) == (3, 3), timeout=20, what="3 and 3 held")
    first.release()
    second.release()
    wait_until(lambda: succeeded(12), timeout=20, what="every delivery")
    assert (first.most_held, second.most_held) == (3, 3)
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_process_holds_no_more_requests_than_its_cap(user, holding, start_workers):
    slow = holding()
    start_workers(processes=1, threads=4, MAX_IN_FLIGHT=None, MAX_IN_FLIGHT_PER_PROCESS=4)
    hooks_on(user, slow, 20)
    add_book(user)

    wait_until(lambda: slow.held == 4, timeout=20, what="the process at its cap")
    # Time for more to open, were the cap not kept.
    wait_until(lambda: Delivery.objects.count() == 20, timeout=10, what="the fan-out")
    assert slow.most_held == 4

    slow.release()
    wait_until(lambda: succeeded(20), timeout=30, what="every delivery")
    assert slow.most_held == 4
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_worker_that_stops_finishes_the_requests_it_has_in_flight(user, holding, start_workers):
    slow = holding()
    workers = start_workers(processes=1, threads=2, RELAY_AFTER=3600)
    hooks_on(user, slow, 6)
    add_book(user)
    wait_until(lambda: slow.held == 6, timeout=20, what="6 requests in flight")

    # To the main process only (as systemd's KillMode=mixed does): it tells its workers.
    os.kill(workers.proc.pid, signal.SIGTERM)
    # Without waiting for its batches, a worker with nothing else to do exits in a moment.
    time.sleep(2)
    assert workers.proc.poll() is None, "".join(workers.output[-30:])
    slow.release()
    workers.proc.wait(timeout=30)

    # Recorded by the stopping worker itself, not left to the relay (an hour away).
    assert succeeded(6)
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}
