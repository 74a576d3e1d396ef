"""Who may read ``/metrics``: a bearer token, an allow-list of client networks, or both.

- ``REST_HOOKS["METRICS_TOKEN"]``: requests must carry ``Authorization: Bearer <token>``
  (compared in constant time).
- ``REST_HOOKS["METRICS_ALLOWED_NETWORKS"]``: the client address (``REMOTE_ADDR``, so the
  proxy's behind a reverse proxy) must be in one of these networks.
- Both set: both must hold. Neither: loopback clients only, so a fresh install shows its
  metrics to nobody else.

Metrics name events and reveal traffic; a refused request learns nothing of why.
"""

from __future__ import annotations

import hmac
from functools import cache
from ipaddress import ip_address, ip_network

from django.http import HttpRequest

from rest_hooks.conf import hook_settings, on_reload
from rest_hooks.security.network import IPAddress, IPNetwork

LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_networks(networks: list[str] | tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """``["10.0.0.0/8", "::1"]`` as networks; ValueError for a malformed entry or one
    with host bits set (``10.0.0.1/8``), as the checks E012 and E014 report at start-up."""
    return tuple(ip_network(n) for n in networks)


@cache
def _allowed_networks() -> tuple[IPNetwork, ...] | None:
    """The networks a client must be in (``[]``: none); None: any, a token guards it."""
    networks = hook_settings.METRICS_ALLOWED_NETWORKS
    if networks is None:
        return None if hook_settings.METRICS_TOKEN else parse_networks(LOOPBACK)
    return parse_networks(networks)


on_reload(_allowed_networks.cache_clear)


def _client_address(request: HttpRequest) -> IPAddress | None:
    try:
        address = ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return mapped or address


def _network_allowed(request: HttpRequest) -> bool:
    networks = _allowed_networks()
    if networks is None:
        return True
    address = _client_address(request)
    return address is not None and any(address in network for network in networks)


def _token_matches(request: HttpRequest) -> bool:
    token = hook_settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = str(token).encode()
    # compare_digest takes as long whatever the first differing byte; a wrong scheme
    # is compared too, so that it takes as long as a wrong token.
    matches = hmac.compare_digest(given.strip().encode(), expected)
    return matches and scheme.lower() == "bearer"


def allowed(request: HttpRequest) -> bool:
    return _token_matches(request) and _network_allowed(request)
