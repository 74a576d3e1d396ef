"""The management commands: rest_hooks_relay, rest_hooks_replay, rest_hooks_purge."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks import tasks
from rest_hooks.management.commands import rest_hooks_purge, rest_hooks_replay
from rest_hooks.models import Delivery, DeliveryAttempt, Event, Hook

pytestmark = pytest.mark.django_db

NO_RETRIES = {"ALLOW_PRIVATE_TARGETS": True, "RETRY_SCHEDULE": []}
PENDING = Delivery.Status.PENDING
SUCCESS = Delivery.Status.SUCCESS
FAILED = Delivery.Status.FAILED
CANCELLED = Delivery.Status.CANCELLED
#: What a command that queued work says with Dramatiq workers (the suite's Redis broker).
FOR_THE_WORKERS = "Queued for the Dramatiq workers; this command does not wait for them."


def run(name: str, *args: str) -> tuple[str, str]:
    """Run a command; return its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def at(day: int) -> datetime:
    """A day of January 2026, midnight UTC."""
    return datetime(2026, 1, day, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


def make_hook(user: Any, event: str = "book.added", path: str = "/hook") -> Hook:
    return Hook.objects.create(user=user, event=event, target=f"https://example.com{path}")


def make_event(name: str = "book.added", **fields: Any) -> Event:
    fields.setdefault("status", Event.Status.DISPATCHED)
    return Event.objects.create(name=name, payload=json.dumps({"data": {}}), **fields)


def make_delivery(hook: Hook, status: str, created_at: datetime, **fields: Any) -> Delivery:
    event = fields.pop("event", None) or make_event(hook.event, created_at=created_at)
    fields.setdefault("next_attempt_at", created_at if status == PENDING else None)
    finished = None if status == PENDING else created_at + timedelta(minutes=1)
    return Delivery.objects.create(
        event=event,
        hook=hook,
        status=status,
        attempts=3,
        created_at=created_at,
        finished_at=finished,
        **fields,
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Capture the messages the actors would be sent, instead of sending them."""
    messages: dict[str, list[Any]] = {"dispatch": [], "deliver": []}

    def record(name: str, first: Any) -> None:
        # A deliver message carries a batch of delivery ids: count each.
        messages[name].extend(first if isinstance(first, list) else [first])

    for name in messages:
        actor = getattr(tasks, name)
        monkeypatch.setattr(actor, "send", lambda *args, _n=name: record(_n, args[0]))
        monkeypatch.setattr(
            actor,
            "send_with_options",
            lambda *, args, kwargs=None, delay=None, _n=name: record(_n, args[0]),
        )
    return messages


# -- rest_hooks_relay -------------------------------------------------------------------------


def test_relay_enqueues_pending_events_and_due_deliveries(user):
    long_ago = days_ago(1)
    pending_event = make_event(status=Event.Status.PENDING, enqueued_at=long_ago)
    dispatched = make_event(enqueued_at=long_ago)
    hook = make_hook(user)
    due = make_delivery(hook, PENDING, long_ago)
    make_delivery(hook, FAILED, long_ago)
    make_delivery(hook, PENDING, long_ago, next_attempt_at=timezone.now() + timedelta(hours=1))

    before = timezone.now()
    out, _err = run("rest_hooks_relay")

    assert out.splitlines() == ["Relayed 1 event and 1 delivery.", FOR_THE_WORKERS]
    pending_event.refresh_from_db()
    assert pending_event.enqueued_at >= before
    dispatched.refresh_from_db()
    assert dispatched.enqueued_at == long_ago
    due.refresh_from_db()
    assert due.next_attempt_at >= before


def test_relay_sends_exactly_the_pending_work(user, sent):
    events = [make_event(status=Event.Status.PENDING) for _ in range(3)]
    make_event()  # dispatched
    hook = make_hook(user)
    due = make_delivery(hook, PENDING, days_ago(1))
    make_delivery(hook, SUCCESS, days_ago(1))
    out, _err = run("rest_hooks_relay")
    assert out.splitlines() == ["Relayed 3 events and 1 delivery.", FOR_THE_WORKERS]
    assert sorted(sent["dispatch"]) == [e.pk for e in events]
    assert [str(d) for d in sent["deliver"]] == [str(due.pk)]


def test_relay_with_nothing_pending(sent):
    make_event()
    out, _err = run("rest_hooks_relay")
    assert out.strip() == "Relayed 0 events and 0 deliveries."
    assert sent == {"dispatch": [], "deliver": []}


# -- rest_hooks_replay ------------------------------------------------------------------------


@pytest.fixture
def log(user: Any, django_user_model: Any) -> dict[str, Any]:
    """Deliveries of two hooks in every state, on different days of January 2026."""
    added = make_hook(user, "book.added", "/added")
    changed = make_hook(django_user_model.objects.create(username="x"), "book.changed", "/ch")
    rows = {
        "a": make_delivery(added, FAILED, at(10)),
        "b": make_delivery(added, SUCCESS, at(20)),
        "c": make_delivery(changed, FAILED, at(15)),
        "d": make_delivery(changed, CANCELLED, at(25)),
        "e": make_delivery(added, PENDING, at(12)),
        "f": make_delivery(changed, FAILED, at(28)),
    }
    return {"hooks": {"added": added, "changed": changed}, **rows}


def replayed(log: dict[str, Any]) -> set[str]:
    """The names of the fixture's deliveries that were queued again."""
    names = set()
    for name in "abcdef":
        before = log[name]
        after = Delivery.objects.get(pk=before.pk)
        if (after.status, after.attempts, after.finished_at) != (
            before.status,
            before.attempts,
            before.finished_at,
        ):
            assert after.status == PENDING
            assert after.attempts == 0
            assert after.finished_at is None
            names.add(name)
    return names


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "acf"),
        (["--status", "all"], "abcdf"),
        (["--status", "success"], "b"),
        (["--status", "cancelled"], "d"),
        (["--event", "book.added"], "a"),
        (["--event", "book.added", "--status", "all"], "ab"),
        (["--event", "book.read", "--status", "all"], ""),  # known, never sent
        (["--hook", "changed"], "cf"),
        (["--hook", "changed", "--status", "all"], "cdf"),
        (["--since", "2026-01-15T00:00:00Z", "--status", "all"], "bcdf"),
        (["--until", "2026-01-15T00:00:00+00:00", "--status", "all"], "a"),
        (["--since", "2026-01-12", "--until", "2026-01-26", "--status", "all"], "bcd"),
        (["--since", "2026-01-11T01:00:00+01:00", "--until", "2026-01-16T00:00:00Z"], "c"),
    ],
)
def test_replay_selects_exactly(log, sent, args, expected):
    args = [str(log["hooks"]["changed"].pk) if a == "changed" else a for a in args]
    out, _err = run("rest_hooks_replay", *args, "--dry-run")
    counted = f"{len(expected)} {'delivery' if len(expected) == 1 else 'deliveries'}"
    assert out.strip() == f"{counted} would be sent again."
    assert replayed(log) == set()
    assert sent["deliver"] == []

    out, _err = run("rest_hooks_replay", *args)
    queued = f"{counted} queued again."
    assert out.splitlines() == ([queued, FOR_THE_WORKERS] if expected else [queued])
    assert replayed(log) == set(expected)
    assert {str(d) for d in sent["deliver"]} == {str(log[n].pk) for n in expected}


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday"],
        ["--until", "2026-02-30T10:00:00"],
        ["--since", "2026-01-01", "--until", "soon"],
        ["--status", "pending"],
        ["--status", "nope"],
        ["--hook", "abc"],
    ],
)
def test_replay_refuses_bad_options(log, sent, args):
    with pytest.raises(CommandError):
        run("rest_hooks_replay", *args)
    assert replayed(log) == set()
    assert sent["deliver"] == []


