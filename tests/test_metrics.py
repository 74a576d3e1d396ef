"""Metrics: the families and labels /metrics shows, what each counts, who may read them.

These run in one process (prometheus-client's single-process mode); test_metrics_e2e.py
has worker processes, multiprocess mode and a real Prometheus server.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from bookstore.models import Book
from bookstore.receiver import Answer, Receiver
from rest_hooks.delivery.flow import Result, Tally, origin_of
from rest_hooks.metrics import breakers
from rest_hooks.metrics.middleware import MetricsMiddleware
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.signals import raw_hook_event
from rest_hooks.worker import gate
from tests.helpers import FAMILIES

pytestmark = pytest.mark.django_db

PRIVATE_OK = {"ALLOW_PRIVATE_TARGETS": True}


def scrape(client: Any, **headers: Any) -> dict[str, Any]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families = text_string_to_metric_families(response.content.decode())
    return {f.name: f for f in families if f.name.startswith("rest_hooks_")}


def value(client: Any, sample: str, **labels: str) -> float:
    """One sample's value in a scrape of /metrics (0 when absent)."""
    for family in scrape(client).values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return 0.0


def make_hook(user: Any, receiver: Any, path: str = "/hook", event: str = "book.added") -> Hook:
    return Hook.objects.create(user=user, event=event, target=receiver.url(path))


def add_book(user: Any, fail: bool = False) -> Book:
    """A book in a transaction of its own; ``fail``: rolled back."""
    with transaction.atomic():
        book = Book.objects.create(user=user, title="M", pages=1, fiction=True)
        if fail:
            raise RuntimeError("rolled back")
        return book


def test_metrics_shows_every_family_with_bounded_labels(
    client, user, receiver, run_pipeline, django_capture_on_commit_callbacks
):
    """Every family, after a capture, a refusal, a success, a 410, a deferral, a 500 and a
    breaker."""
    down = Receiver()  # a second target, whose breaker opens
    down.default = Answer(500)
    make_hook(user, receiver, "/ok")
    gone = make_hook(user, receiver, "/gone")
    Hook.objects.create(user=user, event="book.added", target=down.url("/down"))
    receiver.answer("/gone", Answer(410))
    with django_capture_on_commit_callbacks(execute=True):
        add_book(user)
        raw_hook_event.send(sender=None, event_name="user.logged_in", payload={1j}, user=user)
    flow = {"RETRY_SCHEDULE": [60], "BREAKER_FAILURES": 1}
    try:
        # One of the two deliveries to `receiver` goes, the other is deferred (rate_limit).
        with override_settings(REST_HOOKS={**PRIVATE_OK, **flow, "RATE_LIMIT": "1/5s"}):
            run_pipeline()
        Delivery.objects.filter(attempts=0).update(next_attempt_at=timezone.now())
        with override_settings(REST_HOOKS={**PRIVATE_OK, **flow}):
            run_pipeline()
    finally:
        down.close()
    gone.refresh_from_db()
    assert not gone.is_active

    families = scrape(client)
    shown = {
        name: (f.type, {k for s in f.samples for k in s.labels} - {"le"})
        for name, f in families.items()
    }
    assert shown == FAMILIES
    # No label value is a URL, a host, a hook id or a user.
    forbidden = {receiver.url("/ok"), down.url("/down"), "127.0.0.1", str(gone.pk), user.username}
    values = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    assert not values & forbidden, values & forbidden


def test_an_event_counts_when_its_transaction_commits(
    client, user, django_capture_on_commit_callbacks
):
    before = value(client, "rest_hooks_events_captured_total", event="book.added")
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            add_book(user, fail=True)
        add_book(user)
    assert value(client, "rest_hooks_events_captured_total", event="book.added") == before + 1


def test_an_event_not_in_hook_events_counts_as_other(
    client, user, django_capture_on_commit_callbacks
):
    before = value(client, "rest_hooks_events_captured_total", event="other")
    with django_capture_on_commit_callbacks(execute=True):
        raw_hook_event.send(sender=None, event_name=f"made.up.{user.pk}", payload={}, user=user)
    assert value(client, "rest_hooks_events_captured_total", event="other") == before + 1


