"""Tests of the ``@verify_webhook`` view decorator (`rest_hooks.security.django`).

Most tests call decorated views with ``RequestFactory``; the ones that need URL
routing (a per-tenant lookup reading the URL) or the CSRF middleware go through the
test client with this module as the URL conf.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import path

from rest_hooks.security import generate_signing_key, public_key_for, signature_headers
from rest_hooks.security.django import verify_webhook

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
SIGNING_KEY = generate_signing_key()
PUBLIC_KEY = public_key_for(SIGNING_KEY)
TENANT_SECRETS = {"acme": SECRET, "globex": OTHER_SECRET}
BODY = b'{"hook": "book.added", "data": {"id": 1}}'
LOGGER = "rest_hooks.security.django"
# Every key whose text must never show up in a response or a log line.
KEY_TEXTS = [key.split("_", 1)[1] for key in (SECRET, OTHER_SECRET, SIGNING_KEY, PUBLIC_KEY)] + [
    "c2hvcnQ"
]


def _echo(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """The receiver's own view: reports what the decorator handed it."""
    return JsonResponse({"webhook": request.webhook, "kwargs": kwargs})  # type: ignore[attr-defined]


def _tenant_secret(request: HttpRequest) -> str:
    assert request.resolver_match is not None
    try:
        return TENANT_SECRETS[request.resolver_match.kwargs["tenant"]]
    except KeyError:
        raise Http404("no such tenant") from None


hmac_view = verify_webhook(SECRET)(_echo)
tenant_view = verify_webhook(_tenant_secret)(_echo)

urlpatterns = [
    path("hooks/plain/", hmac_view),
    path("hooks/<str:tenant>/", tenant_view),
]


