"""Embedded mode, zero services: SQLite and the in-process worker deliver on their own.

``tests/embedded_scenario.py`` runs in a subprocess with ``tests.embedded_settings`` (no
django_dramatiq, no Redis, ``EMBEDDED_WORKER`` on): it saves a Book and waits for the
worker that rest_hooks starts lazily in that process. This process only runs the HTTP
receiver and checks what reached it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from bookstore.receiver import Answer
from tests.helpers import run_scenario

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
