"""The database unreachable for a moment inside the workers, while deliveries flow.

On PostgreSQL the workers' connections are terminated (``pg_terminate_backend``, as a
server restart or a failover does to them); on SQLite another connection holds the
database file with ``BEGIN EXCLUSIVE`` for longer than the workers wait for a lock, so
their statements fail with "database is locked". Either way the failed messages are
retried, nothing is lost, and the same worker processes deliver on.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from django.db import connection

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Delivery, Hook
from tests.helpers import SHORT_LEASES, tally, time_to_deliver, wait_until, worker_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

#: A batch claimed when its worker lost the database goes again after its lease and
#: RELAY_AFTER; Dramatiq retries a failed message after 1 to 2 s. Plus a slow VM.
BOUND = 25
#: How many times the database goes away, at least and at most, and how long the SQLite
#: lock is held (the workers give up on a lock after 5 s, the least rest_hooks.E016 lets
#: them start with). A PostgreSQL connection cut while its worker is between messages is
#: replaced unseen (CONN_HEALTH_CHECKS), so the outages go on until a statement failed.
OUTAGES = 3
MAX_OUTAGES = 12
SQLITE_LOCK = 5.5
SQLITE_TIMEOUT = "5"


def cut_off_workers() -> int:
    """Make the database unreachable to the workers once; how many connections it cut."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (terminated,) = cursor.fetchone()
        return int(terminated)
    lock = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        time.sleep(SQLITE_LOCK)
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    return 1


def test_database_unreachable_inside_workers(user, receiver, start_workers, monkeypatch):
    monkeypatch.setenv("REST_HOOKS_TEST_SQLITE_TIMEOUT", SQLITE_TIMEOUT)  # the workers'
    hooks = Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=receiver.url(f"/{n}")) for n in range(3)
    )
    receiver.default = Answer(200, delay=0.2)  # deliveries are in flight at each outage
    workers = start_workers(processes=2, threads=2, **SHORT_LEASES)
    processes = worker_processes(workers)
    events = 48
    for n in range(events):
        Book.objects.create(user=user, title=f"Outage {n}", pages=n, fiction=True)
    wait_until(lambda: receiver.arrived, what="deliveries under way")
    failure = "database is locked" if connection.vendor == "sqlite" else "terminating connection"

    def felt() -> bool:
        return any(failure in line for line in workers.output)

    outages = cut = 0
    while outages < OUTAGES or (not felt() and outages < MAX_OUTAGES):
        assert Delivery.objects.filter(status="pending").exists(), "deliveries ended too soon"
        cut += cut_off_workers()
        outages += 1
        time.sleep(0.5)
    back_at = time.monotonic()
    assert cut >= outages, "the outages reached no worker"

    wait_until(
        lambda: Delivery.objects.count() == events * len(hooks), what="the fan-outs", timeout=BOUND
    )
    expected = list(Delivery.objects.values_list("pk", flat=True))
    time_to_deliver(lambda: receiver.requests, expected, BOUND)
    recovered = time.monotonic() - back_at
    # The workers' statements failed, and the same processes recovered without a restart.
    assert felt(), f"no {failure!r} in the workers after {outages} outages"
    assert worker_processes(workers) == processes
    wait_until(lambda: len(receiver.requests) == receiver.arrived, what="open requests")
    tally(
        f"database unreachable inside workers, {outages} times on {connection.vendor}"
        f" (all in {recovered:.1f} s after the last)",
        events,
        expected,
        receiver.requests,
    )
