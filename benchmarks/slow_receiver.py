"""Receivers that answer like receivers on the internet: late, on many origins at once.

    python benchmarks/slow_receiver.py --log PATH --origins slow=40:0.1-0.15,stalled=40:2,fast=1:0

One asyncio process (h11 for HTTP/1.1, keep-alive) listening on one loopback port per
origin: a group ``NAME=COUNT:DELAY`` is COUNT origins that answer 204 to every request
after DELAY seconds, or after a time drawn uniformly, per request, from ``LOW-HIGH``. A
request in flight is a coroutine asleep, not a thread, so the process holds thousands of
connections and requests at once for little CPU (it raises its own open-file limit).
Once listening it prints, as one JSON line, the URLs of each group
(``{"slow": ["http://127.0.0.1:PORT", ...], ...}``), then serves until SIGTERM.

Each request is one line of ``--log``, written as it is answered, in the nginx receiver's
format (``common.LOG_FORMAT``: answer time, URI, status, so that ``common.AccessLog``
counts and waits alike) followed by its arrival time, its origin's port and how many
requests that origin had open when it arrived, this one included: the largest of these
per origin is what a sender let be open there at once (``common.open_at_once``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import IO

import h11

#: Bytes read from a socket at a time.
READ_SIZE = 65536


@dataclass(frozen=True)
class Group:
    """COUNT origins answering after LOW to HIGH seconds (uniform, per request)."""

    name: str
    count: int
    low: float
    high: float

    @classmethod
    def parse(cls, spec: str) -> Group:
        name, rest = spec.split("=", 1)
        count, delay = rest.split(":", 1)
        low, _, high = delay.partition("-")
        return cls(name, int(count), float(low), float(high or low))

    def delay(self) -> float:
        return random.uniform(self.low, self.high)


class Origins:
    """Every origin's open requests, and the log of answered ones."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.open: Counter[int] = Counter()

    async def serve(
        self, group: Group, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One connection: its requests one after the other (HTTP/1.1 keep-alive)."""
        conn = h11.Connection(h11.SERVER)
        with contextlib.suppress(ConnectionError, h11.ProtocolError):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(READ_SIZE)
                    conn.receive_data(data)
                    if not data:
                        break
                    continue
                if isinstance(event, h11.Request):
                    target = event.target.decode()
                    arrived = time.time()
                    self.open[port] += 1
                    open_now = self.open[port]
                    try:
                        await self.read_body(conn, reader)
                        await asyncio.sleep(group.delay())
                        writer.write(
                            conn.send(h11.Response(status_code=204, headers=[]))
                            + conn.send(h11.EndOfMessage())
                        )
                        await writer.drain()
                    finally:
                        self.open[port] -= 1
                    self.log.write(
                        f"{time.time():.6f} {target} 204 {arrived:.6f} {port} {open_now}\n"
                    )
                    self.log.flush()
                    if conn.our_state is h11.MUST_CLOSE:
                        break
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    break
        writer.close()

    @staticmethod
    async def read_body(conn: h11.Connection, reader: asyncio.StreamReader) -> None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_SIZE)
                if not data:
                    raise ConnectionError("the client left mid-request")
                conn.receive_data(data)
            elif isinstance(event, h11.EndOfMessage):
                return


async def main_async(groups: list[Group], log_path: str) -> None:
    with open(log_path, "a", encoding="ascii") as log:
        origins = Origins(log)
        urls: dict[str, list[str]] = {}
        servers = []
        for group in groups:
            for _ in range(group.count):
                server = await listen(origins, group)
                port = server.sockets[0].getsockname()[1]
                urls.setdefault(group.name, []).append(f"http://127.0.0.1:{port}")
                servers.append(server)
        print(json.dumps(urls), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for server in servers:
            server.close()


async def listen(origins: Origins, group: Group) -> asyncio.Server:
    """A server on a free loopback port for one origin of ``group``."""
    server: asyncio.Server

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await origins.serve(group, server.sockets[0].getsockname()[1], reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="append one line per answered request")
    parser.add_argument(
        "--origins", required=True, help="NAME=COUNT:DELAY[-HIGH] groups, comma-separated"
    )
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    groups = [Group.parse(spec) for spec in args.origins.split(",") if spec]
    asyncio.run(main_async(groups, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
