"""One scrape: the registry that aggregates what every process counted, and its text.

With ``PROMETHEUS_MULTIPROC_DIR`` in the environment (prometheus-client's multiprocess
mode), every process that imported ``prometheus_client`` with the variable set writes
its counters to files there, and a scrape merges every file: workers' and web
processes' alike. Without it, a scrape shows this process's own families (one process:
``runserver`` with the embedded worker).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from rest_hooks.metrics import FAMILIES
from rest_hooks.metrics.collectors import COLLECTORS

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV_VAR) or None


def scrape_registry() -> CollectorRegistry:
    """A registry made for one scrape (so nothing is registered twice, ever)."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    for collector in COLLECTORS:
        registry.register(collector)
    return registry


class _ThisProcess(Collector):
    """This process's families, without the ``_created`` samples multiprocess mode lacks,
    so that a scrape shows the same series in both modes."""

    def collect(self) -> Iterator[Metric]:
        for family in FAMILIES:
            for metric in family.collect():
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
                yield metric


def render(accept: str) -> tuple[bytes, str]:
    """The metrics in the format ``accept`` asks for (OpenMetrics or text): body, type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(scrape_registry()), content_type
