"""Fan-out and delivery outcomes, run in-process against a real HTTP receiver."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import pytest
import redis
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from bookstore.models import Book
from bookstore.receiver import Answer, Receiver
from rest_hooks.broker import POLL_MS, PromptDelays
from rest_hooks.delivery.flow import Limits
from rest_hooks.delivery.retry import RetryPolicy, parse_retry_after
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.signals import hook_disabled
from rest_hooks.worker.attempt import build_body
from rest_hooks.worker.batch import claim, deliver_batch, lanes_for
from rest_hooks.worker.fanout import CAPTURE_SKEW, fan_out, plan_batches
from rest_hooks.worker.record import record
from rest_hooks.worker.relay import relay_pending
from tests.helpers import attempts_metric

pytestmark = pytest.mark.django_db

FAST_RETRIES = {"ALLOW_PRIVATE_TARGETS": True, "RETRY_SCHEDULE": [0, 0, 0], "RETRY_JITTER": 0}


def make_hook(user: Any, receiver: Any, path: str = "/hook", event: str = "book.added") -> Hook:
    return Hook.objects.create(user=user, event=event, target=receiver.url(path))


def add_book(user: Any, title: str = "T") -> Book:
    return Book.objects.create(user=user, title=title, pages=1, fiction=True)


def test_headers_and_signature(user, receiver, run_pipeline):
    hook = make_hook(user, receiver)
    add_book(user)
    (delivery,) = run_pipeline()
    (request,) = receiver.requests
    h = request.headers
    assert h["content-type"] == "application/json"
    assert h["user-agent"].startswith("rest-hooks/")
    assert h["x-hook-id"] == h["webhook-id"] == str(delivery.pk)
    assert h["x-hook-timestamp"] == h["webhook-timestamp"]
    assert h["x-hook-signature"] == h["webhook-signature"]
    assert h["x-hook-event"] == "book.added"
    assert h["x-hook-attempt"] == "1"
    # Verified by a library nobody here wrote.
    Webhook(hook.secret).verify(request.body, h)


def test_500_then_200_retries_with_the_same_id(user, receiver, run_pipeline):
    make_hook(user, receiver)
    receiver.answer("/hook", Answer(500), Answer(502))
    add_book(user)
    with override_settings(REST_HOOKS=FAST_RETRIES):
        run_pipeline()
        run_pipeline()
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.SUCCESS
    assert delivery.attempts == 3
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {str(delivery.pk)}
    assert [r.headers["x-hook-attempt"] for r in receiver.requests] == ["1", "2", "3"]


def test_every_attempt_is_kept_not_only_the_last(user, receiver, run_pipeline):
    make_hook(user, receiver)
    receiver.answer("/hook", Answer(500, body=b"down"), Answer(502))
    add_book(user)
    with override_settings(REST_HOOKS=FAST_RETRIES):
        run_pipeline()
        run_pipeline()
        (delivery,) = run_pipeline()
    log = list(delivery.attempt_log.order_by("number"))
    assert [(a.number, a.outcome, a.status_code) for a in log] == [
        (1, "retry", 500),
        (2, "retry", 502),
        (3, "success", 200),
    ]
    assert (log[0].error, log[0].response_excerpt) == ("HTTP 500", "down")
    assert log[0].started_at <= log[1].started_at <= log[2].started_at
    assert all(a.duration_ms >= 0 for a in log)
    last = log[-1]
    assert (last.status_code, last.duration_ms) == (
        delivery.last_status_code,
        delivery.last_duration_ms,
    )


def test_a_refused_attempt_and_a_final_failure_are_logged_as_such(user, receiver, run_pipeline):
    make_hook(user, receiver)
    add_book(user)
    with override_settings(REST_HOOKS={"ALLOW_PRIVATE_TARGETS": False}):
        (refused,) = run_pipeline()
    receiver.default = Answer(500)
    add_book(user, "second")
    with override_settings(REST_HOOKS={**FAST_RETRIES, "RETRY_SCHEDULE": []}):
        _, failed = run_pipeline()
    assert [a.outcome for a in refused.attempt_log.all()] == ["blocked"]
    assert refused.attempt_log.get().error.startswith("refused")
    assert [(a.outcome, a.status_code) for a in failed.attempt_log.all()] == [("failed", 500)]


def test_last_attempt_fails_the_delivery(user, receiver, run_pipeline):
    make_hook(user, receiver)
    receiver.default = Answer(500, body=b"<b>broken</b>")
    add_book(user)
    with override_settings(REST_HOOKS={**FAST_RETRIES, "RETRY_SCHEDULE": [0]}):
        run_pipeline()
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 2
    assert delivery.last_status_code == 500
    assert delivery.response_excerpt == "<b>broken</b>"
    assert delivery.last_error == "HTTP 500"
    assert len(receiver.requests) == 2


def test_410_disables_the_hook(user, receiver, run_pipeline):
    hook = make_hook(user, receiver)
    receiver.default = Answer(410)
    disabled: list[Any] = []
    hook_disabled.connect(lambda **kw: disabled.append(kw), weak=False, dispatch_uid="t410")
    try:
        add_book(user)
        (delivery,) = run_pipeline()
        add_book(user, "second")
        run_pipeline()
    finally:
        hook_disabled.disconnect(dispatch_uid="t410")
    hook.refresh_from_db()
    assert not hook.is_active
    assert "410" in hook.disabled_reason
    assert delivery.status == Delivery.Status.FAILED
    assert len(disabled) == 1
    # The disabled hook gets nothing more.
    assert len(receiver.requests) == 1


def test_retry_after_is_obeyed(user, receiver, run_pipeline):
    make_hook(user, receiver)
    receiver.answer("/hook", Answer(503, headers={"Retry-After": "120"}))
    add_book(user)
    before = timezone.now()
    with override_settings(REST_HOOKS=FAST_RETRIES):
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at >= before + timedelta(seconds=119)
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=121)


def test_retry_after_is_clamped(user, receiver, run_pipeline):
    make_hook(user, receiver)
    receiver.answer("/hook", Answer(429, headers={"Retry-After": "99999999"}))
    add_book(user)
    with override_settings(REST_HOOKS={**FAST_RETRIES, "RETRY_AFTER_MAX": 600}):
        (delivery,) = run_pipeline()
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=601)


def test_timeout_is_retried(user, receiver, run_pipeline):
    make_hook(user, receiver)
    receiver.answer("/hook", Answer(200, delay=1.5))
    add_book(user)
    with override_settings(REST_HOOKS={**FAST_RETRIES, "READ_TIMEOUT": 0.5, "DEADLINE": 0.8}):
        (delivery,) = run_pipeline()
        assert delivery.status == Delivery.Status.PENDING
        assert delivery.last_error.startswith("timeout")
        assert delivery.last_status_code is None
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.SUCCESS


def test_private_target_refused_by_default(user, receiver, run_pipeline):
    make_hook(user, receiver)
    add_book(user)
    with override_settings(REST_HOOKS={"ALLOW_PRIVATE_TARGETS": False}):
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error.startswith("refused")
    assert receiver.requests == []


def test_hook_failing_for_too_long_is_disabled(user, receiver, run_pipeline):
    hook = make_hook(user, receiver)
    receiver.default = Answer(500)
    Hook.objects.filter(pk=hook.pk).update(failing_since=timezone.now() - timedelta(days=6))
    add_book(user)
    with override_settings(REST_HOOKS=FAST_RETRIES):
        (delivery,) = run_pipeline()
    hook.refresh_from_db()
    assert not hook.is_active
    assert "failed since" in hook.disabled_reason
    assert delivery.status == Delivery.Status.FAILED


def test_success_clears_the_failing_run(user, receiver, run_pipeline):
    hook = make_hook(user, receiver)
    receiver.answer("/hook", Answer(500))
    add_book(user)
    with override_settings(REST_HOOKS=FAST_RETRIES):
        run_pipeline()
        hook.refresh_from_db()
        assert hook.failing_since is not None
        run_pipeline()
    hook.refresh_from_db()
    assert hook.failing_since is None


def test_succeeded_delivery_is_not_sent_again(user, receiver, run_pipeline):
    make_hook(user, receiver)
    add_book(user)
    (delivery,) = run_pipeline()
    deliver_batch([str(delivery.pk)])  # a redelivered message
    assert len(receiver.requests) == 1


def test_event_is_fanned_out_once(user, receiver):
    make_hook(user, receiver)
    add_book(user)
    event = Event.objects.get()
    assert fan_out(event.pk) == 1
    assert fan_out(event.pk) == 0
    assert Delivery.objects.count() == 1


@override_settings(REST_HOOKS={"ALLOW_PRIVATE_TARGETS": True, "FANOUT_CHUNK_SIZE": 7})
def test_fan_out_in_chunks_reaches_every_active_hook(user, django_user_model, receiver):
    others = [django_user_model.objects.create(username=f"u{i}") for i in range(3)]
    for owner in [user, *others]:
        for _ in range(6):
            Hook.objects.create(user=owner, event="book.changed", target=receiver.url())
    Hook.objects.filter(user=others[0]).update(is_active=False)
    Hook.objects.create(user=user, event="book.added", target=receiver.url())
    book = add_book(user)
    Event.objects.all().delete()
    book.save()  # book.changed is a '+' event: every owner's active hooks
    event = Event.objects.get()
    assert fan_out(event.pk) == 18
    event.refresh_from_db()
    assert event.status == Event.Status.DISPATCHED
    hooks = set(Delivery.objects.values_list("hook_id", flat=True))
    assert hooks == set(
        Hook.objects.filter(event="book.changed", is_active=True).values_list("pk", flat=True)
    )


def test_an_event_goes_to_the_hooks_that_existed_when_it_was_captured(
    user, django_user_model, receiver
):
    """A late fan-out (the event's message lost, relayed a minute later) reaches the hooks
    of the moment of the event, not one subscribed since."""
    subscribed = timezone.now() - timedelta(minutes=2)
    old = make_hook(user, receiver, "/old", event="book.changed")
    Hook.objects.filter(pk=old.pk).update(created=subscribed)
    book = add_book(user)
    Event.objects.all().delete()
    book.save()  # book.changed is a '+' event: every owner's hooks
    event = Event.objects.get()
    Event.objects.filter(pk=event.pk).update(created_at=subscribed + timedelta(minutes=1))
    other = django_user_model.objects.create(username="latecomer")
    make_hook(other, receiver, "/new", event="book.changed")
    make_hook(user, receiver, "/mine-new", event="book.changed")

    assert fan_out(event.pk) == 1
    assert list(Delivery.objects.values_list("hook_id", flat=True)) == [old.pk]


def test_a_hook_stamped_by_a_clock_a_little_ahead_still_gets_the_event(user, receiver):
    """Hook.created and Event.created_at come from the clocks of different machines: a hook
    stamped up to CAPTURE_SKEW after the event may have been made before it."""
    hook = make_hook(user, receiver)
    add_book(user)
    event = Event.objects.get()
    ahead = event.created_at + CAPTURE_SKEW / 2
    Hook.objects.filter(pk=hook.pk).update(created=ahead)
    assert fan_out(event.pk) == 1


def test_payload_bytes_are_captured_at_event_time(user, receiver, run_pipeline):
    make_hook(user, receiver)
    book = add_book(user, "Original")
    Book.objects.filter(pk=book.pk).update(title="Changed later")
    run_pipeline()
    assert json.loads(receiver.requests[0].body)["data"]["title"] == "Original"


def test_relay_enqueues_overdue_events_and_deliveries(user, receiver):
    make_hook(user, receiver)
    add_book(user)
    Event.objects.update(enqueued_at=timezone.now() - timedelta(minutes=5))
    event = Event.objects.get()
    assert relay_pending() == ([event.pk], [])
    assert relay_pending() == ([], [])  # just relayed: not overdue any more
    fan_out(event.pk)
    delivery = Delivery.objects.get()
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert relay_pending() == ([], [delivery.pk])
    assert relay_pending(everything=True) == ([], [delivery.pk])


def test_retry_policy_schedule_and_jitter():
    policy = RetryPolicy(schedule=[5, 300], jitter=0.1)
    assert 4.5 <= policy.delay(1) <= 5.5
    assert 270 <= policy.delay(2) <= 330
    assert policy.delay(3) is None
    assert policy.delay(1, retry_after=0) == 1.0


def test_parse_retry_after():
    assert parse_retry_after("120", 0) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470) == 10
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def _fan_out_peak(user: Any, hooks: int) -> tuple[int, int]:
    """Fan one event out to ``hooks`` hooks; return (deliveries made, peak bytes allocated)."""
    import tracemalloc

    Hook.objects.all().delete()
    Event.objects.all().delete()
    Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=f"https://example.com/{i}") for i in range(hooks)
    )
    add_book(user)
    event = Event.objects.get()
    tracemalloc.start()
    try:
        made = fan_out(event.pk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return made, peak


@override_settings(REST_HOOKS={"FANOUT_CHUNK_SIZE": 500})
def test_fan_out_to_10000_hooks_runs_in_bounded_memory(user, redis_url):
    # redis_url: the messages go to a real broker, not into this process's memory.
    small = _fan_out_peak(user, 1_000)
    large = _fan_out_peak(user, 10_000)
    assert (small[0], large[0]) == (1_000, 10_000)
    assert Delivery.objects.filter(event__name="book.added").count() == 10_000
    # Ten times the hooks, about the same memory: it grows with the chunk, not the event.
    assert large[1] < small[1] * 2, (small[1], large[1])


def test_attempts_are_counted_by_outcome(user, receiver, run_pipeline):
    before = {
        key: attempts_metric(*key)
        for key in [("retry", "5xx"), ("failed", "5xx"), ("success", "2xx"), ("blocked", "none")]
    }
    make_hook(user, receiver)
    receiver.answer("/hook", Answer(500), Answer(500))
    add_book(user)
    with override_settings(REST_HOOKS={**FAST_RETRIES, "RETRY_SCHEDULE": [0]}):
        run_pipeline()
        run_pipeline()  # the last attempt fails: "failed", not "retry"
    add_book(user)
    run_pipeline()
    add_book(user)
    with override_settings(REST_HOOKS={"ALLOW_PRIVATE_TARGETS": False}):
        run_pipeline()  # a refused target is "blocked", with no HTTP status
    after = {key: attempts_metric(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("retry", "5xx"): 1,
        ("failed", "5xx"): 1,
        ("success", "2xx"): 1,
        ("blocked", "none"): 1,
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_deferred_delivery_uses_no_retry(user, receiver, run_pipeline):
    make_hook(user, receiver, "/one")
    make_hook(user, receiver, "/two")
    add_book(user)
    # A slot every 2 s: beyond the second a batch may wait for its slot on the loop.
    with override_settings(REST_HOOKS={**FAST_RETRIES, "RATE_LIMIT": "1/2s", "RATE_BURST": 1}):
        deliveries = run_pipeline()
    assert len(receiver.requests) == 1
    sent, deferred = sorted(deliveries, key=lambda d: d.status != Delivery.Status.SUCCESS)
    assert sent.status == Delivery.Status.SUCCESS
    assert deferred.status == Delivery.Status.PENDING
    assert deferred.attempts == 0  # held back, not tried
    wait = (deferred.next_attempt_at - timezone.now()).total_seconds()
    assert 1.5 < wait <= 2.3


def test_a_delivery_whose_slot_comes_within_the_horizon_waits_for_it_on_the_loop(
    user, receiver, run_pipeline
):
    """One slot a second: the second delivery is not deferred through the broker, it is
    sent at its slot, one interval after the first."""
    make_hook(user, receiver, "/one")
    make_hook(user, receiver, "/two")
    add_book(user)
    with override_settings(REST_HOOKS={**FAST_RETRIES, "RATE_LIMIT": "1/s", "RATE_BURST": 1}):
        deliveries = run_pipeline()
    assert {d.status for d in deliveries} == {Delivery.Status.SUCCESS}
    assert {d.attempts for d in deliveries} == {1}
    first, second = sorted(r.received_at for r in receiver.requests)
    assert second - first == pytest.approx(1.0, abs=0.1)


def deliver_messages(redis_url: str, queue: str = "rest_hooks") -> list[dict[str, Any]]:
    """The deliver messages waiting in a queue of the broker (``rest_hooks.DQ``: delayed)."""
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(m) for m in client.hvals(f"dramatiq:{queue}.msgs")]
    return [m for m in messages if m["actor_name"] == "rest_hooks.deliver"]


def test_a_delivery_held_back_by_the_rate_comes_back_for_its_slot(
    user, receiver, run_pipeline, redis_url
):
    for path in ("/one", "/two", "/three", "/four"):
        make_hook(user, receiver, path)
    add_book(user)
    # A burst of two: two go at once, and a late slot (this machine may be busy) does not
    # hold back the next one. The interval (2 s) is longer than the horizon a batch may
    # wait for its slot on the loop, and long beside the four attempts, so that however
    # slow this machine is, the last two come before a slot frees itself.
    with override_settings(REST_HOOKS={**FAST_RETRIES, "RATE_LIMIT": "1/2s", "RATE_BURST": 2}):
        deliveries = run_pipeline()
        held = [d for d in deliveries if d.status == Delivery.Status.PENDING]
        assert len(held) == 2
        # Each waits for a slot of its own, one interval after the one before, and its
        # message carries the slot (a time, nothing else).
        messages = {m["args"][0][0]: m for m in deliver_messages(redis_url, "rest_hooks.DQ")}
        assert set(messages) == {str(d.pk) for d in held}
        slots = sorted(messages[str(d.pk)]["kwargs"]["reservation"] for d in held)
        assert slots[1] - slots[0] == pytest.approx(2.0, abs=1e-6)
        waits = sorted((d.next_attempt_at - timezone.now()).total_seconds() for d in held)
        assert waits[1] - waits[0] == pytest.approx(2.0, abs=0.05)
        # Each comes back at its slot, with it, and goes.
        for delivery in sorted(held, key=lambda d: d.next_attempt_at):
            time.sleep(max((delivery.next_attempt_at - timezone.now()).total_seconds(), 0))
            deliver_batch([str(delivery.pk)], **messages[str(delivery.pk)]["kwargs"])
    assert len(receiver.requests) == 4
    assert {d.attempts for d in Delivery.objects.all()} == {1}


def test_workers_look_for_due_deferred_deliveries_often():
    """A Dramatiq consumer moves a delayed message to its queue only when it wakes up:
    every second by default, which would send deferred deliveries late and in clumps."""
    broker = StubBroker()
    broker.add_middleware(PromptDelays())
    broker.declare_queue("rest_hooks")
    worker = dramatiq.Worker(broker, worker_timeout=1000, worker_threads=1)
    worker.start()
    try:
        timeouts = {consumer.worker_timeout for consumer in worker.consumers.values()}
    finally:
        worker.stop()
    assert timeouts == {POLL_MS}
    assert POLL_MS <= 100
    # ...and the broker the actors use has it.
    assert any(isinstance(m, PromptDelays) for m in dramatiq.get_broker().middleware)


def test_429_pauses_the_target_for_every_delivery(user, receiver, run_pipeline):
    make_hook(user, receiver)
    receiver.answer("/hook", Answer(429))
    add_book(user)
    with override_settings(REST_HOOKS={**FAST_RETRIES, "THROTTLE_PAUSE": 30}):
        run_pipeline()  # 429: the target pauses for 30 s
        add_book(user, "another")
        deliveries = run_pipeline()  # the retry and the new delivery are both held back
    assert len(receiver.requests) == 1
    assert all(d.status == Delivery.Status.PENDING for d in deliveries)
    assert all(d.next_attempt_at > timezone.now() + timedelta(seconds=25) for d in deliveries)


@pytest.mark.parametrize(("mode", "delivered"), [("open", True), ("closed", False)])
def test_redis_unreachable_for_flow_control(user, receiver, run_pipeline, mode, delivered):
    make_hook(user, receiver)
    add_book(user)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    overrides = {"ALLOW_PRIVATE_TARGETS": True, "REDIS_URL": dead, "FLOW_ON_REDIS_ERROR": mode}
    with override_settings(REST_HOOKS=overrides):
        (delivery,) = run_pipeline()
    assert (len(receiver.requests) == 1) is delivered
    assert delivery.attempts == (1 if delivered else 0)


# -- batches ----------------------------------------------------------------------------


def batch_shapes(rows: list[tuple[str, str, str]], **settings: Any) -> list[tuple[int, int]]:
    """(size, lanes) of each batch ``plan_batches`` cuts ``rows`` into."""
    with override_settings(REST_HOOKS={**FAST_RETRIES, **settings}):
        batches = plan_batches(rows)
    assert sorted(i for batch in batches for i in batch.ids) == sorted(r[0] for r in rows)
    return [(len(batch.ids), batch.lanes) for batch in batches]


def rows(count: int, target: str, rate: str = "", start: int = 0) -> list[tuple[str, str, str]]:
    return [(f"{start + i:04d}", target, rate) for i in range(count)]


def test_deliveries_are_batched_by_target_and_limits():
    a, b = "https://a.example/hook", "https://b.example:8443/other"
    # As few batches as DELIVERY_BATCH_SIZE allows, of even sizes, sharing the target's
    # in-flight slots out as lanes.
    assert batch_shapes(rows(5, a), MAX_IN_FLIGHT=2) == [(5, 2)]
    assert batch_shapes(rows(12, a), MAX_IN_FLIGHT=10) == [(12, 10)]
    assert batch_shapes(rows(3, a), MAX_IN_FLIGHT=10) == [(3, 3)]
    assert batch_shapes(rows(6, a) + rows(2, b, start=6), MAX_IN_FLIGHT=2) == [(6, 2), (2, 2)]
    assert batch_shapes(rows(60, a), MAX_IN_FLIGHT=10) == [(30, 5)] * 2
    assert batch_shapes(rows(500, a), MAX_IN_FLIGHT=10) == [(50, 1)] * 10
    # More batches than slots: fewer, larger ones (a batch without a slot is refused and
    # comes back every 0.25 s), up to BATCH_GROWTH times the size; 1 stays one a message.
    assert batch_shapes(rows(2000, a), MAX_IN_FLIGHT=10) == [(200, 1)] * 10
    assert batch_shapes(rows(6000, a), MAX_IN_FLIGHT=10) == [(500, 1)] * 12
    assert batch_shapes(rows(30, a), MAX_IN_FLIGHT=10, DELIVERY_BATCH_SIZE=1) == [(1, 1)] * 30
    assert batch_shapes(rows(30, a, rate="5/s"), MAX_IN_FLIGHT=2) == [(5, 1)] * 6
    # No cap: every delivery of a batch at once (the process's cap bounds them).
    assert batch_shapes(rows(120, a), MAX_IN_FLIGHT=None) == [(40, 40)] * 3
    assert batch_shapes(rows(500, a), MAX_IN_FLIGHT=1000) == [(50, 50)] * 10
    # A rate limit (the hook's, the origin's or the default): no more in a batch than the
    # rate lets go within the horizon.
    assert batch_shapes(rows(12, a, rate="5/s")) == [(4, 3)] * 3
    origin_rate = {"https://a.example": {"RATE_LIMIT": "5/s"}}
    assert batch_shapes(rows(3, a), ORIGIN_LIMITS=origin_rate) == [(3, 3)]
    assert batch_shapes(rows(2, a), RATE_LIMIT="1/s") == [(1, 1)] * 2
    # Same origin, another hook rate: another batch.
    assert batch_shapes(rows(4, a) + rows(1, a, rate="5/s", start=4), MAX_IN_FLIGHT=1) == [
        (4, 1),
        (1, 1),
    ]


def test_a_batch_sends_over_its_planned_lanes_unless_a_binding_rate_spreads_it():
    target = Limits(max_in_flight=10)
    assert lanes_for(target, 12, 10) == 10
    assert lanes_for(target, 3, 10) == 3  # no more lanes than deliveries
    assert lanes_for(Limits(rate=1_000_000, max_in_flight=10), 50, 1) == 1  # not binding
    # Five a second over 1 s: half the slots, so that the next batch overlaps.
    assert lanes_for(Limits(rate=5, max_in_flight=10), 5, 1) == 5
    assert lanes_for(Limits(rate=5, max_in_flight=4), 5, 1) == 2


def queued_batches(redis_url: str) -> list[list[str]]:
    """The delivery ids of each deliver message waiting in the broker's queue."""
    return [m["args"][0] for m in deliver_messages(redis_url)]


def fan_out_batch(user: Any, receiver: Any, count: int) -> list[Delivery]:
    for i in range(count):
        make_hook(user, receiver, f"/h{i}")
    add_book(user)
    fan_out(Event.objects.get().pk)
    return list(Delivery.objects.select_related("hook").order_by("hook_id"))


def test_a_batch_goes_out_in_order_and_stops_at_the_first_failure(user, receiver, redis_url):
    receiver.answer("/h2", Answer(500))
    with override_settings(REST_HOOKS={**FAST_RETRIES, "MAX_IN_FLIGHT": 1}):
        deliveries = fan_out_batch(user, receiver, 5)
        ids = [str(d.pk) for d in deliveries]
        assert queued_batches(redis_url) == [ids]  # one message for the five
        redis.Redis.from_url(redis_url).flushdb()
        deliver_batch(ids)
    assert [r.path for r in receiver.requests] == ["/h0", "/h1", "/h2"]
    by_path = {d.hook.target.rsplit("/", 1)[1]: d for d in Delivery.objects.select_related("hook")}
    assert [by_path[p].status for p in ("h0", "h1")] == ["success", "success"]
    assert (by_path["h2"].status, by_path["h2"].attempts) == ("pending", 1)  # to be retried
    # The two it did not try: not counted as attempted, due now, sent back in one message.
    for path in ("h3", "h4"):
        assert (by_path[path].status, by_path[path].attempts) == ("pending", 0)
        assert by_path[path].next_attempt_at <= timezone.now()
    assert [str(by_path["h3"].pk), str(by_path["h4"].pk)] in queued_batches(redis_url)


def test_a_probing_batch_sends_the_probe_only(user, receiver, redis_url):
    receiver.answer("/h0", Answer(500))
    overrides = {**FAST_RETRIES, "BREAKER_FAILURES": 1, "BREAKER_COOLDOWN": 0.05}
    with override_settings(REST_HOOKS=overrides):  # no REDIS_URL: the in-process gate
        first, *rest = fan_out_batch(user, receiver, 4)
        deliver_batch([str(first.pk)])  # a 500: the breaker opens
        time.sleep(0.1)  # the cool-down is over: one probe may go
        redis.Redis.from_url(redis_url).flushdb()
        deliver_batch([str(d.pk) for d in rest])
    assert [r.path for r in receiver.requests] == ["/h0", "/h1"]
    # The others wait for the probe's answer, deferred, in one message.
    held = [m["args"][0] for m in deliver_messages(redis_url, "rest_hooks.DQ")]
    assert held == [[str(d.pk) for d in rest[1:]]]
    assert [d.attempts for d in Delivery.objects.filter(pk__in=[d.pk for d in rest[1:]])] == [0, 0]


# -- bodies -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    before=st.dictionaries(st.text(), json_values, max_size=3),
    after=st.dictionaries(st.text(), json_values, max_size=3),
    hook=st.fixed_dictionaries({"id": st.integers(), "event": st.text(), "target": st.text()}),
)
def test_the_body_is_the_payload_with_this_hooks_member(before, after, hook):
    """Each delivery splices its hook into the payload, parsed once per event: the bytes
    are those of parsing it and writing it again with the hook in place."""
    payload = {**before, "hook": {"id": 0, "event": "", "target": ""}, **after}
    text = json.dumps(payload)
    event = Event(name="e", payload=text, has_hook_member=True)
    expected = json.dumps({**json.loads(text), "hook": hook}).encode()
    assert build_body(event, SimpleNamespace(dict=lambda: hook)) == expected


