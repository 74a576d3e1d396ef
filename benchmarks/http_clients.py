"""What one POST costs each HTTP client a delivery could be made with, side by side.

    .venv/bin/python benchmarks/http_clients.py [--n 4000] [--repeat 3]
                                                [--concurrency 1,50] [--json out.json]

Against an nginx of its own on loopback answering 204 (``receiver.py``), from this one
process, with a body and headers like a delivery's, it measures for each client the CPU
time of the process per request (``time.process_time()``: every thread, the event loop's
included; nginx is another process) and the requests per second:

- ``httpx-aiohttp``: a bare ``httpx.AsyncClient`` over the ``httpx-aiohttp`` transport;
- ``aiohttp``: a bare ``aiohttp.ClientSession``;
- ``AsyncDeliveryClient``: the delivery client (``rest_hooks.delivery.async_http``) with
  all its checks (URL, address policy, deadline, the response cap).

At concurrency C each client runs C coroutines on the process's delivery loop
(``rest_hooks.delivery.loop``), each posting its share one after the other. The CPU of
each is also given as a ratio to bare aiohttp's, the cost of what the delivery client
and httpx add. Each repetition measures every client and concurrency in turn,
forward and backward from one repetition to the next; figures are the median [min, max]
over the repetitions, and ratios are taken within each repetition (the machine is shared:
compare ratios, not absolute figures, across runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx_aiohttp

from rest_hooks.delivery import loop
from rest_hooks.delivery.async_http import AsyncDeliveryClient
from rest_hooks.delivery.http import HttpOptions
from rest_hooks.security.network import AddressPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import abba, spread
from receiver import nginx

CLIENTS = ("httpx-aiohttp", "aiohttp", "AsyncDeliveryClient")
BODY = json.dumps({"hook": {"id": 1, "event": "book.added", "target": "x"}, "data": "y" * 200})
HEADERS = {
    "Content-Type": "application/json",
    "X-Hook-Id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "X-Hook-Timestamp": "1765000000",
    "X-Hook-Signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    "X-Hook-Event": "book.added",
    "X-Hook-Attempt": "1",
}
OPTIONS = HttpOptions(
    policy=AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)),
    max_connections=200,
)

#: One POST of a client, awaited.
Post = Callable[[str], Awaitable[Any]]


async def _share(post: Post, url: str, n: int) -> None:
    for _ in range(n):
        await post(url)


def _run_async(post: Post, url: str, n: int, concurrency: int) -> None:
    shares = [n // concurrency] * concurrency
    results = loop.run_all(_share(post, url, share) for share in shares)
    errors = [result for result in results if isinstance(result, BaseException)]
    if errors:
        raise errors[0]


class Clients:
    """One client of each kind, kept for the whole run (their connections kept alive)."""

    def __init__(self) -> None:
        self.delivery = AsyncDeliveryClient(OPTIONS)
        self.httpx, self.session = loop.wait(loop.submit(self._open()))

    @staticmethod
    async def _open() -> tuple[httpx.AsyncClient, aiohttp.ClientSession]:
        limits = httpx.Limits(max_connections=200)
        return (
            httpx_aiohttp.HttpxAiohttpClient(trust_env=False, limits=limits),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)),
        )

    async def _httpx(self, url: str) -> None:
        response = await self.httpx.post(url, content=BODY, headers=HEADERS)
        response.raise_for_status()

    async def _aiohttp(self, url: str) -> None:
        async with self.session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()
            response.raise_for_status()

    async def _delivery(self, url: str) -> None:
        result = await self.delivery.post(url, BODY.encode(), HEADERS)
        assert result.ok, result.status_code

    def run(self, name: str, url: str, n: int, concurrency: int) -> None:
        posts: dict[str, Post] = {
            "httpx-aiohttp": self._httpx,
            "aiohttp": self._aiohttp,
            "AsyncDeliveryClient": self._delivery,
        }
        _run_async(posts[name], url, n, concurrency)

    def close(self) -> None:
        async def close_all() -> None:
            await self.delivery.aclose()
            await self.httpx.aclose()
            await self.session.close()

        loop.wait(loop.submit(close_all()))


def measure(clients: Clients, name: str, url: str, n: int, concurrency: int) -> dict[str, float]:
    """CPU ms per request and requests per second of ``n`` POSTs."""
    clients.run(name, url, min(n, 200), concurrency)  # warm: connections open, caches full
    cpu, wall = time.process_time(), time.perf_counter()
    clients.run(name, url, n, concurrency)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms": cpu * 1000 / n, "per_s": n / wall}


def run(n: int, repeat: int, concurrencies: Sequence[int]) -> dict[str, Any]:
    cases = [(name, c) for c in concurrencies for name in CLIENTS]
    samples: dict[tuple[str, int], list[dict[str, float]]] = {case: [] for case in cases}
    with nginx() as receiver:
        url = f"{receiver.url}/hook"
        clients = Clients()
        try:
            for i in range(repeat):
                for name, concurrency in abba(cases, i):
                    samples[name, concurrency].append(measure(clients, name, url, n, concurrency))
        finally:
            clients.close()
        nginx_version = receiver.version
    rows = []
    for name, concurrency in cases:
        runs = samples[name, concurrency]
        bare = samples["aiohttp", concurrency]
        rows.append(
            {
                "client": name,
                "concurrency": concurrency,
                "cpu_ms": spread([r["cpu_ms"] for r in runs]),
                "per_s": spread([r["per_s"] for r in runs]),
                # Within each repetition: the same minute of the shared machine.
                "cpu_vs_aiohttp": statistics.median(
                    r["cpu_ms"] / b["cpu_ms"] for r, b in zip(runs, bare, strict=True)
                ),
            }
        )
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            package: metadata.version(package) for package in ("httpx", "aiohttp", "httpx-aiohttp")
        },
        "nginx": nginx_version,
        "n": n,
        "repeat": repeat,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    lines = [
        f"{result['date']}, `nproc` = {result['nproc']}, Python {result['python']}, "
        f"{versions}, {result['nginx']}; {result['n']} POSTs a measurement, "
        f"{result['repeat']} repetitions.",
        "",
        "| client | concurrency | CPU ms / request | requests/s | CPU vs aiohttp |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        cpu, rate = row["cpu_ms"], row["per_s"]
        lines.append(
            f"| {row['client']} | {row['concurrency']} "
            f"| {cpu['median']:.3f} [{cpu['min']:.3f}, {cpu['max']:.3f}] "
            f"| {rate['median']:,.0f} [{rate['min']:,.0f}, {rate['max']:,.0f}] "
            f"| {row['cpu_vs_aiohttp']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="POSTs per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions")
    parser.add_argument("--concurrency", default="1,50", help="requests at once, a list")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    result = run(args.n, args.repeat, concurrencies)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
