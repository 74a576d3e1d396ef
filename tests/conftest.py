"""Fixtures: a real HTTP receiver, a real redis-server, real dramatiq worker processes.

The helpers they use, and that test modules import, are in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings

from bookstore.receiver import Receiver
from tests.helpers import TALLIES, RawListener, Workers


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def raw_listener() -> Iterator[Callable[..., RawListener]]:
    """Start bare TCP listeners; ``behaviour(conn, stop)`` serves each connection."""
    started: list[RawListener] = []

    def make(behaviour: Callable[[socket.socket, threading.Event], None]) -> RawListener:
        raw = RawListener(behaviour)
        started.append(raw)
        return raw

    yield make
    for raw in started:
        raw.close()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="jrrtolkien", password="x")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REST_HOOKS_TEST_REDIS_URL")
    if not url:
        pytest.fail("REST_HOOKS_TEST_REDIS_URL is not set: run the suite with scripts/test.")
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def start_workers(redis_url: str) -> Iterator[Callable[..., Workers]]:
    """Start worker processes; ``overrides`` become their ``REST_HOOKS`` entries."""
    started: list[Workers] = []

    def start(processes: int = 1, threads: int = 4, **overrides: Any) -> Workers:
        workers = Workers(processes, threads, {**settings.REST_HOOKS, **overrides})
        started.append(workers)
        workers.wait_ready()
        return workers

    yield start
    for workers in started:
        workers.stop()


@pytest.fixture
def run_pipeline() -> Callable[[], list[Any]]:
    """Run the workers' functions in this process until nothing is due; return deliveries.

    Unit tests use it instead of worker processes: the same code, no broker in between.
    """
    from django.utils import timezone

    from rest_hooks.models import Delivery, Event
    from rest_hooks.worker.batch import deliver_batch
    from rest_hooks.worker.fanout import fan_out

    def run() -> list[Any]:
        for event_id in Event.objects.filter(status="pending").values_list("pk", flat=True):
            fan_out(event_id)
        due = Delivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now())
        for delivery_id in due.values_list("pk", flat=True):
            deliver_batch([str(delivery_id)])
        return list(Delivery.objects.select_related("event", "hook").order_by("created_at"))

    return run


@pytest.fixture(autouse=True)
def fresh_flow_control() -> None:
    """Each test starts with closed breakers and empty rate limits (state is per origin,
    and receivers' ports may be reused across tests)."""
    from rest_hooks.worker import gate

    url = os.environ.get("REST_HOOKS_TEST_REDIS_URL")
    if url:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match="rest_hooks:{*"))
        if keys:
            client.delete(*keys)
    gate._forget()


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """The suite runs once per database (``REST_HOOKS_TEST_DB``): a test marked
    ``only_on("sqlite")`` is of that database's behaviour, and the other leg deselects it."""
    leg = os.environ.get("REST_HOOKS_TEST_DB", "sqlite")
    kept, other = [], []
    for item in items:
        marker = item.get_closest_marker("only_on")
        (other if marker is not None and leg not in marker.args else kept).append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault suite's tally lines, one per fault, whether its test passed or not."""
    if TALLIES:
        terminalreporter.section("fault tallies")
        for line in TALLIES:
            terminalreporter.write_line(line)
