"""PromptRedisBroker: idle consumers wait on a doorbell that enqueuing rings (real Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.common import current_millis, dq_name

from rest_hooks.broker import DOORBELL_TOKENS, PromptRedisBroker

QUEUE = "doorbell-test"


@pytest.fixture
def broker(redis_url: str) -> Iterator[PromptRedisBroker]:
    broker = PromptRedisBroker(url=redis_url)
    broker.declare_queue(QUEUE)
    yield broker
    broker.close()


def message(n: int = 0) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(n,), kwargs={}, options={})


def tokens(broker: PromptRedisBroker) -> int:
    return int(broker.client.llen(broker.doorbell(QUEUE)))


def test_an_idle_consumer_waits_for_the_doorbell_and_wakes_on_enqueue(broker):
    consumer = broker.consume(QUEUE, prefetch=1, timeout=60_000)
    found: list[Any] = []
    looking = threading.Thread(target=lambda: found.append(next(consumer)), daemon=True)
    looking.start()
    # It waits on the doorbell, up to its 60 s idle timeout (Dramatiq's own consumer
    # would sleep that long, whatever was enqueued meanwhile)...
    looking.join(0.5)
    assert looking.is_alive()
    # ...until a message is enqueued.
    broker.enqueue(message(1))
    looking.join(10)
    assert not looking.is_alive()
    assert found == [None]  # woken: the next look finds the message
    received = next(consumer)
    assert received is not None
    assert received.args == (1,)
    consumer.ack(received)
    consumer.close()


def test_an_idle_consumer_fetches_once_a_message(broker, monkeypatch):
    """Between messages it waits on the doorbell; it does not look for a next message
    first (the queue was empty at its last look, and an enqueue rings)."""
    fetches: list[int] = []
    fetch = broker.do_fetch
    monkeypatch.setattr(broker, "do_fetch", lambda *args: fetches.append(1) or fetch(*args))
    consumer = broker.consume(QUEUE, prefetch=4, timeout=10_000)  # no look for a timeout
    received: list[int] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            found = next(consumer)
            if found is not None:
                received.append(found.args[0])
                consumer.ack(found)

    looking = threading.Thread(target=consume, daemon=True)
    looking.start()
    try:
        for n in range(10):
            time.sleep(0.05)  # idle between messages, as a worker at a few events/s
            broker.enqueue(message(n))
            deadline = time.monotonic() + 5
            while len(received) <= n and time.monotonic() < deadline:
                time.sleep(0.005)
        assert received == list(range(10))
        assert len(fetches) <= 10 + 1  # the first look, then one a message (20 before)
    finally:
        stop.set()
        broker.enqueue(message(-1))  # wakes it to see the stop
        looking.join(5)
        consumer.close()


def test_the_doorbell_holds_a_bounded_number_of_tokens(broker):
    for n in range(DOORBELL_TOKENS + 20):
        broker.enqueue(message(n))
    assert tokens(broker) == DOORBELL_TOKENS


def test_a_consumer_with_no_room_leaves_the_tokens_to_others(broker):
    broker.enqueue(message(1))
    broker.enqueue(message(2))
    consumer = broker.consume(QUEUE, prefetch=1, timeout=1000)
    first = next(consumer)  # the one message it has room for, not acked yet
    assert first is not None
    before = tokens(broker)
    assert next(consumer) is None  # full: it sleeps a moment, it does not take a token
    assert tokens(broker) == before
    consumer.ack(first)
    consumer.close()


def test_a_consumer_holding_a_delayed_message_looks_again_when_it_is_due(broker):
    """The worker moves a delayed message to its queue only when a look returns: the
    wait ends at the message's eta, not a poll later (rate-limit slots are kept)."""
    broker.enqueue(message(3), delay=300)
    consumer = broker.consume(dq_name(QUEUE), prefetch=10, timeout=60_000)
    held = next(consumer)
    assert held is not None
    assert held.options["eta"] > current_millis()
    broker.client.delete(broker.doorbell(dq_name(QUEUE)))  # its token, already used
    done = threading.Event()
    looking = threading.Thread(target=lambda: (next(consumer), done.set()), daemon=True)
    looking.start()
    # At the eta, 0.3 s from now: not after the 60 s idle timeout, nor the 5 s socket
    # timeout of the broker's connection (redis-py's default), which would end it first.
    assert done.wait(3)
    assert current_millis() >= held.options["eta"]
    consumer.ack(held)
    consumer.close()


def test_a_message_due_within_a_tick_of_redis_is_looked_at_on_time(broker):
    """Redis ends a BLPOP's timeout only on its timer's tick (every 100 ms by default):
    a wait for a message due 30 ms from now ends then, not up to a tick later, which
    had rate-limited deliveries leave a slot late and then two at once. Ten tries,
    as a tick's phase is random: with the BLPOP each is late by 0 to 100 ms."""
    consumer = broker.consume(dq_name(QUEUE), prefetch=10, timeout=60_000)
    late = []
    for n in range(10):
        broker.enqueue(message(n), delay=30)
        held = next((m for m in (next(consumer) for _ in range(20)) if m is not None), None)
        assert held is not None  # woken by its token, then fetched
        while next(consumer) is not None or current_millis() < held.options["eta"]:
            pass  # the look that returns at the eta (None: nothing else to hand out)
        late.append(current_millis() - held.options["eta"])
        consumer.ack(held)
    consumer.close()
    assert max(late) < 60, late


def test_a_plain_redis_broker_consumes_what_it_enqueued(broker, redis_url):
    """The doorbell is an addition: workers of Dramatiq's own broker share the queues."""
    broker.enqueue(message(7))
    plain = dramatiq.brokers.redis.RedisBroker(url=redis_url)
    consumer = plain.consume(QUEUE, prefetch=1, timeout=100)
    received = None
    for _ in range(50):
        received = next(consumer)
        if received is not None:
            break
    assert received is not None
    assert received.args == (7,)
    consumer.ack(received)
    consumer.close()
    plain.close()


def test_an_unreachable_redis_fails_the_wait_as_dramatiq_expects(broker):
    """A worker restarts its consumer on ConnectionClosed, as with Dramatiq's broker."""
    consumer = broker.consume(QUEUE, prefetch=1, timeout=1000)
    broker.client = redis.Redis(host="127.0.0.1", port=1)  # nothing listens there
    with pytest.raises(dramatiq.ConnectionClosed):
        next(consumer)
