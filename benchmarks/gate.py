"""What flow control costs a delivery: the gate alone, against a real Redis.

    python benchmarks/gate.py [--redis-url redis://127.0.0.1:6379/0] [--n 20000]
                              [--threads 1,4] [--json out.json]

Every delivery asks the gate once before its request (``acquire``) and tells it once after
(``release``): one EVALSHA each with ``RedisGate``, a lock and a dict with ``MemoryGate``.
This measures:

- the cost of that pair for one delivery, one thread at a time (mean, p50, p99 in ms),
  for both gates, with every rule switched on (rate limit, in-flight cap, breaker);
- the cost of a refusal (an ``acquire`` that says "wait" and reserves the delivery's
  slot: what holding a delivery back for the rate limit costs, once per deferral);
- the cost of that pair per delivery when a batch of ``BATCH`` deliveries is admitted in
  one ``acquire`` (its send times, its in-flight lanes) and reported in one ``release``;
- the admissions per second one Redis sustains from N threads of this process (each an
  acquire + release pair, with its latency under that load), and the time Redis itself
  spends per delivery (from ``INFO commandstats``), which bounds what one Redis core can
  admit whatever the number of clients.

Without ``--redis-url`` it starts a ``redis-server`` of its own on a free loopback port
and stops it at the end. Its keys live under their own prefix (``rest_hooks_bench``) and
are deleted afterwards. The goal it reports against: under 0.3 ms per delivery on a
loopback Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from rest_hooks.delivery.flow import (
    SEND_HORIZON,
    BreakerPolicy,
    Gate,
    Limits,
    Tally,
    Ticket,
    new_token,
)
from rest_hooks.delivery.gates.memory import MemoryGate
from rest_hooks.delivery.gates.redis import RedisGate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, percentile, stop

GOAL_MS = 0.3
PREFIX = "rest_hooks_bench"
#: The deliveries of one admission in the batch rows.
BATCH = 50
#: Every rule on, none refusing: the full path of both scripts.
ADMIT_ALL = Limits(rate=1e9, burst=1_000_000, max_in_flight=1_000, breaker=BreakerPolicy())
#: One request per hour: after the first, every acquire is refused by the rate limit
#: (each reserving the next hour's slot).
REFUSE_ALL = Limits(rate=1 / 3600, burst=1, max_in_flight=1_000, breaker=BreakerPolicy())


@dataclass
class Row:
    measurement: str  # "acquire+release", "refused acquire", "... batch of 50", "throughput"
    gate: str
    threads: int
    n: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    ops_per_s: float


# -- measuring --------------------------------------------------------------------------


def summarise(
    measurement: str,
    gate: str,
    threads: int,
    samples_ns: list[int],
    wall_s: float,
    per: int = 1,
) -> Row:
    """The row of these samples, each of which covered ``per`` deliveries: its times are
    per delivery."""
    ms = sorted(s / 1e6 / per for s in samples_ns)
    n = len(ms) * per
    return Row(
        measurement=measurement,
        gate=gate,
        threads=threads,
        n=n,
        mean_ms=statistics.fmean(ms),
        p50_ms=percentile(ms, 0.50),
        p99_ms=percentile(ms, 0.99),
        ops_per_s=n / wall_s if wall_s > 0 else 0.0,
    )


def one_delivery(gate: Gate, origin: str, limits: Limits, count: int = 1) -> None:
    """What the worker asks of the gate for a batch of ``count`` successful requests."""
    token = new_token()
    decision = gate.acquire(origin, limits, token, count=count, horizon=SEND_HORIZON)
    if len(decision.send_at) < count:
        raise RuntimeError(f"the benchmark's limits refused a delivery: {decision}")
    ticket = Ticket(origin, token, decision.probe, decision.lanes)
    gate.release(ticket, limits, Tally(successes=count))


def one_refusal(gate: Gate, origin: str, limits: Limits) -> None:
    decision = gate.acquire(origin, limits, new_token())
    if decision.allowed:
        raise RuntimeError("the benchmark's limits admitted a delivery that should wait")


def timed(step: Callable[[], None], n: int) -> tuple[list[int], float]:
    """Run ``step`` ``n`` times; each one's duration (ns) and the wall time (s)."""
    samples = [0] * n
    clock = time.perf_counter_ns
    started = clock()
    for i in range(n):
        before = clock()
        step()
        samples[i] = clock() - before
    return samples, (clock() - started) / 1e9


