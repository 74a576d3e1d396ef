"""The event loop of a worker process, and what the async delivery client does with it.

The client's behaviour one request at a time (SSRF refusals, deadlines, caps, TLS, error
kinds) is tested in ``test_http_client.py`` against both clients. Here: the loop itself
(batches, threads, fork, exceptions raised into a waiting thread, exit) and many requests
at once from one loop, against receivers that hold them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from rest_hooks.delivery import loop
from rest_hooks.delivery.async_http import AsyncDeliveryClient
from rest_hooks.delivery.http import HttpOptions
from rest_hooks.security.network import AddressPolicy
from tests.helpers import ROOT, HoldingReceiver, wait_until

pytestmark = pytest.mark.timeout(60)

LOOPBACK_ONLY = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.fixture
def holding() -> Iterator[list[HoldingReceiver]]:
    """Receivers a test starts (``holding.append(HoldingReceiver())``), closed after it."""
    receivers: list[HoldingReceiver] = []
    yield receivers
    for receiver in receivers:
        receiver.close()


def _client(**options: object) -> AsyncDeliveryClient:
    return AsyncDeliveryClient(HttpOptions(policy=LOOPBACK_ONLY, **options))  # type: ignore[arg-type]


# -- the loop --------------------------------------------------------------------------------


async def _double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


async def _fail(message: str) -> int:
    raise ValueError(message)


def test_run_all_gives_each_result_in_order_and_an_error_in_place() -> None:
    results = loop.run_all([_double(1), _fail("boom"), _double(3)])
    assert results[0] == 2
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "boom"
    assert results[2] == 6


def test_worker_threads_share_the_one_loop() -> None:
    results: list[int] = []
    loops: set[asyncio.AbstractEventLoop] = set()

    async def on_which_loop(n: int) -> int:
        loops.add(asyncio.get_running_loop())
        return n

    def work(first: int) -> None:
        for n in range(first, first + 10):
            results.append(loop.wait(loop.submit(on_which_loop(n))))

    threads = [threading.Thread(target=work, args=(10 * t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == list(range(80))
    assert loops == {loop.get_loop()}


def _pid_from_the_loop(answers: multiprocessing.Queue[int]) -> None:
    answers.put(loop.wait(loop.submit(asyncio.sleep(0, result=os.getpid()))))


def test_a_forked_child_runs_a_loop_of_its_own() -> None:
    loop.get_loop()  # the parent's loop runs: the child inherits it, without its thread
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue[int] = context.Queue()
    child = context.Process(target=_pid_from_the_loop, args=(answers,))
    child.start()
    try:
        assert answers.get(timeout=10) == child.pid
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


class Interrupted(Exception):
    """Raised into a waiting thread, as Dramatiq raises its Interrupt at a time limit."""


def _is_in(thread: threading.Thread, function: Callable[..., object]) -> bool:
    """Whether ``thread`` is running ``function`` now (somewhere down its stack)."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code is function.__code__:
            return True
        frame = frame.f_back
    return False


def test_an_exception_raised_into_a_waiting_thread_cancels_its_coroutine() -> None:
    started, cancelled = threading.Event(), threading.Event()
    caught: list[BaseException] = []

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def worker() -> None:
        try:
            loop.wait(loop.submit(forever()))
        except Interrupted as exc:
            caught.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(5)
    assert thread.ident is not None
    wait_until(lambda: _is_in(thread, loop.wait), "the worker thread waiting")
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(Interrupted)
    )
    thread.join(timeout=5)
    assert [type(exc) for exc in caught] == [Interrupted]
    assert cancelled.wait(5)


def test_at_exit_the_loop_cancels_what_still_runs() -> None:
    script = (
        "import asyncio\n"
        "from rest_hooks.delivery import loop\n"
        "async def forever():\n"
        "    try:\n"
        "        await asyncio.Event().wait()\n"
        "    finally:\n"
        "        print('cancelled', flush=True)\n"
        "loop.submit(forever())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "cancelled\n"


def test_a_stopped_loop_is_replaced_when_next_used() -> None:
    first = loop.get_loop()
    loop.stop()
    assert first.is_closed()
    assert loop.run_all([_double(4)]) == [8]
    assert loop.get_loop() is not first


# -- many requests at once -------------------------------------------------------------------


def test_two_hundred_requests_in_flight_from_one_loop(holding: list[HoldingReceiver]) -> None:
    receiver = HoldingReceiver()
    holding.append(receiver)
    client = _client(max_connections=256)
    loop.get_loop()
    threads_before = threading.active_count()
    futures = [loop.submit(client.post(receiver.url(f"/{n}"), b"{}", {})) for n in range(200)]
    wait_until(lambda: receiver.held == 200, "200 requests held at once", timeout=30)
    # All 200 open at once, and not one thread more for them.
    assert threading.active_count() <= threads_before
    receiver.release()
    assert [loop.wait(future).status_code for future in futures] == [200] * 200
    assert receiver.connections == 200
    loop.wait(loop.submit(client.aclose()))


def test_a_slow_origin_does_not_hold_up_another(holding: list[HoldingReceiver]) -> None:
    slow, fast = HoldingReceiver(), HoldingReceiver(hold=False)
    holding += [slow, fast]
    # The slow origin may have 40 connections; its 40 more requests wait for them. The
    # fast origin's requests go past both.
    client = _client(max_connections=100, max_connections_per_host=40)
    waiting = [loop.submit(client.post(slow.url(), b"{}", {})) for _ in range(80)]
    wait_until(lambda: slow.held == 40, "the slow origin holding 40 requests")
    fast_results = loop.run_all(client.post(fast.url(), b"{}", {}) for _ in range(50))
    assert [getattr(result, "status_code", result) for result in fast_results] == [200] * 50
    assert (slow.held, slow.answered, slow.most_held) == (40, 0, 40)
    slow.release()
    assert [loop.wait(future).status_code for future in waiting] == [200] * 80
    assert slow.most_held == 40
    loop.wait(loop.submit(client.aclose()))


def test_lookups_that_hang_do_not_hold_up_the_loop(holding: list[HoldingReceiver]) -> None:
    receiver = HoldingReceiver(hold=False)
    holding.append(receiver)
    release = threading.Event()

    def dns(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if host.startswith("hang"):
            release.wait(20)
        return [ipaddress.ip_address("127.0.0.1")]

    options = HttpOptions(policy=LOOPBACK_ONLY, connect_timeout=15, deadline=20)
    client = AsyncDeliveryClient(options, resolver=dns)
    try:
        hanging = [
            loop.submit(client.post(f"http://hang-{n}.test:{receiver.port}/", b"{}", {}))
            for n in range(20)
        ]
        healthy = f"http://healthy.test:{receiver.port}/"
        results = loop.run_all(client.post(healthy, b"{}", {}) for _ in range(10))
        assert [getattr(result, "status_code", result) for result in results] == [200] * 10
        assert not any(future.done() for future in hanging)
    finally:
        release.set()
    assert [loop.wait(future).status_code for future in hanging] == [200] * 20
    loop.wait(loop.submit(client.aclose()))
