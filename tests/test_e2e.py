"""The old README's bookstore scenario, end to end, with every real part.

A real redis-server (started by scripts/test), real `manage.py rundramatiq` worker
processes, a real HTTP receiver on 127.0.0.1, and the receiver verifies each delivery with
the `standardwebhooks` package.
"""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.security import verify
from rest_hooks.signals import raw_hook_event
from tests.helpers import free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

FAST = {
    "RETRY_SCHEDULE": [0.2, 0.2, 0.2],
    "RETRY_JITTER": 0,
    "RELAY_AFTER": 1,
    "RELAY_INTERVAL": 0.5,
}


def test_readme_scenario(user, receiver, start_workers):
    start_workers(processes=2, threads=4)
    hooks = {
        event: Hook.objects.create(user=user, event=event, target=receiver.url(f"/{event}"))
        for event in ("book.added", "book.changed", "book.removed", "book.read", "user.logged_in")
    }
    book = Book.objects.create(user=user, title="The Two Towers", pages=327, fiction=True)
    book_id = book.pk
    receiver.wait_for(1)
    book.title += ": Deluxe Edition"
    book.pages = 352
    book.save()
    receiver.wait_for(2)
    book.mark_as_read()
    receiver.wait_for(3)
    raw_hook_event.send(
        sender=None,
        event_name="user.logged_in",
        payload={"username": user.username, "email": user.email, "when": "2026-11-25T10:00:00"},
        user=user,
    )
    receiver.wait_for(4)
    book.delete()
    requests = receiver.wait_for(5)

    by_path = {r.path: r for r in requests}
    assert set(by_path) == {f"/{e}" for e in hooks}
    expected_data = {
        "/book.added": {"id": book_id, "title": "The Two Towers", "pages": 327, "fiction": True},
        "/book.changed": {
            "id": book_id,
            "title": "The Two Towers: Deluxe Edition",
            "pages": 352,
            "fiction": True,
        },
        "/book.read": {
            "id": book_id,
            "title": "The Two Towers: Deluxe Edition",
            "pages": 352,
            "fiction": True,
        },
        "/book.removed": {
            "id": book_id,
            "title": "The Two Towers: Deluxe Edition",
            "pages": 352,
            "fiction": True,
        },
        "/user.logged_in": {
            "username": user.username,
            "email": user.email,
            "when": "2026-11-25T10:00:00",
        },
    }
    for path, request in by_path.items():
        event = path.lstrip("/")
        hook = hooks[event]
        # Two independent verifiers accept the signature.
        payload = Webhook(hook.secret).verify(request.body, request.headers)
        assert verify(request.body, request.headers, hook.secret) == payload
        assert payload == {"hook": hook.dict(), "data": expected_data[path]}
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-hook-event"] == event
        assert request.headers["x-hook-attempt"] == "1"
        delivery = Delivery.objects.get(hook=hook)
        assert request.headers["x-hook-id"] == request.headers["webhook-id"] == str(delivery.pk)
    wait_until(lambda: Delivery.objects.filter(status="success").count() == 5, what="5 successes")


def test_500_then_200_through_workers(user, receiver, start_workers):
    start_workers(**FAST)
    hook = Hook.objects.create(user=user, event="book.added", target=receiver.url())
    receiver.answer("/hook", Answer(500), Answer(503))
    Book.objects.create(user=user, title="Retry", pages=1, fiction=True)
    requests = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for r in requests:
        Webhook(hook.secret).verify(r.body, r.headers)
    wait_until(
        lambda: Delivery.objects.filter(status="success", attempts=3).exists(), what="success"
    )


def test_410_through_workers_disables_hook(user, receiver, start_workers):
    start_workers(**FAST)
    hook = Hook.objects.create(user=user, event="book.added", target=receiver.url())
    receiver.default = Answer(410)
    Book.objects.create(user=user, title="Gone", pages=1, fiction=True)
    receiver.wait_for(1)
    wait_until(lambda: not Hook.objects.get(pk=hook.pk).is_active, what="hook disabled")
    time.sleep(0.5)
    assert len(receiver.requests) == 1


def test_broker_down_while_saving(user, receiver, start_workers, redis_url, caplog):
    """The save succeeds with the broker unreachable; the relay delivers once it is back."""
    from rest_hooks import tasks

    Hook.objects.create(user=user, event="book.added", target=receiver.url())
    pool = tasks.dispatch.broker.client.connection_pool
    real_port = pool.connection_kwargs["port"]
    # The broker's connections now go to a port nobody listens on: a Redis outage.
    pool.connection_kwargs["port"] = free_port()
    pool.reset()  # drop the pooled connections: they remember the real port
    try:
        book = Book.objects.create(user=user, title="Outage", pages=1, fiction=True)
    finally:
        pool.connection_kwargs["port"] = real_port
        pool.reset()
    assert Book.objects.filter(pk=book.pk).exists()
    assert Event.objects.get().status == "pending"
    assert "stays pending" in caplog.text
    start_workers(**FAST)  # their relay picks the event up
    (request,) = receiver.wait_for(1, timeout=30)
    assert json.loads(request.body)["data"]["title"] == "Outage"


def test_killed_worker_loses_nothing(user, receiver, start_workers):
    """A worker killed mid-delivery: the delivery is taken over once its lease runs out."""
    Hook.objects.create(user=user, event="book.added", target=receiver.url())
    receiver.answer("/hook", Answer(200, delay=3))
    # A short lease (DEADLINE + LEASE_MARGIN) rather than a minute's wait for it.
    workers = start_workers(**FAST, DEADLINE=2, READ_TIMEOUT=5, LEASE_MARGIN=1)
    Book.objects.create(user=user, title="Crash", pages=1, fiction=True)
    wait_until(lambda: Delivery.objects.filter(attempts=1).exists(), what="first attempt")
    workers.kill()
    start_workers(**FAST)
    wait_until(
        lambda: Delivery.objects.filter(status="success").exists(), timeout=30, what="success"
    )
