"""Embedded mode, zero services: SQLite and the in-process worker deliver on their own.

``tests/embedded_scenario.py`` runs in a subprocess with ``tests.embedded_settings`` (no
django_dramatiq, no Redis, ``EMBEDDED_WORKER`` on): it saves a Book and waits for the
worker that rest_hooks starts lazily in that process. This process only runs the HTTP
receiver and checks what reached it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from bookstore.receiver import Answer, Receiver
from tests.helpers import run_fresh, run_scenario

# The scenario waits at most this long for the delivery, then exits.
WAIT = 15.0


def run_embedded(tmp_path: Path, receiver_url: str, **overrides: Any) -> dict[str, Any]:
    started = time.monotonic()
    result = run_scenario(
        "tests.embedded_scenario",
        "tests.embedded_settings",
        timeout=WAIT + 30,
        REST_HOOKS_EMBEDDED_DB=str(tmp_path / "embedded.sqlite3"),
        REST_HOOKS_EMBEDDED_WAIT=str(WAIT),
        REST_HOOKS_RECEIVER_URL=receiver_url,
        REST_HOOKS_TEST_OVERRIDES=json.dumps(overrides),
    )
    took = time.monotonic() - started
    # It exits promptly once delivered: the worker's threads do not hold the process.
    assert took < result["elapsed"] + 10, (took, result["elapsed"])
    return result


def assert_embedded(result: dict[str, Any]) -> None:
    assert result["broker"] == "StubBroker"
    assert result["global_broker_is_ours"] is True
    # Started by the first message, not before.
    assert result["worker_before_first_message"] is False
    assert result["worker_started"] is True


def test_embedded_worker_delivers_with_no_other_process(tmp_path, receiver):
    url = receiver.url("/embedded")
    result = run_embedded(tmp_path, url)
    assert_embedded(result)
    (delivery,) = result["deliveries"]
    assert delivery["status"] == "success"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200

    (request,) = receiver.requests
    assert request.path == "/embedded"
    payload = Webhook(result["secret"]).verify(request.body, request.headers)
    assert payload["hook"] == result["hook"]
    assert set(payload["hook"]) == {"id", "event", "target"}
    assert (payload["hook"]["event"], payload["hook"]["target"]) == ("book.added", url)
    assert payload["data"] == {
        "id": payload["data"]["id"],
        "title": "The Hobbit",
        "pages": 310,
        "fiction": True,
    }
    assert request.headers["webhook-id"] == request.headers["x-hook-id"] == delivery["id"]
    assert request.headers["x-hook-event"] == "book.added"
    assert request.headers["x-hook-attempt"] == "1"


def test_embedded_worker_retries(tmp_path, receiver):
    url = receiver.url("/flaky")
    receiver.answer("/flaky", Answer(500))
    result = run_embedded(tmp_path, url, RETRY_SCHEDULE=[0.2], RETRY_JITTER=0)
    assert_embedded(result)
    (delivery,) = result["deliveries"]
    assert delivery["status"] == "success"
    assert delivery["attempts"] == 2
    assert delivery["last_status_code"] == 200

    first, second = receiver.requests
    assert [first.headers["x-hook-attempt"], second.headers["x-hook-attempt"]] == ["1", "2"]
    # The same delivery id on the retry, so the receiver can de-duplicate.
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["id"]
    for request in (first, second):
        Webhook(result["secret"]).verify(request.body, request.headers)
    assert first.body == second.body
    # The retry waited for the schedule's 0.2 s, not the default 5 s.
    assert 0.15 <= second.received_at - first.received_at < 3


# -- a short-lived process: a shell, a script, a command ----------------------------------
#
# Each runs as ``python -m django ...`` with ``tests.embedded_settings`` on its own copy of
# a migrated SQLite database, and is done when it returns: what the receiver got by then
# is what the process delivered.

SETTINGS = "tests.embedded_settings"

#: Subscribes a hook at each of HOOK_TARGETS (space-separated) and saves a Book.
SUBSCRIBE_AND_SAVE = """
import os
from django.contrib.auth.models import User
from bookstore.models import Book
from rest_hooks.models import Hook
user = User.objects.create(username="tolkien")
for target in os.environ["HOOK_TARGETS"].split():
    Hook.objects.create(user=user, event="book.added", target=target)