def test_replay_in_batches_with_a_progress_bar_on_stderr(user, sent, monkeypatch):
    monkeypatch.setattr(rest_hooks_replay, "BATCH", 2)
    hook = make_hook(user)
    failed = [make_delivery(hook, FAILED, at(day)) for day in range(1, 6)]
    out, err = run("rest_hooks_replay")
    assert out.splitlines() == ["5 deliveries queued again.", FOR_THE_WORKERS]
    assert sorted(str(d) for d in sent["deliver"]) == sorted(str(d.pk) for d in failed)
    assert not Delivery.objects.exclude(status=PENDING).exists()
    assert "5/5" in err
    assert "5/5" not in out


def test_replayed_delivery_is_sent_again_with_the_same_id(user, receiver, run_pipeline):
    Hook.objects.create(user=user, event="book.added", target=receiver.url("/hook"))
    receiver.answer("/hook", Answer(500))
    Book.objects.create(user=user, title="T", pages=1, fiction=True)
    with override_settings(REST_HOOKS=NO_RETRIES):
        (delivery,) = run_pipeline()
        assert delivery.status == FAILED
        out, _err = run("rest_hooks_replay", "--event", "book.added")
        assert out.splitlines() == ["1 delivery queued again.", FOR_THE_WORKERS]
        (delivery,) = run_pipeline()
    assert delivery.status == SUCCESS
    assert delivery.attempts == 1
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(delivery.pk)
    assert second.headers["x-hook-attempt"] == "1"