@pytest.mark.parametrize(("hooks", "reads"), [(3, 1), (60, 2), (600, 3)])
def test_the_dispatch_actor_reads_few_subscribers_whole_once(
    user, receiver, redis_url, hooks, reads
):
    """Up to a batch of subscribers, the hooks the actor plans with are those it sends to;
    more are planned from three columns a hook (one query a chunk, besides the batch's
    worth read whole), and the first batch's hooks are among those read whole."""
    for i in range(hooks):
        make_hook(user, receiver, f"/h{i}")
    add_book(user)
    chunked = FAST_RETRIES | {"FANOUT_CHUNK_SIZE": 500}
    with override_settings(REST_HOOKS=chunked), CaptureQueriesContext(connection) as seen:
        assert fan_out(Event.objects.get().pk, deliver_here=True) == hooks
    table = f'FROM "{Hook._meta.db_table}"'
    assert sum(q["sql"].startswith("SELECT") and table in q["sql"] for q in seen) == reads
    sent = Delivery.objects.filter(status=Delivery.Status.SUCCESS)
    assert len(receiver.requests) == sent.count() >= 1
    assert {r.path for r in receiver.requests} == {urlsplit(d.hook.target).path for d in sent}


def test_the_dispatch_actor_delivers_the_first_batch_itself(user, receiver, redis_url):
    """An event with few subscribers reaches them one broker round trip sooner."""
    other = Receiver()
    try:
        make_hook(user, receiver, "/first")
        make_hook(user, other, "/second")  # another target: another batch
        add_book(user)
        redis.Redis.from_url(redis_url).flushdb()
        with override_settings(REST_HOOKS=FAST_RETRIES):
            assert fan_out(Event.objects.get().pk, deliver_here=True) == 2
        assert [r.path for r in receiver.requests] == ["/first"]  # sent by this thread
        assert other.requests == []
        (queued,) = queued_batches(redis_url)  # the other batch went to the broker
        assert queued == [str(Delivery.objects.get(hook__target=other.url("/second")).pk)]
    finally:
        other.close()