@pytest.fixture
def rf() -> RequestFactory:
    return RequestFactory()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _post(
    rf: RequestFactory,
    keys: str | list[str] = SECRET,
    *,
    body: bytes = BODY,
    signed_body: bytes | None = None,
    timestamp: int | None = None,
    drop: str | None = None,
    path: str = "/hooks/plain/",
) -> HttpRequest:
    """A delivery as our sender makes it, optionally altered."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = signature_headers(
        keys, "msg_1", timestamp, body if signed_body is None else signed_body
    )
    if drop is not None:
        headers = {name: value for name, value in headers.items() if drop not in name.lower()}
    return rf.post(path, data=body, content_type="application/json", headers=headers)


def _assert_no_key_leaks(response: HttpResponse, logs: pytest.LogCaptureFixture) -> None:
    text = response.content.decode() + "\n" + logs.text
    for record in logs.records:
        text += "\n" + record.getMessage()
    for key_text in KEY_TEXTS:
        assert key_text not in text


def _reason(response: HttpResponse) -> str:
    return response.content.decode()


# --- accepted deliveries ----------------------------------------------------------


def test_valid_delivery_reaches_the_view(
    rf: RequestFactory, logs: pytest.LogCaptureFixture
) -> None:
    response = hmac_view(_post(rf))
    assert response.status_code == 200
    assert json.loads(response.content) == {"webhook": json.loads(BODY), "kwargs": {}}
    assert not [r for r in logs.records if r.name == LOGGER]
    _assert_no_key_leaks(response, logs)


def test_view_arguments_are_passed_through(rf: RequestFactory) -> None:
    response = hmac_view(_post(rf), pk=7)
    assert json.loads(response.content)["kwargs"] == {"pk": 7}


def test_x_hook_headers_alone_are_enough(rf: RequestFactory) -> None:
    response = hmac_view(_post(rf, drop="webhook-"))
    assert response.status_code == 200


def test_ed25519_delivery_with_a_public_key(rf: RequestFactory) -> None:
    view = verify_webhook(PUBLIC_KEY)(_echo)
    response = view(_post(rf, SIGNING_KEY))
    assert response.status_code == 200
    assert json.loads(response.content)["webhook"] == json.loads(BODY)
    # An HMAC-only delivery does not pass a receiver that holds only the public key.
    response = view(_post(rf, SECRET))
    assert response.status_code == 400
    assert "v1a" in _reason(response)


@pytest.mark.parametrize("signed_with", [[SECRET], [SIGNING_KEY], [OTHER_SECRET, SIGNING_KEY]])
def test_rotation_list_of_mixed_keys(rf: RequestFactory, signed_with: list[str]) -> None:
    view = verify_webhook([SECRET, PUBLIC_KEY])(_echo)
    assert view(_post(rf, signed_with)).status_code == 200


def test_tolerance_is_configurable(rf: RequestFactory) -> None:
    stale = int(time.time()) - 400
    assert verify_webhook(SECRET)(_echo)(_post(rf, timestamp=stale)).status_code == 400
    assert (
        verify_webhook(SECRET, tolerance=600)(_echo)(_post(rf, timestamp=stale)).status_code == 200
    )


@pytest.mark.parametrize(
    ("tolerance", "error"),
    [
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(10**400, ValueError, id="10**400"),
        pytest.param(1.5, TypeError, id="float"),
        pytest.param(True, TypeError, id="True"),
        pytest.param("300", TypeError, id="str"),
    ],
)
def test_nonsensical_tolerance_is_refused_at_decoration(
    tolerance: Any, error: type[Exception]
) -> None:
    # The same rule, and the same exceptions, as verify() itself.
    with pytest.raises(error, match="tolerance"):
        verify_webhook(SECRET, tolerance=tolerance)


# --- refused deliveries -----------------------------------------------------------


@pytest.mark.parametrize(
    ("alteration", "reason"),
    [
        ({"signed_body": b'{"hook": "book.added", "data": {"id": 2}}'}, "no signature matches"),
        ({"keys": OTHER_SECRET}, "no signature matches"),
        ({"keys": OTHER_SECRET, "drop": "webhook-"}, "no signature matches"),
        ({"timestamp": 1_700_000_000}, "before now"),
        ({"timestamp": int(time.time()) + 3600}, "after now"),
        ({"drop": "signature"}, "missing webhook-signature"),
        ({"drop": "id"}, "missing webhook-id"),
        ({"drop": "timestamp"}, "missing webhook-timestamp"),
        ({"drop": "-"}, "missing"),
        ({"body": b"not json", "signed_body": b"not json"}, "not valid UTF-8 JSON"),
    ],
)
def test_bad_delivery_is_answered_400(
    rf: RequestFactory,
    logs: pytest.LogCaptureFixture,
    alteration: dict[str, Any],
    reason: str,
) -> None:
    seen: list[HttpRequest] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse()

    response = verify_webhook(SECRET)(view)(_post(rf, **alteration))
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert reason in _reason(response)
    assert not seen
    records = [r for r in logs.records if r.name == LOGGER]
    assert [r.levelno for r in records] == [logging.INFO]
    assert reason in records[0].getMessage()
    _assert_no_key_leaks(response, logs)


def test_tampered_body_is_rejected(rf: RequestFactory, logs: pytest.LogCaptureFixture) -> None:
    request = _post(rf, body=BODY.replace(b"1", b"2"), signed_body=BODY)
    response = hmac_view(request)
    assert response.status_code == 400
    assert "no signature matches" in _reason(response)
    assert not hasattr(request, "webhook")


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "head", "options"])
def test_other_methods_are_answered_405(rf: RequestFactory, method: str) -> None:
    request = getattr(rf, method)("/hooks/plain/")
    response = hmac_view(request)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_get_with_valid_signature_headers_is_still_405(rf: RequestFactory) -> None:
    headers = signature_headers(SECRET, "msg_1", int(time.time()), b"")
    assert hmac_view(rf.get("/hooks/plain/", headers=headers)).status_code == 405


# --- misconfigured receivers ------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("whsec_c2hvcnQ=", "24 bytes"),
        (SIGNING_KEY, "public key"),
        ([SECRET, SIGNING_KEY], "#1"),
        ([], "no hook secret"),
    ],
)
def test_unusable_key_is_a_500_logged_as_error(
    rf: RequestFactory, logs: pytest.LogCaptureFixture, keys: Any, message: str
) -> None:
    """A bad key is the receiver's fault: no 400 that would blame the delivery."""
    response = verify_webhook(keys)(_echo)(_post(rf))
    assert response.status_code == 500
    assert _reason(response) == "webhook receiver misconfigured"
    records = [r for r in logs.records if r.name == LOGGER]
    assert [r.levelno for r in records] == [logging.ERROR]
    assert message in records[0].getMessage()
    _assert_no_key_leaks(response, logs)


