"""Bad input: payloads JSON cannot encode or too large, unicode everywhere, targets that
were never valid, hooks gone before their delivery. Each costs only itself.

Real worker processes deliver through a real redis-server to real receivers; payloads are
refused (or not) at capture, in this process, as in a web request.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils.html import escape
from standardwebhooks.webhooks import Webhook

from bookstore.models import Book
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.signals import hook_event, raw_hook_event
from rest_hooks.worker.fanout import fan_out
from tests.helpers import scraped, tally, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

FAST = {"RETRY_SCHEDULE": [0.2, 0.2], "RETRY_JITTER": 0, "RELAY_AFTER": 1, "RELAY_INTERVAL": 0.5}


def refused_count(client: Any, event: str, reason: str) -> float:
    return scraped(client, "rest_hooks_events_refused_total", event=event, reason=reason)


def delivered(expected: int) -> list[Delivery]:
    """Wait until ``expected`` deliveries have finished; return every delivery."""
    wait_until(
        lambda: Delivery.objects.exclude(status="pending").count() >= expected,
        what=f"{expected} finished deliveries",
    )
    return list(Delivery.objects.select_related("hook"))


def assert_refused_in_the_admin(admin_client: Any, event: Event) -> None:
    """An operator finds the refused event by its status, and reads why."""
    changelist = admin_client.get(
        reverse("admin:rest_hooks_event_changelist"), {"status": "refused"}
    )
    assert f"/{event.pk}/change/" in changelist.content.decode()
    page = admin_client.get(reverse("admin:rest_hooks_event_change", args=[event.pk])).content
    assert event.error
    assert escape(event.error) in page.decode()


def test_a_serialize_hook_json_cannot_encode_is_refused_and_the_save_succeeds(
    user, receiver, start_workers, monkeypatch, admin_client, client
):
    start_workers()
    hook = Hook.objects.create(user=user, event="book.added", target=receiver.url())
    serialize = Book.serialize_hook

    def tagged(book: Book, hook: Any) -> Any:
        payload = serialize(book, hook)
        if book.title == "Tagged":
            payload["data"]["tags"] = {"fantasy", "classic"}  # a set: not JSON
        return payload

    monkeypatch.setattr(Book, "serialize_hook", tagged)
    before = refused_count(client, "book.added", "unencodable")

    with transaction.atomic():  # as a request with ATOMIC_REQUESTS
        Book.objects.create(user=user, title="Before", pages=1, fiction=True)
        Book.objects.create(user=user, title="Tagged", pages=2, fiction=True)
        Book.objects.create(user=user, title="After", pages=3, fiction=True)

    assert Book.objects.count() == 3
    refused = Event.objects.get(status="refused")
    assert refused.payload == ""
    assert refused.error.startswith("JSON cannot encode payload['data']['tags']")
    assert "Object of type set is not JSON serializable" in refused.error
    assert refused_count(client, "book.added", "unencodable") == before + 1
    assert_refused_in_the_admin(admin_client, refused)

    deliveries = delivered(2)
    titles = {json.loads(r.body)["data"]["title"] for r in receiver.wait_for(2)}
    assert titles == {"Before", "After"}
    assert all(d.status == "success" and d.hook == hook for d in deliveries)
    tally(
        "bad input: serialize_hook returns a set", 3, [d.pk for d in deliveries], receiver.requests
    )


def test_raw_payloads_with_dates_and_decimals_arrive_and_one_with_a_set_is_refused(
    user, receiver, start_workers, client
):
    start_workers()
    Hook.objects.create(user=user, event="user.logged_in", target=receiver.url())
    before = refused_count(client, "user.logged_in", "unencodable")
    when = datetime(2026, 12, 6, 21, 0, 0, 123000, tzinfo=UTC)
    encodable = {"when": when, "day": date(2026, 12, 6), "balance": Decimal("12.50")}

    raw_hook_event.send(sender=None, event_name="user.logged_in", payload=encodable, user=user)
    for bad in ({"roles": {"admin"}}, {"ratio": float("nan")}, {"who": object()}):
        raw_hook_event.send(sender=None, event_name="user.logged_in", payload=bad, user=user)

    errors = sorted(Event.objects.filter(status="refused").values_list("error", flat=True))
    assert [e.split(" (")[0] for e in errors] == [
        "JSON cannot encode payload['data']['ratio']",
        "JSON cannot encode payload['data']['roles']",
        "JSON cannot encode payload['data']['who']",
    ]
    assert refused_count(client, "user.logged_in", "unencodable") == before + 3
    deliveries = delivered(1)
    (request,) = receiver.wait_for(1)
    assert json.loads(request.body)["data"] == {
        "when": "2026-12-06T21:00:00.123Z",
        "day": "2026-12-06",
        "balance": "12.50",
    }
    tally(
        "bad input: raw payloads (dates, Decimal; set, NaN, object)",
        4,
        [deliveries[0].pk],
        [request],
    )


def test_a_payload_over_the_cap_is_refused_at_capture(
    user, receiver, start_workers, admin_client, client, settings
):
    settings.REST_HOOKS = {**settings.REST_HOOKS, "MAX_PAYLOAD_BYTES": 512}
    start_workers()
    Hook.objects.create(user=user, event="book.added", target=receiver.url())
    Hook.objects.create(user=user, event="user.logged_in", target=receiver.url())
    before = refused_count(client, "book.added", "too_large")
    # The cap counts the bytes of the JSON text: "ü" is written "\u00fc", 6 bytes.
    Book.objects.create(user=user, title="ü" * 70, pages=1, fiction=True)
    Book.objects.create(user=user, title="a" * 100, pages=1, fiction=True)
    raw_hook_event.send(
        sender=None, event_name="user.logged_in", payload={"x": "y" * 5000}, user=user
    )

    refused = list(Event.objects.filter(status="refused").order_by("pk"))
    assert [e.name for e in refused] == ["book.added", "user.logged_in"]
    assert refused[0].error.startswith("The payload is 5")
    assert "bytes of JSON, over REST_HOOKS['MAX_PAYLOAD_BYTES'] (512)." in refused[0].error
    assert refused_count(client, "book.added", "too_large") == before + 1
    assert_refused_in_the_admin(admin_client, refused[0])
    deliveries = delivered(1)
    (request,) = receiver.wait_for(1)
    assert json.loads(request.body)["data"]["title"] == "a" * 100
    tally("bad input: payload over MAX_PAYLOAD_BYTES", 3, [deliveries[0].pk], [request])


def test_an_event_name_no_hook_can_hold_is_refused_and_the_save_succeeds(user, client):
    name = "livre." + "é" * 59  # 65 characters: a hook's event holds 64
    before = refused_count(client, "other", "name_too_long")
    with transaction.atomic():
        raw_hook_event.send(sender=None, event_name=name, payload={}, user=user)
        Book.objects.create(user=user, title="Beside", pages=1, fiction=True)

    refused = Event.objects.get(status="refused")
    assert refused.name == name[:64]
    assert refused.error.startswith("The event name is 65 characters, over the 64")
    assert refused_count(client, "other", "name_too_long") == before + 1
    assert Event.objects.filter(status="pending", name="book.added").exists()


def test_a_hook_events_name_no_hook_can_hold_fails_the_checks(settings):
    name = "livre." + "é" * 59
    settings.HOOK_EVENTS = {**settings.HOOK_EVENTS, name: None}
    errors = [e.msg for e in run_checks() if e.id == "rest_hooks.E001"]
    assert errors == [
        f"HOOK_EVENTS[{name!r}]: the event name is longer than the 64 characters a hook "
        "and an event can hold."
    ]


@pytest.mark.parametrize("cap", [0, -1, 1.5, "1MB", True])
def test_a_payload_cap_that_is_not_a_positive_whole_number_fails_the_checks(cap):
    with override_settings(REST_HOOKS={"MAX_PAYLOAD_BYTES": cap}):
        errors = [e for e in run_checks() if e.id == "rest_hooks.E005"]
    assert [e.msg for e in errors] == [
        f"REST_HOOKS['MAX_PAYLOAD_BYTES'] must be a positive whole number of bytes or None, "
        f"not {cap!r}."
    ]


@pytest.mark.parametrize("cap", [None, 1, 1024 * 1024])
def test_no_cap_or_a_positive_cap_passes_the_checks(cap):
    with override_settings(REST_HOOKS={"MAX_PAYLOAD_BYTES": cap}):
        assert not [e for e in run_checks() if e.id == "rest_hooks.E005"]


def test_unicode_event_names_and_payloads_arrive_intact(
    user, receiver, start_workers, settings, client
):
    routed, raw = "livre.relu·本", "livre.ajouté·本"
    settings.HOOK_EVENTS = {**settings.HOOK_EVENTS, routed: "bookstore.Book.relu", raw: None}
    start_workers()
    hooks = {
        name: Hook.objects.create(user=user, event=name, target=receiver.url("/crochets/été"))
        for name in (routed, raw)
    }
    title = "Le Seigneur des Anneaux — 指輪物語 🧝"
    before = scraped(client, "rest_hooks_events_captured_total", event=routed)

    book = Book.objects.create(user=user, title=title, pages=1, fiction=True)
    hook_event.send(sender=Book, action="relu", instance=book)
    payload = {"titre": title, "clé": "\u2028\u0000"}
    raw_hook_event.send(sender=None, event_name=raw, payload=payload, user=user)

    book_data = {"id": book.pk, "title": title, "pages": 1, "fiction": True}
    requests = receiver.wait_for(2)
    assert scraped(client, "rest_hooks_events_captured_total", event=routed) == before + 1
    for request in requests:
        # Header values are bytes on the wire: the event name goes as UTF-8 (which a
        # receiver parsing headers as ISO-8859-1, as http.server does, reads like this).
        name = request.headers["x-hook-event"].encode("latin-1").decode()
        received = Webhook(hooks[name].secret).verify(request.body, request.headers)
        assert received["hook"] == hooks[name].dict()
        assert received["data"] == (payload if name == raw else book_data)
        assert request.path == "/crochets/%C3%A9t%C3%A9"
    deliveries = delivered(2)
    assert {d.status for d in deliveries} == {"success"}
    tally(
        "bad input: unicode event names, payloads and path", 2, [d.pk for d in deliveries], requests
    )


def test_an_idn_target_is_resolved_and_sent_as_punycode(user, receiver, run_pipeline, monkeypatch):
    """The DNS answer is the one part mocked: ``bücher.example`` is 127.0.0.1 here."""
    real_getaddrinfo = socket.getaddrinfo
    asked: list[str] = []

    def resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        if host == "xn--bcher-kva.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    target = f"http://Bücher.example:{receiver.port}/hook"
    hook = Hook(user=user, event="book.added", target=target)
    hook.full_clean()
    hook.save()

    Book.objects.create(user=user, title="Idn", pages=1, fiction=True)
    (delivery,) = run_pipeline()

    (request,) = receiver.wait_for(1)
    assert asked.count("xn--bcher-kva.example") == 1
    assert request.headers["host"] == f"xn--bcher-kva.example:{receiver.port}"
    assert json.loads(request.body)["hook"]["target"] == target  # as the subscriber wrote it
    assert delivery.status == "success"
    tally("bad input: IDN target", 1, [delivery.pk], [request])


#: Targets a form would refuse, stored by code that bypassed ``full_clean()``.
BAD_TARGETS = [
    "http://bad-port.invalid:99999/hook",
    "http://bad-port.invalid:0/hook",
    "http://bad-port.invalid:-1/hook",
    "http://bad-port.invalid:http/hook",
    "http://[::1/hook",
    "http:///no-host",
    "not a url",
    "ftp://files.invalid/hook",
    "http://" + "a" * 64 + ".invalid/hook",  # a DNS label over 63 characters
    "http://bad host.invalid/",
    "http://xn--zz.invalid/",  # not valid punycode
    "http://exa\u200dmple.invalid/",  # a character IDNA refuses (zero-width joiner)
]


def test_malformed_over_long_and_odd_port_targets_fail_alone(
    user, django_user_model, receiver, start_workers
):
    """One event to every owner (``book.changed`` is an ``updated+`` event): each bad
    target fails on its own, with its reason, and the good targets beside them arrive."""
    start_workers(**FAST)
    other = django_user_model.objects.create_user(username="cslewis", password="x")
    good = [receiver.url(f"/good/{i}") for i in range(3)]
    owners = [user, other]
    for i, target in enumerate([good[0], *BAD_TARGETS[:6], good[1], *BAD_TARGETS[6:], good[2]]):
        Hook.objects.create(user=owners[i % 2], event="book.changed", target=target)
    book = Book.objects.create(user=user, title="Targets", pages=1, fiction=True)
    book.pages = 2
    book.save()

    deliveries = delivered(len(BAD_TARGETS) + len(good))
    by_target = {d.hook.target: d for d in deliveries}
    assert sorted(by_target) == sorted(good + BAD_TARGETS)
    assert {t: by_target[t].status for t in good} == {t: "success" for t in good}
    failed = {t: (by_target[t].status, bool(by_target[t].last_error)) for t in BAD_TARGETS}
    assert failed == {t: ("failed", True) for t in BAD_TARGETS}
    requests = receiver.wait_for(len(good))
    assert sorted(r.path for r in requests) == ["/good/0", "/good/1", "/good/2"]
    tally("bad input: malformed targets", 1, [by_target[t].pk for t in good], requests)


def test_a_malformed_rate_limit_fails_its_hook_alone(user, receiver, start_workers):
    start_workers(**FAST)
    good = [
        Hook.objects.create(user=user, event="book.added", target=receiver.url(f"/{i}"))
        for i in range(2)
    ]
    bad = Hook.objects.create(
        user=user, event="book.added", target=receiver.url("/bad"), rate_limit="fast"
    )
    Book.objects.create(user=user, title="Rates", pages=1, fiction=True)

    deliveries = {d.hook: d for d in delivered(3)}
    assert [deliveries[h].status for h in good] == ["success", "success"]
    assert deliveries[bad].status == "failed"
    assert deliveries[bad].last_error == (
        "refused: the hook's rate_limit: not a rate: 'fast' (write e.g. '50/s', "
        "'600/min' or '10/5s')"
    )
    requests = receiver.wait_for(2)
    tally("bad input: malformed rate_limit", 1, [deliveries[h].pk for h in good], requests)


def test_hooks_deleted_or_disabled_between_fan_out_and_delivery(
    user, receiver, redis_url, start_workers
):
    hooks = [
        Hook.objects.create(user=user, event="book.added", target=receiver.url(f"/{i}"))
        for i in range(40)
    ]
    Book.objects.create(user=user, title="Gone", pages=1, fiction=True)
    # The fan-out, as a worker makes it; its deliver messages wait in Redis for workers.
    assert fan_out(Event.objects.get().pk) == 40
    deleted = hooks[::3]
    disabled = [h for h in hooks[1::5] if h not in deleted]
    for hook in deleted:
        hook.delete()
    Hook.objects.filter(pk__in=[h.pk for h in disabled]).update(is_active=False)
    kept = [h for h in hooks if h not in deleted and h not in disabled]

    start_workers()

    deliveries = delivered(40 - len(deleted))
    statuses = {d.hook_id: (d.status, d.last_error) for d in deliveries}
    assert statuses == {
        **{h.pk: ("success", "") for h in kept},
        **{h.pk: ("cancelled", "The hook is disabled.") for h in disabled},
    }
    requests = receiver.wait_for(len(kept))
    tally(
        "bad input: hooks deleted or disabled after fan-out",
        1,
        [d.pk for d in deliveries if d.status == "success"],
        requests,
    )