def test_a_hook_deleted_after_the_claim_is_not_an_error(user, receiver, monkeypatch):
    """Its deliveries went with it (CASCADE): nothing to send, nothing to raise."""
    kept, gone = make_hook(user, receiver, "/kept"), make_hook(user, receiver, "/gone")
    add_book(user)
    with override_settings(REST_HOOKS=FAST_RETRIES):
        fan_out(Event.objects.get().pk)  # two batches, one a target, sent to no one
        ids = [str(pk) for pk in Delivery.objects.order_by("hook_id").values_list("pk", flat=True)]

        def claim_then_delete(delivery_ids: list[str]) -> list[Delivery]:
            claimed = claim(delivery_ids)
            Hook.objects.filter(pk=gone.pk).delete()
            return claimed

        monkeypatch.setattr("rest_hooks.worker.batch.claim", claim_then_delete)
        deliver_batch(ids)
    assert [r.path for r in receiver.requests] == ["/kept"]
    assert list(Delivery.objects.values_list("hook_id", "status")) == [(kept.pk, "success")]


def test_a_hook_deleted_while_its_request_was_in_flight_costs_only_its_attempt(
    user, receiver, monkeypatch
):
    """Its delivery went with it; the batch's other attempts are recorded all the same."""
    kept, gone = make_hook(user, receiver, "/kept"), make_hook(user, receiver, "/gone")
    add_book(user)
    with override_settings(REST_HOOKS=FAST_RETRIES):
        fan_out(Event.objects.get().pk)
        ids = [str(pk) for pk in Delivery.objects.order_by("hook_id").values_list("pk", flat=True)]

        def delete_then_record(tried: list[Any], instances: dict[Any, Any]) -> None:
            Hook.objects.filter(pk=gone.pk).delete()  # after the POSTs, before the write
            record(tried, instances)

        monkeypatch.setattr("rest_hooks.worker.batch.record", delete_then_record)
        deliver_batch(ids)
    assert sorted(r.path for r in receiver.requests) == ["/gone", "/kept"]
    (delivery,) = Delivery.objects.all()
    assert (delivery.hook_id, delivery.status) == (kept.pk, "success")
    assert [a.outcome for a in delivery.attempt_log.all()] == ["success"]
