"""The HTTP client that makes one webhook delivery attempt.

Webhook targets are chosen by users, so every attempt is a request to an untrusted
server from inside the operator's network. This module makes that safe and bounded:

* **No SSRF through DNS.** Host names are resolved once per new connection by
  :class:`PinnedBackend` (through :mod:`rest_hooks.delivery.resolver`, where a name that
  never answers costs only its own deliveries), every resolved address is checked with the
  :class:`~rest_hooks.security.network.AddressPolicy`, and the TCP connection is made to
  the checked IP itself. Nothing resolves the name a second time, so there is no
  DNS-rebinding window between the check and the connect. TLS still uses the host
  name for SNI and certificate verification. Literal IPs in any spelling
  (``2130706433``, ``0x7f000001``, ``127.1``, ``[::ffff:127.0.0.1]``) go through the same
  path, because the resolver turns them into the address the kernel would use.
* **A hard deadline per attempt.** A receiver that drips one byte per second never
  trips a read timeout; the per-attempt deadline is therefore enforced under httpcore,
  on every socket operation (see :class:`_DeadlineStream`).
* **Bounded memory.** At most ``max_response_bytes`` of the body are kept; the rest is
  not read and the connection is dropped instead of going back to the pool.
* **No surprises from the environment or from earlier requests.** No proxy settings
  from the environment, no redirects, no cookies carried between receivers, no
  content decoding (a small gzip body must not become a large one).

There is no Django here: settings arrive as :class:`HttpOptions`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import ipaddress
import logging
import math
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

import httpcore
import httpx

from rest_hooks.delivery.pool import ConnectionPool
from rest_hooks.delivery.resolver import (
    BoundedResolver,
    ResolutionError,
    ResolutionTimeout,
    Resolver,
    ResolverBusy,
    resolve_host,
)
from rest_hooks.security.network import AddressPolicy, IPAddress, TargetRefused, check_url

__all__ = [
    "DeliveryClient",
    "DeliveryError",
    "DeliveryErrorKind",
    "HttpOptions",
    "HttpResult",
    "PinnedBackend",
    "attempt_failed",
    "check_addresses",
]

logger = logging.getLogger(__name__)

DeliveryErrorKind: TypeAlias = Literal["timeout", "connect", "refused", "protocol", "busy"]

# The monotonic time at which the current attempt must be over, for the thread running
# it. A context variable (rather than state on the client) because one client serves
# several worker threads at once, and pooled connections move between them.
_ATTEMPT_DEADLINE: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "rest_hooks_attempt_deadline", default=None
)


# -- options and results -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """Everything the client needs to know, as plain values.

    The four httpx timeouts bound single operations (one connect, one read, ...);
    ``deadline`` bounds the whole attempt, which is what protects worker threads
    from receivers that answer slowly but steadily. ``ssl_context`` replaces the
    default verification (certifi bundle, host name checking), e.g. to trust a
    private CA. ``keepalive_expiry`` is kept short (httpx's default) because many
    servers drop idle connections after a few seconds, and reusing one they have
    just closed fails the attempt. ``max_connections`` bounds the requests in flight at
    once (a worker process has fewer threads), ``max_keepalive_connections`` the idle
    connections kept (:mod:`rest_hooks.delivery.pool`); the event loop's client
    (:mod:`rest_hooks.delivery.async_http`) also bounds those of one origin by
    ``max_connections_per_host`` (0: no bound of its own; the flow-control gate bounds
    each target's requests in flight) and keeps idle connections until they expire.
    ``max_lookups`` bounds the host
    name lookups running at once (a thread each), ``max_hung_lookups_per_domain`` those of
    one registered domain that nobody waits for any more (:mod:`rest_hooks.delivery.resolver`).
    """

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    write_timeout: float = 10.0
    pool_timeout: float = 5.0
    deadline: float = 30.0
    max_response_bytes: int = 64 * 1024
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    user_agent: str = "rest-hooks"
    max_connections: int = 100
    max_keepalive_connections: int = 20
    max_connections_per_host: int = 0
    keepalive_expiry: float = 5.0
    max_lookups: int = 64
    max_hung_lookups_per_domain: int = 4
    ssl_context: ssl.SSLContext | None = None
    #: Refuse ``http://`` targets (a final failure, like a refused address).
    https_only: bool = False

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.deadline <= 0:
            raise ValueError("deadline must be positive")
        if self.max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")


@dataclass
class HttpResult:
    """What the receiver answered. Any status, 3xx included: judging it is the caller's job.

    ``body`` holds at most ``max_response_bytes``; ``truncated`` says whether the
    receiver had more to send. ``duration`` is in seconds, from the start of the
    attempt to the end of reading the (possibly truncated) body.
    """

    status_code: int
    headers: httpx.Headers
    body: bytes
    duration: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300


class DeliveryError(Exception):
    """The attempt produced no HTTP response.

    ``kind`` is one of:

    * ``"refused"``: the target is forbidden (policy or an unusable URL). Final:
      retrying would be refused again. The :class:`TargetRefused` is ``__cause__``
      when the address policy refused.
    * ``"timeout"``: an operation timed out or the attempt deadline passed.
    * ``"connect"``: name resolution failed, the connection could not be opened
      (refused, unreachable, TLS handshake or certificate failure) or it broke while
      sending or receiving.
    * ``"protocol"``: the receiver did not speak valid HTTP/1.1.
    * ``"busy"``: the target's host name could not even be looked up, as names of other
      targets that do not answer held every lookup this process may run (or every one
      its domain may); nothing was sent.

    All kinds but ``"refused"`` are worth retrying later; ``"refused"`` and ``"busy"``
    say nothing about the target's health (:attr:`counts_against_target`).
    ``str(error)`` is the message alone.
    """

    def __init__(self, kind: DeliveryErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: DeliveryErrorKind = kind
        self.message = message

    @property
    def final(self) -> bool:
        """True when retrying cannot help."""
        return self.kind == "refused"

    @property
    def retryable(self) -> bool:
        """True when a later attempt may succeed."""
        return not self.final

    @property
    def counts_against_target(self) -> bool:
        """False when the target was never tried, so its circuit breaker must not count
        the attempt: it was refused, or no lookup of its name could start."""
        return self.kind not in ("refused", "busy")


def attempt_failed(
    kind: DeliveryErrorKind, host: str, exc: BaseException, started: float
) -> DeliveryError:
    """The :class:`DeliveryError` for ``exc``, which ended an attempt to ``host`` begun at
    ``started`` (monotonic), logged."""
    elapsed = time.monotonic() - started
    detail = str(exc) or type(exc).__name__
    logger.debug("POST to %s failed (%s) after %.3fs: %s", host, kind, elapsed, detail)
    return DeliveryError(kind, f"{type(exc).__name__}: {detail}")


def attempt_answered(
    host: str,
    status_code: int,
    headers: httpx.Headers,
    body: bytes,
    truncated: bool,
    started: float,
) -> HttpResult:
    """The :class:`HttpResult` of an attempt to ``host`` begun at ``started`` (monotonic)
    that got an answer, logged."""
    duration = time.monotonic() - started
    logger.debug(
        "POST to %s: HTTP %d, %d bytes%s in %.3fs.",
        host,
        status_code,
        len(body),
        " (truncated)" if truncated else "",
        duration,
    )
    return HttpResult(
        status_code=status_code, headers=headers, body=body, duration=duration, truncated=truncated
    )


# -- resolution and connection ---------------------------------------------------------------


def _is_literal(host: str, address: IPAddress) -> bool:
    """Whether ``host`` is ``address`` written in standard notation."""
    try:
        return ipaddress.ip_address(host) == address
    except ValueError:
        return False


def check_addresses(policy: AddressPolicy, host: str, addresses: Iterable[IPAddress]) -> None:
    """Raise :class:`TargetRefused` if ``policy`` refuses any of the addresses ``host``
    resolved to; its reason names the host when the host is a name."""
    for address in addresses:
        try:
            policy.check(address)
        except TargetRefused as exc:
            reason = exc.reason
            if not _is_literal(host, address):
                reason = f"{host} resolves to {address}: {reason}"
            logger.warning("Refused to connect to %s: %s", host, reason)
            raise TargetRefused(reason, address) from exc


def _bounded(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` shortened to what is left of the current attempt.

    Raises ``expired`` once the attempt deadline has passed, so that no network
    operation can start after it.
    """
    deadline = _ATTEMPT_DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("the attempt deadline has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation also respects the attempt deadline.

    httpcore passes the per-operation timeout (read, write, connect) to each call;
    this stream shortens it to the time left in the attempt. A slow-drip receiver
    makes the reads short but cannot make the attempt long: the read that would
    cross the deadline times out at the deadline.

    On a plain or TLS socket it does the I/O itself, non-blocking, and holds the writes
    back until the first read: a request goes out in one ``send()`` (httpcore writes the
    head and the body apart), with no ``settimeout()`` (an ioctl) before each call and no
    ``poll()`` before a send. Every system call hands the GIL to another worker thread,
    and with eight threads in a process each hand-over is a context switch or two.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        sock = inner.get_extra_info("socket")
        direct = isinstance(sock, ssl.SSLSocket) or (
            isinstance(sock, socket.socket) and inner.get_extra_info("ssl_object") is None
        )
        # Not a plain (or plainly wrapped TLS) socket: the inner stream does the I/O.
        self._sock: socket.socket | None = sock if direct else None
        if self._sock is not None:
            self._sock.setblocking(False)
        self._unsent: list[bytes] = []
        self._write_timeout: float | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        sock = self._sock
        if sock is None:
            return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        # As httpcore does when a write fails: the receiver may have answered and closed
        # before reading the whole request (a 413, say); the read tells.
        with contextlib.suppress(httpcore.WriteError):
            self._flush(sock)
        # TLS may hold decrypted bytes that poll() cannot see.
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        return self._io(
            sock,
            functools.partial(sock.recv, max_bytes),
            select.POLLIN,
            wait_first=not pending,
            timeout=timeout,
            expired=httpcore.ReadTimeout,
            failed=httpcore.ReadError,
        )

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._sock is None:
            self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))
            return
        _bounded(timeout, httpcore.WriteTimeout)  # no write starts after the deadline
        if buffer:
            self._unsent.append(buffer)
            self._write_timeout = timeout

    def _flush(self, sock: socket.socket) -> None:
        """Send what ``write`` held back; each ``send()`` within the write timeout (not
        the whole request: a receiver that reads slowly gets the timeout per send, and
        the attempt's deadline over all of them)."""
        if not self._unsent:
            return
        view = memoryview(b"".join(self._unsent))
        self._unsent.clear()
        while view:
            sent = self._io(
                sock,
                functools.partial(sock.send, view),
                select.POLLOUT,
                wait_first=False,
                timeout=self._write_timeout,
                expired=httpcore.WriteTimeout,
                failed=httpcore.WriteError,
            )
            view = view[sent:]

    @staticmethod
    def _io(
        sock: socket.socket,
        operation: Callable[[], Any],
        events: int,
        *,
        wait_first: bool,
        timeout: float | None,
        expired: type[httpcore.TimeoutException],
        failed: type[httpcore.NetworkError],
    ) -> Any:
        """Run ``operation`` on the non-blocking ``sock``, waiting in ``poll()`` for the
        socket to be ready (first if ``wait_first``, else only when it is not): at most
        ``timeout``, and never past the attempt deadline."""
        wait = wait_first
        while True:
            remaining = _bounded(timeout, expired)
            if wait:
                poller = select.poll()
                poller.register(sock, events)
                ms = None if remaining is None else math.ceil(remaining * 1000)
                if not poller.poll(ms):
                    raise expired(f"timed out after {remaining}s")
            try:
                return operation()
            except ssl.SSLWantReadError:
                events = select.POLLIN
            except ssl.SSLWantWriteError:
                events = select.POLLOUT
            except BlockingIOError:
                pass
            except OSError as exc:
                raise failed(str(exc) or type(exc).__name__) from exc
            wait = True

    def close(self) -> None:
        self._unsent.clear()
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore network backend that resolves once, checks, and connects to the IP.

    Rule for names with several addresses: if ANY resolved address is refused, the
    connection is refused. Skipping the bad ones would also be safe (we only ever
    connect to checked addresses), but a name that mixes public and internal
    addresses is a misconfiguration or a rebinding attempt, and failing loudly
    (and identically on every attempt) is easier to reason about. The remaining
    addresses are tried in resolver order, each connect bounded by the connect
    timeout and the attempt deadline.

    Names are looked up by a :class:`~rest_hooks.delivery.resolver.BoundedResolver`, and
    the caller stops waiting at the connect timeout or the deadline, whichever comes
    first. A lookup that times out or fails is the target's failure (``ConnectTimeout``,
    ``ConnectError``); one that could not start because hanging names of others took
    every lookup raises :class:`ResolverBusy`, which says nothing about the target.
    """

    def __init__(self, policy: AddressPolicy, resolver: BoundedResolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.SyncBackend()

    def resolve(self, host: str, port: int, timeout: float | None = None) -> list[IPAddress]:
        """Resolve ``host`` and check every address; raise if any is refused."""
        budget = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            addresses = self._resolver.resolve(host, port, budget)
        except ResolverBusy:
            raise
        except ResolutionTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except ResolutionError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        check_addresses(self._policy, host, addresses)
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.resolve(host, port, timeout)
        last_error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                # A literal IP: SyncBackend's create_connection() does no DNS for it.
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_bounded(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                logger.debug("Could not connect to %s (%s) port %d: %s", host, address, port, exc)
                last_error = exc
                continue
            logger.debug("Connected to %s (%s) port %d.", host, address, port)
            return _DeadlineStream(stream)
        assert last_error is not None
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never delivered over Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# -- the client ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parse_target(url: str, https_only: bool) -> tuple[httpcore.URL, bytes, str]:
    """The URL as httpcore sends it, its Host header, and its host for log lines (no
    path, query or secrets).

    Raises ValueError (``check_url``) or ``httpx.InvalidURL``. Parsing a URL costs a tenth
    of a request's CPU, and the busiest targets get request after request: their URLs are
    remembered. Few of them: a fan-out to thousands of hooks, each once, would only churn
    a large cache (the benchmark's worker RSS grew 1.5 MiB more with 4,096 entries).
    """
    check_url(url, https_only=https_only)
    parsed = httpx.URL(url)  # IDNA and percent-encoding, as httpx would send it
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return target, parsed.netloc, parsed.host


class DeliveryClient:
    """POSTs webhook bodies; one instance per worker process, shared by its threads.

    Holds one connection pool (:mod:`rest_hooks.delivery.pool`, thread-safe) whose
    connections are kept alive per origin, so a busy receiver costs one TLS handshake,
    not one per delivery. ``resolver`` replaces ``getaddrinfo`` (tests, custom DNS).
    """

    def __init__(self, options: HttpOptions, *, resolver: Resolver | None = None) -> None:
        self.options = options
        self._backend = PinnedBackend(
            options.policy,
            BoundedResolver(
                resolver or resolve_host,
                max_lookups=options.max_lookups,
                max_hung_per_domain=options.max_hung_lookups_per_domain,
            ),
        )
        # httpcore, not httpx.Client: a client's request and response models, cookie jar
        # and redirect logic cost as much CPU as the request itself, and a delivery wants
        # none of them (no cookies, no redirects, no proxy from the environment).
        self._pool = ConnectionPool(
            network_backend=self._backend,
            ssl_context=(
                httpx.create_ssl_context(trust_env=False)
                if options.ssl_context is None
                else options.ssl_context
            ),
            max_connections=options.max_connections,
            max_idle=options.max_keepalive_connections,
            keepalive_expiry=options.keepalive_expiry,
        )
        self._timeouts = {
            "connect": options.connect_timeout,
            "read": options.read_timeout,
            "write": options.write_timeout,
            # Waiting for a pooled connection happens before any stream exists.
            "pool": min(options.pool_timeout, options.deadline),
        }
        self._headers = [
            (b"User-Agent", options.user_agent.encode()),
            (b"Accept-Encoding", b"identity"),
        ]

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpResult:
        """Make one attempt: POST ``body`` to ``url`` and return the (capped) response.

        Raises :class:`DeliveryError` when there is no HTTP response to return.
        Redirects are returned as results, never followed: the receiver must be the
        URL the subscriber registered.
        """
        try:
            target, netloc, host = _parse_target(url, self.options.https_only)
        except ValueError as exc:
            raise DeliveryError("refused", str(exc)) from exc
        except httpx.InvalidURL as exc:
            raise DeliveryError("refused", f"invalid URL: {exc}") from exc
        started = time.monotonic()
        deadline = started + self.options.deadline
        token = _ATTEMPT_DEADLINE.set(deadline)
        try:
            request = httpcore.Request(
                "POST",
                target,
                headers=[
                    (b"Host", netloc),
                    (b"Content-Length", b"%d" % len(body)),
                    *self._headers,
                    *((k.encode(), v.encode()) for k, v in headers.items()),
                ],
                content=body,
                extensions={"timeout": self._timeouts},
            )
            with self._pool.stream(request) as response:
                content, truncated = self._read_capped(response, deadline)
        except TargetRefused as exc:
            raise DeliveryError("refused", exc.reason) from exc
        except ResolverBusy as exc:
            raise DeliveryError("busy", str(exc)) from exc
        except httpcore.TimeoutException as exc:
            raise attempt_failed("timeout", host, exc, started) from exc
        except httpcore.NetworkError as exc:
            raise attempt_failed("connect", host, exc, started) from exc
        except (httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise attempt_failed("protocol", host, exc, started) from exc
        finally:
            _ATTEMPT_DEADLINE.reset(token)
        headers = httpx.Headers(response.headers)
        return attempt_answered(host, response.status, headers, content, truncated, started)

    def _read_capped(self, response: httpcore.Response, deadline: float) -> tuple[bytes, bool]:
        """Read at most ``max_response_bytes`` of the raw body; say whether there was more."""
        limit = self.options.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_stream():
            if size + len(chunk) > limit:
                chunks.append(chunk[: limit - size])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() >= deadline:
                raise httpcore.ReadTimeout("the attempt deadline has passed")
        return b"".join(chunks), False

    def close(self) -> None:
        """Close pooled connections (a lookup in progress ends on its own)."""
        self._pool.close()

    def __enter__(self) -> DeliveryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
