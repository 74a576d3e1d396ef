"""The gate with its state in Redis, shared by every worker on every machine.

Each call is one EVALSHA of a Lua script (``acquire.lua``, ``release.lua``): atomic, on
the Redis server's clock, one round trip. Keys carry the origin as a hash tag
(``rest_hooks:{origin}:...``) so that a target's keys live on one Redis Cluster slot.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import redis

from rest_hooks.delivery.flow import (
    RESERVATION_EARLY,
    BreakerState,
    Decision,
    Limits,
    Reason,
    Tally,
    Ticket,
)

#: Idle targets' state disappears after this long (longer than any cool-down).
STATE_TTL = 86400


def _script(name: str) -> str:
    return files("rest_hooks.delivery.gates").joinpath(name).read_text()


class RedisGate:
    def __init__(self, client: redis.Redis, prefix: str = "rest_hooks") -> None:
        self._client = client
        self._prefix = prefix
        self._acquire = client.register_script(_script("acquire.lua"))
        self._release = client.register_script(_script("release.lua"))

    def _keys(self, origin: str) -> list[str]:
        return [f"{self._prefix}:{{{origin}}}:state", f"{self._prefix}:{{{origin}}}:slots"]

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
        allowed, wait, reason, probe, transition, reserved, send_at, lanes = self._acquire(
            keys=self._keys(origin),
            args=[
                token,
                limits.rate or 0,
                limits.burst,
                -1 if limits.max_in_flight is None else limits.max_in_flight,
                limits.slot_lease,
                limits.breaker.probe_lease,
                STATE_TTL,
                reservation or 0,
                RESERVATION_EARLY,
                count,
                horizon,
                count if lanes is None else lanes,
            ],
        )
        return Decision(
            allowed=bool(allowed),
            wait=float(wait),
            reason=Reason(_text(reason)) if _text(reason) else None,
            probe=bool(probe),
            transition=BreakerState(_text(transition)) if _text(transition) else None,
            reservation=float(reserved) if _text(reserved) else None,
            send_at=tuple(float(at) for at in send_at),
            lanes=int(lanes),
        )

    def release(
        self, ticket: Ticket, limits: Limits, tally: Tally, pause: float | None = None
    ) -> BreakerState | None:
        policy = limits.breaker
        changed = self._release(
            keys=self._keys(ticket.origin),
            args=[
                ticket.token,
                ticket.lanes,
                tally.successes,
                tally.failures,
                tally.trailing_failures,
                pause or 0,
                int(ticket.probe),
                policy.failures,
                policy.failure_ratio,
                policy.window,
                policy.min_calls,
                policy.cooldown,
                policy.max_cooldown,
                STATE_TTL,
            ],
        )
        return BreakerState(_text(changed)) if _text(changed) else None

    def state(self, origin: str) -> BreakerState:
        value = self._client.hget(self._keys(origin)[0], "state")
        return BreakerState(_text(value)) if value else BreakerState.CLOSED


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
