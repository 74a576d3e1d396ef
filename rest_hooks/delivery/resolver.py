"""Host name resolution for deliveries, where no hanging name can starve another.

``getaddrinfo`` has no timeout, and a target's host name is chosen by its subscriber: a
name whose DNS server never answers holds the thread looking it up until the system
resolver gives up, tens of seconds later. :class:`BoundedResolver` runs each lookup on a
thread of its own, so that its caller can stop waiting at its own time limit, and bounds
what hanging names can take from everyone else:

* Literal addresses (``203.0.113.9``, ``::1``, and the legacy spellings ``2130706433``,
  ``0x7f.1``, read exactly as ``getaddrinfo`` reads them) need no lookup, no thread and
  no resolver.
* A lookup of a name already being looked up joins it instead of starting another
  (single flight per host and port), so a name that hangs holds one thread however many
  deliveries wait for it.
* A lookup that goes on after every caller stopped waiting for it *hangs*. At most
  ``max_hung_per_domain`` hang at once for the names of one registered domain
  (``a.evil.example`` and ``b.evil.example`` share ``evil.example``; the Public Suffix
  List decides, so ``evil.co.uk`` and ``shop.co.uk`` do not); while they do, a lookup of
  another name of that domain fails at once. Lookups that answer are never limited this
  way: a fan-out to many names of one domain runs as fast as before.
* At most ``max_lookups`` run in all, each on a thread that ends with its lookup. When
  they are all taken, a lookup does not queue behind hanging names: it fails at once.

The errors tell whose failure it was. :class:`ResolutionFailed` (or the caller's own
time limit passing): the host's own lookup ran (or was joined) and failed, or did not
answer in time; that is the target's failure. :class:`ResolverBusy`: the lookup never
started, as every thread, or every place for a hanging lookup of the host's domain, was
taken; that says nothing about the target.

One instance serves a process: :meth:`BoundedResolver.start` returns a
``concurrent.futures.Future`` that an event loop can await
(``asyncio.wait_for(asyncio.wrap_future(future), timeout)`` cancels it when it stops
waiting, which is how the resolver tells a hanging lookup).
"""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from publicsuffixlist import PublicSuffixList

from rest_hooks.security.network import IPAddress

__all__ = [
    "BoundedResolver",
    "ResolutionError",
    "ResolutionFailed",
    "Resolver",
    "ResolverBusy",
    "literal_addresses",
    "registered_domain",
    "resolve_host",
]

logger = logging.getLogger(__name__)

#: ``resolver(host, port)`` returns the addresses to try, in order. It may block.
Resolver: TypeAlias = Callable[[str, int], Sequence[IPAddress]]

_Key: TypeAlias = tuple[str, int]


class ResolutionError(Exception):
    """A host name could not be resolved; ``str()`` says why and names the host."""


class ResolverBusy(ResolutionError):
    """The lookup never started: no thread, or no place for the host's domain, was free."""


class ResolutionFailed(ResolutionError):
    """The host's own lookup failed, or found no address."""


def _addresses(infos: Sequence[tuple[Any, ...]]) -> list[IPAddress]:
    """The IPv4 and IPv6 addresses of ``getaddrinfo`` results, in order, without duplicates."""
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Resolve the name ``host`` with ``getaddrinfo``, like the kernel's resolver would.

    The default :data:`Resolver`. It blocks for as long as the system resolver takes.
    """
    return _addresses(
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    )


def literal_addresses(host: str, port: int) -> list[IPAddress] | None:
    """``host`` read as an IP address, exactly as ``getaddrinfo`` would; None for a name.

    ``AI_NUMERICHOST`` never asks DNS, so this returns at once. It also reads the legacy
    numeric spellings (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) as the kernel would,
    which lets the address policy judge the real address instead of the text.
    """
    try:
        infos = socket.getaddrinfo(
            host,
            port,
            type=socket.SOCK_STREAM,
            proto=socket.IPPROTO_TCP,
            flags=socket.AI_NUMERICHOST,
        )
    except (OSError, UnicodeError):
        return None
    return _addresses(infos)


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    # Read once per process, on the first name looked up (some 40 ms).
    return PublicSuffixList()


def registered_domain(host: str) -> str:
    """The domain ``host`` was registered under (``evil.co.uk`` for ``a.b.evil.co.uk``);
    ``host`` itself when it has none (``localhost``, a public suffix)."""
    host = host.lower().rstrip(".")
    return _public_suffixes().privatesuffix(host) or host


_Addresses: TypeAlias = concurrent.futures.Future[list[IPAddress]]


class _Lookup:
    """One lookup in progress, and the callers waiting for it (a future each)."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.callers: set[_Addresses] = set()


