"""The receiver down for a while (its port closed), then up again on the same port.

As the README's Flow control says: consecutive failures open the target's breaker;
while it is open nothing is sent; after each cool-down one probe goes, across all
workers; the probe that succeeds closes it and the deferred deliveries arrive, at the
target's rate. Deferrals use up no retry, so nothing fails for good.
"""

from __future__ import annotations

import math
import time

import pytest

from bookstore.models import Book
from bookstore.receiver import Answer, Receiver
from rest_hooks.delivery.flow import BreakerState, origin_of
from rest_hooks.models import Delivery, Hook
from rest_hooks.worker.gate import current_gate
from tests.helpers import tally, time_to_deliver, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

THREADS = 4
RATE, BURST = 10, 2
FLOW = {
    "RETRY_SCHEDULE": [0.3] * 10,
    "RETRY_JITTER": 0,
    "RELAY_AFTER": 1,
    "RELAY_INTERVAL": 0.5,
    "CONNECT_TIMEOUT": 1,
    "BREAKER_FAILURES": 3,
    "BREAKER_MIN_CALLS": 1000,  # the consecutive failures open it, not the ratio
    "BREAKER_COOLDOWN": 1,
    "BREAKER_MAX_COOLDOWN": 2,
    "RATE_LIMIT": f"{RATE}/s",
    "RATE_BURST": BURST,
}
#: How long the receiver stays down once its breaker is open: a few cool-downs.
DOWN = 3


def test_receiver_down_then_up(user, receiver, start_workers):
    port, origin = receiver.port, origin_of(receiver.url())
    hooks = Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=receiver.url(f"/{n}")) for n in range(5)
    )
    receiver.close()  # down: connections to its port are refused
    start_workers(processes=1, threads=THREADS, **FLOW)
    events = 4
    for n in range(events):
        Book.objects.create(user=user, title=f"Down {n}", pages=n, fiction=True)

    wait_until(
        lambda: current_gate().state(origin) is not BreakerState.CLOSED,
        what="the breaker open",
    )
    down_since = time.monotonic()
    time.sleep(DOWN)  # the receiver stays down: probes fail, the breaker opens again
    attempts = sum(Delivery.objects.values_list("attempts", flat=True))
    probes = math.ceil((time.monotonic() - down_since) / FLOW["BREAKER_COOLDOWN"]) + 1
    # Before it opened, one failure per thread at most beyond the threshold; then probes.
    assert attempts <= FLOW["BREAKER_FAILURES"] + THREADS + probes, f"{attempts} attempts"
    assert not Delivery.objects.exclude(status="pending").exists()

    up = Receiver(port)  # back, on the same port; its first answer is slow
    try:
        up.default = Answer(200, delay=1)
        wait_until(lambda: up.arrived, what="the probe")
        came_back = time.monotonic()
        up.default = Answer(200)
        time.sleep(0.5)  # while the probe is answered, the others wait for its answer
        assert up.arrived == 1, "more than one probe"

        expected = list(Delivery.objects.values_list("pk", flat=True))
        assert len(expected) == events * len(hooks)
        time_to_deliver(lambda: up.requests, expected, 30)
        recovered = time.monotonic() - came_back
        assert current_gate().state(origin) is BreakerState.CLOSED
        # The backlog drains at the target's rate: never more than the burst at once.
        times = sorted(r.received_at for r in up.requests)
        for first in range(len(times)):
            for last in range(first + 1, len(times)):
                window = times[last] - times[first]
                assert last - first + 1 <= BURST + RATE * window + 1, "faster than the rate"
        tally(
            f"receiver down {DOWN} s after its breaker opened ({attempts} attempts meanwhile,"
            f" 1 probe, all in {recovered:.1f} s after it came back)",
            events,
            expected,
            up.requests,
        )
    finally:
        up.close()
