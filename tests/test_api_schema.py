"""The API's OpenAPI schema: generated without a warning, and kept by a real server.

Schemathesis generates requests from the schema (valid and not) and sends them to
``manage.py runserver`` on loopback, authenticated as a user with hooks and deliveries:
no answer may be a server error or break the schema.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from rest_hooks.models import Delivery, DeliveryAttempt, Event, Hook
from tests.helpers import Process, free_port, http_get, project_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

PASSWORD = "schemathesis-password"


def test_the_schema_is_generated_without_a_warning(tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema))
    paths = yaml.safe_load(schema.read_text())["paths"]
    assert {
        "/api/hooks/",
        "/api/hooks/{id}/",
        "/api/hooks/{id}/rotate-secret/",
        "/api/hooks/{id}/ping/",
        "/api/hooks/{id}/recover/",
        "/api/hooks/{id}/keys/",
        "/api/hooks/sample/",
        "/api/hooks/{hook_pk}/deliveries/",
        "/api/hooks/{hook_pk}/deliveries/{id}/",
        "/api/hooks/{hook_pk}/deliveries/{id}/redeliver/",
    } <= set(paths)
    assert "put" not in paths["/api/hooks/{id}/"]


@pytest.fixture
def api_server(django_user_model: Any, tmp_path: Path) -> Iterator[str]:
    """``manage.py runserver`` serving the API, as a user with a few hooks and deliveries
    sees it; yields its address."""
    user = django_user_model.objects.create_user(username="schemathesis", password=PASSWORD)
    for signing in ("hmac-sha256", "ed25519"):
        hook = Hook.objects.create(
            user=user, event="book.added", target="https://hooks.example.com/", signing=signing
        )
        event = Event.objects.create(name="book.added", payload='{"hook": null, "data": 1}')
        delivery = Delivery.objects.create(event=event, hook=hook, status="failed", attempts=1)
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=1,
            started_at=timezone.now(),
            outcome="failed",
            status_code=500,
            duration_ms=1.0,
        )
    address = f"127.0.0.1:{free_port()}"
    overrides = {
        **settings.REST_HOOKS,
        "API_THROTTLE_RATE": None,  # thousands of requests in a minute
        "API_MAX_HOOKS_PER_USER": None,
        "API_PING_WAIT": 0,  # no worker runs: the pings stay queued
        "ALLOW_PRIVATE_TARGETS": False,
    }
    server = Process(
        [sys.executable, "-m", "django", "runserver", "--noreload", "--nothreading", address],
        project_env(overrides),
        tmp_path / "runserver.log",
    )
    try:
        wait_until(
            lambda: (
                http_get(f"http://{address}/api/schema/")[0] == 200
                or server.proc.poll() is not None
            ),
            "runserver to serve the schema",
            timeout=30,
        )
        assert server.proc.poll() is None, server.output()
        yield address
    finally:
        server.stop()


def test_no_generated_request_gets_a_server_error_or_an_answer_off_the_schema(
    api_server: str, tmp_path: Path
) -> None:
    credentials = base64.b64encode(f"schemathesis:{PASSWORD}".encode()).decode()
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"http://{api_server}/api/schema/",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--header",
            f"Authorization: Basic {credentials}",
            "--max-examples",
            "50",
            "--seed",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # where it keeps its cache
    )
    (tmp_path / "schemathesis.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout or "passed" in run.stdout, run.stdout[-3000:]
