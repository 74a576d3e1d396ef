"""What one webhook delivery attempt is given, and what it comes back with.

Webhook targets are chosen by users, so every attempt is a request to an untrusted
server from inside the operator's network. The client that makes it,
:class:`~rest_hooks.delivery.async_http.AsyncDeliveryClient`, is configured by
:class:`HttpOptions` (timeouts, the per-attempt deadline, the response-size cap, the
:class:`~rest_hooks.security.network.AddressPolicy`, connection limits) and ends every
attempt in an :class:`HttpResult` (the receiver answered) or a :class:`DeliveryError`
(it did not, and why), both logged through :func:`attempt_answered` and
:func:`attempt_failed`. :func:`check_addresses` is the address check every resolved
(or literal) address of a target goes through before anything connects to it.

There is no Django here: settings arrive as :class:`HttpOptions`.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import httpx

from rest_hooks.security.network import AddressPolicy, IPAddress, TargetRefused

__all__ = [
    "DeliveryError",
    "DeliveryErrorKind",
    "HttpOptions",
    "HttpResult",
    "attempt_answered",
    "attempt_failed",
    "check_addresses",
]

logger = logging.getLogger(__name__)

DeliveryErrorKind: TypeAlias = Literal["timeout", "connect", "refused", "protocol", "busy"]


# -- options and results -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """Everything the client needs to know, as plain values.

    The timeouts bound single operations: ``connect_timeout`` a host name lookup, a TCP
    connect or a TLS handshake, ``read_timeout`` one read, ``pool_timeout`` the wait for a
    free connection (aiohttp has no write timeout: the deadline bounds the writes).
    ``deadline`` bounds the whole attempt, which is
    what protects the event loop's capacity from receivers that answer slowly but
    steadily. ``ssl_context`` replaces the default verification (certifi bundle, host
    name checking), e.g. to trust a private CA. ``keepalive_expiry`` is kept short
    (httpx's default) because many servers drop idle connections after a few seconds,
    and reusing one they have just closed fails the attempt. ``max_connections`` bounds
    the requests in flight of a process, ``max_connections_per_host`` those of one
    origin (0: no bound of its own; the flow-control gate bounds each
    target's requests in flight). ``max_lookups`` bounds the host name lookups running
    at once (a thread each), ``max_hung_lookups_per_domain`` those of one registered
    domain that nobody waits for any more (:mod:`rest_hooks.delivery.resolver`).
    """

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    pool_timeout: float = 5.0
    deadline: float = 30.0
    max_response_bytes: int = 64 * 1024
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    user_agent: str = "rest-hooks"
    max_connections: int = 100
    max_connections_per_host: int = 0
    keepalive_expiry: float = 5.0
    max_lookups: int = 64
    max_hung_lookups_per_domain: int = 4
    ssl_context: ssl.SSLContext | None = None
    #: Refuse ``http://`` targets (a final failure, like a refused address).
    https_only: bool = False

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "pool_timeout"):
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


# -- the address check ---------------------------------------------------------------------


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
