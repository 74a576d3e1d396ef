"""Dramatiq middleware: a worker process that stops leaves no live gauge behind.

In multiprocess mode each process writes its gauges to files named after its pid;
``livesum`` gauges (deliveries in flight) must forget a process once it is gone, or a
restarted worker would add its dead predecessor's last value forever. Counters and
histograms stay: they keep counting what that process did.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import multiprocess

from rest_hooks.metrics.exposition import multiprocess_dir


class MetricsMiddleware(Middleware):
    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        path = multiprocess_dir()
        if path:
            multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
