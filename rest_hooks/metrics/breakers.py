"""Which targets may have a breaker that is not closed: the index of the breakers gauge.

The gate keeps each target's breaker under its own keys and has no list of them; scanning
Redis at every scrape would cost as much as there are targets. So each transition the
workers announce adds the target here (in Redis, shared by every process, when
``REST_HOOKS["REDIS_URL"]`` is set; else in this process, as the gate's state is) and a
closing removes it. The scrape asks the gate for the state of these few targets only, so
a breaker whose state expired without a word counts as what the gate says.

Metrics never break a delivery: a Redis error here is logged and ignored.
"""

from __future__ import annotations

import logging
import threading

import redis

from rest_hooks.conf import hook_settings, on_reload

logger = logging.getLogger(__name__)

KEY = "rest_hooks:metrics:breakers"

_local: set[str] = set()
_lock = threading.Lock()
_client: redis.Redis | None = None


def _redis() -> redis.Redis | None:
    global _client
    url = hook_settings.REDIS_URL
    if url and _client is None:
        _client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return _client if url else None


@on_reload
def _forget() -> None:
    global _client
    _client = None
    with _lock:
        _local.clear()


def remember(origin: str, state: str) -> None:
    """Note a transition of ``origin``'s breaker to ``state``."""
    closed = state == "closed"
    client = _redis()
    if client is None:
        with _lock:
            (_local.discard if closed else _local.add)(origin)
        return
    try:
        if closed:
            client.srem(KEY, origin)
        else:
            client.sadd(KEY, origin)
    except redis.RedisError as exc:
        logger.warning("Metrics: could not record the breaker of %s (%s).", origin, exc)


def candidates() -> list[str]:
    """The targets whose breaker was last seen leaving the closed state."""
    client = _redis()
    if client is None:
        with _lock:
            return sorted(_local)
    members = client.smembers(KEY)
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
