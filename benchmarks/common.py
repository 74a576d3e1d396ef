"""What both sides of the comparison share: the receiver's log, timing and statistics.

Standard library only: ``old_project/bench.py`` imports it from the old library's
virtualenv (Django 3.2), the other benchmarks from this project's.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: nginx's log_format of the receiver: arrival time (Unix seconds, ms resolution), the
#: request URI (it carries the id that matches an arrival to its event) and the status.
LOG_FORMAT = "$msec $request_uri $status"


class AccessLog:
    """The receiver's access log, read from where the last ``mark()`` left it.

    One line per request, written by nginx as the request ends: counting lines counts
    arrivals, whichever library sent them.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.mark()

    def mark(self) -> None:
        """From now on, only requests that arrive after this call count."""
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        # A line being written may be incomplete: only complete lines count.
        return data[: data.rfind(b"\n") + 1].decode().splitlines()

    def arrivals(self) -> list[tuple[float, str, int]]:
        """(arrival time, URI, status) of each request since the mark."""
        result = []
        for line in self.lines():
            msec, uri, status = line.split(" ")
            result.append((float(msec), uri, int(status)))
        return result

    def wait_for(self, n: int, timeout: float) -> list[tuple[float, str, int]]:
        """Wait until ``n`` requests arrived since the mark; their arrivals."""
        deadline = time.monotonic() + timeout
        while True:
            count = len(self.lines())
            if count >= n:
                return self.arrivals()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the receiver got {count} of {n} requests in {timeout:.0f} s")
            time.sleep(0.01 if n - count < 100 else 0.05)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (the figures are printed this way) of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, nearest rank."""
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_calls(call: Callable[[], object], n: int) -> float:
    """The median time (ms) of ``n`` calls, each timed on its own."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def request_path(
    sizes: Sequence[int], repeat: int, measure: Callable[[int], float]
) -> list[dict[str, Any]]:
    """Figure 1 for one library: ``measure(k)`` is one repetition's ms per create.

    Repetitions interleave the sizes (one pass over every K, ``repeat`` times), so that a
    burst of load on the shared machine lands on all of them rather than on one K. The
    overhead of K is taken against K = 0 within the same repetition.
    """
    per_k: dict[int, list[float]] = {k: [] for k in sizes}
    for _ in range(repeat):
        for k in sizes:
            per_k[k].append(measure(k))
    base = per_k.get(0)
    rows = []
    for k in sizes:
        row: dict[str, Any] = {"k": k, "create_ms": spread(per_k[k])}
        if base is not None:
            row["overhead_ms"] = spread([t - b for t, b in zip(per_k[k], base, strict=True)])
        rows.append(row)
    return rows


def emit(result: dict[str, Any]) -> None:
    """The last line of a side's stdout: its figures, as JSON, for ``run.py``."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout.strip().splitlines()[-1]))
