"""Where a worker's CPU goes, per delivery: py-spy samples sorted into named costs.

    python benchmarks/profile_report.py --deliveries 5000 --rate 250 PROFILE.txt [...]

The input is what ``ours.py --profile`` records during one fan-out: ``py-spy record
--gil --format raw`` of each worker process, one line per distinct stack (``frame;frame;...
count``). With ``--gil`` a sample is taken only from the thread holding the GIL, so the
samples are the process's Python CPU time (waiting on a socket or for the GIL is not in
them), and a cost is ``samples / rate`` seconds, divided by the deliveries made meanwhile.

Each stack gets one *step* (the first rule below that one of its frames matches: what the
deliver actor was doing, or the Dramatiq machinery around it) and one *library* (that of
its innermost frame which belongs to one: the code that was running); a few
*ingredients* spread over several steps (opening database connections, decrypting
secrets) are shown apart.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: (step, frame patterns): a stack gets the first step one of whose patterns it matches (a
#: pattern "a&b" needs both), so the order matters: the gate's calls are Redis calls and
#: must count as the gate's.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("gate acquire (EVALSHA)", ("admit (rest_hooks/worker/gate.py",)),
    ("gate release (EVALSHA)", ("report (rest_hooks/worker/gate.py",)),
    ("SQL: claim (SELECT due deliveries, UPDATE lease)", ("claim (rest_hooks/worker/batch.py",)),
    ("SQL: UPDATE finish (delivery log)", ("Table.save (rest_hooks/worker/tables.py",)),
    ("signing + headers", ("_headers (rest_hooks/worker/attempt.py",)),
    (
        "body (JSON)",
        ("build_body (rest_hooks/worker/attempt.py", "_around_hook (rest_hooks/worker/attempt.py"),
    ),
    (
        "HTTP POST (AsyncDeliveryClient over aiohttp, checked DNS)",
        ("AsyncDeliveryClient.post", "aiohttp/"),
    ),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("log line (logging)", ("Logger.info (logging",)),
    ("hook_sent_event / hook bookkeeping", ("_hook_succeeded", "send_robust")),
    (
        "SQL: SELECT hooks + events",
        ("deliver_batch (rest_hooks/worker/batch.py&rest_hooks/worker/tables.py",),
    ),
    (
        "fan-out (dispatch actor: hook ids, bulk INSERT, enqueue)",
        ("fan_out (rest_hooks/worker/fanout.py",),
    ),
    ("relay (every 30 s)", ("relay_pending", "RelayMiddleware")),
    ("rest of deliver_batch()", ("deliver_batch (rest_hooks/worker/batch.py",)),
    ("Dramatiq: close_old_connections (middleware)", ("DbConnectionsMiddleware",)),
    ("Dramatiq: other middleware", ("dramatiq/middleware/",)),
    ("Dramatiq: fetch messages (consumer thread)", ("_RedisConsumer.__next__",)),
    ("Dramatiq: ack (consumer thread)", ("_RedisConsumer.ack",)),
    ("Dramatiq: consumer thread, other", ("ConsumerThread",)),
    ("Dramatiq: worker thread (decode, queue, process_message)", ("WorkerThread",)),
]
#: Ingredients: costs spread over several steps (a stack counts for each that matches).
INGREDIENTS: list[tuple[str, tuple[str, ...]]] = [
    ("opening database connections", ("get_new_connection", "init_connection_state")),
    ("decrypting hook secrets (Fernet)", ("rest_hooks/security/encryption.py",)),
]
#: Libraries, by the innermost frame of a stack that belongs to one (the code that was
#: running): every sample counts once.
LIBRARIES: list[tuple[str, tuple[str, ...]]] = [
    ("psycopg (PostgreSQL driver)", ("psycopg/", "psycopg_binary/")),
    ("Django DB backend (cursor wrappers, adapters)", ("django/db/backends/",)),
    ("Django ORM (querysets, SQL compiler, model instances)", ("django/db/models/",)),
    ("redis-py (broker and gate round trips)", ("redis/",)),
    ("aiohttp (with yarl, multidict)", ("aiohttp/", "yarl/", "multidict/")),
    ("httpx", ("httpx/",)),
    ("rest_hooks", ("rest_hooks/",)),
    ("Dramatiq", ("dramatiq/",)),
    ("logging", ("logging/",)),
    ("json", ("json/",)),
    ("cryptography", ("cryptography/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("other Django", ("django/",)),
]


def read(paths: Iterable[Path]) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack:
                stacks[stack] += int(count)
    return stacks


def matches(stack: str, pattern: str) -> bool:
    return all(part in stack for part in pattern.split("&"))


def classify(stack: str, rules: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    return [name for name, patterns in rules if any(matches(stack, p) for p in patterns)]


def library(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, patterns in LIBRARIES:
            if any(p in frame for p in patterns):
                return name
    return "other (standard library, threads)"


def summarise(paths: Iterable[Path], deliveries: int, rate: float) -> dict[str, Any]:
    """Costs (ms of worker CPU per delivery) by step and by ingredient, largest first."""
    stacks = read(paths)
    total = sum(stacks.values())
    steps: Counter[str] = Counter()
    ingredients: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    for stack, count in stacks.items():
        matched = classify(stack, STEPS)
        steps[matched[0] if matched else "other (threads, imports, GC)"] += count
        for name in classify(stack, INGREDIENTS):
            ingredients[name] += count
        libraries[library(stack)] += count

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "ms": n / rate * 1000 / deliveries, "share": n / total}
            for name, n in counter.most_common()
        ]

    return {
        "samples": total,
        "rate": rate,
        "deliveries": deliveries,
        "ms_per_delivery": total / rate * 1000 / deliveries,
        "steps": rows(steps),
        "ingredients": rows(ingredients),
        "libraries": rows(libraries),
    }


def table(summary: dict[str, Any]) -> str:
    lines = ["| worker CPU per delivery | ms | share |", "|---|---:|---:|"]
    lines += [f"| {r['name']} | {r['ms']:.3f} | {r['share']:.0%} |" for r in summary["steps"]]
    lines.append(f"| **total (Python, GIL held)** | **{summary['ms_per_delivery']:.3f}** | 100% |")
    for title, key in (
        ("of which, across steps", "ingredients"),
        ("by library", "libraries"),
    ):
        lines += ["", f"| {title} | ms | share |", "|---|---:|---:|"]
        lines += [f"| {r['name']} | {r['ms']:.3f} | {r['share']:.0%} |" for r in summary[key]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, required=True)
    parser.add_argument("--rate", type=float, default=250, help="py-spy's samples a second")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print(table(summarise(args.files, args.deliveries, args.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