class BoundedResolver:
    """Resolves host names for a process, within the bounds above.

    ``resolver`` does the lookups (``getaddrinfo`` by default; tests and custom DNS
    replace it). ``max_lookups`` bounds the threads looking names up,
    ``max_hung_per_domain`` the hanging lookups of one registered domain.
    """

    def __init__(
        self,
        resolver: Resolver = resolve_host,
        *,
        max_lookups: int = 64,
        max_hung_per_domain: int = 4,
    ) -> None:
        if max_lookups < 1 or max_hung_per_domain < 1:
            raise ValueError("max_lookups and max_hung_per_domain must be at least 1")
        self._resolver = resolver
        self._max_lookups = max_lookups
        self._max_hung_per_domain = max_hung_per_domain
        self._running: dict[_Key, _Lookup] = {}
        self._lock = threading.Lock()

    def start(self, host: str, port: int) -> _Addresses:
        """Look ``host`` up, or join the lookup of it already running; cancel the future
        when no longer waiting for it.

        A literal address comes back in a future already done. Raises
        :class:`ResolverBusy` when the lookup cannot start. The future's result is the
        addresses; its exception, a :class:`ResolutionFailed`.
        """
        caller: _Addresses = concurrent.futures.Future()
        literal = literal_addresses(host, port)
        if literal is not None:
            caller.set_result(literal)
            return caller
        key = (host.lower(), port)
        domain = registered_domain(host)
        with self._lock:
            lookup = self._running.get(key)
            starts = lookup is None
            if lookup is None:
                self._check_room(host, domain)
                lookup = self._running[key] = _Lookup(domain)
            lookup.callers.add(caller)
        caller.add_done_callback(functools.partial(self._stop_waiting, lookup))
        if starts:
            thread = threading.Thread(
                target=self._run,
                args=(key, lookup, host, port),
                name=f"rest-hooks-dns {domain}",
                daemon=True,  # a hanging lookup never holds up the process's exit
            )
            try:
                thread.start()
            except RuntimeError as exc:  # the system allows no more threads
                busy = ResolverBusy(f"cannot resolve {host!r} now: {exc}")
                self._finish(key, lookup, [], busy)  # for those who joined meanwhile too
                raise busy from exc
        return caller

    def _check_room(self, host: str, domain: str) -> None:
        """Raise :class:`ResolverBusy` if no new lookup of ``host`` may start (lock held)."""
        if len(self._running) >= self._max_lookups:
            raise ResolverBusy(
                f"cannot resolve {host!r} now: all {self._max_lookups} lookups of this "
                "process are taken by names that have not answered yet",
            )
        hung = sum(
            1 for other in self._running.values() if other.domain == domain and not other.callers
        )
        if hung >= self._max_hung_per_domain:
            raise ResolverBusy(
                f"cannot resolve {host!r} now: {hung} lookups of other names of {domain} "
                "have not answered yet",
            )

    def _stop_waiting(self, lookup: _Lookup, caller: _Addresses) -> None:
        with self._lock:
            lookup.callers.discard(caller)

    def _run(self, key: _Key, lookup: _Lookup, host: str, port: int) -> None:
        """Do one lookup, on its own thread."""
        started = time.monotonic()
        addresses: list[IPAddress] = []
        error: BaseException | None = None
        try:
            addresses = list(self._resolver(host, port))
        except (OSError, UnicodeError) as exc:
            error = ResolutionFailed(f"cannot resolve {host!r}: {exc}")
        except Exception as exc:  # a custom resolver's bug: its callers see it
            error = exc
        if error is None and not addresses:
            error = ResolutionFailed(f"{host!r} did not resolve to any address")
        self._finish(key, lookup, addresses, error)
        logger.debug("Looked %s up in %.3fs.", host, time.monotonic() - started)

    def _finish(
        self, key: _Key, lookup: _Lookup, addresses: list[IPAddress], error: BaseException | None
    ) -> None:
        """End ``lookup``: free its place and answer every caller still waiting."""
        with self._lock:
            del self._running[key]
            callers = list(lookup.callers)
        for caller in callers:
            # False if it was cancelled meanwhile; once running it can no longer be.
            if caller.set_running_or_notify_cancel():
                if error is None:
                    caller.set_result(addresses)
                else:
                    caller.set_exception(error)
