"""This project and django-rest-hooks 1.5, side by side, in one run, on one receiver.

    scripts/bench [--only old,sqlite,postgres,bare,gate] [--sizes 0,1,100,1000,10000]
                  [--repeat 3] [--hooks 5000] [--processes 1,2] [--threads 2,8] [...]

``scripts/bench`` is the command: it installs what is missing (redis-server, nginx-light),
starts redis-server and PostgreSQL on free loopback ports and runs this file with their
addresses (``--redis-url``, ``--pg``). This file starts the receiver (nginx, 204 to every
POST, see ``receiver.py``), creates the old library's virtualenv when it is missing, runs
each side in processes of its own and writes every figure to ``--json`` and the tables
to ``--markdown`` (also printed). Ratios against the old library and the bare HTTP loop
are taken inside the run, as the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import gate  # noqa: E402
import receiver  # noqa: E402
import report  # noqa: E402

SIDES = ("old", "sqlite", "postgres", "bare", "gate")
#: This project's parts that measure the delivery engine's goals (issue #14): on
#: ``--engine-dbs`` only.
ENGINE_PARTS = ("sustained", "slow", "isolation")
#: Parts that need ``slow_receiver.py``'s origins.
SLOW_PARTS = ("slow", "isolation")
#: Requests a process of the bare loop keeps open at once: what one batch of the engine
#: sends at once to a target without an in-flight cap (``DELIVERY_BATCH_SIZE``).
BARE_LANES = 50
ALIASES = {"this": ["sqlite", "postgres", "bare", "gate"]}
OLD_REQUIREMENTS = ("django-rest-hooks==1.5.0", "Django==3.2.25", "requests==2.34.2")


# -- the old library's virtualenv -------------------------------------------------------


def old_venv(path: Path) -> Path:
    """The old library's virtualenv at ``path`` (created, or re-created when its
    requirements changed); its python."""
    python = path / "bin" / "python"
    stamp = path / ".bench-requirements"
    wanted = " ".join(OLD_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating the old library's virtualenv in {path}: {wanted}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *list(OLD_REQUIREMENTS),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    stamp.write_text(wanted)
    return python


def ensure_py_spy() -> None:
    """``--profile`` needs py-spy in this virtualenv: installed on first use."""
    if (Path(sys.executable).parent / "py-spy").exists():
        return
    print("installing py-spy for --profile (pip install py-spy)", file=sys.stderr)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "py-spy"], check=True, stdin=subprocess.DEVNULL)


def run_side(command: list[str], what: str) -> dict[str, Any]:
    """Run one side in a process of its own; its figures (the JSON of its last line)."""
    started = time.monotonic()
    print(f"-- {what}", file=sys.stderr, flush=True)
    proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-5000:]}")
    print(f"   {what}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return common.parse_result(proc.stdout)


def csv(values: list[int]) -> str:
    return ",".join(map(str, values))


# -- the bare loop ----------------------------------------------------------------------


def bare_process(url: str, n: int, lanes: int, body: bytes, ready: Any, go: Any) -> None:
    import asyncio

    import aiohttp

    headers = {"Content-Type": "application/json"}

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=lanes)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post() -> None:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

            await asyncio.gather(*(post() for _ in range(lanes)))  # connected before the start
            ready.release()
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            left = iter(range(n))

            async def lane() -> None:
                for _ in left:
                    await post()

            await asyncio.gather(*(lane() for _ in range(lanes)))

    asyncio.run(main())


def bare_loop(
    target: receiver.Receiver, n: int, processes: int, body: bytes, log: common.AccessLog
) -> float:
    """``processes`` processes POST ``n`` bodies in all with aiohttp (the client under the
    engine's), ``BARE_LANES`` requests open at once each: per second."""
    context = multiprocessing.get_context("fork")
    ready, go = context.Semaphore(0), context.Event()
    url = f"{target.url}/bare"
    lanes = BARE_LANES
    procs = [
        context.Process(target=bare_process, args=(url, n // processes, lanes, body, ready, go))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire()
    log.mark()
    started = time.time()
    go.set()
    total = n // processes * processes
    arrivals = log.wait_for(total, 120 + total / 50)
    for proc in procs:
        proc.join()
    return total / (max(a[0] for a in arrivals) - started)


def delivery_body() -> bytes:
    """A body like the deliveries of the fan-out (a hook's dict and the book)."""
    payload = {
        "hook": {"id": 1234, "event": "book.added", "target": "http://127.0.0.1:1/ours/f/1"},
        "data": {"id": 17, "title": "The Hobbit", "pages": 310, "fiction": True},
    }
    return json.dumps(payload).encode()


def bare_async_process(urls: list[str], body: bytes, per_origin: int) -> None:
    import asyncio

    asyncio.run(post_concurrently(urls, body, per_origin))


async def post_concurrently(urls: list[str], body: bytes, per_origin: int) -> None:
    """POST ``body`` to every URL at once, at most ``per_origin`` requests open on an
    origin (the gate's ``MAX_IN_FLIGHT``), through one aiohttp session (the client under
    the engine's), its connector bounding each origin's connections."""
    import asyncio

    import aiohttp

    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=per_origin)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(url: str) -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()

        await asyncio.gather(*map(post, urls))


class BareAsync:
    """The bare loop of the slow receivers' parts: ``processes`` processes, each POSTing
    the URLs of its share of an event's origins concurrently (``post_concurrently``), as
    many open on an origin as the gate allows (``common.SLOW_MAX_IN_FLIGHT``)."""

    def __init__(self, processes: int, max_in_flight: int) -> None:
        self.processes = processes
        self.per_origin = max_in_flight
        self.procs: list[Any] = []
        self.body = delivery_body()

    def sender(self, urls: list[str]) -> Any:
        """What sends an "event" to ``urls``: it returns once the processes are started."""
        by_origin: dict[str, list[str]] = {}
        for url in urls:
            by_origin.setdefault(url.split("/")[2], []).append(url)
        origins = list(by_origin.values())

        def send() -> None:
            context = multiprocessing.get_context("fork")
            for i in range(min(self.processes, len(origins))):
                share = [url for same in origins[i :: self.processes] for url in same]
                proc = context.Process(
                    target=bare_async_process, args=(share, self.body, self.per_origin)
                )
                proc.start()
                self.procs.append(proc)

        return send

    def join(self) -> None:
        for proc in self.procs:
            proc.join()
        self.procs.clear()


def run_bare_slow(args: argparse.Namespace, slow: receiver.SlowReceivers) -> dict[str, Any]:
    """The slow receivers' fan-out and the fast origin's isolation, by ``BareAsync``."""
    import aiohttp  # noqa: F401  (imported once here, not in each forked process)

    log = common.AccessLog(slow.access_log)
    processes = max(args.processes)
    bare = BareAsync(processes, common.SLOW_MAX_IN_FLIGHT)
    result: dict[str, Any] = {"processes": processes, "client": "aiohttp"}
    if "slow" in args.part_list:
        urls = common.spread_targets(slow.urls["slow"], args.slow_hooks, "/bare/slow")
        runs = []
        for _ in range(args.repeat):
            runs.append(common.slow_fan_out(bare.sender(urls), len(urls), log))
            bare.join()
        result["slow"] = {
            "hooks": len(urls),
            "origins": len(slow.urls["slow"]),
            **common.slow_runs(runs),
        }
    if "isolation" in args.part_list:
        result["isolation"] = common.isolation(
            lambda _name, targets: bare.sender(targets),
            slow.urls,
            args.isolation_stalled_per_origin,
            args.isolation_hooks,
            "/bare",
            log,
            args.repeat,
        )
        bare.join()
    return result


def run_bare(args: argparse.Namespace, target: receiver.Receiver) -> list[dict[str, Any]]:
    log = common.AccessLog(target.access_log)
    body = delivery_body()
    rows = []
    for processes in args.processes:
        rates = [bare_loop(target, args.hooks, processes, body, log) for _ in range(args.repeat)]
        rows.append({"processes": processes, "posts": args.hooks, "per_s": common.spread(rates)})
    return rows


# -- the gate ---------------------------------------------------------------------------


def run_gate(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(f"{args.redis_url.rstrip('/')}/2")
    try:
        rows, server_us = gate.run(client, args.gate_n, args.gate_threads)
    finally:
        gate.forget_keys(client)
    return {"rows": [vars(r) for r in rows], "redis_server_us_per_delivery": server_us}


# -- the run ----------------------------------------------------------------------------


def machine(args: argparse.Namespace, target: receiver.Receiver) -> dict[str, Any]:
    import redis

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 2**20),
        "python": platform.python_version(),
        "redis": redis.Redis.from_url(args.redis_url).info("server")["redis_version"],
        "nginx": target.version,
    }


def slow_options(args: argparse.Namespace, slow: receiver.SlowReceivers | None) -> list[str]:
    """The options of both sides' slow receivers' parts (none without the receivers)."""
    if slow is None:
        return []
    where = json.dumps({"urls": slow.urls, "log": str(slow.access_log)})
    return [
        *("--slow-receivers", where, "--isolation-hooks", str(args.isolation_hooks)),
        *("--isolation-stalled-per-origin", str(args.isolation_stalled_per_origin)),
    ]


def ours_command(
    args: argparse.Namespace,
    db_name: str,
    db: str,
    target: receiver.Receiver,
    slow: receiver.SlowReceivers | None,
    gate_redis_url: str,
) -> list[str]:
    command = [sys.executable, str(HERE / "ours.py"), "--db", db]
    command += ["--redis-url", args.redis_url, "--receiver", target.url]
    command += ["--log", str(target.access_log), "--work-dir", str(args.work_dir)]
    parts = [
        p
        for p in args.part_list
        if (p != "memory" or db_name == args.memory_db)
        and (p not in ENGINE_PARTS or db_name in args.engine_dbs)
    ]
    command += [
        "--parts",
        ",".join(parts),
        "--sizes",
        csv(args.sizes),
        "--repeat",
        str(args.repeat),
    ]
    command += ["--creates", str(args.creates), "--hooks", str(args.hooks)]
    command += ["--processes", csv(args.processes), "--threads", csv(args.threads)]
    command += ["--latency-rate", str(args.latency_rate)]
    command += ["--latency-events", str(args.latency_events), "--memory", csv(args.memory)]
    command += ["--conn-max-age", str(args.conn_max_age)]
    if args.sqlite_options:
        command += ["--sqlite-options", args.sqlite_options]
    command += ["--gate-redis-url", gate_redis_url, "--rate-limits", ",".join(args.rate_limits)]
    command += ["--sustained-events", str(args.sustained_events)]
    command += ["--slow-hooks", str(args.slow_hooks), "--slow-threads", csv(args.slow_threads)]
    command += slow_options(args, slow)
    if args.profile:
        command += ["--profile", str(Path(args.profile) / db_name)]
    return command


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", required=True, help="the redis-server to use (db 0-2)")
    p.add_argument("--pg", default="", help="postgresql://user@host:port/dbname (dropped!)")
    p.add_argument(
        "--only", default=",".join(SIDES), help=f"sides to run, of {SIDES}, or this (all but old)"
    )
    p.add_argument(
        "--parts",
        default="request,fanout,latency,sustained,slow,isolation,memory",
        help="this project's parts (slow and isolation also the old library's and the bare loop's)",
    )
    p.add_argument("--sizes", type=numbers, default=[0, 1, 100, 1000, 10000], help="K")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of each measurement")
    p.add_argument("--creates", type=int, default=50, help="creates timed per K and repeat")
    p.add_argument("--hooks", type=int, default=5000, help="hooks of the fan-out")
    p.add_argument("--processes", type=numbers, default=[1, 2], help="worker process counts")
    p.add_argument(
        "--threads",
        type=numbers,
        default=[2, 8],
        help="threads per worker process: the fan-out and the latency run each, memory the first",
    )
    p.add_argument("--latency-rate", type=float, default=100, help="events a second")
    p.add_argument("--latency-events", type=int, default=1000)
    p.add_argument("--memory", type=numbers, default=[10_000, 50_000, 100_000], help="deliveries")
    p.add_argument("--memory-db", default="postgres", help="the database of the memory part")
    p.add_argument("--conn-max-age", type=int, default=60, help="Django's CONN_MAX_AGE")
    p.add_argument("--sqlite-options", default="", help="the SQLite DATABASES OPTIONS, as JSON")
    p.add_argument(
        "--rate-limits",
        type=names,
        default=["1000000/s"],
        help="RATE_LIMITs of the fan-out's second run, largest process count (none: empty)",
    )
    p.add_argument("--engine-dbs", type=names, default=["postgres"], help="of sustained, slow...")
    p.add_argument("--sustained-events", type=int, default=2000, help="one-hook events drained")
    p.add_argument("--slow-origins", type=int, default=40, help="origins of the slow receivers")
    p.add_argument("--slow-hooks", type=int, default=2000, help="hooks of the slow fan-out")
    p.add_argument("--old-slow-hooks", type=int, default=400, help="the old library's")
    p.add_argument("--slow-threads", type=numbers, default=[16, 50], help="threads, slow parts")
    p.add_argument("--isolation-hooks", type=int, default=1000, help="hooks on the fast origin")
    p.add_argument("--isolation-stalled-per-origin", type=int, default=1, help="hooks each")
    p.add_argument("--gate-n", type=int, default=20_000)
    p.add_argument("--gate-threads", type=numbers, default=[1, 4])
    p.add_argument("--old-venv", type=Path, default=HERE / ".venv-old")
    p.add_argument("--work-dir", type=Path, default=HERE / ".work")
    p.add_argument(
        "--profile", default="", help="py-spy the workers' fan-out and latency run into this dir"
    )
    p.add_argument("--json", type=Path, default=HERE / "results.json")
    p.add_argument("--markdown", type=Path, default=HERE / "results.md")
    args = p.parse_args(argv)
    # "this": this project's sides, the old library's left out.
    args.sides = [s for x in args.only.split(",") if x for s in ALIASES.get(x, [x])]
    args.part_list = names(args.parts)
    unknown = set(args.sides) - set(SIDES)
    if unknown:
        p.error(f"--only: unknown sides {sorted(unknown)} (use {', '.join(SIDES)})")
    if "postgres" in args.sides and not args.pg:
        p.error("--pg is needed to run the postgres side")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        ensure_py_spy()
    started = time.monotonic()
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with contextlib.ExitStack() as servers:
        target = servers.enter_context(receiver.nginx())
        slow = None
        if set(SLOW_PARTS) & set(args.part_list):
            n = args.slow_origins
            origins = f"slow={n}:0.1-0.15,stalled={n}:2,fast=1:0"
            slow = servers.enter_context(receiver.slow_receivers(origins))
        # The gate on a redis-server of its own: INFO then tells its work from the broker's.
        gate_redis_url = servers.enter_context(gate.own_redis())
        results["machine"] = machine(args, target)
        if "old" in args.sides:
            python = old_venv(args.old_venv)
            command = [str(python), str(HERE / "old_project" / "bench.py")]
            command += ["--db", str(args.work_dir / "old.sqlite3"), "--receiver", target.url]
            command += ["--log", str(target.access_log), "--sizes", csv(args.sizes)]
            command += ["--repeat", str(args.repeat), "--creates", str(args.creates)]
            command += ["--hooks", str(args.hooks), "--slow-hooks", str(args.old_slow_hooks)]
            command += slow_options(args, slow)
            (args.work_dir / "old.sqlite3").unlink(missing_ok=True)
            results["old"] = run_side(command, "django-rest-hooks 1.5 (SQLite)")
        dbs = {"sqlite": f"sqlite:///{args.work_dir / 'ours.sqlite3'}", "postgres": args.pg}
        for name, db in dbs.items():
            if name in args.sides:
                command = ours_command(args, name, db, target, slow, gate_redis_url)
                side = run_side(command, f"rest_hooks ({name})")
                results.setdefault("ours", {})[name] = side
        if "bare" in args.sides:
            if "fanout" in args.part_list:
                results["bare"] = run_bare(args, target)
            if slow is not None:
                results["bare_async"] = run_bare_slow(args, slow)
        if "gate" in args.sides:
            results["gate"] = run_gate(args)
    results["seconds"] = time.monotonic() - started
    results["goals"] = report.goals(results)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.markdown(results)
    args.markdown.write_text(markdown)
    print(markdown)
    print(f"figures: {args.json}, tables: {args.markdown} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
