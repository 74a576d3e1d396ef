"""The subscription API: owner scoping, secrets shown once, validation, rotation, throttles."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Delivery, DeliveryAttempt, Event, Hook
from rest_hooks.security.signing import public_jwk, signature_headers, verify

pytestmark = pytest.mark.django_db

TARGET = "https://hooks.example.com/in"
FAST_RETRIES = {"ALLOW_PRIVATE_TARGETS": True, "RETRY_SCHEDULE": [0, 0], "RETRY_JITTER": 0}
NO_RETRIES = {"ALLOW_PRIVATE_TARGETS": True, "RETRY_SCHEDULE": []}


@pytest.fixture(autouse=True)
def fresh_throttles() -> None:
    """Throttle counts live in the cache: each test starts with none."""
    cache.clear()


@pytest.fixture
def client(user: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def other(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="cslewis", password="x")


def hooks_url() -> str:
    return reverse("hook-list")


def hook_url(hook: Any, name: str = "hook-detail") -> str:
    return reverse(name, args=[hook.pk])


def create(client: APIClient, **fields: Any) -> Any:
    return client.post(hooks_url(), {"event": "book.added", "target": TARGET, **fields})


def errors(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, (response.status_code, response.content)
    return dict(response.json())


# -- creating, and the secret shown once ------------------------------------------------------


def test_create_answers_with_the_secret_once_and_no_later_read_shows_it(
    client: APIClient, user: Any
) -> None:
    response = create(client)
    assert response.status_code == 201, response.content
    body = response.json()
    hook = Hook.objects.get(pk=body["id"])
    assert hook.user == user
    assert (body["event"], body["target"], body["active"]) == ("book.added", TARGET, True)
    assert body["secret"] == hook.secret
    assert body["secret"].startswith("whsec_")
    assert body["public_key"] is None

    later = [
        client.get(hooks_url()),
        client.get(hook_url(hook)),
        client.patch(hook_url(hook), {"target": TARGET + "2"}),
    ]
    for reply in later:
        assert reply.status_code == 200, reply.content
        assert hook.secret not in reply.content.decode()
        assert "secret" not in json.dumps(reply.json())


def test_an_ed25519_hook_shows_its_public_key_and_never_its_private_key(
    client: APIClient,
) -> None:
    response = create(client, signing="ed25519")
    assert response.status_code == 201, response.content
    body = response.json()
    hook = Hook.objects.get(pk=body["id"])
    assert hook.secret.startswith("whsk_")
    assert body["secret"] is None
    assert body["public_key"] == hook.public_key
    assert body["public_key"].startswith("whpk_")
    rotated = client.post(hook_url(hook, "hook-rotate-secret"))
    hook.refresh_from_db()
    for reply in (response, rotated, client.get(hook_url(hook))):
        assert "whsk_" not in reply.content.decode()
    assert rotated.json()["public_key"] == hook.public_key != body["public_key"]


def test_the_secret_the_api_gave_verifies_the_deliveries(client: APIClient) -> None:
    secret = create(client).json()["secret"]
    hook = Hook.objects.get()
    headers = signature_headers(hook.signing_secrets(), "msg_1", 1_765_000_000, b'{"a": 1}')
    assert verify(b'{"a": 1}', headers, secret, now=1_765_000_000) == {"a": 1}


# -- owner scoping ----------------------------------------------------------------------------


def test_anonymous_requests_are_refused(user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    anonymous = APIClient()
    replies = [
        anonymous.get(hooks_url()),
        anonymous.post(hooks_url(), {"event": "book.added", "target": TARGET}),
        anonymous.get(hook_url(hook)),
        anonymous.delete(hook_url(hook)),
        anonymous.post(hook_url(hook, "hook-rotate-secret")),
    ]
    assert {reply.status_code for reply in replies} <= {401, 403}
    assert Hook.objects.count() == 1
    assert Hook.objects.get().secret == hook.secret


@pytest.mark.parametrize("staff", [False, True], ids=["another user", "a staff user"])
def test_another_users_hook_is_not_found_whoever_asks(user: Any, other: Any, staff: bool) -> None:
    other.is_staff = other.is_superuser = staff
    other.save()
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    theirs = APIClient()
    theirs.force_authenticate(other)
    assert theirs.get(hooks_url()).json()["results"] == []
    for reply in (
        theirs.get(hook_url(hook)),
        theirs.patch(hook_url(hook), {"target": "https://evil.example.com/"}),
        theirs.delete(hook_url(hook)),
        theirs.post(hook_url(hook, "hook-rotate-secret")),
    ):
        assert reply.status_code == 404, reply.content
        assert hook.secret not in reply.content.decode()
    assert Hook.objects.get(pk=hook.pk).target == TARGET
    assert Hook.objects.get(pk=hook.pk).secret == hook.secret


def test_the_list_shows_the_users_own_hooks_filtered_and_paged(
    client: APIClient, user: Any, other: Any
) -> None:
    mine = [Hook.objects.create(user=user, event="book.added", target=TARGET) for _ in range(55)]
    Hook.objects.create(user=user, event="book.removed", target=TARGET, is_active=False)
    Hook.objects.create(user=other, event="book.added", target=TARGET)

    first = client.get(hooks_url(), {"event": "book.added"}).json()
    second = client.get(first["next"]).json()
    listed = [hook["id"] for hook in first["results"] + second["results"]]
    assert listed == [hook.pk for hook in reversed(mine)]  # newest first, each once
    assert second["next"] is None

    disabled = client.get(hooks_url(), {"active": "false"}).json()["results"]
    assert [hook["event"] for hook in disabled] == ["book.removed"]


@pytest.mark.parametrize(
    "query", [{"event": "book.\x00added"}, {"active": "maybe"}], ids=["NUL", "not a bool"]
)
def test_a_malformed_list_query_is_refused(client: APIClient, query: dict[str, str]) -> None:
    # PostgreSQL refuses NUL in text: a query with one was a server error there.
    assert list(errors(client.get(hooks_url(), query))) == list(query)


def test_delete_unsubscribes(client: APIClient, user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    assert client.delete(hook_url(hook)).status_code == 204
    assert not Hook.objects.exists()
    assert client.get(hook_url(hook)).status_code == 404


def test_put_is_not_offered(client: APIClient, user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    reply = client.put(hook_url(hook), {"event": "book.removed", "target": TARGET})
    assert reply.status_code == 405
    assert Hook.objects.get().event == "book.added"


# -- validation -------------------------------------------------------------------------------


def test_an_event_outside_hook_events_is_refused(client: APIClient) -> None:
    assert errors(create(client, event="book.burned")) == {
        "event": ["Invalid hook event book.burned."]
    }
    assert not Hook.objects.exists()


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("ftp://hooks.example.com/in", "http"),
        ("https://user:pw@hooks.example.com/in", "user"),
        ("https://hooks.example.com:0/in", "port"),
        ("https://hooks.example.com/" + "a" * 300, "255"),
        ("not a url", "URL"),
    ],
)
def test_a_target_the_model_refuses_is_refused(client: APIClient, target: str, says: str) -> None:
    problems = errors(create(client, target=target))
    assert list(problems) == ["target"]
    assert says in " ".join(problems["target"])
    assert not Hook.objects.exists()


@override_settings(REST_HOOKS={"ALLOW_PRIVATE_TARGETS": False})
@pytest.mark.parametrize("target", ["http://127.0.0.1/in", "http://[::1]/in", "http://2130706433/"])
def test_a_private_address_is_refused_unless_the_operator_allows_it(
    client: APIClient, target: str
) -> None:
    problems = errors(create(client, target=target))
    assert "ALLOWED_NETWORKS" in " ".join(problems["target"])


@override_settings(REST_HOOKS={"HTTPS_ONLY": True})
def test_https_only_refuses_http_targets(client: APIClient) -> None:
    assert "target" in errors(create(client, target="http://hooks.example.com/in"))
    assert create(client).status_code == 201


def test_a_malformed_rate_limit_is_refused(client: APIClient) -> None:
    problems = errors(create(client, rate_limit="fast"))
    assert "not a rate" in problems["rate_limit"][0]


@override_settings(
    REST_HOOKS={
        "RATE_LIMIT": "10/s",
        "ORIGIN_LIMITS": {"https://slow.example.com:443": {"RATE_LIMIT": "1/s"}},
    }
)
def test_a_subscriber_may_slow_deliveries_down_but_not_exceed_the_operators_rate(
    client: APIClient,
) -> None:
    assert create(client, rate_limit="5/s").status_code == 201
    assert "10" in errors(create(client, rate_limit="20/s"))["rate_limit"][0]
    slow = "https://slow.example.com/in"
    assert "rate_limit" in errors(create(client, target=slow, rate_limit="2/s"))
    assert create(client, target=slow, rate_limit="30/min").status_code == 201
    hook = Hook.objects.get(rate_limit="5/s")
    assert "rate_limit" in errors(client.patch(hook_url(hook), {"rate_limit": "1200/min"}))
    # The operator's limit for the new target counts, not the old one's.
    assert "rate_limit" in errors(client.patch(hook_url(hook), {"target": slow}))


def test_the_signing_scheme_cannot_change_after_creation(client: APIClient, user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    assert "signing" in errors(client.patch(hook_url(hook), {"signing": "ed25519"}))
    assert client.patch(hook_url(hook), {"signing": "hmac-sha256"}).status_code == 200
    assert Hook.objects.get().secret == hook.secret


@override_settings(REST_HOOKS={"API_MAX_HOOKS_PER_USER": 2})
def test_a_user_has_at_most_the_operators_number_of_hooks(
    client: APIClient, user: Any, other: Any
) -> None:
    Hook.objects.create(user=other, event="book.added", target=TARGET)
    assert create(client).status_code == 201
    assert create(client).status_code == 201
    problems = errors(create(client))
    assert "at most 2 hooks" in problems["non_field_errors"][0]
    assert Hook.objects.filter(user=user).count() == 2


# -- changing a hook --------------------------------------------------------------------------


def test_patch_changes_what_it_names_only(client: APIClient, user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET, rate_limit="5/s")
    reply = client.patch(hook_url(hook), {"event": "book.removed"})
    assert reply.status_code == 200, reply.content
    hook.refresh_from_db()
    assert (hook.event, hook.target, hook.rate_limit) == ("book.removed", TARGET, "5/s")


def test_reenabling_a_disabled_hook_starts_its_failure_clock_afresh(
    client: APIClient, user: Any
) -> None:
    long_ago = timezone.now() - timezone.timedelta(days=6)
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    Hook.objects.filter(pk=hook.pk).update(
        is_active=False,
        disabled_reason="the target answered 410 Gone",
        disabled_at=timezone.now(),
        failing_since=long_ago,
    )
    shown = client.get(hook_url(hook)).json()
    assert (shown["active"], shown["disabled_reason"]) == (False, "the target answered 410 Gone")

    reply = client.patch(hook_url(hook), {"active": True})
    assert reply.status_code == 200, reply.content
    assert (reply.json()["disabled_reason"], reply.json()["disabled_at"]) == ("", None)
    hook.refresh_from_db()
    assert hook.is_active
    assert (hook.disabled_at, hook.disabled_reason, hook.failing_since) == (None, "", None)


def test_disabling_keeps_the_failure_clock(client: APIClient, user: Any) -> None:
    since = timezone.now() - timezone.timedelta(hours=1)
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    Hook.objects.filter(pk=hook.pk).update(failing_since=since)
    assert client.patch(hook_url(hook), {"active": False}).status_code == 200
    hook.refresh_from_db()
    assert (hook.is_active, hook.failing_since) == (False, since)


def test_rotate_secret_answers_with_the_new_one_and_the_old_keeps_signing(
    client: APIClient, user: Any
) -> None:
    old = create(client).json()
    reply = client.post(reverse("hook-rotate-secret", args=[old["id"]]))
    assert reply.status_code == 200, reply.content
    new = reply.json()["secret"]
    hook = Hook.objects.get()
    assert new == hook.secret != old["secret"]
    assert hook.signing_secrets() == [new, old["secret"]]
    assert client.get(hook_url(hook)).content.decode().count("whsec_") == 0


@override_settings(REST_HOOKS={"API_THROTTLE_RATE": "3/min"})
def test_requests_over_the_throttle_rate_are_answered_429(client: APIClient, other: Any) -> None:
    assert [client.get(hooks_url()).status_code for _ in range(4)] == [200, 200, 200, 429]
    theirs = APIClient()
    theirs.force_authenticate(other)
    assert theirs.get(hooks_url()).status_code == 200  # per user


@override_settings(REST_HOOKS={"API_THROTTLE_RATE": None})
def test_no_throttle_rate_means_no_throttle(client: APIClient) -> None:
    assert {client.get(hooks_url()).status_code for _ in range(5)} == {200}


# -- deliveries and their attempts ------------------------------------------------------------


def deliveries_url(hook: Any, *delivery: Any, name: str = "delivery-list") -> str:
    return reverse(name, args=[hook.pk, *(str(d.pk) for d in delivery)])


def add_book(user: Any, title: str = "Dune") -> Book:
    return Book.objects.create(user=user, title=title, pages=1, fiction=True)


def logged(hook: Any, *, status: str, created_at: Any) -> Delivery:
    """A delivery of the past, with the one attempt that made it ``status``."""
    event = Event.objects.create(name=hook.event, payload='{"data": 1}', created_at=created_at)
    delivery = Delivery.objects.create(
        event=event, hook=hook, status=status, attempts=1, created_at=created_at
    )
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=created_at,
        outcome="success" if status == "success" else "failed",
        status_code=200 if status == "success" else 500,
        duration_ms=3.0,
    )
    return delivery


def test_a_hooks_deliveries_show_every_attempt_and_the_body_sent(
    client: APIClient, user: Any, receiver: Any, run_pipeline: Any
) -> None:
    hook_id = create(client, target=receiver.url("/hook")).json()["id"]
    hook = Hook.objects.get(pk=hook_id)
    receiver.answer("/hook", Answer(500, body=b"down"), Answer(502))
    add_book(user)
    with override_settings(REST_HOOKS=FAST_RETRIES):
        for _ in range(3):
            run_pipeline()

    (listed,) = client.get(deliveries_url(hook)).json()["results"]
    assert (listed["event"], listed["status"], listed["attempts"]) == ("book.added", "success", 3)
    assert [(a["number"], a["outcome"], a["status_code"]) for a in listed["attempt_log"]] == [
        (1, "retry", 500),
        (2, "retry", 502),
        (3, "success", 200),
    ]
    assert listed["attempt_log"][0]["response_excerpt"] == "down"
    assert listed["id"] == receiver.requests[0].headers["webhook-id"]
    assert "payload" not in listed

    detail = client.get(deliveries_url(hook, Delivery.objects.get(), name="delivery-detail"))
    assert detail.status_code == 200, detail.content
    assert detail.json()["payload"] == json.loads(receiver.requests[-1].body)
    assert detail.json()["payload"]["hook"]["id"] == hook.pk


def test_deliveries_are_filtered_by_status_and_time(client: APIClient, user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    now = timezone.now()
    old_failed = logged(hook, status="failed", created_at=now - timezone.timedelta(days=3))
    new_failed = logged(hook, status="failed", created_at=now - timezone.timedelta(hours=1))
    new_success = logged(hook, status="success", created_at=now - timezone.timedelta(minutes=5))

    def ids(**query: Any) -> list[str]:
        reply = client.get(deliveries_url(hook), query)
        assert reply.status_code == 200, reply.content
        return [d["id"] for d in reply.json()["results"]]

    assert ids() == [str(d.pk) for d in (new_success, new_failed, old_failed)]
    assert ids(status="failed") == [str(new_failed.pk), str(old_failed.pk)]
    since = (now - timezone.timedelta(days=1)).isoformat()
    until = (now - timezone.timedelta(minutes=30)).isoformat()
    assert ids(since=since) == [str(new_success.pk), str(new_failed.pk)]
    assert ids(since=since, until=until) == [str(new_failed.pk)]
    assert "status" in errors(client.get(deliveries_url(hook), {"status": "lost"}))
    assert "since" in errors(client.get(deliveries_url(hook), {"since": "yesterday"}))
    assert "until" in errors(client.get(deliveries_url(hook), {"since": until, "until": since}))


def test_another_users_deliveries_are_not_found(client: APIClient, user: Any, other: Any) -> None:
    theirs = Hook.objects.create(user=other, event="book.added", target=TARGET)
    mine = Hook.objects.create(user=user, event="book.added", target=TARGET)
    delivery = logged(theirs, status="failed", created_at=timezone.now())
    for reply in (
        client.get(deliveries_url(theirs)),
        client.get(deliveries_url(theirs, delivery, name="delivery-detail")),
        client.get(deliveries_url(mine, delivery, name="delivery-detail")),  # not under mine
        client.post(deliveries_url(theirs, delivery, name="delivery-redeliver")),
        client.post(deliveries_url(mine, delivery, name="delivery-redeliver")),
        client.post(reverse("hook-recover", args=[theirs.pk]), {"since": "2020-01-01T00:00Z"}),
    ):
        assert reply.status_code == 404, reply.content
    assert Delivery.objects.get().status == "failed"
    anonymous = APIClient()
    assert anonymous.get(deliveries_url(mine)).status_code in {401, 403}


def test_redeliver_sends_a_failed_delivery_again_with_the_same_id(
    client: APIClient, user: Any, receiver: Any, run_pipeline: Any
) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=receiver.url("/hook"))
    receiver.answer("/hook", Answer(500))
    add_book(user)
    with override_settings(REST_HOOKS=NO_RETRIES):
        (failed,) = run_pipeline()
    assert failed.status == "failed"

    reply = client.post(deliveries_url(hook, failed, name="delivery-redeliver"))
    assert reply.status_code == 202, reply.content
    assert (reply.json()["status"], reply.json()["attempts"]) == ("pending", 0)
    again = client.post(deliveries_url(hook, failed, name="delivery-redeliver"))
    assert again.status_code == 409  # pending: its attempt comes anyway
    with override_settings(REST_HOOKS=NO_RETRIES):
        (delivered,) = run_pipeline()
    assert delivered.status == "success"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(failed.pk)] * 2
    log = client.get(deliveries_url(hook)).json()["results"][0]["attempt_log"]
    assert [(a["number"], a["outcome"]) for a in log] == [(1, "failed"), (1, "success")]


def test_recover_redelivers_the_failed_deliveries_of_a_time_range(
    client: APIClient, user: Any
) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    now = timezone.now()
    before = logged(hook, status="failed", created_at=now - timezone.timedelta(days=3))
    inside = [
        logged(hook, status="failed", created_at=now - timezone.timedelta(hours=h)) for h in (2, 3)
    ]
    succeeded = logged(hook, status="success", created_at=now - timezone.timedelta(hours=2))
    reply = client.post(
        reverse("hook-recover", args=[hook.pk]),
        {"since": (now - timezone.timedelta(days=1)).isoformat(), "until": now.isoformat()},
    )
    assert reply.status_code == 202, reply.content
    assert reply.json() == {"redelivered": 2}
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert {pk for pk, s in statuses.items() if s == "pending"} == {d.pk for d in inside}
    assert (statuses[before.pk], statuses[succeeded.pk]) == ("failed", "success")
    assert "since" in errors(client.post(reverse("hook-recover", args=[hook.pk]), {}))


def test_nothing_is_sent_again_to_a_disabled_hook(client: APIClient, user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET, is_active=False)
    delivery = logged(hook, status="failed", created_at=timezone.now())
    for reply in (
        client.post(deliveries_url(hook, delivery, name="delivery-redeliver")),
        client.post(reverse("hook-recover", args=[hook.pk]), {"since": "2020-01-01T00:00Z"}),
    ):
        assert reply.status_code == 409, reply.content
        assert "re-enable" in reply.json()["detail"]
    assert Delivery.objects.get().status == "failed"


# -- Zapier, samples, public keys -------------------------------------------------------------


def test_zapiers_subscribe_and_unsubscribe_calls_work(client: APIClient, user: Any) -> None:
    zapier_url = "https://hooks.zapier.com/hooks/standard/1/abc/"
    subscribed = client.post(
        hooks_url(), {"target_url": zapier_url, "event": "book.added"}, format="json"
    )
    assert subscribed.status_code == 201, subscribed.content
    hook = Hook.objects.get(pk=subscribed.json()["id"])
    assert (hook.target, hook.event, hook.user) == (zapier_url, "book.added", user)
    # As a form too, the way Zapier's legacy builder posted it.
    form = client.post(
        hooks_url(), {"target_url": zapier_url, "event": "book.removed"}, format="multipart"
    )
    assert form.status_code == 201, form.content
    assert form.json()["target"] == zapier_url
    assert client.delete(hook_url(hook)).status_code == 204
    assert list(Hook.objects.values_list("event", flat=True)) == ["book.removed"]


def test_the_sample_is_what_the_users_hook_received_lately(
    client: APIClient, user: Any, other: Any
) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    theirs = Hook.objects.create(user=other, event="book.added", target=TARGET)
    for title in ("First", "Second", "Third", "Fourth"):
        add_book(user, title)
    add_book(other, "Not yours")
    # The newest of all, but aimed at another user's hook (HOOK_FINDER, deliver_hook).
    Event.objects.create(name="book.added", payload='{"data": {"title": "Aimed"}}', hook=theirs)
    samples = client.get(reverse("hook-sample"), {"event": "book.added"})
    assert samples.status_code == 200, samples.content
    titles = [sample["data"]["title"] for sample in samples.json()]
    assert titles == ["Fourth", "Third", "Second"]  # the latest, the user's own only
    assert all(sample["hook"] == hook.dict() for sample in samples.json())


def test_a_sample_of_an_event_sent_to_every_subscriber(client: APIClient, other: Any) -> None:
    # "book.changed" is a "+" event: every subscriber gets every change.
    add_book(other, "Shared").save()
    (sample,) = client.get(reverse("hook-sample"), {"event": "book.changed"}).json()
    assert sample["data"]["title"] == "Shared"
    assert sample["hook"] == {"id": None, "event": "book.changed", "target": ""}


def test_the_sample_of_an_unknown_event_is_refused(client: APIClient) -> None:
    assert "event" in errors(client.get(reverse("hook-sample"), {"event": "book.burned"}))
    assert "event" in errors(client.get(reverse("hook-sample")))
    assert client.get(reverse("hook-sample"), {"event": "book.read"}).json() == []


def test_the_keys_of_an_ed25519_hook_are_published_as_a_jwks(client: APIClient) -> None:
    created = create(client, signing="ed25519").json()
    hook = Hook.objects.get(pk=created["id"])
    (current,) = client.get(hook_url(hook, "hook-keys")).json()["keys"]
    assert (current["kty"], current["crv"], current["alg"], current["use"]) == (
        "OKP",
        "Ed25519",
        "EdDSA",
        "sig",
    )
    assert "exp" not in current
    raw = base64.urlsafe_b64decode(current["x"] + "==")
    assert "whpk_" + base64.b64encode(raw).decode() == created["public_key"]

    client.post(hook_url(hook, "hook-rotate-secret"))
    keys = client.get(hook_url(hook, "hook-keys")).json()["keys"]
    assert keys[1] == current | {"exp": keys[1]["exp"]}
    assert keys[1]["exp"] > time.time() + 3600
    assert keys[0]["kid"] != current["kid"]
    hook.refresh_from_db()
    # A delivery signed now verifies with either published key.
    body = b'{"a": 1}'
    headers = signature_headers(hook.signing_secrets(), "msg_1", int(time.time()), body)
    for jwk in keys:
        public = "whpk_" + base64.b64encode(base64.urlsafe_b64decode(jwk["x"] + "==")).decode()
        assert verify(body, headers, public) == {"a": 1}


def test_the_thumbprint_is_rfc_7638s() -> None:
    # RFC 8037, appendix A.3: the thumbprint of its example Ed25519 key.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    raw = base64.urlsafe_b64decode(x + "=")
    jwk = public_jwk("whpk_" + base64.b64encode(raw).decode())
    assert jwk["x"] == x
    assert jwk["kid"] == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_an_hmac_hook_publishes_no_key(client: APIClient, user: Any, other: Any) -> None:
    hook = Hook.objects.get(pk=create(client).json()["id"])
    reply = client.get(hook_url(hook, "hook-keys"))
    assert reply.json() == {"keys": []}
    assert hook.secret not in reply.content.decode()
    theirs = APIClient()
    theirs.force_authenticate(other)
    assert theirs.get(hook_url(hook, "hook-keys")).status_code == 404


# -- ping -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_ping_sends_a_signed_test_delivery_through_the_workers(
    client: APIClient, receiver: Any, start_workers: Any
) -> None:
    start_workers(RETRY_SCHEDULE=[0.2])
    created = create(client, target=receiver.url("/hook"), event="book.read").json()
    receiver.answer("/hook", Answer(500, body=b"not yet"))

    first = client.post(reverse("hook-ping", args=[created["id"]]))
    assert first.status_code == 200, first.content
    (attempt,) = first.json()["attempt_log"]
    assert (attempt["outcome"], attempt["status_code"]) == ("retry", 500)
    assert attempt["response_excerpt"] == "not yet"

    second = client.post(reverse("hook-ping", args=[created["id"]]))
    assert second.status_code == 200, second.content
    assert second.json()["attempt_log"][0]["outcome"] == "success"
    request = receiver.requests[-1]
    assert request.headers["x-hook-event"] == "book.read"
    assert request.headers["webhook-id"] == second.json()["id"]
    body = verify(request.body, request.headers, created["secret"])
    assert body == {
        "hook": {"id": created["id"], "event": "book.read", "target": created["target"]},
        "ping": True,
    }


@pytest.mark.django_db(transaction=True)
@override_settings(REST_HOOKS={**NO_RETRIES, "API_PING_WAIT": 0.3})
def test_a_ping_no_worker_takes_is_answered_202(client: APIClient, user: Any) -> None:
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    started = time.monotonic()
    reply = client.post(reverse("hook-ping", args=[hook.pk]))
    assert reply.status_code == 202, reply.content
    assert "no worker" in reply.json()["detail"]
    assert time.monotonic() - started >= 0.3
    assert Event.objects.get(hook=hook).status == "pending"  # the workers send it later


def test_a_ping_inside_the_requests_transaction_does_not_wait_for_itself(
    client: APIClient, user: Any
) -> None:
    # The test's transaction stands for ATOMIC_REQUESTS: nothing is sent before it commits.
    hook = Hook.objects.create(user=user, event="book.added", target=TARGET)
    with override_settings(REST_HOOKS={"API_PING_WAIT": 30}):
        started = time.monotonic()
        reply = client.post(reverse("hook-ping", args=[hook.pk]))
    assert reply.status_code == 202, reply.content
    assert time.monotonic() - started < 5


def test_a_disabled_or_another_users_hook_is_not_pinged(
    client: APIClient, user: Any, other: Any
) -> None:
    disabled = Hook.objects.create(user=user, event="book.added", target=TARGET, is_active=False)
    theirs = Hook.objects.create(user=other, event="book.added", target=TARGET)
    assert client.post(reverse("hook-ping", args=[disabled.pk])).status_code == 409
    assert client.post(reverse("hook-ping", args=[theirs.pk])).status_code == 404
    assert not Event.objects.exists()
