"""Soak: 100,000 deliveries through two worker processes; nothing lost, and the workers'
memory at the start and the end.

The full run takes a CI machine's minutes, so it runs where ``CI=true`` (``.ci/run``
sets it) and on PostgreSQL, the database with the highest throughput. Elsewhere (a
developer's loop, the SQLite leg) the same test runs 2,000 deliveries and its tally line
says so: never skipped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from django.db import connection

from bookstore.models import Book
from rest_hooks.models import Delivery, Hook
from tests.helpers import CountingReceiver, note, tally, wait_until, worker_rss_mib

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

HOOKS = 1000


@pytest.fixture
def counting_receiver() -> Iterator[CountingReceiver]:
    receiver = CountingReceiver()
    yield receiver
    receiver.close()


def test_soak(user, counting_receiver, start_workers):
    full = os.environ.get("CI") == "true" and connection.vendor == "postgresql"
    events = 100 if full else 2
    size = "full" if full else "small: the full 100,000 runs where CI=true, on PostgreSQL"
    expected = events * HOOKS
    Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=counting_receiver.url(f"/{i}"))
        for i in range(HOOKS)
    )
    # Two threads a process suit PostgreSQL and a receiver that answers at once; SQLite
    # needs eight (README, "Worker threads").
    threads = 2 if connection.vendor == "postgresql" else 8
    workers = start_workers(processes=2, threads=threads)
    at_ready = worker_rss_mib(workers)
    assert len(at_ready) == 2

    def arrived(count: int) -> None:
        wait_until(
            lambda: len(counting_receiver.requests) >= count,
            what=f"{count:,} deliveries",
            timeout=max(60, count / 100),  # a bound on a stall, far above the time it takes
            interval=0.2,
        )

    started = time.monotonic()
    Book.objects.create(user=user, title="Soak 0", pages=1, fiction=True)
    arrived(HOOKS)
    warm = worker_rss_mib(workers)  # connections open, every code path taken once
    for i in range(1, events):
        Book.objects.create(user=user, title=f"Soak {i}", pages=i + 1, fiction=True)
    arrived(expected)
    elapsed = time.monotonic() - started
    wait_until(
        lambda: not Delivery.objects.filter(status="pending").exists(),
        what="every delivery recorded",
    )
    at_end = worker_rss_mib(workers)

    deliveries = list(Delivery.objects.values_list("pk", flat=True))
    assert len(deliveries) == expected
    assert Delivery.objects.filter(status="success").count() == expected
    tally(
        f"soak ({size}; {connection.vendor}, 2 processes x {threads} threads)",
        events,
        deliveries,
        counting_receiver.requests,
    )
    note(
        f"soak: {expected:,} deliveries in {elapsed:.0f} s ({expected / elapsed:,.0f}/s); "
        f"worker RSS MiB when ready / after the first {HOOKS:,} / at the end: "
        + ", ".join(
            f"{a:.1f} / {b:.1f} / {c:.1f}" for a, b, c in zip(at_ready, warm, at_end, strict=True)
        )
    )
