"""What the tests share: polling, subprocess scenarios, worker processes.

Fixtures live in ``conftest.py``; everything a test module imports lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h11
import redis
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from rest_hooks import metrics
from rest_hooks.delivery import loop
from rest_hooks.delivery.async_http import AsyncDeliveryClient
from rest_hooks.delivery.http import HttpResult
from rest_hooks.metrics.collectors import COLLECTORS
from rest_hooks.metrics.exposition import scrape_registry

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], Any], what: str, timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; fail the
    test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def run_scenario(module: str, settings_module: str, timeout: float, **env: str) -> dict[str, Any]:
    """Run ``python -m module`` in a fresh process, away from the suite's Redis and database.

    Its settings come from ``settings_module`` and ``env``; it prints a JSON result as its
    last line, which is returned.
    """
    proc = run_fresh([module], settings_module, timeout, **env)
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout}\n{proc.stderr}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_fresh(
    args: list[str], settings_module: str, timeout: float, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ARGS`` (a module, or ``django`` and a command) in a fresh process,
    away from the suite's Redis and database, with ``settings_module`` and ``env``."""
    private = {
        "REST_HOOKS_TEST_REDIS_URL",
        "REST_HOOKS_TEST_DB",
        "REST_HOOKS_TEST_DB_NAME",
        "REST_HOOKS_TEST_OVERRIDES",
    }
    full_env = {k: v for k, v in os.environ.items() if k not in private}
    full_env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'example'}",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def project_env(overrides: dict[str, Any]) -> dict[str, str]:
    """The environment of a process of the project (worker, web server) that a test starts:
    the test settings on the test database, with ``overrides`` as REST_HOOKS entries."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "REST_HOOKS_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "REST_HOOKS_TEST_OVERRIDES": json.dumps(overrides),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'example'}",
    }


class Workers:
    """``rundramatiq`` worker processes, as an operator would start them."""

    def __init__(self, processes: int, threads: int, overrides: dict[str, Any]) -> None:
        env = project_env(overrides)
        self.processes = processes
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "rundramatiq",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = sum("is ready for action" in line for line in self.output)
            if ready >= self.processes:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("workers did not start:\n" + "".join(self.output[-50:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


# -- metrics ---------------------------------------------------------------------------

#: family -> (type, label names) of every family /metrics shows.
FAMILIES = {
    "rest_hooks_events_captured": ("counter", {"event"}),
    "rest_hooks_events_refused": ("counter", {"event", "reason"}),
    "rest_hooks_delivery_attempts": ("counter", {"event", "outcome", "status_class", "host"}),
    "rest_hooks_delivery_duration_seconds": ("histogram", {"event", "host"}),
    "rest_hooks_delivery_lag_seconds": ("histogram", {"event"}),
    "rest_hooks_fanout_size": ("histogram", {"event"}),
    "rest_hooks_deliveries_in_flight": ("gauge", set()),
    "rest_hooks_deferrals": ("counter", {"reason"}),
    "rest_hooks_breaker_transitions": ("counter", {"to_state", "host"}),
    "rest_hooks_hooks_disabled": ("counter", {"reason"}),
    "rest_hooks_outbox_pending_events": ("gauge", set()),
    "rest_hooks_outbox_oldest_pending_age_seconds": ("gauge", set()),
    "rest_hooks_breakers": ("gauge", {"state"}),
}


def attempts_metric(outcome: str, status_class: str, event: str = "book.added") -> float:
    """This process's count of delivery attempts with these labels."""
    labels = {"event": event, "outcome": outcome, "status_class": status_class, "host": ""}
    value = scrape_registry().get_sample_value("rest_hooks_delivery_attempts_total", labels)
    return value or 0.0


def exposed_families() -> dict[str, str]:
    """name -> type of every family the app registers (at import and at scrape time)."""
    described = [m for f in metrics.FAMILIES for m in f.describe()]
    described += [m for c in COLLECTORS for m in c.describe()]
    return {m.name: m.type for m in described}


# -- the fault suite ---------------------------------------------------------------------

#: The tally lines of this run, printed at its end (``pytest_terminal_summary``).
TALLIES: list[str] = []


