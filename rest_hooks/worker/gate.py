"""Flow control as the deliver actor sees it: settings in, one gate call before and after.

``rest_hooks.delivery.flow`` holds the rules and ``delivery/gates`` the two places their
state can live; this module picks the gate (Redis when ``REST_HOOKS["REDIS_URL"]`` is set,
else this process's memory), turns the settings and the hook into ``Limits``, survives a
Redis outage as configured (``FLOW_ON_REDIS_ERROR``), and reports breaker transitions
(signal, log line, metric).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis

from rest_hooks import metrics
from rest_hooks.conf import hook_settings, on_reload
from rest_hooks.delivery.flow import (
    SEND_HORIZON,
    BreakerPolicy,
    BreakerState,
    Decision,
    Gate,
    Limits,
    Reason,
    Tally,
    Ticket,
    new_token,
    origin_of,
    parse_rate,
)
from rest_hooks.delivery.gates.memory import MemoryGate
from rest_hooks.delivery.gates.redis import RedisGate
from rest_hooks.signals import breaker_changed

logger = logging.getLogger(__name__)

#: How long to hold deliveries back when Redis is unreachable and FLOW_ON_REDIS_ERROR is
#: "closed".
REDIS_DOWN_WAIT = 5.0


@dataclass(frozen=True)
class Admission:
    """The requests of a batch the gate let through; hand it back to ``report``."""

    ticket: Ticket | None  # None: admitted without the gate (Redis down, fail-open)
    limits: Limits
    # One for each admitted request, in order: seconds from now when it may be sent.
    send_at: tuple[float, ...]
    lanes: int  # how many of them may be on their way at once
    # The refusal of the batch's other requests (after the admitted ones), None if none.
    rest: Decision | None = None


_gate: Gate | None = None


def current_gate() -> Gate:
    """The gate of this process's flow control: Redis's when ``REDIS_URL`` is set."""
    global _gate
    if _gate is None:
        url = hook_settings.REDIS_URL
        _gate = (
            RedisGate(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1))
            if url
            else MemoryGate()
        )
    return _gate


@on_reload
def _forget() -> None:
    global _gate
    _gate = None
    _origin_limits.cache_clear()
    _breaker_policy.cache_clear()


@cache
def _origin_limits() -> dict[str, dict[str, Any]]:
    """``ORIGIN_LIMITS`` with its keys normalised like ``origin_of``."""
    return {origin_of(k): v for k, v in (hook_settings.ORIGIN_LIMITS or {}).items()}


@cache
def _breaker_policy() -> BreakerPolicy:
    s = hook_settings
    return BreakerPolicy(
        failures=int(s.BREAKER_FAILURES),
        failure_ratio=float(s.BREAKER_FAILURE_RATIO),
        window=float(s.BREAKER_WINDOW),
        min_calls=int(s.BREAKER_MIN_CALLS),
        cooldown=float(s.BREAKER_COOLDOWN),
        max_cooldown=float(s.BREAKER_MAX_COOLDOWN),
        # A probe that neither succeeds nor fails within its delivery's lease is lost
        # (its worker died): another may go.
        probe_lease=float(s.DEADLINE) + float(s.LEASE_MARGIN),
    )


def limits_for(origin: str, hook_rate: str = "") -> Limits:
    """The hook's own rate, else its origin's settings, else the defaults."""
    s = hook_settings
    overrides = _origin_limits().get(origin, {})
    rate = parse_rate(hook_rate or overrides.get("RATE_LIMIT", s.RATE_LIMIT))
    burst = overrides.get("RATE_BURST", s.RATE_BURST) or max(1, math.ceil(rate or 1))
    return Limits(
        rate=rate,
        burst=int(burst),
        max_in_flight=overrides.get("MAX_IN_FLIGHT", s.MAX_IN_FLIGHT),
        # A batch holds its slots for as long as its lease, and its wait for its rate
        # slots; a killed worker's come back then.
        slot_lease=float(s.DEADLINE) + float(s.BATCH_BUDGET) + float(s.LEASE_MARGIN) + SEND_HORIZON,
        breaker=_breaker_policy(),
    )


def admit(
    hook: Any,
    reservation: float | None = None,
    count: int = 1,
    horizon: float = 0.0,
    lanes: int | None = None,
) -> Admission | Decision:
    """Ask the gate for ``count`` deliveries to the hook's target; an ``Admission`` for
    those to go ahead (the first ones), or the refusing ``Decision``.

    ``reservation``: the slot an earlier refusal of these deliveries reserved.
    ``horizon``: how long an admitted delivery may wait for its send time. ``lanes``:
    how many of them may be on their way at once, at most (None: all).
    """
    origin = origin_of(hook.target)
    limits = limits_for(origin, getattr(hook, "rate_limit", ""))
    token = new_token()
    try:
        decision = current_gate().acquire(origin, limits, token, reservation, count, horizon, lanes)
    except redis.RedisError as exc:
        return _redis_down(origin, limits, count, min(count, lanes or count), exc)
    if decision.transition is not None:
        _announce(origin, decision.transition)
    if not decision.allowed:
        return decision
    rest = None
    if len(decision.send_at) < count:
        rest = Decision(False, decision.wait, decision.reason, reservation=decision.reservation)
    return Admission(
        Ticket(origin, token, decision.probe, decision.lanes),
        limits,
        decision.send_at,
        decision.lanes,
        rest,
    )


def report(admission: Admission, tally: Tally, pause: float | None) -> None:
    """Give the slots back and tell the breaker how the batch's requests went."""
    if admission.ticket is None:
        return
    try:
        transition = current_gate().release(admission.ticket, admission.limits, tally, pause)
    except redis.RedisError as exc:
        logger.warning("Flow control: Redis unreachable (%s); result not recorded.", exc)
        return
    if transition is not None:
        _announce(admission.ticket.origin, transition)


