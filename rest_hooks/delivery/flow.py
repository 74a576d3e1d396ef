"""Flow control for one target: rate limit, circuit breaker, in-flight cap, as one gate.

A *target* is the origin of a hook's URL (scheme, host, port): every hook pointing at the
same receiver shares its limits, across every worker process on every machine.

Before a request the worker asks the gate once (``acquire``); after it, it tells the gate
once (``release``). Each is a single round trip to the shared state (one Lua script in
Redis, see ``gates/redis.py``); ``gates/memory.py`` implements the same rules for the
embedded mode and for tests. A refusal carries how long to wait: the worker re-enqueues
the delivery with that delay, so no thread sleeps and no retry is used up.

The rules, shared by both implementations:

1. Breaker. *Closed*: everything passes; N consecutive failures, or a failure ratio over
   a window with a minimum number of calls, open it. *Open*: nothing passes until the
   cool-down ends; then *half-open*: exactly one request (the probe) passes, holding a
   lease so that a crashed prober does not wedge the target; the others are told to look
   again after the cool-down (or when the lease ends, if sooner). The probe's success
   closes the breaker; its failure re-opens it with a doubled cool-down (capped).
2. Pause. A 429 or 503 answer, or any ``Retry-After``, pauses the target for everyone.
3. In-flight cap. At most N requests at once per target (slots expire with a lease too).
4. Rate. GCRA: at most ``rate`` per second on average, ``burst`` at once. A request the
   rate refuses *reserves* the next free slot (the theoretical arrival time moves on as if
   it had been admitted) and is told to come back then, with the reservation: a backlog
   of N deliveries to one target costs about 2N gate calls, not N²/2, and comes back
   spread one slot apart rather than all at once at every slot. The same GCRA also spaces
   the requests really admitted, so that reservations coming back late (a busy or stalled
   worker releasing many at once) still go out one slot apart, never in a flood.

A batch of deliveries to one target asks once for all of them (``count``): it takes up to
``count`` in-flight slots (its *lanes*) and books ``count`` rate slots at once. The ones
whose slot comes within ``horizon`` seconds are admitted, each with the time it may be
sent (the worker's loop waits for it); the rest keep their bookings and are told, with
the first of them as their reservation, when to come back. Its ``release`` frees every
lane and tells the breaker how the whole batch went (a ``Tally``).
"""

from __future__ import annotations

import enum
import math
import re
import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

#: A reservation presented this much before its slot still counts (clock rounding, s).
RESERVATION_EARLY = 0.005

#: The longest a batch's delivery waits on the worker's loop for its rate slot (s): the
#: ``horizon`` the worker asks the gate with. What would wait longer is held back, to
#: come back with its reservation, rather than hold a worker's lane (and its in-flight
#: slot, whose lease covers this wait) for long.
SEND_HORIZON = 1.0


class Reason(enum.StrEnum):
    """Why a delivery was held back: the gate's reasons, and the worker's own."""

    RATE_LIMIT = "rate_limit"
    CIRCUIT_OPEN = "circuit_open"
    IN_FLIGHT = "in_flight"
    # Not the gate's: no lookup of the target's name could start in the worker process,
    # every one being held by names that do not answer.
    RESOLVER_BUSY = "resolver_busy"


class Result(enum.StrEnum):
    SUCCESS = "success"  # 2xx
    FAILURE = "failure"  # counts against the breaker: 5xx, 408, timeouts, network errors
    NEUTRAL = "neutral"  # says nothing about the target's health (4xx, refused, ...)


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5  # consecutive failures that open it
    failure_ratio: float = 0.5  # or this ratio over the window...
    window: float = 60.0
    min_calls: int = 20  # ...once it holds this many calls
    cooldown: float = 30.0  # first open period; doubled by each failed probe
    max_cooldown: float = 600.0
    probe_lease: float = 60.0  # a probe that never reports back frees its place after this


@dataclass(frozen=True)
class Limits:
    rate: float | None = None  # requests per second; None: no rate limit
    burst: int = 1
    max_in_flight: int | None = None
    slot_lease: float = 60.0  # an in-flight slot never released frees itself after this
    breaker: BreakerPolicy = BreakerPolicy()


@dataclass(frozen=True)
class Decision:
    """The gate's answer to a batch of ``count`` requests: ``len(send_at)`` admitted."""

    allowed: bool  # some of them were admitted
    # For those not admitted (all, when refused): seconds until trying again makes sense,
    # and why they were held back.
    wait: float = 0.0
    reason: Reason | None = None
    probe: bool = False  # the admitted one is the half-open breaker's probe
    transition: BreakerState | None = None  # the breaker changed state (to half-open)
    # Held back by the rate: the first slot (on the gate's clock) booked for those not
    # admitted, the next ones following one interval apart; present it to ``acquire``
    # when coming back after ``wait``.
    reservation: float | None = None
    # One for each admitted request, in order: seconds from now when it may be sent.
    send_at: tuple[float, ...] = ()
    # In-flight slots taken (at most ``len(send_at)``): how many of the admitted requests
    # may be on their way at once.
    lanes: int = 0