def test_fan_out_duration_and_lag_are_observed(client, user, receiver, run_pipeline):
    for path in ("/a", "/b", "/c"):
        make_hook(user, receiver, path)
    add_book(user)
    # The event happened 40 s ago, to the hooks that existed then.
    Event.objects.update(created_at=timezone.now() - timedelta(seconds=40))
    Hook.objects.update(created=timezone.now() - timedelta(seconds=41))
    names = [
        "rest_hooks_fanout_size_count",
        "rest_hooks_fanout_size_sum",
        "rest_hooks_delivery_lag_seconds_count",
        "rest_hooks_delivery_duration_seconds_count",
    ]
    labels = [{"event": "book.added"}] * 3 + [{"event": "book.added", "host": ""}]
    slow_lag = {"event": "book.added", "le": "30.0"}
    before = [value(client, n, **lab) for n, lab in zip(names, labels, strict=True)]
    lag_under_30 = value(client, "rest_hooks_delivery_lag_seconds_bucket", **slow_lag)
    with override_settings(REST_HOOKS=PRIVATE_OK):
        run_pipeline()
    after = [value(client, n, **lab) for n, lab in zip(names, labels, strict=True)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 3, 3, 3]
    # The lag runs from the event's capture: 40 s ago, so above the 30 s bucket.
    assert value(client, "rest_hooks_delivery_lag_seconds_bucket", **slow_lag) == lag_under_30


def test_the_target_host_label_is_opt_in(client, user, receiver, run_pipeline):
    make_hook(user, receiver)
    add_book(user)
    labels = {"event": "book.added", "outcome": "success", "status_class": "2xx"}
    before = value(client, "rest_hooks_delivery_attempts_total", **labels, host="127.0.0.1")
    with override_settings(REST_HOOKS={**PRIVATE_OK, "METRICS_TARGET_HOST": True}):
        run_pipeline()
    after = value(client, "rest_hooks_delivery_attempts_total", **labels, host="127.0.0.1")
    assert after == before + 1