def breaker_state(origin: str) -> str:
    """The state of ``origin``'s circuit breaker, as the metrics report it."""
    return current_gate().state(origin).value


def _redis_down(
    origin: str, limits: Limits, count: int, lanes: int, exc: Exception
) -> Admission | Decision:
    fail_open = hook_settings.FLOW_ON_REDIS_ERROR != "closed"
    logger.warning(
        "Flow control: Redis unreachable (%s); deliveries to %s %s.",
        exc,
        origin,
        "go ahead unchecked" if fail_open else "wait",
    )
    if fail_open:
        return Admission(None, limits, (0.0,) * count, lanes)
    return Decision(False, REDIS_DOWN_WAIT, Reason.CIRCUIT_OPEN)


#: When this process last saw each origin's breaker open (``time.monotonic()``).
_opened_at: dict[str, float] = {}
#: Origins remembered at most; the oldest are forgotten first.
_OPENED_KEPT = 10_000


def opened_since(origin: str, since: float) -> bool:
    """Whether this process saw ``origin``'s breaker open after ``since`` (monotonic).

    A batch's deliveries admitted to wait for their send time ask before each request:
    those of a target whose breaker opened meanwhile are not sent (they go back, and the
    gate holds them while it is open).
    """
    return _opened_at.get(origin, -math.inf) > since


def _announce(origin: str, state: BreakerState) -> None:
    if state is BreakerState.OPEN:
        _opened_at.pop(origin, None)
        _opened_at[origin] = time.monotonic()
        if len(_opened_at) > _OPENED_KEPT:
            del _opened_at[next(iter(_opened_at))]
    log = logger.info if state is BreakerState.CLOSED else logger.warning
    log("Circuit breaker of %s is now %s.", origin, state.value, extra={"origin": origin})
    metrics.breaker_changed(origin, state.value)
    breaker_changed.send_robust(sender=None, origin=origin, state=state.value)