@dataclass(frozen=True)
class Ticket:
    """What ``release`` needs to know about an admission."""

    origin: str
    token: str
    probe: bool
    lanes: int = 1  # the in-flight slots it holds, ``slot_member(token, i)`` for i < lanes


def slot_member(token: str, lane: int) -> str:
    """The name of an admission's in-flight slot for one of its lanes."""
    return f"{token}:{lane}"


@dataclass(frozen=True)
class Tally:
    """How the requests of one admission went, in the order they ended."""

    successes: int = 0
    failures: int = 0
    trailing_failures: int = 0  # failures after the last success (all, if none succeeded)

    @classmethod
    def of(cls, *results: Result) -> Tally:
        """The tally of these results, in the order they ended (neutral ones not counted)."""
        successes = failures = trailing = 0
        for result in results:
            if result is Result.SUCCESS:
                successes += 1
                trailing = 0
            elif result is Result.FAILURE:
                failures += 1
                trailing += 1
        return cls(successes, failures, trailing)

    @property
    def result(self) -> Result:
        """What a probe's tally says: any success closes the breaker, else any failure
        re-opens it."""
        if self.successes:
            return Result.SUCCESS
        if self.failures:
            return Result.FAILURE
        return Result.NEUTRAL


class Gate(Protocol):
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
        """Admit the first of ``count`` (at least 1) requests, or refuse them all, with
        how long the others are to wait.

        ``reservation``: the first slot a former refusal booked for these requests, if
        any. ``horizon``: how long from now an admitted request may wait for its slot.
        ``lanes``: the most in-flight slots to take (None: one per request), which is
        how many of them may be on their way at once. A half-open breaker's probe is
        admitted alone.
        """
        ...

    def release(
        self, ticket: Ticket, limits: Limits, tally: Tally, pause: float | None = None
    ) -> BreakerState | None:
        """Free the admission's slots, record how its requests went; the breaker's new
        state if it changed."""
        ...

    def state(self, origin: str) -> BreakerState: ...


def new_token() -> str:
    return uuid.uuid4().hex


def origin_of(url: str) -> str:
    """``scheme://host:port``, lower-case, with the default port spelled out.

    A URL with no origin (a port out of range, a broken IPv6 literal) is its own: it
    reaches the deliver actor, which refuses it, rather than stop the planning of every
    other delivery of its event.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    port = port or {"http": 80, "https": 443}.get(scheme, 0)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


# The two sides of the "/", each matched whole after stripping its white space: no two
# parts of a pattern can take the same characters, so parsing is linear in the input (one
# pattern with a `\s*` on each side of an optional part backtracked quadratically).
_COUNT = re.compile(r"\d+(?:\.\d+)?")
_PERIOD = re.compile(r"(\d*)\s*(s|sec|second|m|min|minute|h|hour)")
_UNIT = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str | float | None) -> float | None:
    """``"50/s"``, ``"600/min"``, ``"10/5s"``, or a number of requests per second."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        if math.isnan(text) or text <= 0:
            raise ValueError(f"a rate must be positive, not {text!r}")
        return float(text)
    count_text, slash, period_text = str(text).partition("/")
    count = _COUNT.fullmatch(count_text.strip())
    period = _PERIOD.fullmatch(period_text.strip())
    if not (slash and count and period):
        raise ValueError(f"not a rate: {text!r} (write e.g. '50/s', '600/min' or '10/5s')")
    every, unit = period.groups()
    seconds = (int(every) if every else 1) * _UNIT[unit]
    if not seconds:
        raise ValueError(f"not a rate: {text!r} (its period is zero)")
    rate = float(count.group()) / seconds
    if rate <= 0:
        raise ValueError(f"a rate must be positive, not {text!r}")
    return rate


def health(status_code: int | None) -> Result:
    """What an attempt made to the target says about its health, for its breaker.

    No answer (timeout, connection error), 5xx and 408 are failures; 429 is not (the
    target is alive and asks for less, which the pause handles); other answers say nothing
    either way. (An attempt that never reached the target, refused or failed before its
    request, says nothing at all: the deliver actor reports it as neutral.)
    """
    if status_code is None or status_code >= 500 or status_code == 408:
        return Result.FAILURE
    if 200 <= status_code < 300:
        return Result.SUCCESS
    return Result.NEUTRAL


def pause_for(status_code: int | None, retry_after: float | None, default: float) -> float | None:
    """How long a target asked everyone to hold off: its Retry-After, or ``default`` for
    a 429 or 503 without one."""
    if retry_after is not None:
        return retry_after
    if status_code in (429, 503):
        return default
    return None
