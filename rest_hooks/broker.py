"""The Dramatiq broker the actors use, and the Redis broker and middlewares rest_hooks brings.

Production: django-dramatiq builds the broker from ``DRAMATIQ_BROKER`` (Redis, best with
``PromptRedisBroker``) and ``manage.py rundramatiq`` starts the workers. Embedded (nothing
configured): a ``StubBroker`` and a ``dramatiq.Worker`` started in this process on the
first message, so ``runserver`` delivers hooks with no other service. Both run the same
actors.
"""

from __future__ import annotations

import atexit
import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis
from django.db import close_old_connections, connections
from django_dramatiq.middleware import DbConnectionsMiddleware
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware, default_middleware

from rest_hooks.conf import hook_settings
from rest_hooks.metrics.middleware import MetricsMiddleware

logger = logging.getLogger(__name__)


def current_broker() -> dramatiq.Broker | None:
    return dramatiq.broker.global_broker


def is_embedded(broker: dramatiq.Broker | None = None) -> bool:
    return isinstance(broker or current_broker(), StubBroker)


def setup_broker(
    relay: Callable[[], object], middleware: Sequence[Middleware] = ()
) -> dramatiq.Broker:
    """Make sure a broker exists before the actors are declared, and equip it.

    ``relay`` is what the relay middleware runs in each worker process
    (``rest_hooks.worker.relay.relay_pending``) and ``middleware`` the worker's own
    (``rest_hooks.worker.handoff.HandOff``): handed down by ``rest_hooks.tasks``, so that
    the broker imports nothing of the worker.
    """
    broker = current_broker()
    if broker is None:
        broker = StubBroker(middleware=[m() for m in default_middleware])
        broker.add_middleware(DbConnectionsMiddleware())
        dramatiq.set_broker(broker)
        logger.debug("rest_hooks: no Dramatiq broker configured; using the embedded one.")
    wanted: list[Middleware] = [RelayMiddleware(relay), PromptDelays(), MetricsMiddleware()]
    wanted.extend(middleware)
    if is_embedded(broker) and hook_settings.EMBEDDED_WORKER:
        wanted.append(EmbeddedWorker())
    for added in wanted:
        if not any(isinstance(m, type(added)) for m in broker.middleware):
            broker.add_middleware(added)
    return broker


@dataclass(frozen=True)
class Backlog:
    """What the embedded worker had not handled when a wait for it ended."""

    #: Whether the wait ended because the work was done, not because its time was up.
    done: bool
    #: Messages queued or being handled (not delayed).
    unhandled: int
    #: When the delayed messages (retries, deliveries held back) are due, earliest first.
    held: list[datetime]


class EmbeddedWorker(Middleware):
    """Starts an in-process worker the first time a message is enqueued, and delivers
    what is queued before the process exits.

    The queue lives in this process's memory: a process that exits with messages in it
    leaves their events and deliveries pending, for the relay of another. So the
    middleware counts the messages not handled yet (queued or running, and delayed with
    when they are due), and at exit waits for them, at most ``EMBEDDED_DRAIN_TIMEOUT``
    seconds (``drain``). A management command waits the same way for what it queued.
    """

    def __init__(self) -> None:
        self.worker: dramatiq.Worker | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._unhandled = 0
        #: The delayed messages not handled yet: when each is due (ms), by message id.
        self._held: dict[str, int] = {}

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int) -> None:
        if self.worker is None:
            with self._lock:
                if self.worker is None:
                    worker = dramatiq.Worker(
                        broker, worker_threads=hook_settings.EMBEDDED_WORKER_THREADS
                    )
                    worker.start()
                    self.worker = worker
                    atexit.register(self.drain_at_exit)
        # Counted before it is queued: once it is, a worker thread may handle it at once.
        with self._changed:
            eta = message.options.get("eta")  # a delayed message's, set by the broker
            if eta is None:
                self._unhandled += 1
            else:
                self._held[message.message_id] = int(eta)
            self._changed.notify_all()

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        # A delayed message is acked when it comes due, after it was queued again as an
        # immediate one: until it is handled, a message is always counted somewhere.
        with self._changed:
            if message.options.get("eta") is None:
                self._unhandled -= 1
            else:
                self._held.pop(message.message_id, None)
            self._changed.notify_all()

    after_nack = after_ack

    def drain(self, horizon: float, timeout: float | None = None) -> Backlog:
        """Wait until no message is queued or being handled, and no delayed one is due
        within ``horizon`` seconds (retries and deliveries held back for longer are left
        for later); at most ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                soon = current_millis() + horizon * 1000
                done = not self._unhandled and all(eta > soon for eta in self._held.values())
                left = None if deadline is None else deadline - time.monotonic()
                if done or (left is not None and left <= 0):
                    break
                # Every change is notified, a held message coming due included: the
                # worker queues it again.
                self._changed.wait(left)
            held = sorted(datetime.fromtimestamp(eta / 1000, UTC) for eta in self._held.values())
            return Backlog(done=done, unhandled=self._unhandled, held=held)

    def drain_at_exit(self) -> None:
        """Deliver what is queued before the process exits, and log what is left: the
        relay sends it later."""
        bound = float(hook_settings.EMBEDDED_DRAIN_TIMEOUT)
        try:
            left = self.drain(horizon=bound, timeout=bound)
        except KeyboardInterrupt:  # Ctrl-C: stop waiting, still say what is left
            left = self.drain(horizon=bound, timeout=0)
        relay = (
            "their events and deliveries stay pending and the relay sends them "
            "(manage.py rest_hooks_relay, or a running process's worker)"
        )
        if left.unhandled:
            logger.warning(
                "rest_hooks: the process exits before %d of its messages were handled "
                "(it waits EMBEDDED_DRAIN_TIMEOUT, %g s, at most) and with %d held for "
                "later; %s.",
                left.unhandled,
                bound,
                len(left.held),
                relay,
            )
        elif left.held:
            logger.info(
                "rest_hooks: the process exits with %d retries or held deliveries due "
                "later, the first at %s; %s once they are due.",
                len(left.held),
                left.held[0].isoformat(timespec="seconds"),
                relay,
            )


def embedded_worker(broker: dramatiq.Broker | None = None) -> EmbeddedWorker | None:
    """The broker's in-process worker middleware, if it has one (embedded mode)."""
    broker = broker or current_broker()
    middleware = broker.middleware if broker is not None else []
    return next((m for m in middleware if isinstance(m, EmbeddedWorker)), None)


