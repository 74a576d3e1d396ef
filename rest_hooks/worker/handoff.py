"""Handing a batch's requests to the event loop, so that they do not hold worker threads.

In a worker process (``rundramatiq``), a worker thread claims a batch, has the gate admit
it, and hands its sends to the process's event loop (``rest_hooks.delivery.loop``); the
thread is free for the next message at once. When the last request of the batch has
ended, one of the process's *finisher* threads does the batch's database work (the gate
told, what was not tried given back, the attempts recorded). Requests in flight are then
bounded by the gate's slots per target and by ``MAX_IN_FLIGHT_PER_PROCESS``, not by
threads: a thread with a batch to send waits while its process is at that cap, which is
how a process that cannot keep up stops taking messages.

Outside a worker process (the embedded worker, management commands, tests calling the
worker's functions), nothing is handed off: the calling thread waits for the sends and
finishes the batch itself, so that the work is done when the call returns.

What a handed-off batch was doing when its process dies is covered by its lease, as
before: the relay sends its deliveries again once it has run out. A worker that shuts
down waits for its batches (at most ``DEADLINE`` seconds and a little).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

import dramatiq
from django.db import close_old_connections
from dramatiq.middleware import Middleware

from rest_hooks.broker import is_embedded
from rest_hooks.conf import hook_settings
from rest_hooks.delivery import loop

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Threads of a process that record the batches its loop has sent.
FINISHERS: Final = 2
#: How often a thread waiting for room under the process's cap wakes to let an exception
#: raised into it (Dramatiq's ``Interrupt``) through.
_WAIT_SLICE: Final = 0.1


class _Process:
    """What one process shares between its worker threads and its loop."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.enabled = False
        self.changed = threading.Condition()
        self.lanes_open = 0  # requests that may be in flight now, all batches together
        self.pending = 0  # batches handed off and not finished yet
        self.finishers = concurrent.futures.ThreadPoolExecutor(
            FINISHERS, thread_name_prefix="rest-hooks-finish"
        )


_lock = threading.Lock()
_current: _Process | None = None


def _process() -> _Process:
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            # A forked child's threads are not its parent's: it starts afresh.
            _current = _Process()
        return _current


def run(
    lanes: int,
    sends: Callable[[int], Coroutine[Any, Any, T]],
    finish: Callable[[T], None],
) -> None:
    """Send on the loop over at most ``lanes`` concurrent requests, then ``finish``.

    ``sends(n)`` makes the coroutine that sends over ``n`` lanes (fewer than asked when
    the process's cap is lower). In a worker process, returns once it is handed over;
    elsewhere, once it is finished.
    """
    process = _process()
    taken = _take(process, lanes)
    try:
        coroutine = sends(taken)
    except BaseException:
        _give(process, taken)
        raise
    if not process.enabled:
        try:
            result = loop.wait(loop.submit(coroutine))
        finally:
            _give(process, taken)
        finish(result)
        return
    with process.changed:
        process.pending += 1
    future = loop.submit(coroutine)
    # Called on the loop's thread: the database work goes to a finisher thread.
    future.add_done_callback(
        lambda done: _after_sends(process, taken, done, finish),
    )


def _after_sends(
    process: _Process,
    taken: int,
    done: concurrent.futures.Future[T],
    finish: Callable[[T], None],
) -> None:
    _give(process, taken)
    try:
        process.finishers.submit(_finish, process, done, finish)
    except RuntimeError:  # the process is exiting: its batches' leases cover them
        _settled(process)


def _finish(
    process: _Process, done: concurrent.futures.Future[T], finish: Callable[[T], None]
) -> None:
    close_old_connections()
    try:
        finish(done.result())
    except BaseException:
        # The deliveries stay claimed: the relay sends them again once their lease ends.
        logger.exception("A batch sent on the event loop could not be finished.")
    finally:
        close_old_connections()
        _settled(process)


def _settled(process: _Process) -> None:
    with process.changed:
        process.pending -= 1
        process.changed.notify_all()


def _take(process: _Process, lanes: int) -> int:
    """Room for ``lanes`` requests under the process's cap (all of it, at most), waited for."""
    cap = max(1, int(hook_settings.MAX_IN_FLIGHT_PER_PROCESS))
    wanted = max(1, min(lanes, cap))
    with process.changed:
        while process.lanes_open + wanted > cap:
            process.changed.wait(_WAIT_SLICE)
        process.lanes_open += wanted
    return wanted


def _give(process: _Process, lanes: int) -> None:
    with process.changed:
        process.lanes_open -= lanes
        process.changed.notify_all()


def settle(timeout: float | None = None) -> bool:
    """Wait until every batch handed off by this process is finished; at most ``timeout``
    seconds. Whether they all were."""
    process = _process()
    with process.changed:
        return process.changed.wait_for(lambda: process.pending == 0, timeout)


class HandOff(Middleware):
    """Turns the hand-off on in a worker process, and waits for its batches at shutdown."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not is_embedded(broker):
            _process().enabled = True

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        process = _process()
        if not process.enabled:
            return
        bound = float(hook_settings.DEADLINE) + 5
        if not settle(bound):
            logger.warning(
                "Batches still sending after %g s at shutdown; the relay sends their "
                "deliveries again once their leases end.",
                bound,
            )
        process.enabled = False
