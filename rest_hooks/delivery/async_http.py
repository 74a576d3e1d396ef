"""The delivery client: one webhook delivery attempt, awaited on the event loop.

Webhook targets are chosen by users, so every attempt is a request to an untrusted
server from inside the operator's network. :class:`AsyncDeliveryClient` makes that safe
and bounded (its options, results and errors are :mod:`rest_hooks.delivery.http`'s), and
a request in flight costs a coroutine, not a thread. It sends httpx requests through
:class:`AiohttpTransport`, an httpx transport on an aiohttp session of its own:

* **No SSRF through DNS.** aiohttp asks :class:`CheckedResolver` for the addresses of a
  host name once per new connection (its own DNS cache is off, so nothing answers
  without the check); the resolver looks the name up through the process's
  :class:`~rest_hooks.delivery.resolver.BoundedResolver`, checks every address with the
  :class:`~rest_hooks.security.network.AddressPolicy` (any refused address refuses the
  name: one that mixes public and internal addresses is a misconfiguration or a
  rebinding attempt) and hands aiohttp the checked addresses, which it connects to.
  Nothing resolves the name a second time, so there is no rebinding window between the
  check and the connect; TLS still uses the host name for SNI and certificate
  verification. aiohttp connects to a literal IP without asking any resolver,
  so literal hosts are checked before the request, read as the kernel reads them (the
  legacy spellings, ``2130706433``, ``127.1``, are sent to the address they spell).
* **A hard deadline per attempt**: one ``asyncio.timeout`` around everything (the lookup,
  connect, TLS, sending, the headers and the body), which no slow drip can stretch; within
  it, aiohttp's limits of single operations (a connect, a read).
* **Bounded memory**: at most ``max_response_bytes`` of the body are read, then the
  connection is dropped (aiohttp closes a connection whose body was not read to its end).
* **Nothing from the environment or earlier requests**: no proxy or ``.netrc``
  (``trust_env=False``), no redirects, no cookies kept (aiohttp's jar is a dummy, and no
  ``httpx.AsyncClient`` with a jar of its own is involved), no content decoding.

Keep-alive, the cap on connections (``max_connections``) and on those of one origin
(``max_connections_per_host``) are aiohttp's connector's. A client belongs to one event
loop (:mod:`rest_hooks.delivery.loop`); used on another (a forked child's), it starts
afresh there.

Why not the ``httpx-aiohttp`` package's transport: it sends header names lowercased
(receivers that match ``X-Hook-Signature`` case-sensitively exist), it turns a refused
connection into a ``ConnectTimeout`` and aiohttp's protocol errors into no httpx error
at all, and it reads bodies in fixed 16 KiB pieces. Ours is the same idea, a page long,
with those right.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict

from rest_hooks.delivery.http import (
    DeliveryError,
    HttpOptions,
    HttpResult,
    attempt_answered,
    attempt_failed,
    check_addresses,
)
from rest_hooks.delivery.resolver import (
    BoundedResolver,
    ResolutionFailed,
    Resolver,
    ResolverBusy,
    literal_addresses,
    resolve_host,
)
from rest_hooks.security.network import AddressPolicy, IPAddress, TargetRefused, check_url

__all__ = ["AiohttpTransport", "AsyncDeliveryClient", "CheckedResolver"]

logger = logging.getLogger(__name__)


# -- resolution ------------------------------------------------------------------------------


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver hook: look the name up (bounded), check every address.

    The lookup waits at most ``lookup_timeout`` (the connect timeout; the attempt's
    deadline bounds it too) and is cancelled when nobody waits for it any more, which is
    how the :class:`BoundedResolver` tells a hanging lookup. Its errors are httpx's, or
    :class:`TargetRefused` and :class:`ResolverBusy`; aiohttp lets them all through (none
    is an ``OSError``).
    """

    def __init__(
        self, policy: AddressPolicy, resolver: BoundedResolver, lookup_timeout: float
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._lookup_timeout = lookup_timeout

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        lookup = asyncio.wrap_future(self._resolver.start(host, port))
        try:
            addresses = await asyncio.wait_for(lookup, self._lookup_timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"resolving {host!r} timed out") from exc
        except ResolutionFailed as exc:
            raise httpx.ConnectError(str(exc)) from exc
        check_addresses(self._policy, host, addresses)
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": socket.IPPROTO_TCP,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing to release: lookups in progress end on their own."""


# -- the transport ---------------------------------------------------------------------------

#: aiohttp's errors as httpx's, the first row that matches (the client sorts httpx's).
_ERRORS: tuple[tuple[type[BaseException], type[Exception]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (TimeoutError, httpx.ReadTimeout),  # aiohttp's other timeouts: a read
    (aiohttp.InvalidURL, httpx.InvalidURL),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # closed before answering
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # a body cut short or misframed
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not HTTP/1.1
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, unreachable, TLS
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, OSError) as exc:
        # Anything else: reset, or broken while sending or reading.
        httpx_error = next((h for a, h in _ERRORS if isinstance(exc, a)), httpx.NetworkError)
        raise httpx_error(str(exc) or type(exc).__name__) from exc


@functools.lru_cache(maxsize=16)
def _timeouts(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body, as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool once read to its end; closed if not, so that unread data never
        # reaches the next request.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends through ``session`` (aiohttp's pooling, keep-alive
    and limits), HTTP/1.1 only, never following redirects, header names as given.

    httpx's timeouts map onto aiohttp's: ``connect`` bounds each TCP connect and TLS
    handshake, ``read`` each read, ``pool`` waiting for a free connection *and* making it
    (aiohttp's ``connect``); aiohttp has no write timeout.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        with _as_httpx_errors():
            response = await self._session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=CIMultiDict(
                    # aiohttp writes header lines as UTF-8: these bytes, unchanged.
                    (name.decode("latin-1"), value.decode())
                    for name, value in request.headers.raw
                ),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=_timeouts(timeout.get("connect"), timeout.get("read"), timeout.get("pool")),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        await self._session.close()


# -- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    send_to: str  # the scheme and authority to send to, a literal IP in its standard spelling
    netloc: str  # the Host header
    host: str  # for the address policy's reasons and log lines
    literal: list[IPAddress] | None  # the host's address if it is a literal IP


@dataclass(frozen=True)
class _Target:
    url: httpx.URL  # where to send to
    origin: _Origin


@functools.lru_cache(maxsize=1024)
def _parse_origin(origin: str) -> _Origin:
    """Where to send the requests for URLs of ``origin`` (``scheme://authority``).

    A literal IP in a legacy spelling (``2130706433``, ``127.1``) is sent to its address
    in the standard one, which is all aiohttp connects to; the Host header keeps what the
    subscriber wrote. Raises ``httpx.InvalidURL``. A fan-out sends to thousands of URLs of
    a few origins: reading the host (IDNA, the numeric spellings) is done once an origin.
    """
    parsed = httpx.URL(origin)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = literal_addresses(parsed.host, port)
    send_to = parsed if not literal else parsed.copy_with(host=str(literal[0]))
    return _Origin(
        send_to=str(send_to),
        netloc=parsed.netloc.decode("ascii"),
        host=parsed.host,
        literal=literal,
    )


@functools.lru_cache(maxsize=256)
def _parse_target(url: str, https_only: bool) -> _Target:
    """Where to send a request for ``url``: its origin's address (``_parse_origin``), and
    the rest of it as httpx reads it (percent-encoding).

    Raises ValueError (``check_url``) or ``httpx.InvalidURL``. The busiest targets get
    request after request: their URLs are remembered. Few of them: a fan-out to thousands
    of hooks, each once, would only churn a large cache.
    """
    check_url(url, https_only=https_only)
    scheme, _, rest = url.partition("://")
    # check_url read the same authority: it ends where the path, query or fragment starts.
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    origin = _parse_origin(f"{scheme}://{rest[:end]}")
    return _Target(url=httpx.URL(origin.send_to + rest[end:]), origin=origin)


class AsyncDeliveryClient:
    """POSTs webhook bodies from an event loop; one instance per process, for all its
    coroutines (not thread-safe: use it on its loop only).

    ``resolver`` replaces ``getaddrinfo`` (tests, custom DNS).

    It hands httpx requests to :class:`AiohttpTransport` itself, not through an
    ``httpx.AsyncClient``: the client's cookie jar, header merging, auth and redirect
    logic took two fifths of its CPU (``benchmarks/README.md``), and a delivery wants none of
    them.
    """

    def __init__(self, options: HttpOptions, *, resolver: Resolver | None = None) -> None:
        self.options = options
        self._resolver = BoundedResolver(
            resolver or resolve_host,
            max_lookups=options.max_lookups,
            max_hung_per_domain=options.max_hung_lookups_per_domain,
        )
        self._ssl_context = (
            httpx.create_ssl_context(trust_env=False)
            if options.ssl_context is None
            else options.ssl_context
        )
        self._transport: AiohttpTransport | None = None
        self._transport_loop: asyncio.AbstractEventLoop | None = None
        self._headers = [("User-Agent", options.user_agent), ("Accept-Encoding", "identity")]
        self._extensions = {
            "timeout": {
                "connect": options.connect_timeout,
                "read": options.read_timeout,
                "pool": options.pool_timeout + options.connect_timeout,
            }
        }

    def _transport_here(self) -> AiohttpTransport:
        """The transport of the running loop (aiohttp's session is bound to one)."""
        running = asyncio.get_running_loop()
        if self._transport is None or self._transport_loop is not running:
            self._transport = self._new_transport()
            self._transport_loop = running
        return self._transport

    def _new_transport(self) -> AiohttpTransport:
        options = self.options
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(options.policy, self._resolver, options.connect_timeout),
            use_dns_cache=False,
            ssl=self._ssl_context,
            limit=options.max_connections,
            limit_per_host=options.max_connections_per_host,
            keepalive_timeout=options.keepalive_expiry,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
            # The headers given, no more: not aiohttp's guess of a Content-Type, nor
            # its "Accept: */*".
            skip_auto_headers=("Content-Type", "Accept"),
        )
        return AiohttpTransport(session)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpResult:
        """Make one attempt: POST ``body`` to ``url`` and return the (capped) response.

        Raises :class:`DeliveryError` when there is no HTTP response to return.
        Redirects are returned as results, never followed: the receiver must be the URL
        the subscriber registered.
        """
        try:
            target = _parse_target(url, self.options.https_only)
        except ValueError as exc:
            raise DeliveryError("refused", str(exc)) from exc
        except httpx.InvalidURL as exc:
            raise DeliveryError("refused", f"invalid URL: {exc}") from exc
        origin = target.origin
        host = origin.host
        started = time.monotonic()
        try:
            if origin.literal is not None:
                check_addresses(self.options.policy, host, origin.literal)
            async with asyncio.timeout(self.options.deadline):
                request = httpx.Request(
                    "POST",
                    target.url,
                    # Values as UTF-8 (an event name may be any text); httpx would take
                    # text values as ASCII only.
                    headers=[
                        (name.encode("latin-1"), value.encode())
                        for name, value in (
                            ("Host", origin.netloc),
                            *self._headers,
                            *headers.items(),
                        )
                    ],
                    content=body,
                    extensions=self._extensions,
                )
                response = await self._transport_here().handle_async_request(request)
                try:
                    content, truncated = await self._read_capped(response)
                finally:
                    await response.aclose()
        except TargetRefused as exc:
            raise DeliveryError("refused", exc.reason) from exc
        except ResolverBusy as exc:
            raise DeliveryError("busy", str(exc)) from exc
        except httpx.InvalidURL as exc:  # one httpx took and aiohttp does not
            raise DeliveryError("refused", f"invalid URL: {exc}") from exc
        except TimeoutError as exc:  # only the deadline's: aiohttp's come as httpx's
            overdue = TimeoutError(f"the attempt deadline of {self.options.deadline}s passed")
            raise attempt_failed("timeout", host, overdue, started) from exc
        except httpx.TimeoutException as exc:
            raise attempt_failed("timeout", host, exc, started) from exc
        except httpx.NetworkError as exc:
            raise attempt_failed("connect", host, exc, started) from exc
        except (httpx.ProtocolError, httpx.UnsupportedProtocol) as exc:
            raise attempt_failed("protocol", host, exc, started) from exc
        return attempt_answered(
            host, response.status_code, response.headers, content, truncated, started
        )

    async def _read_capped(self, response: httpx.Response) -> tuple[bytes, bool]:
        """Read at most ``max_response_bytes`` of the raw body; say whether there was more."""
        limit = self.options.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            if size + len(chunk) > limit:
                chunks.append(chunk[: limit - size])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False

    async def aclose(self) -> None:
        """Close the kept-alive connections (on the loop the client was used on)."""
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def __aenter__(self) -> AsyncDeliveryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