def test_lookup_returning_none_is_a_misconfiguration(rf: RequestFactory) -> None:
    response = verify_webhook(lambda request: None)(_echo)(_post(rf))  # type: ignore[arg-type,return-value]
    assert response.status_code == 500


# --- per-tenant lookup, routing and CSRF (test client) ----------------------------


@override_settings(ROOT_URLCONF=__name__)
@pytest.mark.parametrize(("tenant", "key"), [("acme", SECRET), ("globex", OTHER_SECRET)])
def test_callable_secret_lookup_per_tenant(
    tenant: str, key: str, logs: pytest.LogCaptureFixture
) -> None:
    client = Client()
    body = json.dumps({"tenant": tenant}).encode()
    headers = signature_headers(key, "msg_1", int(time.time()), body)
    response = client.post(
        f"/hooks/{tenant}/", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 200
    assert response.json() == {"webhook": {"tenant": tenant}, "kwargs": {"tenant": tenant}}
    # The other tenant's secret does not open this tenant's endpoint.
    other = "globex" if tenant == "acme" else "acme"
    response = client.post(
        f"/hooks/{other}/", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 400
    _assert_no_key_leaks(response, logs)


@override_settings(ROOT_URLCONF=__name__)
def test_unknown_tenant_lookup_may_raise_404() -> None:
    headers = signature_headers(SECRET, "msg_1", int(time.time()), BODY)
    response = Client().post(
        "/hooks/initech/", BODY, content_type="application/json", headers=headers
    )
    assert response.status_code == 404


@override_settings(
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
)
def test_csrf_exempt(logs: pytest.LogCaptureFixture) -> None:
    client = Client(enforce_csrf_checks=True)
    headers = signature_headers(SECRET, "msg_1", int(time.time()), BODY)
    response = client.post("/hooks/plain/", BODY, content_type="application/json", headers=headers)
    assert response.status_code == 200
    # The check that replaces CSRF still applies: an unsigned POST is refused.
    response = client.post("/hooks/plain/", BODY, content_type="application/json")
    assert response.status_code == 400
    _assert_no_key_leaks(response, logs)


def test_decorated_view_keeps_its_identity() -> None:
    assert hmac_view.__name__ == "_echo"
    assert hmac_view.csrf_exempt is True  # type: ignore[attr-defined]


# --- async views ------------------------------------------------------------------


async def _async_echo(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"webhook": request.webhook})  # type: ignore[attr-defined]


async def _async_lookup(request: HttpRequest) -> list[str]:
    await asyncio.sleep(0)
    return [SECRET, PUBLIC_KEY]


def _sync_lookup(request: HttpRequest) -> str:
    return SECRET


@pytest.mark.parametrize("secret", [SECRET, _sync_lookup, _async_lookup])
def test_async_view(rf: RequestFactory, secret: Any) -> None:
    view = verify_webhook(secret)(_async_echo)
    assert iscoroutinefunction(view)
    response = asyncio.run(view(_post(rf)))
    assert response.status_code == 200
    assert json.loads(response.content) == {"webhook": json.loads(BODY)}
    assert asyncio.run(view(_post(rf, OTHER_SECRET))).status_code == 400
    assert asyncio.run(view(rf.get("/hooks/plain/"))).status_code == 405


def test_async_lookup_needs_an_async_view() -> None:
    with pytest.raises(TypeError, match="async view"):
        verify_webhook(_async_lookup)(_echo)