def tally(fault: str, events: int, expected: Iterable[Any], requests: Iterable[Any]) -> None:
    """Record the fault suite's one line for a fault, and fail the test on any loss.

    ``expected``: the ids of the deliveries that must arrive; ``requests``: what the
    receivers got (anything with a ``headers`` mapping holding ``x-hook-id``). Repeats of
    an id are at-least-once's duplicates: counted, never a failure.
    """
    wanted = {str(delivery_id) for delivery_id in expected}
    seen = Counter(request.headers["x-hook-id"] for request in requests)
    delivered = wanted & set(seen)
    lost = wanted - delivered
    duplicates = sum(seen.values()) - len(seen)
    unexpected = set(seen) - wanted
    TALLIES.append(
        f"{fault}: events={events} expected={len(wanted)} delivered={len(delivered)} "
        f"duplicates={duplicates} lost={len(lost)}"
    )
    assert not lost, f"{fault}: {len(lost)} deliveries lost, e.g. {sorted(lost)[:5]}"
    assert not unexpected, f"{fault}: deliveries nobody expected: {sorted(unexpected)[:5]}"


# -- receivers http.server cannot imitate ------------------------------------------------


class RawListener:
    """A bare TCP listener on 127.0.0.1 for receivers http.server cannot imitate."""

    def __init__(self, behaviour: Callable[[socket.socket, threading.Event], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.stop = threading.Event()
        self.accepted = 0
        self._behaviour = behaviour
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._behaviour(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for thread in self._threads:
            thread.join(timeout=2)


# -- the fault suite: the processes and servers a fault stops, kills or restarts ---------


#: The fault suite's short retries, leases and relay (the README's Guarantees quote
#: figures taken with them): a dead worker's deliveries go again within seconds.
SHORT_LEASES: dict[str, Any] = {
    "RETRY_SCHEDULE": [0.5] * 5,
    "RETRY_JITTER": 0,
    "DEADLINE": 4,
    "READ_TIMEOUT": 4,
    "BATCH_BUDGET": 2,
    "LEASE_MARGIN": 1,
    "RELAY_AFTER": 1,
    "RELAY_INTERVAL": 0.5,
}


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_processes(workers: Workers) -> list[int]:
    """The pids of a ``rundramatiq``'s worker processes: its main process's children."""
    pid = workers.proc.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class RedisServer:
    """A redis-server of a test's own (the suite's one is shared: never stop that one).

    Without persistence, as many deployments run Redis: a restart loses every queued
    message, and the outbox relay has to find them again.
    """

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers."""
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed (scripts/test installs it)"
        options = {"bind": "127.0.0.1", "port": str(self.port), "dir": str(self.directory)}
        options |= {"save": "", "appendonly": "no"}
        arguments = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.proc = subprocess.Popen([executable, *arguments], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: _answers(client), what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Stop it, as an operator would (SIGTERM), and wait until it has."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def time_to_deliver(
    requests: Callable[[], Iterable[Any]], expected: Iterable[Any], timeout: float
) -> float:
    """Seconds until a request for each of the ``expected`` delivery ids has arrived
    (``requests``: what the receivers got so far), or ``timeout`` if some never did: the
    tally then counts them lost, and fails."""
    wanted = {str(delivery_id) for delivery_id in expected}
    started = time.monotonic()

    def arrived() -> bool:
        return wanted <= {request.headers["x-hook-id"] for request in requests()}

    while not arrived() and time.monotonic() - started < timeout:
        time.sleep(0.05)
    return time.monotonic() - started


# -- the fault suite: races, soak, bad input ----------------------------------------------


def scraped(client: Any, sample: str, **labels: str) -> float:
    """One sample of this process's /metrics, as Prometheus reads it (0 when absent)."""
    exposition = client.get("/metrics").content.decode()
    samples = (s for f in text_string_to_metric_families(exposition) for s in f.samples)
    return next((float(s.value) for s in samples if s.name == sample and s.labels == labels), 0.0)


def note(line: str) -> None:
    """A line of figures beside the tally lines (worker memory, rates), printed with them."""
    TALLIES.append(f"  {line}")


class Arrival:
    """What :class:`CountingReceiver` keeps of a request: its ``X-Hook-Id``."""

    __slots__ = ("headers",)

    def __init__(self, hook_id: str) -> None:
        self.headers = {"x-hook-id": hook_id}


class CountingReceiver:
    """An HTTP/1.1 receiver on 127.0.0.1 that keeps up with thousands of requests a
    second: one asyncio loop in a thread, h11 for the protocol, ``204`` to every request,
    and only each request's ``X-Hook-Id`` kept (``example/bookstore/receiver.py`` keeps
    whole requests, a thread per connection)."""

    def __init__(self) -> None:
        self.requests: list[Arrival] = []
        self._connections: set[_CountingConnection] = set()
        self._loop = asyncio.new_event_loop()
        server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _CountingConnection(self), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        def shut() -> None:
            self._server.close()
            for open_connection in list(self._connections):
                open_connection.transport.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shut)
        self._thread.join(timeout=5)
        self._loop.close()


class _CountingConnection(asyncio.Protocol):
    def __init__(self, receiver: CountingReceiver) -> None:
        self.receiver = receiver
        self.http = h11.Connection(h11.SERVER)
        self.hook_id = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.receiver._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.receiver._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        try:
            while (event := self.http.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                if isinstance(event, h11.Request):
                    self.hook_id = dict(event.headers).get(b"x-hook-id", b"").decode()
                elif isinstance(event, h11.EndOfMessage):
                    self.receiver.requests.append(Arrival(self.hook_id))
                    answer = self.http.send(h11.Response(status_code=204, headers=[]))
                    self.transport.write(
                        (answer or b"") + (self.http.send(h11.EndOfMessage()) or b"")
                    )
                    self.http.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    self.transport.close()
                    return
        except h11.ProtocolError:
            self.transport.close()

    def eof_received(self) -> None:
        self.data_received(b"")


def worker_rss_mib(workers: Workers) -> list[float]:
    """The resident memory (MiB) of each worker process of a ``rundramatiq`` (Linux)."""
    children = Path(f"/proc/{workers.proc.pid}/task/{workers.proc.pid}/children")
    sizes = []
    for pid in children.read_text().split():
        status = Path(f"/proc/{pid}/status").read_text()
        if "dramatiq" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            continue
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        sizes.append(int(kib) / 1024)
    return sizes


# -- a receiver that holds thousands of requests at once -------------------------------


class HoldingReceiver:
    """An HTTP/1.1 receiver on 127.0.0.1 that holds every request until :meth:`release`
    (or answers at once with ``hold=False``), counting what it holds.

    asyncio and h11 in a thread of its own: each connection a coroutine, so it holds
    thousands at once where ``http.server`` would need as many threads.
    """

    def __init__(self, *, hold: bool = True) -> None:
        self.held = 0  # requests read and not answered yet
        self.most_held = 0
        self.connections = 0
        self.answered = 0
        self._hold = hold
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        self._ready.wait(5)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._released = asyncio.Event()
        self._closing = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        async with server:
            await self._closing.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    connection.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.EndOfMessage):
                    await self._answer(connection, writer)
                    connection.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.ProtocolError, ConnectionError):
            return
        finally:
            writer.close()

    async def _answer(self, connection: h11.Connection, writer: asyncio.StreamWriter) -> None:
        if self._hold:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
            try:
                await self._released.wait()
            finally:
                self.held -= 1
        response = h11.Response(status_code=200, headers=[("Content-Length", "2")])
        writer.write(connection.send(response) + connection.send(h11.Data(data=b"ok")))
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()
        self.answered += 1

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        """Answer every request held, and from now on every request at once."""
        self._loop.call_soon_threadsafe(self._released.set)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)
        self._loop.call_soon_threadsafe(self._closing.set)
        self._thread.join(timeout=5)


# -- the delivery client, called from a thread --------------------------------------------


class OnTheLoop:
    """The event loop's client, called as the threaded one is: each post a coroutine on
    the process's delivery loop, waited for."""

    def __init__(self, client: AsyncDeliveryClient) -> None:
        self.client = client

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpResult:
        return loop.wait(loop.submit(self.client.post(url, body, headers)))

    def close(self) -> None:
        loop.wait(loop.submit(self.client.aclose()))


# -- servers a test starts ---------------------------------------------------------------


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Process:
    """A server the test starts in a session of its own, and stops with its group."""

    def __init__(self, args: list[str], env: dict[str, str] | None, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