def warm_up(step: Callable[[], None], n: int) -> None:
    for _ in range(min(1_000, max(10, n // 20))):
        step()


def latency(name: str, gate: Gate, n: int, origin: str) -> list[Row]:
    """One thread: the pair for an admitted delivery, a refusal, the pair for a batch."""
    rows = []

    def deliver() -> None:
        one_delivery(gate, origin, ADMIT_ALL)

    warm_up(deliver, n)
    samples, wall = timed(deliver, n)
    rows.append(summarise("acquire+release", name, 1, samples, wall))

    refused_origin = origin + "-refused"
    one_delivery(gate, refused_origin, REFUSE_ALL)  # uses up the hour's one request

    def refuse() -> None:
        one_refusal(gate, refused_origin, REFUSE_ALL)

    warm_up(refuse, n)
    samples, wall = timed(refuse, n)
    rows.append(summarise("refused acquire", name, 1, samples, wall))

    def deliver_batch() -> None:
        one_delivery(gate, origin, ADMIT_ALL, BATCH)

    batches = max(1, n // BATCH)
    warm_up(deliver_batch, batches)
    samples, wall = timed(deliver_batch, batches)
    rows.append(summarise(f"acquire+release, batch of {BATCH}", name, 1, samples, wall, per=BATCH))
    return rows


def throughput(name: str, gate: Gate, n: int, threads: int, origin: str) -> Row:
    """``threads`` threads share ``n`` deliveries (each thread its own target)."""
    per_thread = max(1, n // threads)
    samples: list[list[int]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        target = f"{origin}-t{i}"

        def deliver() -> None:
            one_delivery(gate, target, ADMIT_ALL)

        try:
            warm_up(deliver, per_thread)
            barrier.wait()
            samples[i], _ = timed(deliver, per_thread)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return summarise("throughput", name, threads, [s for ss in samples for s in ss], wall)


def script_time(client: redis.Redis) -> tuple[int, int]:
    """(calls, microseconds) Redis has spent in EVALSHA so far (all clients)."""
    stats = client.info("commandstats").get("cmdstat_evalsha") or {}
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def run(client: redis.Redis, n: int, threads: Sequence[int]) -> tuple[list[Row], float | None]:
    """The rows, and the Redis server's own time per delivery (µs) while measuring them."""
    origin = f"http://bench-{os.getpid()}.example:80"
    redis_gate = RedisGate(client, prefix=PREFIX)
    rows = latency("MemoryGate", MemoryGate(), n, origin)
    rows += latency("RedisGate", redis_gate, n, origin)
    calls_before, usec_before = script_time(client)
    rows += [throughput("RedisGate", redis_gate, n, t, origin) for t in threads]
    calls_after, usec_after = script_time(client)
    # Only admitted deliveries here: two script calls each (acquire, release).
    calls, usec = calls_after - calls_before, usec_after - usec_before
    server_us = 2 * usec / calls if calls > 0 else None
    return rows, server_us


# -- a redis-server of our own ----------------------------------------------------------


@contextlib.contextmanager
def own_redis() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: install it, or pass --redis-url")
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as workdir:
        port = free_port()
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        command += ["--appendonly", "no", "--dir", workdir]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"redis-server did not start on port {port}") from None
                    time.sleep(0.05)
            client.close()
            yield url
        finally:
            stop(proc)


def forget_keys(client: redis.Redis) -> None:
    keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


# -- output -----------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| measurement | gate | threads | n | mean ms | p50 ms | p99 ms | per second |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.measurement} | {r.gate} | {r.threads} | {r.n} | {r.mean_ms:.3f} "
        f"| {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.ops_per_s:,.0f} |"
        for r in rows
    ]
    return "\n".join(lines)


def where(url: str) -> str:
    """The Redis address without credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}/{parts.path.lstrip('/') or '0'}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="default: start a redis-server of our own")
    parser.add_argument("--n", type=int, default=20_000, help="deliveries per measurement")
    parser.add_argument(
        "--threads", default="1,4", help="thread counts for the throughput rows, e.g. 1,4,8"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--threads: not a list of numbers: {args.threads!r}")
    if args.n < 1 or not args.threads or min(args.threads) < 1:
        parser.error("--n and every --threads value must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(own_redis())
        client = redis.Redis.from_url(url)
        stack.callback(client.close)
        stack.callback(forget_keys, client)
        server = client.info("server")
        rows, server_us = run(client, args.n, args.threads)

    best = next(r for r in rows if r.measurement == "acquire+release" and r.gate == "RedisGate")
    met = best.mean_ms < GOAL_MS
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "redis_version": server.get("redis_version"),
        "redis": where(url) + ("" if args.redis_url else " (started by the benchmark)"),
        "n": args.n,
        "goal_ms": GOAL_MS,
        "goal_met": met,
        # Redis's own CPU per delivery (acquire + release scripts), from INFO commandstats:
        # one Redis core admits at most about 1e6 / this many deliveries per second.
        "redis_server_us_per_delivery": server_us,
        "results": [asdict(r) for r in rows],
    }
    print(
        f"Gate benchmark, {report['date']}, nproc {report['nproc']}, Python "
        f"{report['python']}, Redis {report['redis_version']} at {report['redis']}\n"
    )
    print(table(rows))
    print(
        f"\nGoal: acquire+release under {GOAL_MS} ms per delivery on RedisGate: "
        f"{'met' if met else 'NOT met'} (mean {best.mean_ms:.3f} ms, p99 {best.p99_ms:.3f} ms)"
    )
    if server_us:
        print(
            f"Redis itself spent {server_us:.1f} µs per delivery in the two scripts: one "
            f"Redis core could admit about {1e6 / server_us:,.0f} deliveries/s; the rest of "
            "the cost is the round trips and this client."
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
