"""Prometheus metric families, prefixed ``rest_hooks_``.

Labels stay bounded: event names (from HOOK_EVENTS), outcomes and status classes; never a
URL, a hook id or a user.
"""

from __future__ import annotations

from prometheus_client import Counter

from rest_hooks.delivery.http import HttpResult

delivery_attempts = Counter(
    "rest_hooks_delivery_attempts",
    "Delivery attempts by event, outcome (success, retry, failed, blocked) and status class.",
    ["event", "outcome", "status_class"],
)

deferrals = Counter(
    "rest_hooks_deferrals",
    "Deliveries held back by flow control, by reason (rate_limit, circuit_open, in_flight).",
    ["reason"],
)
breaker_transitions = Counter(
    "rest_hooks_breaker_transitions",
    "Circuit breaker transitions, by the state entered.",
    ["to_state"],
)


def status_class(result: HttpResult | None) -> str:
    """``2xx``…``5xx``, or ``none`` when no HTTP answer came (timeout, refused target)."""
    return f"{result.status_code // 100}xx" if result is not None else "none"