# -- rest_hooks_purge -------------------------------------------------------------------------


@pytest.fixture
def history(user: Any) -> dict[str, Any]:
    """Old and recent work, finished and pending. Retention is 30 days by default."""
    hook = make_hook(user)
    old, recent = days_ago(40), days_ago(10)
    old_event_with_a_recent_delivery = make_event(created_at=old)
    rows = {
        "old success": make_delivery(hook, SUCCESS, old),
        "old failed": make_delivery(hook, FAILED, old),
        "old cancelled": make_delivery(hook, CANCELLED, old),
        "old pending": make_delivery(hook, PENDING, old),
        "recent success": make_delivery(hook, SUCCESS, recent),
        "recent pending": make_delivery(hook, PENDING, recent),
        # Fanned out long after its event (the broker was down): the delivery is recent.
        "late success": make_delivery(
            hook, SUCCESS, recent, event=old_event_with_a_recent_delivery
        ),
    }
    events = {
        "old dispatched, no hooks": make_event(created_at=old),
        "old pending": make_event(status=Event.Status.PENDING, created_at=old),
        "recent dispatched": make_event(created_at=recent),
        "recent pending": make_event(status=Event.Status.PENDING, created_at=recent),
    }
    for name, delivery in rows.items():
        events[f"of {name}"] = delivery.event
    return {"deliveries": rows, "events": events}


def remaining(history: dict[str, Any]) -> tuple[set[str], set[str]]:
    deliveries = set(Delivery.objects.values_list("pk", flat=True))
    events = set(Event.objects.values_list("pk", flat=True))
    return (
        {n for n, d in history["deliveries"].items() if d.pk in deliveries},
        {n for n, e in history["events"].items() if e.pk in events},
    )


EVERY_DELIVERY = {
    "old success",
    "old failed",
    "old cancelled",
    "old pending",
    "recent success",
    "recent pending",
    "late success",
}
EVERY_EVENT = {
    "old dispatched, no hooks",
    "old pending",
    "recent dispatched",
    "recent pending",
    *(f"of {name}" for name in EVERY_DELIVERY),
}


def test_replay_of_an_event_nobody_knows_says_so(log):
    with pytest.raises(
        CommandError, match=r"no event is named 'nope.nope' \(HOOK_EVENTS has: book"
    ):
        run("rest_hooks_replay", "--event", "nope.nope")


def test_replay_of_an_event_removed_from_hook_events_still_works(log, sent):
    with override_settings(HOOK_EVENTS={"user.logged_in": None}):
        out, _err = run("rest_hooks_replay", "--event", "book.added", "--dry-run")
    assert out.strip().endswith("would be sent again.")
    assert not out.startswith("0 ")


def test_purge_deletes_old_finished_work_only(history):
    out, _err = run("rest_hooks_purge")
    assert out.strip() == "Deleted 3 deliveries and 4 events older than 30 days."
    deliveries, events = remaining(history)
    assert deliveries == {"old pending", "recent success", "recent pending", "late success"}
    assert events == EVERY_EVENT - {
        "old dispatched, no hooks",
        "of old success",
        "of old failed",
        "of old cancelled",
    }


