"""redis-server stopped and started again: every save succeeds, every event is delivered.

The tests run a redis-server of their own (``RedisServer``, no persistence: a restart
loses every queued message), the broker of this process (the web side, which saves) and
of the workers pointed at it; the suite's redis-server is shared and never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks import tasks
from rest_hooks.models import Delivery, Event, Hook
from tests.helpers import RedisServer, tally, time_to_deliver, wait_until, worker_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

SHORT = {"RETRY_SCHEDULE": [0.5] * 5, "RETRY_JITTER": 0, "RELAY_AFTER": 1, "RELAY_INTERVAL": 0.5}
#: Redis back, the relay re-enqueues what it lost within RELAY_AFTER + 1.5 RELAY_INTERVAL;
#: a worker's consumer reconnects within Dramatiq's restart delay (3 s). Plus a slow VM.
BOUND = 20


@pytest.fixture
def own_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A redis-server of the test's own, the broker of this process and of the workers
    the test starts (and their flow-control state)."""
    server = RedisServer(tmp_path)
    monkeypatch.setenv("REST_HOOKS_TEST_REDIS_URL", server.url)  # read by the workers
    pool = tasks.dispatch.broker.client.connection_pool
    suite_port = pool.connection_kwargs["port"]
    pool.connection_kwargs["port"] = server.port
    pool.reset()  # pooled connections remember the suite's port
    try:
        yield server
    finally:
        pool.connection_kwargs["port"] = suite_port
        pool.reset()
        server.stop()


def save_books(user, count: int, title: str) -> float:
    """Save ``count`` books, one transaction each; the slowest save's seconds."""
    slowest = 0.0
    for n in range(count):
        started = time.monotonic()
        Book.objects.create(user=user, title=f"{title} {n}", pages=n, fiction=True)
        slowest = max(slowest, time.monotonic() - started)
    return slowest


def test_redis_stopped_while_saving(user, receiver, own_redis, start_workers, caplog):
    hooks = [
        Hook.objects.create(user=user, event="book.added", target=receiver.url(f"/{n}"))
        for n in range(2)
    ]
    workers = start_workers(processes=1, threads=2, REDIS_URL=own_redis.url, **SHORT)
    save_books(user, 1, "Before")
    receiver.wait_for(len(hooks))

    own_redis.stop()
    slowest = save_books(user, 20, "Outage")  # every save succeeds: none raises
    assert Event.objects.filter(status="pending").count() == 20
    assert caplog.text.count("stays pending") == 20
    time.sleep(1)  # the workers go on without Redis for a moment
    own_redis.start()
    back_at = time.monotonic()

    wait_until(
        lambda: Delivery.objects.count() == 21 * len(hooks), what="the fan-outs", timeout=BOUND
    )
    expected = list(Delivery.objects.values_list("pk", flat=True))
    time_to_deliver(lambda: receiver.requests, expected, BOUND)
    recovered = time.monotonic() - back_at
    assert any("connection error" in line for line in workers.output)
    tally(
        f"redis stopped while saving (slowest save {slowest * 1000:.0f} ms, "
        f"all in {recovered:.1f} s after it returned)",
        21,
        expected,
        receiver.requests,
    )


def test_redis_restarted_while_delivering(user, receiver, own_redis, start_workers):
    hooks = [
        Hook.objects.create(user=user, event="book.added", target=receiver.url(f"/{n}"))
        for n in range(2)
    ]
    receiver.default = Answer(200, delay=0.2)  # deliveries are still flowing at the restart
    workers = start_workers(processes=2, threads=2, REDIS_URL=own_redis.url, **SHORT)
    processes = worker_processes(workers)
    save_books(user, 10, "Before")
    wait_until(lambda: receiver.arrived >= 2, what="deliveries under way")

    own_redis.stop()
    own_redis.start()
    restarted_at = time.monotonic()
    save_books(user, 10, "After")

    wait_until(
        lambda: Delivery.objects.count() == 20 * len(hooks), what="the fan-outs", timeout=BOUND
    )
    expected = list(Delivery.objects.values_list("pk", flat=True))
    time_to_deliver(lambda: receiver.requests, expected, BOUND)
    recovered = time.monotonic() - restarted_at
    # The same worker processes delivered on: they saw Redis go, and reconnected by themselves.
    assert worker_processes(workers) == processes
    assert any("connection error" in line for line in workers.output)
    wait_until(lambda: len(receiver.requests) == receiver.arrived, what="open requests")
    tally(
        f"redis restarted while delivering (all in {recovered:.1f} s after the restart)",
        20,
        expected,
        receiver.requests,
    )
