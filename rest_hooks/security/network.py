"""Which webhook targets the delivery workers may talk to.

Webhook URLs are supplied by users, and the workers that POST to them run inside the
operator's network. Without a policy, a subscriber could point a hook at
``http://169.254.169.254/`` (cloud credentials), ``http://127.0.0.1:6379/`` (the
broker) or any internal service, and the workers would happily reach it for them
(server-side request forgery). This module decides, for one IP address, whether the
workers may connect to it, and checks the syntax of a URL before it is stored.

It deliberately knows nothing of Django or of DNS: the HTTP client resolves host
names itself, exactly once per connection, and asks :class:`AddressPolicy` about every
address it is about to use (see ``rest_hooks.delivery.http``). ``check_url`` is a
friendly early check for forms and APIs (given a policy, it judges a host written as
an IP address, in any spelling, without asking DNS); the security boundary is the check
made on the resolved address at connect time, since URL parsers disagree with each other.

The refused ranges are spelled out in tables below rather than taken from
``ipaddress``'s ``is_global``/``is_private``: those changed between Python patch
releases and, in 3.11, consider multicast and 6to4 space "global". Explicit tables
make the behaviour identical on every interpreter and easy to audit.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final, TypeAlias
from urllib.parse import urlsplit

__all__ = [
    "AddressPolicy",
    "IPAddress",
    "IPNetwork",
    "TargetRefused",
    "check_url",
    "literal_address",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network


class TargetRefused(Exception):
    """The policy forbids connecting to this target.

    Refusal is final: retrying the same URL later will be refused again, so callers
    should fail the delivery instead of scheduling a retry. ``reason`` is a sentence
    meant for humans (delivery logs, admin pages), e.g. "127.0.0.1 is a loopback
    address".
    """

    def __init__(self, reason: str, address: IPAddress | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.address = address

    @property
    def network(self) -> IPNetwork | None:
        """The narrowest network that lets ``address`` through: itself, /32 or /128."""
        if self.address is None:
            return None
        return ip_network((int(self.address), self.address.max_prefixlen))


def _v4(cidr: str) -> IPv4Network:
    return IPv4Network(cidr)


def _v6(cidr: str) -> IPv6Network:
    return IPv6Network(cidr)


# First match wins, so more specific entries come before the blocks containing them.
# Sources: IANA IPv4/IPv6 Special-Purpose Address Registries, RFC 6890 and follow-ups.
_IPV4_REFUSED: Final[tuple[tuple[IPv4Network, str], ...]] = (
    (_v4("0.0.0.0/32"), "the unspecified address"),
    (_v4("0.0.0.0/8"), "in the 'this network' block 0.0.0.0/8"),
    (_v4("10.0.0.0/8"), "a private address (RFC 1918)"),
    (_v4("100.64.0.0/10"), "a carrier-grade NAT shared address (RFC 6598)"),
    (_v4("127.0.0.0/8"), "a loopback address"),
    (_v4("169.254.169.254/32"), "the cloud metadata service address (link-local)"),
    (_v4("169.254.0.0/16"), "a link-local address"),
    (_v4("172.16.0.0/12"), "a private address (RFC 1918)"),
    (_v4("192.0.0.0/24"), "an IETF protocol assignment address (192.0.0.0/24)"),
    (_v4("192.0.2.0/24"), "a documentation address (TEST-NET-1)"),
    (_v4("192.88.99.0/24"), "a 6to4 relay anycast address (deprecated, RFC 7526)"),
    (_v4("192.168.0.0/16"), "a private address (RFC 1918)"),
    (_v4("198.18.0.0/15"), "a benchmarking address (RFC 2544)"),
    (_v4("198.51.100.0/24"), "a documentation address (TEST-NET-2)"),
    (_v4("203.0.113.0/24"), "a documentation address (TEST-NET-3)"),
    (_v4("224.0.0.0/4"), "a multicast address"),
    (_v4("255.255.255.255/32"), "the limited broadcast address"),
    (_v4("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"),
)

_IPV6_REFUSED: Final[tuple[tuple[IPv6Network, str], ...]] = (
    (_v6("::/128"), "the unspecified address"),
    (_v6("::1/128"), "a loopback address"),
    (_v6("64:ff9b:1::/48"), "a local-use NAT64 address (RFC 8215)"),
    (_v6("100::/64"), "a discard-only address (RFC 6666)"),
    (_v6("2001::/32"), "a Teredo tunnel address"),
    (_v6("2001:2::/48"), "a benchmarking address (RFC 5180)"),
    (_v6("2001:10::/28"), "a deprecated ORCHID address"),
    (_v6("2001::/23"), "an IETF protocol assignment address (2001::/23)"),
    (_v6("2001:db8::/32"), "a documentation address (2001:db8::/32)"),
    (_v6("3fff::/20"), "a documentation address (3fff::/20)"),
    (_v6("fc00::/7"), "a private (unique local) address"),
    (_v6("fe80::/10"), "a link-local address"),
    (_v6("fec0::/10"), "a deprecated site-local address"),
    (_v6("ff00::/8"), "a multicast address"),
)

# The well-known NAT64 prefix is globally reachable: an IPv6-only host behind DNS64
# reaches IPv4-only receivers through it, so it is allowed when the IPv4 address it
# embeds is. Everything else outside 2000::/3 is not global unicast.
_NAT64_WELL_KNOWN: Final = _v6("64:ff9b::/96")
_NAT64_LOCAL: Final = _v6("64:ff9b:1::/48")
_GLOBAL_UNICAST_V6: Final = _v6("2000::/3")


def _describe_v4(ip: IPv4Address) -> str | None:
    """Why an IPv4 address is not public unicast, or None when it is."""
    for network, description in _IPV4_REFUSED:
        if ip in network:
            return description
    return None


def _describe_v6(ip: IPv6Address) -> str | None:
    """Why an IPv6 address (ignoring any embedded IPv4) is not public unicast."""
    for network, description in _IPV6_REFUSED:
        if ip in network:
            return description
    if ip in _NAT64_WELL_KNOWN:
        return None
    if ip not in _GLOBAL_UNICAST_V6:
        return "outside the global unicast range 2000::/3"
    return None


def _show(ip: IPAddress) -> str:
    """``ip`` as people write it (``::ffff:127.0.0.1``, not ``::ffff:7f00:1``)."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def _embedded_ipv4(ip: IPv6Address) -> list[tuple[str, IPv4Address]]:
    """IPv4 addresses an IPv6 address carries, labelled with the embedding form.

    A stack, translator or tunnel may turn these into IPv4 traffic to the embedded
    address, so an embedded loopback/private address is as dangerous as the plain one.
    """
    low32 = IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return [("an IPv4-mapped address", ip.ipv4_mapped)]
    if ip in _NAT64_WELL_KNOWN:
        return [("a NAT64 address", low32)]
    if ip in _NAT64_LOCAL:
        # RFC 6052 allows other prefix lengths; the /48 is refused outright anyway,
        # the /96 reading only makes the reason more precise.
        return [("a local-use NAT64 address", low32)]
    if ip.sixtofour is not None:
        return [("a 6to4 address", ip.sixtofour)]
    if ip.teredo is not None:
        server, client = ip.teredo
        return [("a Teredo address", server), ("a Teredo address", client)]
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return [("an IPv4-compatible address", low32)]
    return []