def test_purge_never_deletes_pending_work(history):
    out, _err = run("rest_hooks_purge", "--days", "0")
    assert out.strip() == "Deleted 5 deliveries and 7 events older than 0 days."
    deliveries, events = remaining(history)
    assert deliveries == {"old pending", "recent pending"}
    assert events == {"old pending", "recent pending", "of old pending", "of recent pending"}


def test_purge_days_option(history):
    out, _err = run("rest_hooks_purge", "--days", "45")
    assert out.strip() == "Deleted 0 deliveries and 0 events older than 45 days."
    assert remaining(history) == (EVERY_DELIVERY, EVERY_EVENT)


def test_purge_follows_retention_days(history):
    with override_settings(REST_HOOKS={"RETENTION_DAYS": 5}):
        out, _err = run("rest_hooks_purge")
    assert out.strip() == "Deleted 5 deliveries and 7 events older than 5 days."


def test_purge_dry_run_deletes_nothing(history):
    out, _err = run("rest_hooks_purge", "--dry-run")
    assert out.strip() == "3 deliveries and 4 events would be deleted."
    assert remaining(history) == (EVERY_DELIVERY, EVERY_EVENT)
    out, _err = run("rest_hooks_purge", "--dry-run", "--days", "0")
    assert out.strip() == "5 deliveries and 7 events would be deleted."
    assert remaining(history) == (EVERY_DELIVERY, EVERY_EVENT)


def test_purge_in_batches_with_a_progress_bar_on_stderr(user, monkeypatch):
    monkeypatch.setattr(rest_hooks_purge, "BATCH", 2)
    hook = make_hook(user)
    for _ in range(5):
        delivery = make_delivery(hook, SUCCESS, days_ago(40))
        DeliveryAttempt.objects.create(
            delivery=delivery, number=1, started_at=days_ago(40), outcome="success", duration_ms=1
        )
    # Attempts whose delivery was deleted while they were recorded: old ones go too.
    recent_orphan = uuid.uuid4()
    for delivery_id, started in ((uuid.uuid4(), days_ago(40)), (recent_orphan, days_ago(1))):
        DeliveryAttempt.objects.create(
            delivery_id=delivery_id, number=1, started_at=started, outcome="failed", duration_ms=1
        )
    kept = make_delivery(hook, SUCCESS, days_ago(1))
    DeliveryAttempt.objects.create(
        delivery=kept, number=1, started_at=days_ago(1), outcome="success", duration_ms=1
    )
    out, err = run("rest_hooks_purge")
    assert out.strip() == "Deleted 5 deliveries and 5 events older than 30 days."
    assert list(Delivery.objects.all()) == [kept]
    # A delivery's attempts go with it, and only those.
    left = DeliveryAttempt.objects.order_by("started_at")
    assert [a.delivery_id for a in left] == [recent_orphan, kept.pk]
    assert list(Event.objects.all()) == [kept.event]
    assert "5/5" in err
    assert "5/5" not in out


# -- --help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("rest_hooks_relay", ["pending event", "due delivery"]),
        ("rest_hooks_replay", ["--event", "--hook", "--status", "--since", "--until", "--dry-run"]),
        ("rest_hooks_purge", ["--days", "--dry-run", "RETENTION_DAYS"]),
    ],
)
def test_help(capsys, name, options):
    with pytest.raises(SystemExit) as exit_info:
        call_command(name, "--help")
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"usage: {name}" in text
    for option in options:
        assert option in text, option


def test_purge_refuses_a_negative_retention(history):
    with pytest.raises(CommandError):
        run("rest_hooks_purge", "--days", "-1")
    assert remaining(history) == (EVERY_DELIVERY, EVERY_EVENT)


def test_progress_bars_redraw_in_place(history):
    _out, err = run("rest_hooks_purge", "--days", "0")
    assert "\r" in err
    assert err.count("\n") <= 2  # one line per bar (deliveries, events), not per update
