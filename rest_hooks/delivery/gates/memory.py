"""The gate with its state in this process: the embedded mode, and the reference for tests.

Same rules as the Redis gate (see ``rest_hooks.delivery.flow``), under one lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rest_hooks.delivery.flow import (
    RESERVATION_EARLY,
    BreakerState,
    Decision,
    Limits,
    Reason,
    Result,
    Ticket,
)

#: How long a delivery refused for want of an in-flight slot waits before trying again.
IN_FLIGHT_WAIT = 0.25


@dataclass
class _Target:
    tat: float = 0.0  # GCRA's theoretical arrival time, over the slots booked
    sent: float = 0.0  # and over the requests admitted
    pause_until: float = 0.0
    state: BreakerState = BreakerState.CLOSED
    consecutive: int = 0
    window_start: float = 0.0
    window_calls: int = 0
    window_failures: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    probe_until: float = 0.0
    slots: dict[str, float] = field(default_factory=dict)  # token -> expiry


class MemoryGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}

    def state(self, origin: str) -> BreakerState:
        with self._lock:
            return self._targets.get(origin, _Target()).state

    def acquire(
        self, origin: str, limits: Limits, token: str, reservation: float | None = None
    ) -> Decision:
        with self._lock:
            now = self._clock()
            if reservation is not None and now < reservation - RESERVATION_EARLY:
                # Too early: come back at the slot, which stays this request's.
                return Decision(
                    False, reservation - now, Reason.RATE_LIMIT, reservation=reservation
                )
            t = self._targets.setdefault(origin, _Target())
            transition = None
            probe = False
            if t.state is BreakerState.OPEN:
                if now < t.open_until:
                    return Decision(False, t.open_until - now, Reason.CIRCUIT_OPEN)
                t.state = transition = BreakerState.HALF_OPEN
                t.probe_until = 0.0
            if t.state is BreakerState.HALF_OPEN:
                if t.probe_until > now:
                    # The probe usually answers long before its lease runs out: look
                    # again after a cool-down rather than wait for the whole lease.
                    wait = t.probe_until - now
                    if t.cooldown > 0:
                        wait = min(wait, t.cooldown)
                    return Decision(False, wait, Reason.CIRCUIT_OPEN, False, transition)
                probe = True
            if t.pause_until > now:
                return Decision(False, t.pause_until - now, Reason.RATE_LIMIT, False, transition)
            t.slots = {k: v for k, v in t.slots.items() if v > now}
            if limits.max_in_flight is not None and len(t.slots) >= limits.max_in_flight:
                return Decision(
                    False, IN_FLIGHT_WAIT, Reason.IN_FLIGHT, False, transition, reservation
                )
            if limits.rate:
                interval = 1.0 / limits.rate
                tolerance = (limits.burst - 1) * interval
                if reservation is None:
                    # GCRA, in the form that stays exact: how far the theoretical arrival
                    # time is ahead of now, against the burst's tolerance. The slot is
                    # booked whether or not it is now.
                    ahead = max(t.tat - now, 0.0)
                    t.tat = now + ahead + interval
                    reservation = now + max(ahead - tolerance, 0.0)
                    if reservation > now:
                        return Decision(
                            False,
                            reservation - now,
                            Reason.RATE_LIMIT,
                            False,
                            transition,
                            reservation,
                        )
                # The same GCRA over the times requests really go: one that comes back
                # late to its slot does not go out together with the next ones.
                ahead = max(t.sent - now, 0.0)
                if ahead > tolerance:
                    return Decision(
                        False,
                        ahead - tolerance,
                        Reason.RATE_LIMIT,
                        False,
                        transition,
                        reservation,
                    )
                t.sent = now + ahead + interval
            t.slots[token] = now + limits.slot_lease
            if probe:
                t.probe_until = now + limits.breaker.probe_lease
            return Decision(True, probe=probe, transition=transition)

    def release(
        self,
        ticket: Ticket,
        limits: Limits,
        result: Result,
        pause: float | None = None,
        successes: int = 0,
    ) -> BreakerState | None:
        with self._lock:
            now = self._clock()
            t = self._targets.setdefault(ticket.origin, _Target())
            t.slots.pop(ticket.token, None)
            if pause:
                t.pause_until = max(t.pause_until, now + pause)
            policy = limits.breaker
            if t.state is BreakerState.HALF_OPEN and ticket.probe:
                if result is Result.SUCCESS:
                    self._reset(t, now)
                    return BreakerState.CLOSED
                if result is Result.FAILURE:
                    cooldown = min(max(t.cooldown * 2, policy.cooldown), policy.max_cooldown)
                    return self._open(t, now, cooldown)
                t.probe_until = 0.0  # neutral: let another request probe
                return None
            if t.state is not BreakerState.CLOSED:
                return None
            successes += result is Result.SUCCESS
            failed = result is Result.FAILURE
            if not successes and not failed:
                return None
            if now - t.window_start >= policy.window:
                t.window_start, t.window_calls, t.window_failures = now, 0, 0
            t.window_calls += successes + failed
            if successes:
                t.consecutive = 0
            if not failed:
                return None
            t.consecutive += 1
            t.window_failures += 1
            ratio_tripped = (
                t.window_calls >= policy.min_calls
                and t.window_failures / t.window_calls >= policy.failure_ratio
            )
            if t.consecutive >= policy.failures or ratio_tripped:
                return self._open(t, now, policy.cooldown)
            return None

    @staticmethod
    def _open(t: _Target, now: float, cooldown: float) -> BreakerState:
        t.state = BreakerState.OPEN
        t.cooldown = cooldown
        t.open_until = now + cooldown
        t.probe_until = 0.0
        return BreakerState.OPEN

    @staticmethod
    def _reset(t: _Target, now: float) -> None:
        t.state = BreakerState.CLOSED
        t.consecutive = t.window_calls = t.window_failures = 0
        t.window_start = now
        t.cooldown = t.probe_until = 0.0
