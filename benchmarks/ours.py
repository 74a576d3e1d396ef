"""This project's figures on one database, with real ``rundramatiq`` worker processes.

    python benchmarks/ours.py --db postgresql://postgres@127.0.0.1:5432/bench \\
        --redis-url redis://127.0.0.1:6379 --receiver http://127.0.0.1:PORT --log ACCESS_LOG \\
        [--parts request,fanout,latency,memory] [...]

Run by ``run.py`` (once per database, each in a fresh database); prints its figures as
JSON on its last line. The parts:

- ``request``: what ``Book.objects.create()`` costs the caller with K subscribers (no
  worker runs meanwhile: the figure is the request's own cost);
- ``fanout``: one event to ``--hooks`` hooks, from the commit until the receiver has every
  POST, with each of ``--processes`` worker process counts and each of ``--threads``
  thread counts; with it the CPU time that the workers, Redis and PostgreSQL spent per
  delivery, Redis commands and SQL statements per delivery;
- ``latency``: commit to arrival at ``--latency-rate`` events a second, one hook each, with
  each of ``--threads``; with it what one such event costs: worker CPU, SQL statements,
  Redis round trips (broker and gate apart) and broker messages;
- ``sustained``: the rate at which the workers drain a backlog of ``--sustained-events``
  one-hook events, with each of ``--threads``;
- ``slow``: one event to ``--slow-hooks`` hooks spread over the slow receivers' origins
  (``slow_receiver.py``, each answering in 100-150 ms), with each of ``--slow-threads``
  and the gate's default ``MAX_IN_FLIGHT`` (10): deliveries a second and the most
  requests any origin had open at once;
- ``isolation``: the fast origin's deliveries a second for an event of
  ``--isolation-hooks`` hooks, alone and just after an event to
  ``--isolation-stalled-per-origin`` hooks on each of the stalled origins (answering in
  2 s);
- ``memory``: the workers' RSS after each of ``--memory`` deliveries (a part of its own,
  the longest: ``run.py`` runs it on one database).

The fan-out runs once more with each ``RATE_LIMIT`` of ``--rate-limits`` (the largest
process count only). Latency, sustained, slow, isolation and memory run the largest process
count; memory with the first thread count, isolation with the first of ``--slow-threads``.

On PostgreSQL started with ``pg_stat_statements`` loaded (``scripts/bench`` does), the
fan-out also counts the SQL statements per delivery and the server's time in each.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import profile_report  # noqa: E402

PARTS = ("request", "fanout", "latency", "sustained", "slow", "isolation", "memory")
#: Hooks of the fan-out that warms a fresh set of workers up (not measured).
WARM_UP_HOOKS = 100
#: Events sent at the latency run's rate, and waited for, before it is measured.
WARM_UP_EVENTS = 50
#: py-spy's samples a second.
PROFILE_RATE = 250
#: The SQLite database's ``OPTIONS`` (JSON), unless ``--sqlite-options`` says otherwise.
SQLITE_OPTIONS = '{"timeout": 30, "transaction_mode": "IMMEDIATE"}'
#: Users (one hook each) whose events make the sustained part's backlog, in turn.
SUSTAINED_USERS = 200


# -- the database -----------------------------------------------------------------------


def fresh_database(db: str) -> None:
    """Drop and create the PostgreSQL database (a SQLite file is simply removed)."""
    url = urlsplit(db)
    if url.scheme == "sqlite":
        Path(url.path).unlink(missing_ok=True)
        return
    import psycopg

    name = url.path.lstrip("/")
    admin = f"host={url.hostname} port={url.port} user={url.username} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(args: argparse.Namespace) -> None:
    os.environ.update(worker_env(args))
    sys.path[:0] = [str(ROOT), str(ROOT / "example")]
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "BENCH_DB": args.db,
        "BENCH_REDIS_URL": args.redis_url,
        "BENCH_GATE_REDIS_URL": args.gate_redis_url,
        "BENCH_MAX_IN_FLIGHT": str(max(1000, 4 * max(args.threads) * max(args.processes))),
        "BENCH_CONN_MAX_AGE": str(args.conn_max_age),
        "BENCH_SQLITE_OPTIONS": args.sqlite_options,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example")]),
    }


def subscribe(name: str, k: int, receiver: str) -> Any:
    """A user with ``k`` hooks on ``book.added``, each with its own URL."""
    return subscribe_to(name, [f"{receiver}/ours/{name}/{i}" for i in range(k)])


def subscribe_to(name: str, targets: Sequence[str]) -> Any:
    """A user with a hook on ``book.added`` for each of ``targets``."""
    from django.contrib.auth.models import User

    from rest_hooks.models import Hook

    user = User.objects.create(username=name)
    Hook.objects.bulk_create(
        (Hook(user=user, event="book.added", target=target) for target in targets),
        batch_size=1000,
    )
    return user


def event_to(name: str, targets: list[str]) -> Callable[[], object]:
    """What makes one event to the hooks of a new user on each of ``targets``."""
    return functools.partial(create_book, subscribe_to(name, targets))


def create_book(user: Any) -> Any:
    from bookstore.models import Book

    return Book.objects.create(user=user, title="The Hobbit", pages=310, fiction=True)


def forget_events(redis_url: str) -> None:
    """Drop the events the request-path part left pending, and their messages, so that no
    worker started later delivers them."""
    import redis

    from rest_hooks.models import Event

    Event.objects.all().delete()
    redis.Redis.from_url(f"{redis_url.rstrip('/')}/0").flushdb()


# -- worker processes -------------------------------------------------------------------


class Workers:
    """``python -m django rundramatiq --processes P --threads T``, as an operator runs it."""

    def __init__(
        self,
        args: argparse.Namespace,
        processes: int,
        threads: int,
        log_dir: Path,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.processes = processes
        self.log_path = log_dir / f"workers-{processes}p-{time.monotonic_ns()}.log"
        env = {**os.environ, **worker_env(args), **(settings or {})}
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=log_dir)
        with self.log_path.open("wb") as out:
            command = f"-m django rundramatiq --processes {processes} --threads {threads}"
            self.proc = subprocess.Popen(
                [sys.executable, *command.split()],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count("is ready for action") < self.processes:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the workers did not start:\n" + self.log()[-3000:])
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """The worker processes: the children of dramatiq's main process."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextlib.contextmanager
def workers(
    args: argparse.Namespace,
    processes: int,
    threads: int | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[Workers]:
    """Worker processes of ``threads`` threads (the first of ``--threads`` by default);
    ``settings``: ``BENCH_*`` variables of ``settings.py`` to set for them."""
    w = Workers(args, processes, threads or args.threads[0], Path(args.work_dir), settings)
    try:
        w.wait_ready()
        yield w
    except BaseException:
        print(w.log()[-3000:], file=sys.stderr)
        raise
    finally:
        w.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far, with that of the children they
    reaped (PostgreSQL's postmaster reaps a backend per closed connection)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])
    return total / tick


# -- the parts --------------------------------------------------------------------------


def part_request(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Figure 1. The K are interleaved call by call: each round of a repetition times one
    create of every K, so that drift during the repetition lands on all of them (timing
    each K's creates in a batch put it on the K timed last, whose overhead wandered by
    ±1 ms with one INSERT done whatever K). Nothing runs in the background meanwhile."""
    users = {k: subscribe(f"k{k}", k, args.receiver) for k in args.sizes}
    creates = {k: functools.partial(create_book, user) for k, user in users.items()}

    def measure(order: Sequence[int]) -> dict[int, float]:
        return common.time_interleaved(creates, order, args.creates)

    rows = common.request_path(args.sizes, args.repeat, measure)
    forget_events(args.redis_url)
    return rows


class Costs:
    """What the workers, Redis and PostgreSQL spent: ``per_delivery`` of two snapshots.

    With the gate on a redis-server of its own (``--gate-redis-url``), each server's
    ``INFO`` is the broker's or the gate's work alone. A round trip is a read the server
    processed (``total_reads_processed``: one per request, or per pipeline, of a client);
    a broker message is an ``HSET`` of Dramatiq's enqueue script (``commandstats`` also
    counts the commands that scripts run).
    """

    def __init__(self, args: argparse.Namespace, pids: list[int]) -> None:
        import redis

        broker = redis.Redis.from_url(args.redis_url)
        if args.gate_redis_url:
            self.servers = {"broker": broker, "gate": redis.Redis.from_url(args.gate_redis_url)}
        else:
            self.servers = {"broker and gate": broker}
        self.pids = pids
        self.postgres = urlsplit(args.db).scheme != "sqlite"

    def snapshot(self) -> dict[str, Any]:
        servers = {}
        for name, client in self.servers.items():
            info = client.info("all")
            servers[name] = {
                "cpu": info["used_cpu_user"] + info["used_cpu_sys"],
                "reads": info["total_reads_processed"],
                "commands": {
                    k.removeprefix("cmdstat_"): v["calls"]
                    for k, v in info.items()
                    if k.startswith("cmdstat_")
                },
            }
        return {
            "workers": cpu_seconds(self.pids),
            "postgres": cpu_seconds(postgres_pids()) if self.postgres else 0.0,
            "servers": servers,
            "sql": sql_statements() if self.postgres else {},
        }

    @staticmethod
    def per_delivery(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, Any]:
        result: dict[str, Any] = {
            f"{k}_cpu_ms": (after[k] - before[k]) * 1000 / n for k in ("workers", "postgres")
        }
        redis: dict[str, Any] = {}
        for name, now in after["servers"].items():
            was = before["servers"][name]
            redis[name] = {
                "cpu_ms": (now["cpu"] - was["cpu"]) * 1000 / n,
                "round_trips": (now["reads"] - was["reads"]) / n,
                "commands": {
                    command: (calls - was["commands"].get(command, 0)) / n
                    for command, calls in now["commands"].items()
                    if calls > was["commands"].get(command, 0) and command != "info"
                },
            }
        result["redis"] = redis
        result["redis_cpu_ms"] = sum(r["cpu_ms"] for r in redis.values())
        result["redis_round_trips"] = sum(r["round_trips"] for r in redis.values())
        result["redis_commands"] = {}
        for r in redis.values():
            for command, calls in r["commands"].items():
                result["redis_commands"][command] = result["redis_commands"].get(command, 0) + calls
        result["broker_messages"] = redis[next(iter(redis))]["commands"].get("hset", 0.0)
        statements = []
        for query, (calls, ms) in after["sql"].items():
            was_calls, was_ms = before["sql"].get(query, (0, 0.0))
            if calls > was_calls:
                statements.append(
                    {
                        "per_delivery": (calls - was_calls) / n,
                        "mean_ms": (ms - was_ms) / (calls - was_calls),
                        "query": query,
                    }
                )
        statements.sort(key=lambda q: -q["per_delivery"] * q["mean_ms"])
        result["sql_statements"] = statements
        return result


def sql_statements() -> dict[str, tuple[int, float]]:
    """(calls, total execution ms) of each statement of this database so far, from
    pg_stat_statements; empty when PostgreSQL was started without it."""
    from django.db import DatabaseError, connection, transaction

    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT query, calls, total_exec_time FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND query NOT LIKE '%pg_stat_statements%'"
                " AND query NOT LIKE '%pg_backend_pid%'"
            )
            return {query: (calls, ms) for query, calls, ms in cursor.fetchall()}
    except DatabaseError:
        return {}


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (its backends and the postmaster)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


def fan_out_once(user: Any, hooks: int, log: common.AccessLog) -> float:
    """One event to the ``hooks`` hooks of ``user``: deliveries a second, from the commit
    to the last arrival."""
    log.mark()
    started = time.time()
    create_book(user)
    arrivals = log.wait_for(hooks, 120 + hooks / 20)
    bad = [a for a in arrivals if a[2] != 204]
    if bad:
        raise RuntimeError(f"unexpected answers from the receiver: {bad[:3]}")
    rate = hooks / (max(a[0] for a in arrivals) - started)
    wait_recorded()
    return rate


def wait_recorded(timeout: float = 60) -> None:
    """Wait until the workers recorded every delivery: the gate's release and the record
    come after the arrival, and a snapshot of the costs taken before them misses them."""
    from rest_hooks.models import Delivery

    deadline = time.monotonic() + timeout
    while Delivery.objects.filter(status=Delivery.Status.PENDING).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"deliveries still pending {timeout} s after their arrival")
        time.sleep(0.05)


@contextlib.contextmanager
def profiling(args: argparse.Namespace, pids: list[int], label: str) -> Iterator[list[Path]]:
    """py-spy on each worker process while the block runs (``--profile DIR``): the files
    of samples of the thread holding the GIL (``profile_report.py`` reads them); none
    without ``--profile``."""
    if not args.profile:
        yield []
        return
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{label}-{pid}.txt" for pid in pids]
    spies = [
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "--gil",
                "--format",
                "raw",
                "--rate",
                str(PROFILE_RATE),
                "--nonblocking",
                "-o",
                str(path),
                "--pid",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, path in zip(pids, files, strict=True)
    ]
    time.sleep(1)  # py-spy attaches
    try:
        yield files
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=30)


def part_fanout(args: argparse.Namespace, log: common.AccessLog) -> list[dict[str, Any]]:
    """Figures 2 and 3: each process and thread count without a rate limit, then the
    largest process count, with the thread count that was faster there, with each of
    ``--rate-limits`` (one that never binds shows what a limit costs a fan-out by
    itself)."""
    user = subscribe("fanout", args.hooks, args.receiver)
    warm = subscribe("warm-up", WARM_UP_HOOKS, args.receiver)
    rows = [
        fan_out_row(args, log, user, warm, processes, threads, "")
        for processes in args.processes
        for threads in args.threads
    ]
    processes = max(args.processes)
    fastest = max(
        (r for r in rows if r["processes"] == processes), key=lambda r: r["per_s"]["median"]
    )
    rows += [
        fan_out_row(args, log, user, warm, processes, fastest["threads"], limit)
        for limit in args.rate_limits
    ]
    return rows


def fan_out_row(
    args: argparse.Namespace,
    log: common.AccessLog,
    user: Any,
    warm: Any,
    processes: int,
    threads: int,
    rate_limit: str,
) -> dict[str, Any]:
    """``--repeat`` fan-outs to ``user``'s hooks by fresh workers, after a warm-up."""
    with workers(args, processes, threads, {"BENCH_RATE_LIMIT": rate_limit}) as w:
        # Imports, connections and pools of every worker thread.
        fan_out_once(warm, WARM_UP_HOOKS, log)
        costs = Costs(args, w.pids())
        before = costs.snapshot()
        rates = [fan_out_once(user, args.hooks, log) for _ in range(args.repeat)]
        after = costs.snapshot()
        row = {
            "processes": processes,
            "threads": threads,
            "rate_limit": rate_limit or None,
            "hooks": args.hooks,
            "per_s": common.spread(rates),
            "per_delivery": Costs.per_delivery(before, after, args.hooks * args.repeat),
        }
        first = (max(args.processes), args.threads[0], "")
        if args.profile and (processes, threads, rate_limit) == first:
            with profiling(args, w.pids(), f"fanout-{processes}p") as files:
                fan_out_once(user, args.hooks, log)
            row["profile"] = profile_report.summarise(files, args.hooks, PROFILE_RATE)
    return row


def part_latency(args: argparse.Namespace, log: common.AccessLog) -> list[dict[str, Any]]:
    """Figure 4, with each of ``--threads`` (the same hooks each time)."""
    users = [subscribe(f"lat{i}", 1, args.receiver) for i in range(args.latency_events)]
    warm = [subscribe(f"lat-warm{i}", 1, args.receiver) for i in range(WARM_UP_EVENTS)]
    return [latency_once(args, log, users, warm, threads) for threads in args.threads]


def send_at_rate(users: list[Any], rate: float, name: str) -> dict[str, float]:
    """One event for each of ``users``, ``rate`` a second: the commit time of each, by
    the URI its hook receives."""
    from django.db import transaction

    committed: dict[str, float] = {}
    started = time.monotonic()
    for i, user in enumerate(users):
        pause = started + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        uri = f"/ours/{name}{i}/0"
        with transaction.atomic():
            # Runs first after the commit, before rest_hooks' own on_commit enqueues.
            transaction.on_commit(lambda uri=uri: committed.__setitem__(uri, time.time()))
            create_book(user)
    return committed


def latency_once(
    args: argparse.Namespace,
    log: common.AccessLog,
    users: list[Any],
    warm: list[Any],
    threads: int,
) -> dict[str, Any]:
    n = len(users)
    with workers(args, max(args.processes), threads) as w:
        # A steady rate is the figure: each worker thread's first messages open its
        # connections and build its statements, and the backlog they made took a second
        # to drain (p99 242 ms with them, against a steady-state maximum of ~40 ms).
        log.mark()
        send_at_rate(warm, args.latency_rate, "lat-warm")
        log.wait_for(len(warm), 60)
        log.mark()
        costs = Costs(args, w.pids())
        before = costs.snapshot()
        # Profiled, unlike the fan-out, in the measured run: the figure to explain is this
        # one, and py-spy's cost is small next to a worker's per-event CPU.
        with profiling(args, w.pids(), f"latency-{threads}t") as files:
            committed = send_at_rate(users, args.latency_rate, "lat")
            arrivals = log.wait_for(n, 60)
            wait_recorded()
        spent = Costs.per_delivery(before, costs.snapshot(), n)
    latencies = sorted((at - committed[uri]) * 1000 for at, uri, _ in arrivals)
    result = {
        "processes": max(args.processes),
        "threads": threads,
        "events": n,
        "rate": args.latency_rate,
        "p50_ms": common.percentile(latencies, 0.50),
        "p99_ms": common.percentile(latencies, 0.99),
        "max_ms": latencies[-1],
        # CPU, SQL statements, Redis round trips and broker messages of one event.
        "per_event": spent,
    }
    if files:
        result["profile"] = profile_report.summarise(files, n, PROFILE_RATE)
    return result


def part_sustained(args: argparse.Namespace, log: common.AccessLog) -> list[dict[str, Any]]:
    """The highest one-hook event rate the workers keep up with: how fast they drain a
    backlog of ``--sustained-events`` such events, made while no worker ran (so that the
    caller's own CPU is not in the figure), with each of ``--threads``."""
    users = [subscribe(f"sus{i}", 1, args.receiver) for i in range(SUSTAINED_USERS)]
    n = args.sustained_events
    rows = []
    for threads in args.threads:
        log.mark()
        for i in range(n):
            create_book(users[i % len(users)])
        with workers(args, max(args.processes), threads):
            arrivals = log.wait_for(n, 120 + n / 20)
        rows.append(
            {
                "processes": max(args.processes),
                "threads": threads,
                "events": n,
                "per_s": common.steady_rate([a[0] for a in arrivals]),
            }
        )
    return rows


def part_slow(args: argparse.Namespace, slow: dict[str, Any]) -> list[dict[str, Any]]:
    """One event to ``--slow-hooks`` hooks spread over the slow origins (100-150 ms an
    answer), ``MAX_IN_FLIGHT`` 10, with each of ``--slow-threads``."""
    log = common.AccessLog(slow["log"])
    origins = slow["urls"]["slow"]
    send = event_to("slow", common.spread_targets(origins, args.slow_hooks, "/ours/slow"))
    warm = event_to("slow-warm", common.spread_targets(origins, len(origins), "/ours/warm"))
    settings = {"BENCH_MAX_IN_FLIGHT": str(common.SLOW_MAX_IN_FLIGHT)}
    rows = []
    for threads in args.slow_threads:
        with workers(args, max(args.processes), threads, settings) as w:
            common.slow_fan_out(warm, len(origins), log)
            costs = Costs(args, w.pids())
            before = costs.snapshot()
            runs = [common.slow_fan_out(send, args.slow_hooks, log) for _ in range(args.repeat)]
            after = costs.snapshot()
        rows.append(
            {
                "processes": max(args.processes),
                "threads": threads,
                "hooks": args.slow_hooks,
                "origins": len(origins),
                "max_in_flight": common.SLOW_MAX_IN_FLIGHT,
                **common.slow_runs(runs),
                "per_delivery": Costs.per_delivery(before, after, args.slow_hooks * args.repeat),
            }
        )
    return rows


def part_isolation(args: argparse.Namespace, slow: dict[str, Any]) -> dict[str, Any]:
    """The fast origin's pace with the stalled origins (2 s an answer) busy, against its
    pace alone, with the first of ``--slow-threads``."""
    threads = args.slow_threads[0]
    settings = {"BENCH_MAX_IN_FLIGHT": str(common.SLOW_MAX_IN_FLIGHT)}
    with workers(args, max(args.processes), threads, settings):
        runs = common.isolation(
            event_to,
            slow["urls"],
            args.isolation_stalled_per_origin,
            args.isolation_hooks,
            "/ours",
            common.AccessLog(slow["log"]),
            args.repeat,
        )
    return {"processes": max(args.processes), "threads": threads, **runs}


def part_memory(args: argparse.Namespace, log: common.AccessLog) -> dict[str, Any]:
    user = subscribe("memory", args.hooks, args.receiver)
    points = []
    sent = 0
    with workers(args, max(args.processes)) as w:
        log.mark()
        for checkpoint in args.memory:
            while sent < checkpoint:
                create_book(user)
                sent += args.hooks
            log.wait_for(sent, 120 + sent / 20)
            time.sleep(0.5)  # the last deliveries' bookkeeping
            points.append({"deliveries": sent, "rss_mib": [rss_kib(p) / 1024 for p in w.pids()]})
    return {"processes": max(args.processes), "points": points}


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--sizes", type=numbers, default=[0, 1, 100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--creates", type=int, default=50)
    parser.add_argument("--hooks", type=int, default=5000)
    parser.add_argument("--processes", type=numbers, default=[1, 2])
    parser.add_argument("--threads", type=numbers, default=[2, 8])
    parser.add_argument("--latency-rate", type=float, default=100)
    parser.add_argument("--latency-events", type=int, default=1000)
    parser.add_argument("--memory", type=numbers, default=[10_000, 50_000, 100_000])
    parser.add_argument("--conn-max-age", type=int, default=60)
    parser.add_argument("--sqlite-options", default=SQLITE_OPTIONS)
    parser.add_argument("--gate-redis-url", default="", help="the gate's own redis-server")
    parser.add_argument("--rate-limits", type=names, default=[], help="RATE_LIMITs of the fan-out")
    parser.add_argument("--sustained-events", type=int, default=2000)
    parser.add_argument("--slow-receivers", default="", help="slow_receiver.py's URLs and log")
    parser.add_argument("--slow-hooks", type=int, default=2000)
    parser.add_argument("--slow-threads", type=numbers, default=[16, 50])
    parser.add_argument("--isolation-hooks", type=int, default=1000)
    parser.add_argument("--isolation-stalled-per-origin", type=int, default=1)
    parser.add_argument("--profile", default="")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {sorted(unknown)}")

    fresh_database(args.db)
    setup_django(args)
    import django

    log = common.AccessLog(args.log)
    result: dict[str, Any] = {"versions": {"django": django.get_version()}}
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            result["versions"]["postgresql"] = cursor.fetchone()[0]
    if "request" in parts:
        result["request_path"] = part_request(args)
    if "fanout" in parts:
        result["fanout"] = part_fanout(args, log)
    if "latency" in parts:
        result["latency"] = part_latency(args, log)
    if "sustained" in parts:
        result["sustained"] = part_sustained(args, log)
    slow = json.loads(args.slow_receivers) if args.slow_receivers else None
    if "slow" in parts and slow:
        result["slow"] = part_slow(args, slow)
    if "isolation" in parts and slow:
        result["isolation"] = part_isolation(args, slow)
    if "memory" in parts:
        result["memory"] = part_memory(args, log)
    common.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