#: Most milliseconds an idle worker waits before it looks for work again.
POLL_MS = 100


class PromptDelays(Middleware):
    """Makes deferred deliveries leave at the time they were deferred to.

    A deferred delivery is a delayed message; a Dramatiq worker moves it to its queue only
    when its consumer wakes up, which an idle one does every ``worker_timeout`` (1 s by
    default): deliveries held back for a rate-limit slot would come back up to a second
    late, together, and reach the target in clumps. This lowers that wait to ``POLL_MS``
    (an idle consumer then asks the broker ten times a second).
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        worker.worker_timeout = min(worker.worker_timeout, POLL_MS)


class RelayMiddleware(Middleware):
    """Runs the outbox relay every ``RELAY_INTERVAL`` seconds in each worker process.

    Several processes relaying at once is safe (rows are claimed with SKIP LOCKED and
    every actor is idempotent); it only costs two small queries per interval each.
    """

    def __init__(self, relay: Callable[[], object]) -> None:
        self._relay = relay
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        threading.Thread(target=self._run, name="rest_hooks-relay", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            interval = float(hook_settings.RELAY_INTERVAL)
            # Jitter spreads the processes' relays over the interval.
            if self._stop.wait(interval * random.uniform(0.5, 1.5)):  # noqa: S311
                return
            close_old_connections()
            try:
                self._relay()
            except Exception:
                logger.exception("rest_hooks relay failed; it will run again.")
            finally:
                connections.close_all()


#: Tokens a doorbell keeps at most: enough to wake every idle consumer of a busy queue,
#: few enough that a queue nobody consumes does not fill Redis with them.
DOORBELL_TOKENS = 64
#: What a consumer with no room for more messages sleeps before it looks again
#: (Dramatiq's first backoff step).
BUSY_WAIT_MS = 5
#: Redis ends a blocking command's timeout only on its timer's tick, every 1000 / hz ms:
#: 100 ms with the default hz of 10 (a BLPOP of 5 ms on an idle Redis 7 returns after
#: ~101 ms). The last stretch before a held message comes due is waited here instead.
REDIS_TICK_MS = 100


class PromptRedisBroker(RedisBroker):
    """Dramatiq's Redis broker, whose idle workers wake up when a message is enqueued.

    Dramatiq's Redis consumer polls: after each empty fetch it sleeps longer, up to
    ``worker_timeout``, so a message enqueued to an idle worker waits for its next look,
    tens of milliseconds on average, and an event with few subscribers spends most of its
    time from commit to target there. Here, enqueuing also pushes a token onto the
    queue's *doorbell* (a Redis list), and a consumer with room for work waits for one
    with ``BLPOP`` instead of sleeping: the first such consumer wakes at once, the others
    keep waiting. A wait lasts at most ``worker_timeout`` (``POLL_MS`` with
    ``PromptDelays``), so a lost token costs at most one poll (and a tick of Redis's
    timer, ``REDIS_TICK_MS``), and ends when the next delayed message the consumer holds
    comes due: the consumer's thread moves such a message to its queue only when a look
    returns, so it goes on time, not up to a poll late (a delivery held back for a
    rate-limit slot leaves at its slot). Redis would end that BLPOP up to a tick late, so
    the last tick before the message is due is slept in the consumer. A consumer
    whose last fetch emptied the queue waits for the doorbell before it fetches again, so
    an idle worker makes one fetch a message, not two.

    Messages, queues and acks are Dramatiq's own; workers of this broker and of the plain
    ``RedisBroker`` can share queues (plain ones just keep polling).
    """

    def doorbell(self, queue_name: str) -> str:
        return f"{self.namespace}:rest_hooks.doorbell:{queue_name}"

    def do_enqueue(self, queue_name: str, message_id: str, data: bytes) -> Any:
        stored = self._dispatch("enqueue")(queue_name, message_id, data)  # type: ignore[no-untyped-call]
        key = self.doorbell(queue_name)
        try:
            ring = self.client.pipeline(transaction=False)
            ring.lpush(key, 1)
            ring.ltrim(key, 0, DOORBELL_TOKENS - 1)
            ring.execute()
        except redis.RedisError:
            # The message is stored: a worker finds it at its next poll.
            logger.debug("Could not ring the doorbell of queue %s.", queue_name, exc_info=True)
        return stored

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _DoorbellConsumer


class _DoorbellConsumer(_RedisConsumer):
    """A Redis consumer that waits on its queue's doorbell when the queue is empty."""

    def __init__(self, broker: PromptRedisBroker, queue_name: str, prefetch: int, timeout: int):
        # With an idle timeout of 0 Dramatiq's consumer never sleeps: it returns None
        # when it found nothing, and this one waits instead.
        super().__init__(broker, queue_name, prefetch, 0)  # type: ignore[no-untyped-call]
        self.timeout_ms = timeout
        self.doorbell = broker.doorbell(queue_name)
        # When the delayed messages handed out come due (ms, a heap): the thread moves
        # them to their queue only when a look returns, so none may last past that.
        self.etas: list[int] = []
        # Whether to fetch before waiting: after a wait, and after a fetch that filled
        # the room (it may have left messages behind). A fetch that did not emptied the
        # queue, and the next message rings the doorbell: fetching again first would be
        # a round trip for nothing, one per message on an idle worker.
        self.look = True

    def __next__(self) -> Any:
        if self.message_cache:  # fetched already
            return self._hand_out(super().__next__())  # type: ignore[no-untyped-call]
        room = self.prefetch - self.outstanding_message_count
        if room <= 0:
            # No room: a token would wake nobody who can take work. The worker threads'
            # acks make room; look again soon.
            time.sleep(BUSY_WAIT_MS / 1000)
            return None
        if self.look:
            message = super().__next__()  # type: ignore[no-untyped-call]
            self.look = len(self.message_cache) + (message is not None) >= room
            if message is not None:
                return self._hand_out(message)
        now = current_millis()
        due = False
        while self.etas and self.etas[0] <= now:
            heapq.heappop(self.etas)
            due = True
        if due:
            return None  # back to the thread at once, which moves them to their queue
        if not self.etas:
            self._wait_for_doorbell(max(self.timeout_ms, 1) / 1000)  # 0: BLPOP waits forever
        else:
            # The wait must end on time: BLPOP for all of it but Redis's last tick, which
            # is slept here (a token rung meanwhile stays in the list for the next wait).
            end = now + min(self.timeout_ms, self.etas[0] - now)
            rung = end - now > REDIS_TICK_MS and self._wait_for_doorbell(
                (end - now - REDIS_TICK_MS) / 1000
            )
            if not rung:
                time.sleep(max(end - current_millis(), 0) / 1000)
        self.look = True  # a token, or the end of the wait: look either way
        return None

    def _hand_out(self, message: Any) -> Any:
        if message is not None and message.options.get("eta") is not None:
            heapq.heappush(self.etas, int(message.options["eta"]))
        return message

    def _wait_for_doorbell(self, seconds: float) -> bool:
        """Whether a token came (a lookup is due) before ``seconds`` passed."""
        try:
            return self.broker.client.blpop([self.doorbell], timeout=seconds) is not None
        except redis.TimeoutError:
            return True  # a socket_timeout shorter than the wait: look again
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