def test_outbox_gauges_are_read_from_the_database_at_scrape_time(client, user):
    assert value(client, "rest_hooks_outbox_pending_events") == 0
    assert value(client, "rest_hooks_outbox_oldest_pending_age_seconds") == 0
    for _ in range(3):
        add_book(user)
    Event.objects.filter(pk=Event.objects.order_by("pk")[0].pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    assert value(client, "rest_hooks_outbox_pending_events") == 3
    assert 600 <= value(client, "rest_hooks_outbox_oldest_pending_age_seconds") < 700
    Event.objects.update(status=Event.Status.DISPATCHED)
    assert value(client, "rest_hooks_outbox_pending_events") == 0


def test_open_breakers_are_counted_from_the_gate(client, user, receiver, redis_url):
    hook = make_hook(user, receiver)
    with override_settings(
        REST_HOOKS={**PRIVATE_OK, "REDIS_URL": redis_url, "BREAKER_FAILURES": 2}
    ):
        assert value(client, "rest_hooks_breakers", state="open") == 0
        for _ in range(2):
            admission = gate.admit(hook)
            assert isinstance(admission, gate.Admission)
            gate.report(admission, Tally.of(Result.FAILURE), None)
        assert gate.current_gate().state(origin_of(hook.target)).value == "open"
        assert value(client, "rest_hooks_breakers", state="open") == 1
        assert value(client, "rest_hooks_breaker_transitions_total", to_state="open", host="") >= 1
        # A target remembered as open whose state the gate no longer has counts as closed.
        breakers.remember("http://gone.example:81", "open")
        assert value(client, "rest_hooks_breakers", state="open") == 1
        assert value(client, "rest_hooks_breakers", state="half_open") == 0


def test_attempt_log_line_has_structured_fields(user, receiver, run_pipeline, caplog):
    caplog.set_level(logging.INFO, logger="rest_hooks.worker.record")
    hook = make_hook(user, receiver)
    receiver.answer("/hook", Answer(503))
    add_book(user)
    with override_settings(REST_HOOKS={**PRIVATE_OK, "RETRY_SCHEDULE": [0]}):
        (delivery,) = run_pipeline()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Delivery ")]
    fields = {k: getattr(record, k) for k in ("delivery_id", "hook_id", "event", "event_id")}
    assert fields == {
        "delivery_id": str(delivery.pk),
        "hook_id": hook.pk,
        "event": "book.added",
        "event_id": delivery.event_id,
    }
    assert (record.attempt, record.outcome, record.status_code) == (1, "retry", 503)
    assert record.duration_ms >= 0
    assert hook.secret not in str(vars(record))


# -- who may read /metrics ------------------------------------------------------------


def get(client: Any, addr: str = "127.0.0.1", token: str | None = None) -> Any:
    headers = {"REMOTE_ADDR": addr}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get("/metrics", **headers)


def assert_refused(response: Any) -> None:
    assert (response.status_code, response.content) == (403, b"")


def test_by_default_only_loopback_clients_may_read(client):
    assert get(client, "127.0.0.1").status_code == 200
    assert get(client, "::1").status_code == 200
    assert get(client, "::ffff:127.0.0.1").status_code == 200
    for addr in ("10.1.2.3", "192.0.2.1", "2001:db8::1", "not-an-address"):
        assert_refused(get(client, addr))


@override_settings(REST_HOOKS={"METRICS_TOKEN": "s3cret-token"})
def test_a_token_is_required_from_anywhere_when_set(client):
    assert get(client, "192.0.2.1", token="s3cret-token").status_code == 200
    for token in (None, "", "s3cret-toke", "s3cret-token2", "S3CRET-TOKEN"):
        assert_refused(get(client, "127.0.0.1", token=token))
    wrong_scheme = client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-token")
    assert_refused(wrong_scheme)


@override_settings(REST_HOOKS={"METRICS_ALLOWED_NETWORKS": ["10.8.0.0/16", "2001:db8::/32"]})
def test_allowed_networks_replace_loopback(client):
    assert get(client, "10.8.200.1").status_code == 200
    assert get(client, "2001:db8::5").status_code == 200
    assert_refused(get(client, "10.9.0.1"))
    assert_refused(get(client, "127.0.0.1"))


@override_settings(
    REST_HOOKS={"METRICS_TOKEN": "t0ken", "METRICS_ALLOWED_NETWORKS": ["10.8.0.0/16"]}
)
def test_token_and_networks_are_both_required_when_both_set(client):
    assert get(client, "10.8.0.1", token="t0ken").status_code == 200
    assert_refused(get(client, "10.8.0.1"))
    assert_refused(get(client, "10.9.0.1", token="t0ken"))


def test_only_get_and_head(client):
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405
    assert_refused(client.post("/metrics", REMOTE_ADDR="10.1.2.3"))


def test_openmetrics_when_asked(client):
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


@override_settings(REST_HOOKS={"METRICS_ALLOWED_NETWORKS": []})
def test_no_allowed_network_means_nobody(client):
    assert_refused(get(client, "127.0.0.1"))


# -- multiprocess clean-up ------------------------------------------------------------


def test_a_stopping_worker_process_leaves_no_live_gauge(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    pid = os.getpid()
    live, counter, other = (
        tmp_path / f"gauge_livesum_{pid}.db",
        tmp_path / f"counter_{pid}.db",
        tmp_path / f"gauge_livesum_{pid + 1}.db",
    )
    for f in (live, counter, other):
        f.write_bytes(b"")
    MetricsMiddleware().after_worker_shutdown(None, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([counter.name, other.name])


def test_families_register_nowhere_at_import(client):
    """Nothing lands in prometheus-client's global registry, which django-prometheus and
    Dramatiq's middleware use: no clash, and no duplicate registration whoever imports
    what. Each scrape builds a registry of its own."""
    from prometheus_client import REGISTRY

    names = {m.name for m in REGISTRY.collect()}
    assert not {n for n in names if n.startswith("rest_hooks_")}
    assert scrape(client) == scrape(client)
