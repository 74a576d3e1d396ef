"""django-rest-hooks 1.5's figures: request-path cost and fan-out, on the shared receiver.

    benchmarks/.venv-old/bin/python benchmarks/old_project/bench.py --db PATH \\
        --receiver http://127.0.0.1:PORT --log ACCESS_LOG [--sizes 0,1,100] [--repeat 3] \\
        [--creates 50] [--hooks 5000] [--slow-receivers JSON --slow-hooks 400 ...]

Run by ``run.py`` in the old library's virtualenv; prints its figures as JSON on its last
line. What the caller of ``Book.objects.create()`` waits for is timed: the old library
queries the hooks and, for each, serialises the payload and queues the POST for its three
threads, in the request. After each K's creates it waits until the receiver has every POST
they queued, so that the next K starts on a quiet machine: the sizes are timed one at a
time, forward and backward in turn from one repetition to the next.

With ``--slow-receivers`` (``slow_receiver.py``'s URLs and log, as ``run.py`` passes them)
it also measures the slow receivers' fan-out and the isolation of a fast origin, as this
project's side does (``ours.py``), on fewer hooks: its three threads make ~24 deliveries a
second to receivers that answer in 100-150 ms.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The bookstore app of the demo and the tests (its Book is the one of the old README).
sys.path[:0] = [str(HERE.parent), str(ROOT / "example")]

import common  # noqa: E402
import django  # noqa: E402
from django.conf import settings  # noqa: E402

#: Most POSTs one repetition of the request-path figure queues (a K = 10,000 create
#: queues 10,000): the number of creates timed per K shrinks to stay under it.
POSTS_PER_REPETITION = 2_000


def configure(db: str) -> None:
    settings.configure(
        SECRET_KEY="benchmark-only",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "rest_hooks",
            "bookstore",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db}},
        HOOK_EVENTS={"book.added": "bookstore.Book.created"},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def subscribe(name: str, k: int, receiver: str):
    """A user with ``k`` hooks on ``book.added``, each with its own URL."""
    return subscribe_to(name, [f"{receiver}/old/{name}/{i}" for i in range(k)])


def subscribe_to(name: str, targets: Sequence[str]):
    """A user with a hook on ``book.added`` for each of ``targets``."""
    from django.contrib.auth.models import User

    from rest_hooks.models import Hook

    user = User.objects.create(username=name)
    Hook.objects.bulk_create(Hook(user=user, event="book.added", target=t) for t in targets)
    return user


def slow_parts(args: argparse.Namespace, slow: dict) -> dict:
    """The slow receivers' fan-out and the fast origin's isolation (see ``ours.py``)."""
    log = common.AccessLog(slow["log"])
    origins = slow["urls"]["slow"]
    send = event_to("slow", common.spread_targets(origins, args.slow_hooks, "/old/slow"))
    runs = [common.slow_fan_out(send, args.slow_hooks, log) for _ in range(args.repeat)]
    isolation = common.isolation(
        event_to,
        slow["urls"],
        args.isolation_stalled_per_origin,
        args.isolation_hooks,
        "/old",
        log,
        1,  # 40 stalled deliveries of 2 s hold its three threads ~27 s
    )
    return {
        "slow": {"hooks": args.slow_hooks, "origins": len(origins), **common.slow_runs(runs)},
        "isolation": isolation,
    }


def event_to(name: str, targets: list[str]):
    """What makes one event to the hooks of a new user on each of ``targets``."""
    return functools.partial(create_book, subscribe_to(name, targets))


def create_book(user) -> None:
    from bookstore.models import Book

    Book.objects.create(user=user, title="The Hobbit", pages=310, fiction=True)


def drain_timeout(posts: int) -> float:
    return 60 + posts / 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--sizes", default="0,1,100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--creates", type=int, default=50)
    parser.add_argument("--hooks", type=int, default=5000)
    parser.add_argument("--slow-receivers", default="", help="slow_receiver.py's URLs and log")
    parser.add_argument("--slow-hooks", type=int, default=400)
    parser.add_argument("--isolation-hooks", type=int, default=1000)
    parser.add_argument("--isolation-stalled-per-origin", type=int, default=1)
    args = parser.parse_args(argv)
    configure(args.db)
    log = common.AccessLog(args.log)
    result: dict = {"versions": {"django": django.get_version()}}

    sizes = [int(k) for k in args.sizes.split(",") if k != ""]
    if sizes:
        users = {k: subscribe(f"k{k}", k, args.receiver) for k in sizes}

        def measure(order: Sequence[int]) -> dict[int, float]:
            # One K at a time, not interleaved call by call as this project's side is:
            # the POSTs of K = 1,000's creates would still be going out while K = 0's are
            # timed. Each batch waits until the receiver has them all.
            ms = {}
            for k in order:
                creates = max(1, min(args.creates, POSTS_PER_REPETITION // max(k, 1)))
                log.mark()
                ms[k] = common.time_calls(functools.partial(create_book, users[k]), creates)
                log.wait_for(k * creates, drain_timeout(k * creates))
            return ms

        result["request_path"] = common.request_path(sizes, args.repeat, measure)

    if args.hooks:
        user = subscribe("fanout", args.hooks, args.receiver)
        rates = []
        for _ in range(args.repeat):
            log.mark()
            started = time.time()
            create_book(user)
            arrivals = log.wait_for(args.hooks, drain_timeout(args.hooks))
            rates.append(args.hooks / (max(a[0] for a in arrivals) - started))
        result["fanout"] = {"hooks": args.hooks, "per_s": common.spread(rates)}
    if args.slow_receivers:
        result.update(slow_parts(args, json.loads(args.slow_receivers)))
    common.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
