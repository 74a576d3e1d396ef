"""Verifying our deliveries in a receiver built with Django: the ``@verify_webhook`` decorator.

::

    from rest_hooks.security.django import verify_webhook

    @verify_webhook(settings.BOOKSTORE_HOOK_SECRET)  # a whsec_ secret or a whpk_ public key
    def book_added(request):
        book = request.webhook["data"]  # the verified, parsed JSON body
        ...
        return HttpResponse(status=204)

This module imports Django; :mod:`rest_hooks.security` itself does not, and does not
import this module either.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar, cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import (
    HttpRequest,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseServerError,
)
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from rest_hooks.security.signing import (
    DEFAULT_TOLERANCE,
    InvalidSecretError,
    SignatureError,
    check_tolerance,
    verify,
)

__all__ = ["verify_webhook"]

logger = logging.getLogger(__name__)

#: One key (a ``whsec_`` secret or a ``whpk_`` public key) or several during a rotation.
Secrets: TypeAlias = str | Sequence[str]
#: What :func:`verify_webhook` accepts: keys, or a function of the request returning them.
SecretSource: TypeAlias = (
    Secrets | Callable[[HttpRequest], Secrets] | Callable[[HttpRequest], Awaitable[Secrets]]
)

_View = TypeVar("_View", bound=Callable[..., Any])

_TEXT = "text/plain; charset=utf-8"


def verify_webhook(
    secret: SecretSource, *, tolerance: int = DEFAULT_TOLERANCE
) -> Callable[[_View], _View]:
    """Decorate a view so that it only ever sees authentic, fresh deliveries.

    ``secret`` is what :func:`rest_hooks.security.verify` takes (a ``whsec_`` secret, a
    ``whpk_`` public key, or a list of them during a rotation), or a callable taking the
    request and returning that, to look the key up per tenant; it may raise ``Http404``
    for an unknown tenant. With an ``async def`` view the callable may be ``async def``
    too; a plain one then runs in a thread (``sync_to_async``), so it may use the ORM.

    The decorated view:

    - answers anything but ``POST`` with 405;
    - verifies ``request.body`` against ``request.headers`` (``tolerance`` seconds of
      clock skew, default 300); a delivery that fails is answered 400 with a short
      reason, logged at INFO on the ``rest_hooks.security.django`` logger, and never
      reaches the view;
    - answers 500 (logged at ERROR) if the key itself is unusable, since that is the
      receiver's misconfiguration, not a bad delivery;
    - otherwise sets ``request.webhook`` to the parsed JSON body and calls the view.

    It is exempt from CSRF protection: deliveries carry no CSRF token, and the
    signature is what authenticates them. Neither responses nor logs ever contain a key.

    A wrong ``tolerance`` raises ``TypeError`` or ``ValueError`` here, at decoration, by
    the rule of :func:`rest_hooks.security.verify` (:func:`check_tolerance`).
    """
    check_tolerance(tolerance)

    def check(request: HttpRequest, secrets: Any) -> HttpResponseBase | None:
        """Return the answer refusing the delivery, or None after setting ``request.webhook``.

        ``secrets`` is whatever the lookup returned; :func:`verify` validates it.
        """
        try:
            payload = verify(request.body, request.headers, secrets, tolerance=tolerance)
        except InvalidSecretError as exc:
            logger.error("cannot verify webhooks at %r, the key is unusable: %s", request.path, exc)
            return HttpResponseServerError("webhook receiver misconfigured", content_type=_TEXT)
        except SignatureError as exc:
            logger.info("rejected a webhook delivery to %r: %s", request.path, exc)
            return HttpResponseBadRequest(f"webhook rejected: {exc}", content_type=_TEXT)
        request.webhook = payload  # type: ignore[attr-defined]
        return None

    def decorator(view: _View) -> _View:
        wrapped: Callable[..., Any]
        if iscoroutinefunction(view):
            lookup = _async_lookup(secret)

            async def async_wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method != "POST":
                    return HttpResponseNotAllowed(["POST"])
                refusal = check(request, await lookup(request))
                if refusal is not None:
                    return refusal
                return await view(request, *args, **kwargs)

            wrapped = async_wrapped
        else:
            if iscoroutinefunction(secret):
                raise TypeError("an async secret lookup needs an async view")

            def sync_wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method != "POST":
                    return HttpResponseNotAllowed(["POST"])
                secrets = secret(request) if callable(secret) else secret
                refusal = check(request, secrets)
                if refusal is not None:
                    return refusal
                return view(request, *args, **kwargs)

            wrapped = sync_wrapped
        return cast(_View, csrf_exempt(functools.wraps(view)(wrapped)))

    return decorator


def _async_lookup(secret: SecretSource) -> Callable[[HttpRequest], Awaitable[object]]:
    """Return an awaitable lookup of the keys for a request, whatever ``secret`` is."""
    if iscoroutinefunction(secret):
        return cast(Callable[[HttpRequest], Awaitable[object]], secret)
    if callable(secret):
        return sync_to_async(secret)

    async def constant(request: HttpRequest) -> object:
        return secret

    return constant
