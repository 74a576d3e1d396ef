"""Telling a hook's owner: warnings at parts of DISABLE_AFTER, the disabling, each once."""

from __future__ import annotations

import email
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Hook, HookNotice
from rest_hooks.security.signing import generate_secret, verify
from rest_hooks.signals import hook_failing
from rest_hooks.worker.notices import NoticeNotSent, send_notice
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db

OPS_SECRET = generate_secret()
FAILING = {"ALLOW_PRIVATE_TARGETS": True, "RETRY_SCHEDULE": [0] * 20, "RETRY_JITTER": 0}
#: How long the hooks of these tests have been failing when a test starts.
FAILED_FOR = 50.0


@pytest.fixture
def owner(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(
        username="owner", email="owner@example.com", password="x"
    )


@pytest.fixture
def failing_hook(owner: Any, receiver: Any) -> Hook:
    """A hook whose receiver answers 500, in a run of failures that began FAILED_FOR ago."""
    receiver.default = Answer(500)
    hook = Hook.objects.create(user=owner, event="book.added", target=receiver.url("/hook"))
    hook.failing_since = timezone.now() - timedelta(seconds=FAILED_FOR)
    hook.save()
    return hook


@pytest.fixture
def warned() -> Any:
    heard: list[dict[str, Any]] = []
    hook_failing.connect(lambda **kw: heard.append(kw), weak=False, dispatch_uid="warned")
    yield heard
    hook_failing.disconnect(dispatch_uid="warned")


def at(percent: float) -> dict[str, Any]:
    """Settings under which the run of failures has lasted ``percent`` of DISABLE_AFTER
    (the run's start stays, so that its notices are those of one run)."""
    return {**FAILING, "DISABLE_AFTER": FAILED_FOR * 100 / percent}


def fail_once(owner: Any, run_pipeline: Any, percent: float, **settings: Any) -> None:
    """A new delivery, and one failed attempt of each due one."""
    Book.objects.create(user=owner, title="T", pages=1, fiction=True)
    with override_settings(REST_HOOKS={**at(percent), **settings}):
        run_pipeline()


def notices(hook: Hook) -> list[tuple[str, int]]:
    return list(HookNotice.objects.filter(hook=hook).values_list("stage", "percent"))


def send_all() -> None:
    for notice in HookNotice.objects.all():
        send_notice(str(notice.pk))


def test_the_owner_is_warned_at_each_stage_once(
    failing_hook: Hook, owner: Any, run_pipeline: Any, warned: list[Any]
) -> None:
    fail_once(owner, run_pipeline, 30)
    assert notices(failing_hook) == []
    fail_once(owner, run_pipeline, 55)
    fail_once(owner, run_pipeline, 60)  # the same run, the same stage
    assert notices(failing_hook) == [("failing", 50)]
    assert [w["percent"] for w in warned] == [50]
    assert warned[0]["hook"].pk == failing_hook.pk
    assert warned[0]["failing_since"] == failing_hook.failing_since
    lasts = warned[0]["disable_at"] - warned[0]["failing_since"]  # DISABLE_AFTER at 55%
    assert lasts == timedelta(seconds=FAILED_FOR * 100 / 55)

    with override_settings(REST_HOOKS=at(60)):
        send_all()
        send_all()  # a message delivered twice sends nothing twice
    (message,) = mail.outbox
    assert message.to == ["owner@example.com"]
    assert failing_hook.target in message.subject
    assert "50%" in message.body
    assert "\n" not in message.subject

    fail_once(owner, run_pipeline, 95)
    assert notices(failing_hook) == [("failing", 50), ("failing", 90)]
    assert [w["percent"] for w in warned] == [50, 90]


def test_failures_after_a_stage_write_no_notice_again(
    failing_hook: Hook, owner: Any, run_pipeline: Any
) -> None:
    fail_once(owner, run_pipeline, 55)
    with CaptureQueriesContext(connection) as queries:
        fail_once(owner, run_pipeline, 60)
    assert not [q for q in queries if "rest_hooks_hooknotice" in q["sql"]]
    assert notices(failing_hook) == [("failing", 50)]


def test_a_hook_that_recovers_and_fails_anew_is_warned_again(
    failing_hook: Hook, owner: Any, receiver: Any, run_pipeline: Any, warned: list[Any]
) -> None:
    fail_once(owner, run_pipeline, 60)
    receiver.default = Answer(200)
    fail_once(owner, run_pipeline, 60)  # a success ends the run
    failing_hook.refresh_from_db()
    assert failing_hook.failing_since is None
    receiver.default = Answer(500)
    fail_once(owner, run_pipeline, 60)  # a new run starts
    Hook.objects.filter(pk=failing_hook.pk).update(
        failing_since=timezone.now() - timedelta(seconds=FAILED_FOR)
    )
    fail_once(owner, run_pipeline, 60)
    assert notices(failing_hook) == [("failing", 50), ("failing", 50)]
    assert len(warned) == 2


def test_reaching_several_stages_at_once_warns_of_the_highest(
    failing_hook: Hook, owner: Any, run_pipeline: Any, warned: list[Any]
) -> None:
    fail_once(owner, run_pipeline, 95)
    assert [w["percent"] for w in warned] == [90]
    fail_once(owner, run_pipeline, 96)
    assert len(warned) == 1
    assert sorted(notices(failing_hook)) == [("failing", 50), ("failing", 90)]


def test_a_disabled_hook_is_noticed_once(owner: Any, receiver: Any, run_pipeline: Any) -> None:
    receiver.default = Answer(410)
    hook = Hook.objects.create(user=owner, event="book.added", target=receiver.url("/hook"))
    fail_once(owner, run_pipeline, 10)
    hook.refresh_from_db()
    assert not hook.is_active
    assert notices(hook) == [("disabled", 100)]
    with override_settings(REST_HOOKS=FAILING):
        send_all()
    (message,) = mail.outbox
    assert "disabled" in message.subject
    assert "410" in message.body


@pytest.mark.parametrize(
    "setting", [{"NOTICE_EMAIL": False}, {"NOTICE_AT": []}], ids=["no e-mail", "no stage"]
)
def test_notices_can_be_turned_off(
    failing_hook: Hook, owner: Any, run_pipeline: Any, setting: dict[str, Any]
) -> None:
    fail_once(owner, run_pipeline, 60, **setting)
    with override_settings(REST_HOOKS={**at(60), **setting}):
        send_all()
    assert mail.outbox == []


def test_an_owner_without_an_address_gets_the_signal_only(
    failing_hook: Hook, owner: Any, run_pipeline: Any, warned: list[Any]
) -> None:
    owner.email = ""
    owner.save()
    fail_once(owner, run_pipeline, 60)
    with override_settings(REST_HOOKS=at(60)):
        send_all()
    assert len(warned) == 1
    assert mail.outbox == []


def test_the_operational_webhook_is_signed_and_sent_once(
    failing_hook: Hook, owner: Any, receiver: Any, run_pipeline: Any
) -> None:
    fail_once(owner, run_pipeline, 60)
    ops = {
        **at(60),
        "NOTICE_WEBHOOK_URL": receiver.url("/ops"),
        "NOTICE_WEBHOOK_SECRET": OPS_SECRET,
    }
    receiver.answer("/ops", Answer(503), Answer(200))
    with override_settings(REST_HOOKS=ops):
        (notice,) = HookNotice.objects.all()
        with pytest.raises(NoticeNotSent):
            send_notice(str(notice.pk))  # the actor retries it
        send_notice(str(notice.pk))
        send_notice(str(notice.pk))
    posts = [r for r in receiver.requests if r.path == "/ops"]
    assert len(posts) == 2  # the refused one and the one taken
    assert len(mail.outbox) == 1  # e-mailed once, before the first post failed
    body = verify(posts[-1].body, posts[-1].headers, OPS_SECRET)
    assert body["type"] == "hook.failing"
    assert body["hook"] == {**failing_hook.dict(), "user": owner.pk}
    assert body["percent"] == 50
    assert posts[-1].headers["webhook-id"] == str(notice.pk)
    assert failing_hook.secret not in posts[-1].body.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_a_receiver_that_keeps_failing_warns_twice_then_disables_through_the_workers(
    owner: Any, receiver: Any, start_workers: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    mailbox = tmp_path / "mail"
    mailbox.mkdir()
    monkeypatch.setenv("REST_HOOKS_TEST_EMAIL_DIR", str(mailbox))
    workers = start_workers(
        # Every retry an attempt: no breaker opening on the 500s meanwhile.
        BREAKER_FAILURES=1000,
        BREAKER_MIN_CALLS=1000,
        RETRY_SCHEDULE=[0.3] * 40,
        RETRY_JITTER=0,
        DISABLE_AFTER=4,
        NOTICE_AT=[30, 60],
        NOTICE_WEBHOOK_URL=receiver.url("/ops"),
        NOTICE_WEBHOOK_SECRET=OPS_SECRET,
    )
    receiver.default = Answer(500)
    receiver.answer("/ops", *[Answer(200)] * 10)
    hook = Hook.objects.create(user=owner, event="book.added", target=receiver.url("/hook"))
    Book.objects.create(user=owner, title="Dune", pages=1, fiction=True)

    def ops_posts() -> list[Any]:
        return [r for r in receiver.requests if r.path == "/ops"]

    try:
        wait_until(lambda: len(ops_posts()) >= 3, "three operational notices", timeout=30)
    except AssertionError:
        print("".join(workers.output[-60:]))
        raise
    time.sleep(1.5)  # more failures meanwhile send nothing more
    types = [json.loads(r.body)["type"] for r in ops_posts()]
    percents = [json.loads(r.body)["percent"] for r in ops_posts()]
    assert list(zip(types, percents, strict=True)) == [
        ("hook.failing", 30),
        ("hook.failing", 60),
        ("hook.disabled", 100),
    ]
    hook.refresh_from_db()
    assert not hook.is_active
    messages = [email.message_from_string(p.read_text()) for p in sorted(mailbox.iterdir())]
    subjects = sorted(m["Subject"] for m in messages)
    assert len(subjects) == 3, subjects
    assert all(m["To"] == "owner@example.com" for m in messages)
    assert sum("disabled" in s for s in subjects) == 1
