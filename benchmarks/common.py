"""What both sides of the comparison share: the receiver's log, timing and statistics.

Standard library only: ``old_project/bench.py`` imports it from the old library's
virtualenv (Django 3.2), the other benchmarks from this project's.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

#: nginx's log_format of the receiver: arrival time (Unix seconds, ms resolution), the
#: request URI (it carries the id that matches an arrival to its event) and the status.
LOG_FORMAT = "$msec $request_uri $status"
#: The gate's in-flight cap in the slow receivers' parts: the library's default.
SLOW_MAX_IN_FLIGHT = 10

T = TypeVar("T")


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
        """(arrival time, URI, status) of each request since the mark (``slow_receiver.py``
        writes more fields after these: ``open_at_once`` reads them)."""
        result = []
        for line in self.lines():
            msec, uri, status, *_ = line.split(" ")
            result.append((float(msec), uri, int(status)))
        return result

    def open_at_once(self) -> dict[int, int]:
        """``slow_receiver.py``'s log: the most requests each origin (by port) had open at
        once since the mark."""
        most: dict[int, int] = {}
        for line in self.lines():
            port, open_now = (int(x) for x in line.split(" ")[4:6])
            most[port] = max(most.get(port, 0), open_now)
        return most

    def open_in_all(self) -> int:
        """``slow_receiver.py``'s log: the most requests open at once on all its origins
        together since the mark, from each request's arrival and answer times."""
        changes = []
        for line in self.lines():
            answered, _, _, arrived = line.split(" ")[:4]
            changes += [(float(arrived), 1), (float(answered), -1)]
        most = now = 0
        for _, change in sorted(changes):
            now += change
            most = max(most, now)
        return most

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


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Send ``sig`` to a server of ours and wait for it to end; killed after ``timeout``."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def abba(order: Sequence[T], i: int) -> Sequence[T]:
    """The order of pass ``i`` over ``order``: as given on even passes, reversed on odd
    ones (A B B A ...).

    Drift over a run (SQLite's WAL checkpoints, the garbage collector, the neighbours on
    a shared machine) then lands on the first and the last items alike, rather than always
    on the last ones.
    """
    return order if i % 2 == 0 else order[::-1]


