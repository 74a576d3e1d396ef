"""The event loop of a worker process, on which every HTTP request of the process is made.

Worker threads stay synchronous (the database work, claiming and recording, is Django's);
they hand what they send to one asyncio loop that runs in a daemon thread of its own, so a
process holds hundreds of requests in flight at the cost of one thread. :func:`submit`
hands over one coroutine, :func:`run_all` a batch, waiting for all of it.

The loop starts on first use, so a process that never delivers (a web server) has no loop
thread; a child process forked from one that had a loop starts its own (threads do not
survive a fork); at exit the loop cancels what is still running and closes.

Why not Dramatiq's ``AsyncIO`` middleware (which ``rest_hooks.broker.setup_broker`` could
add as it adds its own): its loop lives from a worker's ``before_worker_boot`` to its
``after_worker_shutdown``, so a delivery made where no worker booted (the tests'
``run_pipeline`` calls the worker's functions in-process) or after the worker shut down
finds no loop, and its ``async_to_sync`` hands over one coroutine a call, not a batch.
Here the loop exists wherever a delivery is made: started on first use, replaced after a
fork or once stopped. ``async_to_sync`` waits in slices to notice Dramatiq's
``Interrupt`` (a time limit, a shutdown); :func:`wait` does the same for any exception
raised into the waiting thread, and cancels the coroutine, without tying this module to
Dramatiq.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, Final, TypeVar

__all__ = ["get_loop", "run_all", "stop", "submit", "wait"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a waiting worker thread wakes to let an exception raised into it (Dramatiq's
#: ``Interrupt``) through; such exceptions reach a thread only between bytecodes.
_WAIT_SLICE: Final = 0.1


class _LoopThread:
    """One event loop running in a daemon thread, for the process that started it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="rest-hooks-loop", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        # asyncio.run: at the end, the tasks still running are cancelled and awaited, async
        # generators and the default executor shut down, and the loop closed.
        asyncio.run(self._serve())
        logger.debug("The delivery event loop of process %d has stopped.", self.pid)

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stopping.wait()

    def stop(self, timeout: float) -> None:
        """Let the loop end, cancelling what still runs; wait at most ``timeout`` seconds."""
        assert self.loop is not None
        assert self._stopping is not None
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stopping.set)
            self.thread.join(timeout)


_lock = threading.Lock()
_current: _LoopThread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """This process's delivery loop, started if it is not running yet."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid() or not _current.thread.is_alive():
            # A loop inherited through fork() has no thread here: it is left alone (its
            # thread, and its selector, belong to the parent). One stopped already (an
            # exit handler registered before this module's delivers after it ran) is
            # replaced too.
            _current = _LoopThread()
            logger.debug("Started the delivery event loop of process %d.", _current.pid)
        assert _current.loop is not None
        return _current.loop


def submit(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run ``coroutine`` on the process's loop; thread-safe, returns at once."""
    return asyncio.run_coroutine_threadsafe(coroutine, get_loop())


def wait(future: concurrent.futures.Future[T]) -> T:
    """The result of a coroutine handed over by :func:`submit`, for a worker thread to wait on.

    An exception raised into the waiting thread meanwhile (Dramatiq's ``Interrupt`` at a
    time limit or shutdown) cancels the coroutine before it goes on up.
    """
    try:
        while True:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                return future.result(timeout=_WAIT_SLICE)
            if future.done():  # that TimeoutError was the coroutine's own
                return future.result()
    except BaseException:
        future.cancel()
        raise


async def _gather(coroutines: list[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    return await asyncio.gather(*coroutines, return_exceptions=True)


def run_all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    """Run ``coroutines`` concurrently on the process's loop and wait for every one.

    Returns their results in order, an exception in place of the result of each that
    raised one: one failing coroutine neither stops nor hides the others. One hand-over to
    the loop for the whole batch, not one per coroutine.
    """
    return wait(submit(_gather(list(coroutines))))


@atexit.register
def stop(timeout: float = 5.0) -> None:
    """Stop this process's loop, cancelling what still runs on it; wait at most
    ``timeout`` seconds. Done at exit; a later :func:`get_loop` starts a new loop."""
    with _lock:
        current = _current
    if current is not None and current.pid == os.getpid():
        current.stop(timeout)