@dataclass(frozen=True)
class AddressPolicy:
    """Decides whether the workers may open a connection to an IP address.

    By default only globally routable public unicast addresses are allowed.

    ``allow_private=True`` disables the policy entirely; it exists for development
    and for deployments where every subscriber is trusted. ``allowed_networks``
    is the narrower tool: it opens exceptions for those networks only (e.g. one
    internal subnet that hosts trusted receivers), while everything else stays
    refused. An IPv6 form that embeds an IPv4 address inside an allowed network
    (``::ffff:10.1.2.3``) is allowed too, since it reaches the same host.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(
        cls, *, allow_private: bool = False, allowed_networks: Iterable[str | IPNetwork] = ()
    ) -> AddressPolicy:
        """Build a policy from plain settings values such as ``["10.1.0.0/16"]``.

        Networks are parsed strictly so that a typo like ``10.1.2.3/16`` fails at
        start-up instead of silently opening a different range.
        """
        networks = tuple(
            ip_network(net) if isinstance(net, str) else net for net in allowed_networks
        )
        return cls(allow_private=allow_private, allowed_networks=networks)

    def check(self, ip: IPAddress) -> None:
        """Raise :class:`TargetRefused` unless the workers may connect to ``ip``."""
        if self.allow_private:
            return
        reason = self._refusal_reason(ip)
        if reason is not None:
            raise TargetRefused(reason, address=ip)

    def is_allowed(self, ip: IPAddress) -> bool:
        """Whether :meth:`check` would accept ``ip``."""
        return self.allow_private or self._refusal_reason(ip) is None

    def _in_allowed_networks(self, ip: IPAddress) -> bool:
        # `in` between different IP versions is not an error in every Python
        # version, so the versions are compared explicitly.
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)

    def _refusal_reason(self, ip: IPAddress) -> str | None:
        if self._in_allowed_networks(ip):
            return None
        if isinstance(ip, IPv4Address):
            description = _describe_v4(ip)
            return None if description is None else f"{ip} is {description}"
        shown = _show(ip)
        for form, embedded in _embedded_ipv4(ip):
            if self._in_allowed_networks(embedded):
                continue
            description = _describe_v4(embedded)
            if description is not None:
                return f"{shown} is {form} embedding {embedded}, which is {description}"
        if ip.ipv4_mapped is not None:
            # A mapped address is the IPv4 address on the wire; nothing more to check.
            return None
        description = _describe_v6(ip)
        return None if description is None else f"{shown} is {description}"


def literal_address(host: str) -> IPAddress | None:
    """The IP address ``host`` is, in any spelling the system resolver reads as one
    (``127.0.0.1``, ``127.1``, ``0x7f000001``, ``2130706433``, ``::ffff:127.0.0.1``);
    None for a name.

    ``AI_NUMERICHOST`` asks no DNS server: this is what ``getaddrinfo`` makes of the same
    host when the HTTP client resolves it at delivery time.
    """
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return ip_address(str(infos[0][4][0]))


def check_url(
    url: str,
    *,
    https_only: bool = False,
    max_length: int = 2048,
    policy: AddressPolicy | None = None,
) -> None:
    """Reject webhook URLs that are malformed or that the workers must not use.

    Syntax only, no DNS: this gives subscribers an immediate, clear error when they
    register a hook. With a ``policy``, a host that is an IP address is judged too
    (raising :class:`TargetRefused`); a name is not resolved. It is not the SSRF defence
    (a host name can resolve to anything later); that is the address check at connect
    time.

    User info is refused because credentials in URLs end up in logs and admin
    pages, and because ``http://trusted@evil/`` is a classic way of confusing
    whoever reads the URL.
    """
    if len(url) > max_length:
        raise ValueError(f"URL is longer than {max_length} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed bracket
        raise ValueError(f"URL cannot be parsed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = parts.scheme or "(none)"
        raise ValueError(f"URL scheme must be http or https, not {shown!r}")
    if https_only and scheme != "https":
        raise ValueError("URL must use https")
    if "@" in parts.netloc:
        raise ValueError("URL must not contain user info (user:password@)")
    if not parts.hostname:
        raise ValueError("URL has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        written = parts.netloc.rpartition("]")[2].rpartition(":")[2]
        raise ValueError(f"URL has an invalid port {written!r}: a port is 1 to 65535")
    if policy is not None:
        address = literal_address(parts.hostname)
        if address is not None:
            policy.check(address)