def time_call(call: Callable[[], object]) -> float:
    """The time (ms) of one call."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def time_calls(call: Callable[[], object], n: int) -> float:
    """The median time (ms) of ``n`` calls, one after the other, each timed on its own."""
    return statistics.median([time_call(call) for _ in range(n)])


def time_interleaved(
    calls: Mapping[T, Callable[[], object]], order: Sequence[T], n: int
) -> dict[T, float]:
    """The median time (ms) of ``n`` calls of each of ``calls``, interleaved call by call.

    ``n`` rounds, each timing one call of every key of ``order``, in that order and
    reversed round after round (``abba``): drift during the calls is shared by all keys,
    instead of landing on those timed last as when each key's ``n`` calls run in a batch
    (``time_calls``).
    """
    samples: dict[T, list[float]] = {key: [] for key in order}
    for i in range(n):
        for key in abba(order, i):
            samples[key].append(time_call(calls[key]))
    return {key: statistics.median(ms) for key, ms in samples.items()}


def request_path(
    sizes: Sequence[int],
    repeat: int,
    measure: Callable[[Sequence[int]], Mapping[int, float]],
) -> list[dict[str, Any]]:
    """Figure 1 for one library: ``measure(order)`` is one repetition, the ms per create of
    each K, going over the sizes in ``order``.

    Repetitions go over the sizes forward and backward in turn (``abba``), so that drift
    within a repetition does not always land on the largest K; ``measure`` may interleave
    the sizes further, call by call (``time_interleaved``). The overhead of K is taken
    against K = 0 of the same repetition, so that what changes between repetitions (load
    on the shared machine) cancels out.
    """
    per_k: dict[int, list[float]] = {k: [] for k in sizes}
    for i in range(repeat):
        ms = measure(abba(sizes, i))
        for k in sizes:
            per_k[k].append(ms[k])
    base = per_k.get(0)
    rows = []
    for k in sizes:
        row: dict[str, Any] = {"k": k, "create_ms": spread(per_k[k])}
        if base is not None:
            row["overhead_ms"] = spread([t - b for t, b in zip(per_k[k], base, strict=True)])
        rows.append(row)
    return rows


def spread_targets(origins: Sequence[str], n: int, path: str) -> list[str]:
    """``n`` hook URLs dealt over ``origins`` in turn, each with its own path."""
    return [f"{origins[i % len(origins)]}{path}/{i}" for i in range(n)]


def steady_rate(times: Sequence[float]) -> float:
    """Arrivals a second between the 10th and the 90th percentile of ``times``: the pace
    once the start-up (workers becoming ready one by one) and the tail are left out."""
    ordered = sorted(times)
    first, last = len(ordered) // 10, len(ordered) * 9 // 10
    return (last - first) / (ordered[last] - ordered[first])


def slow_fan_out(send: Callable[[], object], n: int, log: AccessLog) -> dict[str, Any]:
    """``send()`` makes one event to ``n`` hooks on ``slow_receiver.py``'s origins:
    deliveries a second, from just before it to the last answer, and the most requests
    any origin had open at once meanwhile."""
    log.mark()
    started = time.time()
    send()
    arrivals = log.wait_for(n, 120 + n / 5)
    return {
        "per_s": n / (max(a[0] for a in arrivals) - started),
        "open_at_once": max(log.open_at_once().values()),
        "open_in_all": log.open_in_all(),
    }


def slow_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The repetitions of ``slow_fan_out``: the spread of their rates, the most open on
    one origin and on all together."""
    return {
        "per_s": spread([r["per_s"] for r in runs]),
        "open_at_once": max(r["open_at_once"] for r in runs),
        "open_in_all": max(r["open_in_all"] for r in runs),
    }


def isolation(
    event_to: Callable[[str, list[str]], Callable[[], object]],
    origins: Mapping[str, Sequence[str]],
    stalled_per_origin: int,
    n_fast: int,
    prefix: str,
    log: AccessLog,
    repeat: int,
) -> dict[str, Any]:
    """The fast origin's deliveries a second for an event to ``n_fast`` hooks on it:
    alone, and sent just after an event to ``stalled_per_origin`` hooks on each stalled
    origin (each repetition waits for every answer before the next); alone first, once,
    to warm up. ``origins``: ``slow_receiver.py``'s URLs by group; ``event_to(name,
    targets)`` subscribes hooks on ``targets`` and returns what sends an event to them;
    their URIs start with ``prefix``."""
    stalled = spread_targets(
        origins["stalled"], stalled_per_origin * len(origins["stalled"]), f"{prefix}/stalled"
    )
    send_stalled = event_to("stalled", stalled)
    send_fast = event_to("fast", spread_targets(origins["fast"], n_fast, f"{prefix}/fast"))

    def once(with_stalled: bool) -> float:
        log.mark()
        if with_stalled:
            send_stalled()
        started = time.time()
        send_fast()
        n_stalled = len(stalled) if with_stalled else 0
        arrivals = log.wait_for(n_fast + n_stalled, 120 + len(stalled) * 2)
        fast = [at for at, uri, _ in arrivals if uri.startswith(f"{prefix}/fast/")]
        return n_fast / (max(fast) - started)

    once(False)
    alone, beside = [], []
    for _ in range(repeat):
        alone.append(once(False))
        beside.append(once(True))
    return {
        "fast_hooks": n_fast,
        "stalled_hooks": len(stalled),
        "alone_per_s": spread(alone),
        "with_stalled_per_s": spread(beside),
        "kept": spread([w / a for w, a in zip(beside, alone, strict=True)]),
    }


def emit(result: dict[str, Any]) -> None:
    """The last line of a side's stdout: its figures, as JSON, for ``run.py``."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout.strip().splitlines()[-1]))
