"""A custom user model and a custom hook model (``HOOK_CUSTOM_MODEL``), end to end.

django-rest-hooks let a project swap its hook model and keep its own user model;
``AUTH_USER_MODEL`` cannot change inside a running Django, so this runs
``tests/custom_models/scenario.py`` in a subprocess with ``tests.settings_custom`` (a fresh
SQLite file, the embedded broker) against this process's HTTP receiver.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.helpers import run_scenario


def run_custom_scenario(tmp_path: Path, receiver_url: str) -> dict[str, Any]:
    return run_scenario(
        "tests.custom_models.scenario",
        "tests.settings_custom",
        timeout=60,
        REST_HOOKS_CUSTOM_DB=str(tmp_path / "custom.sqlite3"),
        REST_HOOKS_RECEIVER_URL=receiver_url,
    )


def test_custom_user_and_custom_hook_model(tmp_path, receiver):
    url = receiver.url("/team")
    result = run_custom_scenario(tmp_path, url)

    # The models are wired to the custom ones, and migrations agree with them.
    assert result["makemigrations"] == "No changes detected"
    assert result["hook_model"] == "custom_models.TeamHook"
    assert result["swapped"] == "custom_models.TeamHook"
    assert result["delivery_hook_model"] == "custom_models.TeamHook"
    assert result["event_hook_model"] == "custom_models.TeamHook"
    assert "custom_models_teamhook" in result["tables"]
    assert {"rest_hooks_event", "rest_hooks_delivery"} <= set(result["tables"])
    # rest_hooks.Hook is swapped out: its table is never created.
    assert "rest_hooks_hook" not in result["tables"]

    member_pk = result["member"]["pk"]
    assert result["member"]["type"] == "UUID"
    hook = result["hook"]
    uuid.UUID(hook["pk"])

    # Routed to ann's hooks only, with the UUID owner.
    assert result["events"] == [
        {"name": "note.added", "owner_id": member_pk, "status": "dispatched"}
    ]
    assert result["deliveries"] == [
        {
            "hook_id": hook["pk"],
            "hook_type": "custom_models.TeamHook",
            "hook_team": "blue",
            "status": "success",
            "attempts": 1,
            "last_error": "",
        }
    ]

    (request,) = receiver.requests
    assert request.path == "/team"
    payload = Webhook(hook["secret"]).verify(request.body, request.headers)
    # The "hook" member is the receiving TeamHook's own dict(), extra field included.
    assert payload == {
        "hook": {"id": hook["pk"], "event": "note.added", "target": url, "team": "blue"},
        "data": {
            "model": "custom_models.note",
            "pk": result["note_pk"],
            "fields": {"user": member_pk, "text": "Sharp pencils"},
        },
    }
    assert request.headers["x-hook-event"] == "note.added"
