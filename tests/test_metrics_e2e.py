"""Metrics end to end: two worker processes deliver, a web process serves /metrics for
all of them (multiprocess mode), and a real Prometheus server scrapes it.

Every part is real and on 127.0.0.1: the suite's redis-server, two ``rundramatiq``
worker processes, ``manage.py runserver`` serving ``/metrics`` with a bearer token,
Prometheus (the Debian package) scraping it every second and evaluating the alert
rules of deploy/, and an HTTP receiver. The test asks Prometheus' HTTP API for the
counts and compares them with what the receiver saw.
"""

from __future__ import annotations

import functools
import json
import shutil
import signal
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Delivery, Hook
from tests import helpers
from tests.helpers import ROOT, Process, free_port, http_get, project_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

TOKEN = "e2e-metrics-token"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "rest_hooks.rules.yml"


# Prometheus and the metrics server take their time to start and to scrape.
wait_until = functools.partial(helpers.wait_until, timeout=30.0, interval=0.2)


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch) -> Path:
    """PROMETHEUS_MULTIPROC_DIR for every process this test starts (set before they start,
    so before they import prometheus_client)."""
    path = tmp_path / "prometheus_multiproc"
    path.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


@pytest.fixture
def web_server(multiproc_dir, tmp_path) -> Iterator[str]:
    """``manage.py runserver`` serving /metrics; yields its address."""
    address = f"127.0.0.1:{free_port()}"
    env = project_env({**settings.REST_HOOKS, "METRICS_TOKEN": TOKEN})
    server = Process(
        [sys.executable, "-m", "django", "runserver", "--noreload", address],
        env,
        tmp_path / "runserver.log",
    )
    try:
        wait_until(
            lambda: (
                http_get(f"http://{address}/metrics", TOKEN)[0] == 200
                or server.proc.poll() is not None
            ),
            "runserver to serve /metrics",
        )
        assert server.proc.poll() is None, server.output()
        yield address
    finally:
        server.stop()


@pytest.fixture
def prometheus(web_server, tmp_path) -> Iterator[str]:
    """A Prometheus server scraping ``web_server`` every second; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus is not installed: scripts/test installs the Debian package "
            "'prometheus' with apt-get (ensure_prometheus in scripts/lib.sh); see its output."
        )
    (tmp_path / "token").write_text(TOKEN)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "rest_hooks",
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "token")},
                "static_configs": [{"targets": [web_server]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    url = f"http://127.0.0.1:{free_port()}"
    server = Process(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--log.level=warn",
        ],
        None,
        tmp_path / "prometheus.log",
    )
    try:
        wait_until(
            lambda: http_get(f"{url}/-/ready")[0] == 200 or server.proc.poll() is not None,
            "Prometheus to be ready",
        )
        assert server.proc.poll() is None, server.output()
        yield url
    finally:
        server.stop()


def api(prometheus: str, path: str, **params: str) -> Any:
    status, body = http_get(f"{prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}")
    assert status == 200, body
    return json.loads(body)["data"]


def query(prometheus: str, promql: str) -> dict[str, float]:
    """An instant query: {value of the first label (or ""): value}."""
    result = api(prometheus, "query", query=promql)["result"]
    return {next(iter(r["metric"].values()), ""): float(r["value"][1]) for r in result}


def test_prometheus_scrapes_what_the_workers_delivered(
    user, receiver, start_workers, multiproc_dir, prometheus
):
    books, ok_hooks = 4, 2
    for path in [f"/ok{i}" for i in range(ok_hooks)] + ["/bad"]:
        Hook.objects.create(user=user, event="book.added", target=receiver.url(path))
    receiver.answer("/bad", *[Answer(500)] * books)
    workers = start_workers(processes=2, threads=4, RETRY_SCHEDULE=[])
    for i in range(books):
        Book.objects.create(user=user, title=f"Scraped {i}", pages=1, fiction=True)

    total = books * (ok_hooks + 1)
    requests = receiver.wait_for(total)
    wait_until(
        lambda: not Delivery.objects.filter(status="pending").exists(), "every delivery to end"
    )
    seen = {"success": 0, "failed": 0}
    for r in requests:
        seen["failed" if r.path == "/bad" else "success"] += 1
    assert seen == {"success": books * ok_hooks, "failed": books}

    # What Prometheus scraped from /metrics: the sum of both worker processes' counts.
    by_outcome = "sum by (outcome) (rest_hooks_delivery_attempts_total)"
    wait_until(lambda: query(prometheus, by_outcome) == seen, f"{by_outcome} == {seen}")
    assert query(prometheus, "sum(rest_hooks_delivery_duration_seconds_count)") == {"": total}
    assert query(prometheus, "sum(rest_hooks_delivery_lag_seconds_count)") == {"": seen["success"]}
    assert query(prometheus, "sum(rest_hooks_fanout_size_count)") == {"": books}
    assert query(prometheus, "sum(rest_hooks_fanout_size_sum)") == {"": total}
    # Read from the database at scrape time, by the web process.
    wait_until(
        lambda: query(prometheus, "max(rest_hooks_outbox_pending_events)") == {"": 0},
        "the outbox gauge",
    )
    assert query(prometheus, "sum by (job) (up)") == {"rest_hooks": 1}
    # The rules of deploy/ load and evaluate without error in a real Prometheus.
    groups = api(prometheus, "rules")["groups"]
    wait_until(
        lambda: all(
            r["health"] == "ok" for g in api(prometheus, "rules")["groups"] for r in g["rules"]
        ),
        "the alert rules to evaluate",
    )
    # Every rule of the file, none left out by Prometheus.
    written = yaml.safe_load(RULES.read_text())["groups"]
    assert [len(g["rules"]) for g in groups] == [len(g["rules"]) for g in written]

    # A worker process that stops takes its live gauge (requests in flight) with it;
    # what it counted stays. Stopped as Dramatiq's docs say: SIGTERM to the main process.
    def pids(pattern: str) -> set[int]:
        return {int(f.stem.rsplit("_", 1)[1]) for f in multiproc_dir.glob(pattern)}

    delivering = pids("counter_*.db")
    assert delivering & pids("gauge_livesum_*.db")
    workers.proc.send_signal(signal.SIGTERM)
    workers.proc.wait(timeout=30)
    assert not delivering & pids("gauge_livesum_*.db"), "".join(workers.output[-20:])
    assert pids("counter_*.db") == delivering
