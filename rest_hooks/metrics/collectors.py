"""Gauges computed at scrape time, from the database and the flow-control gate.

Counting these with increments would drift (a crashed worker, a purge, a breaker whose
state expired); asking at scrape time is exact and costs a few indexed queries:

- the outbox: how many events wait for their fan-out, and how old the oldest is (one
  count and one min over the partial index of pending events);
- the breakers: how many targets' breakers are open or half-open (one gate lookup per
  target in ``rest_hooks.metrics.breakers``' short list).

A source that fails (database or Redis down) is logged and left out of that scrape; the
rest is still served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rest_hooks.metrics import breakers

logger = logging.getLogger(__name__)


class OutboxCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "rest_hooks_outbox_pending_events",
                "Events written but not yet fanned out to their hooks.",
            ),
            GaugeMetricFamily(
                "rest_hooks_outbox_oldest_pending_age_seconds",
                "Age of the oldest event not yet fanned out (0 when none is pending).",
            ),
        )

    def collect(self) -> Iterator[Metric]:
        # Not at the top: the broker imports the metrics, and settings may import the
        # broker (DRAMATIQ_BROKER) before Django has loaded the models. No circle: the
        # models import nothing of the metrics.
        from rest_hooks.models import Event

        try:
            row = Event.objects.filter(status=Event.Status.PENDING).aggregate(
                pending=Count("pk"), oldest=Min("created_at")
            )
        except Exception as exc:
            # Once per scrape while the database is down: one line, not a traceback.
            logger.warning("Metrics: could not read the outbox (%s); gauges left out.", exc)
            return
        pending, age = self._families()
        pending.add_metric([], row["pending"])
        oldest = row["oldest"]
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield pending
        yield age


class BreakerCollector(Collector):
    """Counts the breakers by state, read through a function handed in at start-up.

    The gate belongs to the worker, a layer above the metrics: the app's ``ready()``
    hands its reader down (``read_states_with``) so that the metrics import nothing of
    it. Until then the gauge is left out.
    """

    STATES = ("open", "half_open")

    def __init__(self) -> None:
        self._state_of: Callable[[str], str] | None = None

    def read_states_with(self, state_of: Callable[[str], str]) -> None:
        """Read an origin's breaker state with ``state_of`` (``"closed"``, ``"open"``...)."""
        self._state_of = state_of

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "rest_hooks_breakers",
            "Targets whose circuit breaker is in this state now (open, half_open).",
            labels=["state"],
        )

    def collect(self) -> Iterator[Metric]:
        state_of = self._state_of
        if state_of is None:
            return
        counts = dict.fromkeys(self.STATES, 0)
        try:
            for origin in breakers.candidates():
                state = state_of(origin)
                if state in counts:
                    counts[state] += 1
        except Exception as exc:
            logger.warning("Metrics: could not read the breakers (%s); gauge left out.", exc)
            return
        family = self._family()
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family


BREAKERS = BreakerCollector()
#: The scrape-time collectors, in the order a scrape lists them.
COLLECTORS: tuple[Collector, ...] = (OutboxCollector(), BREAKERS)
