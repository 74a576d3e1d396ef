"""Kept-alive HTTP connections by origin, for the delivery client.

httpcore's ``ConnectionPool`` serves each request with passes over all of its
connections, under one lock: when the request arrives and when its response is closed.
Each pass asks every idle connection whether the server has closed it, a ``poll()``
apiece, and every system call hands the GIL to another worker thread. With a worker's
threads and the kept-alive connections of many receivers that is dozens of system calls
a request (7.7 with eight threads and a single receiver), and the pass can close a
connection already handed to a waiting request (encode/httpcore#1110).

Here a request takes an idle connection of its own origin for itself, the most recently
used (the likeliest to be alive), checks that one alone, and puts it back once the
response is closed. Nothing else is shared between threads. Bounds:

* ``max_connections`` requests at once; the next waits for the pool timeout, then fails
  with ``httpcore.PoolTimeout``;
* ``max_idle`` idle connections in all, the least recently used closed first;
* none idle for longer than ``keepalive_expiry`` seconds.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import TypeAlias

import httpcore

__all__ = ["ConnectionPool"]

#: An origin as a dict key (``httpcore.Origin`` is not hashable): scheme, host, port.
_Key: TypeAlias = tuple[bytes, bytes, int]


class ConnectionPool:
    """Thread-safe; one per delivery client. See the module's docstring."""

    def __init__(
        self,
        *,
        network_backend: httpcore.NetworkBackend,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float,
    ) -> None:
        self._backend = network_backend
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._requests = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        # The idle connections by origin, most recently used last; and all of them, least
        # recently used first, with when they became idle.
        self._idle: dict[_Key, list[httpcore.HTTPConnection]] = {}
        self._idle_since: OrderedDict[httpcore.HTTPConnection, tuple[float, _Key]] = OrderedDict()
        self._closed = False

    @contextlib.contextmanager
    def stream(self, request: httpcore.Request) -> Iterator[httpcore.Response]:
        """The response to ``request``, its body to be read inside the block.

        Leaving the block before the end of the body closes the connection instead of
        keeping it: unread data never reaches the next request.
        """
        timeout = request.extensions.get("timeout", {}).get("pool")
        if not self._requests.acquire(timeout=timeout):
            raise httpcore.PoolTimeout(f"no connection free within {timeout}s")
        try:
            origin = request.url.origin
            key = (origin.scheme, origin.host, origin.port)
            connection = self._take(origin, key)
            try:
                response = connection.handle_request(request)
                try:
                    yield response
                finally:
                    response.close()
            finally:
                self._put_back(connection, key)
        finally:
            self._requests.release()

    def _take(self, origin: httpcore.Origin, key: _Key) -> httpcore.HTTPConnection:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
                if connection is not None:
                    del self._idle_since[connection]
                    if not idle:
                        del self._idle[key]
            if connection is None:
                return httpcore.HTTPConnection(
                    origin,
                    ssl_context=self._ssl_context,
                    keepalive_expiry=self._keepalive_expiry,
                    network_backend=self._backend,
                )
            # A poll() of this connection alone: has the server closed it meanwhile?
            if not connection.has_expired():
                return connection
            connection.close()

    def _put_back(self, connection: httpcore.HTTPConnection, key: _Key) -> None:
        # Not idle: the body was left unread, the receiver said "Connection: close", or
        # the request failed (a connection that failed to connect is "idle" and closed).
        if connection.is_closed() or not connection.is_idle():
            connection.close()
            return
        now = time.monotonic()
        closing = []
        with self._lock:
            if self._closed:
                closing.append(connection)
            else:
                self._idle.setdefault(key, []).append(connection)
                self._idle_since[connection] = (now, key)
            while self._idle_since:
                oldest, (since, oldest_key) = next(iter(self._idle_since.items()))
                if len(self._idle_since) <= self._max_idle and now - since < self._keepalive_expiry:
                    break
                del self._idle_since[oldest]
                self._idle[oldest_key].remove(oldest)
                if not self._idle[oldest_key]:
                    del self._idle[oldest_key]
                closing.append(oldest)
        for idle_connection in closing:
            idle_connection.close()

    def close(self) -> None:
        """Close the idle connections now, and the others as their responses end."""
        with self._lock:
            self._closed = True
            closing = list(self._idle_since)
            self._idle_since.clear()
            self._idle.clear()
        for connection in closing:
            connection.close()
