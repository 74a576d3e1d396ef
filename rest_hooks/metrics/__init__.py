"""Prometheus metric families, prefixed ``rest_hooks_``, and the calls that record them.

Labels stay bounded: event names (those of ``HOOK_EVENTS``; any other name counts as
``other``), outcomes, status classes and reasons; never a URL, a hook id or a user. The
``host`` label is empty (which Prometheus treats as absent) unless
``REST_HOOKS["METRICS_TARGET_HOST"]`` is on, for installs that know how many target hosts
they have.

The families are registered in no registry at import: ``rest_hooks.metrics.exposition``
builds one per scrape (this process's families, or every process's files in
multiprocess mode). So importing this module twice, or beside django-prometheus or
Dramatiq's ``Prometheus`` middleware, registers nothing twice.

The counters and histograms are written by whichever process does the work (web
processes capture events, workers deliver); the gauges that describe the database or the
breakers are computed at scrape time (``rest_hooks.metrics.collectors``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

from rest_hooks.conf import hook_settings
from rest_hooks.delivery.http import HttpResult
from rest_hooks.metrics import breakers

logger = logging.getLogger(__name__)

#: Seconds of one attempt: up to DEADLINE (30 s by default) and a little beyond.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Seconds from event to success: instant, after flow-control waits, after retries
#: (the default schedule spans days).
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14400, 86400, 259200)
#: Hooks per event: none, one (the usual), to tens of thousands.
FANOUT_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)

events_captured = Counter(
    "rest_hooks_events_captured",
    "Events written to the outbox (counted when their transaction commits), by event.",
    ["event"],
    registry=None,
)
events_refused = Counter(
    "rest_hooks_events_refused",
    "Events refused at capture and never delivered, by event and reason (unencodable: "
    "JSON cannot encode the payload; too_large: over MAX_PAYLOAD_BYTES; name_too_long).",
    ["event", "reason"],
    registry=None,
)
delivery_attempts = Counter(
    "rest_hooks_delivery_attempts",
    "Delivery attempts by event, outcome (success, retry, failed, blocked) and status class.",
    ["event", "outcome", "status_class", "host"],
    registry=None,
)
delivery_duration = Histogram(
    "rest_hooks_delivery_duration_seconds",
    "Duration of one delivery attempt (the POST, from connect to the last byte read).",
    ["event", "host"],
    buckets=DURATION_BUCKETS,
    registry=None,
)
delivery_lag = Histogram(
    "rest_hooks_delivery_lag_seconds",
    "From the event (its capture) to the successful delivery, retries included.",
    ["event"],
    buckets=LAG_BUCKETS,
    registry=None,
)
fanout_size = Histogram(
    "rest_hooks_fanout_size",
    "Deliveries created for one event (the number of hooks it was fanned out to).",
    ["event"],
    buckets=FANOUT_BUCKETS,
    registry=None,
)
deliveries_in_flight = Gauge(
    "rest_hooks_deliveries_in_flight",
    "Delivery requests open right now, summed over the live processes.",
    registry=None,
    multiprocess_mode="livesum",
)
deferrals = Counter(
    "rest_hooks_deferrals",
    "Deliveries held back by flow control, by reason (rate_limit, circuit_open, in_flight).",
    ["reason"],
    registry=None,
)
breaker_transitions = Counter(
    "rest_hooks_breaker_transitions",
    "Circuit breaker transitions, by the state entered.",
    ["to_state", "host"],
    registry=None,
)
hooks_disabled = Counter(
    "rest_hooks_hooks_disabled",
    "Hooks switched off, by reason (gone: the target answered 410; failing: no success "
    "for DISABLE_AFTER).",
    ["reason"],
    registry=None,
)

#: Every family above: what a scrape of this process exposes.
FAMILIES = (
    events_captured,
    events_refused,
    delivery_attempts,
    delivery_duration,
    delivery_lag,
    fanout_size,
    deliveries_in_flight,
    deferrals,
    breaker_transitions,
    hooks_disabled,
)


def event_label(name: str) -> str:
    """The event's name if ``HOOK_EVENTS`` declares it, else ``other`` (bounded)."""
    return name if name in hook_settings.HOOK_EVENTS else "other"


def host_label(url: str) -> str:
    """The target's host with ``METRICS_TARGET_HOST``, else empty (no label)."""
    if not hook_settings.METRICS_TARGET_HOST:
        return ""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # a stored target that is no URL ("http://[::1/"): no host
        return ""


def status_class(result: HttpResult | None) -> str:
    """``2xx``…``5xx``, or ``none`` when no HTTP answer came (timeout, refused target)."""
    return f"{result.status_code // 100}xx" if result is not None else "none"


def event_captured(event_name: str, using: str) -> None:
    """Count an outbox event once its transaction commits (a rollback counts nothing)."""
    counter = events_captured.labels(event=event_label(event_name))
    transaction.on_commit(partial(counter.inc), using=using)


def event_refused(event_name: str, reason: str, using: str) -> None:
    """Count an event refused at capture, once its transaction commits."""
    counter = events_refused.labels(event=event_label(event_name), reason=reason)
    transaction.on_commit(partial(counter.inc), using=using)


def attempt_made(
    *,
    event_name: str,
    event_created_at: datetime,
    target: str,
    outcome: str,
    result: HttpResult | None,
    duration_ms: float,
) -> None:
    """One delivery attempt: its outcome, its duration, and on success the event's lag."""
    event, host = event_label(event_name), host_label(target)
    delivery_attempts.labels(
        event=event, outcome=outcome, status_class=status_class(result), host=host
    ).inc()
    delivery_duration.labels(event=event, host=host).observe(duration_ms / 1000)
    if outcome == "success":
        lag = (timezone.now() - event_created_at).total_seconds()
        delivery_lag.labels(event=event).observe(max(lag, 0.0))


def fanned_out(event_name: str, deliveries: int) -> None:
    fanout_size.labels(event=event_label(event_name)).observe(deliveries)


def breaker_changed(origin: str, state: str) -> None:
    """Count the transition and remember the origin for the open-breakers gauge."""
    breaker_transitions.labels(to_state=state, host=host_label(origin)).inc()
    breakers.remember(origin, state)


def hook_disabled(reason: str) -> None:
    hooks_disabled.labels(reason=reason).inc()