Book.objects.create(user=user, title="The Hobbit", pages=310, fiction=True)
"""

#: A delivery to HOOK_TARGETS that failed for good some time ago.
FAILED_DELIVERY = """
import os
from django.contrib.auth.models import User
from rest_hooks.models import Delivery, Event, Hook
user = User.objects.create(username="tolkien")
hook = Hook.objects.create(user=user, event="book.added", target=os.environ["HOOK_TARGETS"])
event = Event.objects.create(name="book.added", payload="{}", status="dispatched")
Delivery.objects.create(event=event, hook=hook, status="failed", attempts=1)
"""


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database, made once for the module: each test works on a copy."""
    path = tmp_path_factory.mktemp("embedded") / "migrated.sqlite3"
    proc = run_fresh(["django", "migrate"], SETTINGS, 120, REST_HOOKS_EMBEDDED_DB=str(path))
    assert proc.returncode == 0, proc.stderr
    return path


class Project:
    """The embedded project of one test: its database, and its processes."""

    def __init__(self, database: Path, *targets: str) -> None:
        self.database = database
        self.targets = " ".join(targets)

    def run(self, *args: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
        """``python -m django ARGS``, with ``overrides`` as REST_HOOKS entries; it must
        succeed."""
        proc = run_fresh(
            ["django", *args],
            SETTINGS,
            60,
            REST_HOOKS_EMBEDDED_DB=str(self.database),
            REST_HOOKS_TEST_OVERRIDES=json.dumps(overrides),
            HOOK_TARGETS=self.targets,
        )
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def shell(self, code: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
        return self.run("shell", "-c", code, **overrides)

    def deliveries(self) -> list[tuple[str, int]]:
        """(status, attempts) of each delivery, read from the database file."""
        with closing(sqlite3.connect(self.database)) as db:
            query = "SELECT status, attempts FROM rest_hooks_delivery ORDER BY created_at"
            return [(status, attempts) for status, attempts in db.execute(query)]


@pytest.fixture
def project(migrated: Path, tmp_path: Path, receiver: Receiver) -> Project:
    database = tmp_path / "embedded.sqlite3"
    shutil.copy(migrated, database)
    return Project(database, receiver.url("/hook"))


def test_a_save_in_a_short_lived_process_is_delivered_before_it_exits(project, receiver):
    project.shell(SUBSCRIBE_AND_SAVE)
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert project.deliveries() == [("success", 1)]


def test_a_process_does_not_wait_at_exit_for_a_retry_due_later(project, receiver):
    receiver.answer("/hook", Answer(500))
    done = project.shell(SUBSCRIBE_AND_SAVE, RETRY_SCHEDULE=[3600], RETRY_JITTER=0)
    assert len(receiver.requests) == 1
    assert project.deliveries() == [("pending", 1)]
    assert "exits with 1 retries or held deliveries due later, the first at" in done.stderr
    assert "the relay sends them" in done.stderr


def test_a_process_waits_for_its_deliveries_at_most_the_drain_timeout(project, receiver):
    receiver.answer("/hook", Answer(delay=10))
    done = project.shell(SUBSCRIBE_AND_SAVE, EMBEDDED_DRAIN_TIMEOUT=2)
    assert "exits before 1 of its messages were handled" in done.stderr
    assert "(it waits EMBEDDED_DRAIN_TIMEOUT, 2 s, at most)" in done.stderr
    # Claimed, in flight when the process ended: the relay sends it once its lease is over.
    assert project.deliveries() == [("pending", 1)]


def test_relay_in_embedded_mode_delivers_before_it_returns(project, receiver):
    project.targets += " " + receiver.url("/failing")
    receiver.answer("/failing", Answer(500))
    # A process whose events nothing delivers: its queue is lost when it exits.
    project.shell(SUBSCRIBE_AND_SAVE, EMBEDDED_WORKER=False)
    assert receiver.requests == []

    done = project.run("rest_hooks_relay", RETRY_SCHEDULE=[3600], RETRY_JITTER=0)

    assert sorted(r.path for r in receiver.requests) == ["/failing", "/hook"]
    lines = done.stdout.splitlines()
    assert lines[:2] == [
        "Relayed 1 event and 0 deliveries.",
        "Delivering them in this process (embedded mode).",
    ]
    assert lines[2].startswith("1 delivered, 0 failed, 1 to be retried at ")
    assert "the relay sends them once due" in lines[2]
    assert "2/2" in done.stderr  # the progress bar
    assert sorted(project.deliveries()) == [("pending", 1), ("success", 1)]


def test_replay_in_embedded_mode_delivers_before_it_returns(project, receiver):
    project.shell(FAILED_DELIVERY)

    done = project.run("rest_hooks_replay")

    assert [r.path for r in receiver.requests] == ["/hook"]
    assert done.stdout.splitlines() == [
        "1 delivery queued again.",
        "Delivering them in this process (embedded mode).",
        "1 delivered, 0 failed.",
    ]
    assert project.deliveries() == [("success", 1)]
