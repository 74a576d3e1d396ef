"""Fixtures: a real HTTP receiver, a real redis-server, real dramatiq worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from bookstore.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], Any], what: str, timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; fail the
    test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def run_scenario(module: str, settings_module: str, timeout: float, **env: str) -> dict[str, Any]:
    """Run ``python -m module`` in a fresh process, away from the suite's Redis and database.

    Its settings come from ``settings_module`` and ``env``; it prints a JSON result as its
    last line, which is returned.
    """
    private = {
        "REST_HOOKS_TEST_REDIS_URL",
        "REST_HOOKS_TEST_DB",
        "REST_HOOKS_TEST_DB_NAME",
        "REST_HOOKS_TEST_OVERRIDES",
    }
    full_env = {k: v for k, v in os.environ.items() if k not in private}
    full_env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'example'}",
        **env,
    )
    proc = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout}\n{proc.stderr}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="jrrtolkien", password="x")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REST_HOOKS_TEST_REDIS_URL")
    if not url:
        pytest.fail("REST_HOOKS_TEST_REDIS_URL is not set: run the suite with scripts/test.")
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


def project_env(overrides: dict[str, Any]) -> dict[str, str]:
    """The environment of a process of the project (worker, web server) that a test starts:
    the test settings on the test database, with ``overrides`` as REST_HOOKS entries."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "REST_HOOKS_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "REST_HOOKS_TEST_OVERRIDES": json.dumps(overrides),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'example'}",
    }


class Workers:
    """``rundramatiq`` worker processes, as an operator would start them."""

    def __init__(self, processes: int, threads: int, overrides: dict[str, Any]) -> None:
        env = project_env(overrides)
        self.processes = processes
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "rundramatiq",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = sum("is ready for action" in line for line in self.output)
            if ready >= self.processes:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("workers did not start:\n" + "".join(self.output[-50:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def start_workers(redis_url: str) -> Iterator[Callable[..., Workers]]:
    """Start worker processes; ``overrides`` become their ``REST_HOOKS`` entries."""
    started: list[Workers] = []

    def start(processes: int = 1, threads: int = 4, **overrides: Any) -> Workers:
        workers = Workers(processes, threads, {**settings.REST_HOOKS, **overrides})
        started.append(workers)
        workers.wait_ready()
        return workers

    yield start
    for workers in started:
        workers.stop()


@pytest.fixture
def run_pipeline() -> Callable[[], list[Any]]:
    """Run the workers' functions in this process until nothing is due; return deliveries.

    Unit tests use it instead of worker processes: the same code, no broker in between.
    """
    from django.utils import timezone

    from rest_hooks import tasks
    from rest_hooks.models import Delivery, Event

    def run() -> list[Any]:
        for event_id in Event.objects.filter(status="pending").values_list("pk", flat=True):
            tasks.fan_out(event_id)
        due = Delivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now())
        for delivery_id in due.values_list("pk", flat=True):
            tasks.attempt([str(delivery_id)])
        return list(Delivery.objects.select_related("event", "hook").order_by("created_at"))

    return run


@pytest.fixture(autouse=True)
def fresh_flow_control() -> None:
    """Each test starts with closed breakers and empty rate limits (state is per origin,
    and receivers' ports may be reused across tests)."""
    from rest_hooks import gatekeeper

    url = os.environ.get("REST_HOOKS_TEST_REDIS_URL")
    if url:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match="rest_hooks:{*"))
        if keys:
            client.delete(*keys)
    gatekeeper._forget()
