"""The gate with its state in this process: the embedded mode, and the reference for tests.

Same rules as the Redis gate (see ``rest_hooks.delivery.flow``), under one lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rest_hooks.delivery.flow import (
    RESERVATION_EARLY,
    BreakerState,
    Decision,
    Limits,
    Reason,
    Result,
    Tally,
    Ticket,
    slot_member,
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
    slots: dict[str, float] = field(default_factory=dict)  # slot_member -> expiry


class MemoryGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}

    def state(self, origin: str) -> BreakerState:
        with self._lock:
            return self._targets.get(origin, _Target()).state

    def acquire(
        self,
        origin: str,
        limits: Limits,
        token: str,
        reservation: float | None = None,
        count: int = 1,
        horizon: float = 0.0,
        lanes: int | None = None,
    ) -> Decision:
        with self._lock:
            now = self._clock()
            if reservation is not None and now < reservation - RESERVATION_EARLY:
                # Too early: come back at the slot, which stays these requests'.
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
                    return Decision(
                        False, self._look_again(t, now), Reason.CIRCUIT_OPEN, False, transition
                    )
                probe = True
            if t.pause_until > now:
                return Decision(False, t.pause_until - now, Reason.RATE_LIMIT, False, transition)
            wanted = 1 if probe else count  # a probe goes alone
            t.slots = {k: v for k, v in t.slots.items() if v > now}
            lanes = wanted if lanes is None else min(wanted, lanes)
            if limits.max_in_flight is not None:
                lanes = min(lanes, limits.max_in_flight - len(t.slots))
                if lanes <= 0:
                    return Decision(
                        False, IN_FLIGHT_WAIT, Reason.IN_FLIGHT, False, transition, reservation
                    )
            send_at, rest = (0.0,) * wanted, Decision(False)
            if limits.rate:
                send_at, rest = self._book(
                    t, limits.rate, limits.burst, now, reservation, wanted, horizon
                )
                if not send_at:
                    return replace(rest, transition=transition)
            lanes = min(lanes, len(send_at))
            for lane in range(lanes):
                t.slots[slot_member(token, lane)] = now + limits.slot_lease
            if probe:
                t.probe_until = now + limits.breaker.probe_lease
                if count > 1:  # the others wait for the probe's answer
                    rest = Decision(False, self._look_again(t, now), Reason.CIRCUIT_OPEN)
            return replace(
                rest, allowed=True, probe=probe, transition=transition, send_at=send_at, lanes=lanes
            )

    @staticmethod
    def _book(
        t: _Target,
        rate: float,
        burst: int,
        now: float,
        reservation: float | None,
        count: int,
        horizon: float,
    ) -> tuple[tuple[float, ...], Decision]:
        """When each of the first requests whose rate slot comes within ``horizon`` may
        go; and the refusal of the rest (none if all go), with their first booked slot."""
        interval = 1.0 / rate
        tolerance = (burst - 1) * interval
        if reservation is None:
            # GCRA, in the form that stays exact: how far the theoretical arrival time is
            # ahead of now, against the burst's tolerance. Every slot is booked, whether
            # or not it comes within the horizon.
            ahead = max(t.tat - now, 0.0)
            t.tat = now + ahead + count * interval
            booked = [now + max(ahead + j * interval - tolerance, 0.0) for j in range(count)]
        else:
            # Booked when these requests were refused (a hair early counts as on time).
            first = min(reservation, now)
            booked = [first + j * interval for j in range(count)]
        send_at: list[float] = []
        for slot in booked:
            # The same GCRA over the times requests really go: one that comes back late
            # to its slot does not go out together with the next ones.
            go = max(now, slot, t.sent - tolerance)
            if go > now + horizon:
                return tuple(send_at), Decision(
                    False, go - now, Reason.RATE_LIMIT, reservation=slot
                )
            t.sent = max(t.sent, go) + interval
            send_at.append(go - now)
        return tuple(send_at), Decision(False)

    @staticmethod
    def _look_again(t: _Target, now: float) -> float:
        """When the others may look again while a probe is out: the probe usually answers
        long before its lease runs out, so after a cool-down if sooner."""
        wait = t.probe_until - now
        return min(wait, t.cooldown) if t.cooldown > 0 else wait

    def release(
        self, ticket: Ticket, limits: Limits, tally: Tally, pause: float | None = None
    ) -> BreakerState | None:
        with self._lock:
            now = self._clock()
            t = self._targets.setdefault(ticket.origin, _Target())
            for lane in range(ticket.lanes):
                t.slots.pop(slot_member(ticket.token, lane), None)
            if pause:
                t.pause_until = max(t.pause_until, now + pause)
            policy = limits.breaker
            if t.state is BreakerState.HALF_OPEN and ticket.probe:
                if tally.result is Result.SUCCESS:
                    self._reset(t, now)
                    return BreakerState.CLOSED
                if tally.result is Result.FAILURE:
                    cooldown = min(max(t.cooldown * 2, policy.cooldown), policy.max_cooldown)
                    return self._open(t, now, cooldown)
                t.probe_until = 0.0  # neutral: let another request probe
                return None
            if t.state is not BreakerState.CLOSED or not (tally.successes or tally.failures):
                return None
            if now - t.window_start >= policy.window:
                t.window_start, t.window_calls, t.window_failures = now, 0, 0
            t.window_calls += tally.successes + tally.failures
            t.window_failures += tally.failures
            if tally.successes:
                t.consecutive = tally.trailing_failures
            else:
                t.consecutive += tally.failures
            if not tally.failures:
                return None
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
