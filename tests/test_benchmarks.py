"""The benchmarks still run: tiny sizes, the output's shape, no timing assertions."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

ROWS = [
    ("acquire+release", "MemoryGate", 1),
    ("refused acquire", "MemoryGate", 1),
    ("acquire+release, batch of 50", "MemoryGate", 1),
    ("acquire+release", "RedisGate", 1),
    ("refused acquire", "RedisGate", 1),
    ("acquire+release, batch of 50", "RedisGate", 1),
    ("throughput", "RedisGate", 1),
    ("throughput", "RedisGate", 3),
]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def table_rows(output: str) -> list[tuple[str, str, int]]:
    """(measurement, gate, threads) of each row of the Markdown table printed."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[2].isdigit():
            rows.append((cells[0], cells[1], int(cells[2])))
    return rows


def test_gate_benchmark(redis_url, tmp_path, capsys):
    import redis

    gate = load("gate")
    out = tmp_path / "gate.json"
    args = ["--redis-url", redis_url, "--n", "200", "--threads", "1,3", "--json", str(out)]
    assert gate.main(args) == 0

    printed = capsys.readouterr().out
    assert table_rows(printed) == ROWS
    assert "| measurement | gate | threads | n | mean ms | p50 ms | p99 ms | per second |" in (
        printed
    )
    assert "Goal: acquire+release under 0.3 ms per delivery on RedisGate:" in printed
    report = json.loads(out.read_text())
    assert [(r["measurement"], r["gate"], r["threads"]) for r in report["results"]] == ROWS
    assert {r["n"] for r in report["results"]} == {200, 198}  # 3 threads: 66 each
    for row in report["results"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["mean_ms"] > 0
        assert row["ops_per_s"] > 0
    assert report["nproc"] >= 1
    assert report["redis_server_us_per_delivery"] > 0
    assert isinstance(report["goal_met"], bool)
    # It cleans up after itself.
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match="rest_hooks_bench:*"))


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server on PATH")
def test_gate_benchmark_starts_its_own_redis(capsys):
    gate = load("gate")
    assert gate.main(["--n", "50", "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "(started by the benchmark)" in printed
    assert table_rows(printed) == [*ROWS[:6], ("throughput", "RedisGate", 2)]


@pytest.mark.integration
def test_http_clients_benchmark(tmp_path, capsys):
    http_clients = load("http_clients")
    out = tmp_path / "http_clients.json"
    http_clients.main(["--n", "40", "--repeat", "2", "--concurrency", "1,4", "--json", str(out)])
    expected = [(name, c) for c in (1, 4) for name in http_clients.CLIENTS]
    report = json.loads(out.read_text())
    assert [(row["client"], row["concurrency"]) for row in report["rows"]] == expected
    for row in report["rows"]:
        assert row["cpu_ms"]["n"] == row["per_s"]["n"] == 2
        assert 0 < row["cpu_ms"]["min"] <= row["cpu_ms"]["median"] <= row["cpu_ms"]["max"]
        assert row["per_s"]["min"] > 0
    printed = capsys.readouterr().out
    assert "| client | concurrency | CPU ms / request | requests/s |" in printed
    clients = [line.split(" | ")[0].removeprefix("| ") for line in printed.splitlines()]
    assert [name for name in clients if name in http_clients.CLIENTS] == [n for n, _ in expected]


# -- common.py: the order of the timed calls (pure Python, a fake clock) ---------------


class DriftingClock:
    """``perf_counter`` of a machine that slows down: the n-th call timed (from 0) takes
    1 + 0.01 n ms."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[int] = []

    def perf_counter(self) -> float:
        return self.now

    def call(self, key: int) -> Callable[[], None]:
        def run() -> None:
            self.now += (1 + 0.01 * len(self.calls)) / 1000
            self.calls.append(key)

        return run


@pytest.fixture
def common() -> ModuleType:
    return load("common")


@pytest.fixture
def clock(common, monkeypatch) -> DriftingClock:
    clock = DriftingClock()
    monkeypatch.setattr(common, "time", clock)
    return clock


def test_time_interleaved_shares_the_drift_among_the_keys(common, clock):
    calls = {k: clock.call(k) for k in (0, 1, 2)}
    ms = common.time_interleaved(calls, [0, 1, 2], 4)
    # One call of every key a round, forward and backward in turn.
    assert clock.calls == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]
    # Calls 0, 5, 6, 11 for key 0; 1, 4, 7, 10 for 1; 2, 3, 8, 9 for 2: the same median.
    assert ms == {k: pytest.approx(1.055) for k in (0, 1, 2)}


def test_time_calls_times_a_batch_of_one_call(common, clock):
    assert common.time_calls(clock.call(7), 3) == pytest.approx(1.01)
    assert clock.calls == [7, 7, 7]


def test_request_path_alternates_the_sizes_and_pairs_each_k_with_k0(common):
    orders = []

    def measure(order):
        orders.append(list(order))
        base = 1000.0 * len(orders)  # a slower machine at each repetition
        return {k: base + k for k in order}

    rows = common.request_path([0, 1, 100], 3, measure)
    assert orders == [[0, 1, 100], [100, 1, 0], [0, 1, 100]]
    assert [r["k"] for r in rows] == [0, 1, 100]
    assert rows[2]["create_ms"] == {"median": 2100.0, "min": 1100.0, "max": 3100.0, "n": 3}
    # The slowdown between repetitions cancels out: K's overhead is K ms every time.
    for row in rows:
        assert row["overhead_ms"] == {"median": row["k"], "min": row["k"], "max": row["k"], "n": 3}


# -- scripts/bench: both libraries side by side -----------------------------------------

#: Tiny sizes: every part runs, in seconds; the figures mean nothing.
TINY = [
    *("--sizes", "0,2", "--repeat", "1", "--creates", "2", "--hooks", "20"),
    *("--processes", "1", "--threads", "2,3", "--latency-events", "5", "--latency-rate", "50"),
    *("--memory", "20,40", "--gate-n", "50", "--gate-threads", "1"),
    *("--sustained-events", "10", "--slow-origins", "2", "--slow-hooks", "8"),
    *("--old-slow-hooks", "4", "--slow-threads", "2", "--isolation-hooks", "4"),
]


def bench(tmp_path: Path, *args: str) -> tuple[dict, str]:
    """Run the benchmark command as a user would; its JSON figures and Markdown tables."""
    out = tmp_path / "results.json"
    md = tmp_path / "results.md"
    paths = ["--json", str(out), "--markdown", str(md), "--work-dir", str(tmp_path / "work")]
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench"), *args, *TINY, *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"scripts/bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    assert md.read_text() in proc.stdout
    return json.loads(out.read_text()), md.read_text()


def spread_ok(s: dict) -> bool:
    return s["min"] <= s["median"] <= s["max"] and s["n"] >= 1


@pytest.mark.integration
def test_bench_this_project(tmp_path):
    results, md = bench(tmp_path, "--only", "this")
    assert set(results["ours"]) == {"sqlite", "postgres"}
    for db, side in results["ours"].items():
        assert [r["k"] for r in side["request_path"]] == [0, 2]
        assert all(
            spread_ok(r["create_ms"]) and r["create_ms"]["median"] > 0 for r in side["request_path"]
        )
        assert [(r["processes"], r["threads"], r["rate_limit"]) for r in side["fanout"]][:2] == [
            (1, 2, None),
            (1, 3, None),
        ]
        # Once more with a rate limit that never binds, with the faster thread count.
        [limited] = side["fanout"][2:]
        assert limited["rate_limit"] == "1000000/s"
        assert limited["threads"] in (2, 3)
        fanout = side["fanout"][0]
        assert fanout["hooks"] == 20
        assert spread_ok(fanout["per_s"])
        assert fanout["per_s"]["median"] > 0
        cost = fanout["per_delivery"]
        assert cost["workers_cpu_ms"] > 0
        # The gate's two scripts a batch at least (the 20 deliveries make one batch).
        assert cost["redis"]["gate"]["commands"]["evalsha"] * fanout["hooks"] >= 2
        assert [r["threads"] for r in side["latency"]] == [2, 3]
        latency = side["latency"][0]
        assert latency["events"] == 5
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert latency["per_event"]["workers_cpu_ms"] > 0
        # The gate has a redis-server of its own: round trips by server, broker messages.
        assert set(latency["per_event"]["redis"]) == {"broker", "gate"}
        assert latency["per_event"]["redis"]["gate"]["round_trips"] > 0
        assert latency["per_event"]["broker_messages"] >= 1  # the event's dispatch
        # pg_stat_statements (scripts/bench loads it): the statements of a delivery.
        statements = cost["sql_statements"]
        assert bool(statements) == (db == "postgres")
        assert sum(q["per_delivery"] for q in statements) >= (1 if statements else 0)
        assert ("memory" in side) == (db == "postgres")  # --memory-db
        for part in ("sustained", "slow", "isolation"):
            assert (part in side) == (db == "postgres")  # --engine-dbs
    engine = results["ours"]["postgres"]
    assert [r["threads"] for r in engine["sustained"]] == [2, 3]
    assert all(r["events"] == 10 and r["per_s"] > 0 for r in engine["sustained"])
    [slow] = engine["slow"]
    assert (slow["threads"], slow["hooks"], slow["origins"]) == (2, 8, 2)
    assert spread_ok(slow["per_s"])
    # The receiver counted the requests each origin had open; the gate allows 10.
    assert 1 <= slow["open_at_once"] <= slow["max_in_flight"] == 10
    isolation = engine["isolation"]
    assert (isolation["stalled_hooks"], isolation["fast_hooks"]) == (2, 4)
    assert spread_ok(isolation["alone_per_s"])
    assert spread_ok(isolation["with_stalled_per_s"])
    assert isolation["kept"]["median"] > 0
    bare_async = results["bare_async"]
    assert bare_async["slow"]["hooks"] == 8
    assert 1 <= bare_async["slow"]["open_at_once"] <= 10
    assert bare_async["isolation"]["fast_hooks"] == 4
    points = results["ours"]["postgres"]["memory"]["points"]
    assert [p["deliveries"] for p in points] == [20, 40]
    assert all(len(p["rss_mib"]) == 1 and p["rss_mib"][0] > 10 for p in points)
    assert "postgresql" in results["ours"]["postgres"]["versions"]
    [bare] = results["bare"]
    assert bare["processes"] == 1
    assert spread_ok(bare["per_s"])
    assert [r["measurement"] for r in results["gate"]["rows"]][:2] == [
        "acquire+release",
        "refused acquire",
    ]
    goals = {g["goal"]: g for g in results["goals"]}
    assert "request-path overhead at K = 2 (PostgreSQL)" in goals
    assert any(
        re.fullmatch(
            r"pipeline efficiency vs bare httpx, 1 processes of [23] threads \(SQLite\)", g
        )
        for g in goals
    )
    assert "flow-control gate per delivery (Redis)" in goals
    assert any(g.startswith("one-hook events sustained, 1 processes of") for g in goals)
    assert any(g.startswith("worker CPU per one-hook event at 50 events/s") for g in goals)
    assert any(g.startswith("slow receivers (2 origins, 100-150 ms)") for g in goals)
    assert any(g.startswith("isolation: the fast origin's pace") for g in goals)
    assert all(isinstance(g["met"], bool) for g in goals.values())
    machine = results["machine"]
    assert machine["nproc"] >= 1
    assert machine["nginx"].startswith("nginx/")
    assert "**SQL per delivery** (PostgreSQL" in md
    for heading in (
        "**1. Request path**",
        "**2, 3. Fan-out**",
        "**4. Latency**",
        "**5. The",
        "**6. Memory**",
        "**7. Sustained",
        "**8. Slow receivers**",
        "**9. Isolation**",
    ):
        assert heading in md


@pytest.mark.integration
def test_bench_old_library(tmp_path_factory):
    """The old library's side, in a virtualenv of its own made by the command (pip)."""
    tmp = tmp_path_factory.mktemp("bench-old")
    results, md = bench(tmp, "--only", "old", "--old-venv", str(tmp / "venv-old"))
    old = results["old"]
    assert old["versions"]["django"].startswith("3.2.")
    assert [r["k"] for r in old["request_path"]] == [0, 2]
    assert all(spread_ok(r["create_ms"]) for r in old["request_path"])
    assert old["fanout"]["hooks"] == 20
    assert spread_ok(old["fanout"]["per_s"])
    # The slow receivers' parts, on the same origins as this project's side.
    assert old["slow"]["hooks"] == 4
    assert spread_ok(old["slow"]["per_s"])
    assert old["slow"]["open_at_once"] >= 1
    assert old["isolation"]["fast_hooks"] == 4
    assert "**8. Slow receivers**" in md
    assert "django-rest-hooks 1.5 (SQLite)" in md


def test_the_goals_take_the_better_thread_count(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    report = importlib.import_module("report")

    def fanout(processes, threads, rate):
        return {"processes": processes, "threads": threads, "per_s": {"median": rate}}

    def latency(threads, p50, p99):
        return {"processes": 2, "threads": threads, "rate": 100.0, "p50_ms": p50, "p99_ms": p99}

    side = {
        "fanout": [
            fanout(1, 2, 900.0),
            fanout(1, 8, 50.0),
            fanout(2, 2, 120.0),
            fanout(2, 8, 150.0),
        ],
        "latency": [latency(2, 3.0, 30.0), latency(8, 4.0, 20.0)],
    }
    results = {
        "old": {"fanout": {"per_s": {"median": 50.0}}},
        "bare": [{"processes": 2, "per_s": {"median": 300.0}}],
        "ours": {"postgres": side},
    }
    goals = {g["goal"]: g["measured"] for g in report.goals(results)}
    assert goals == {
        "fan-out vs django-rest-hooks, 2 processes of 8 threads (PostgreSQL)": (
            "3.00x (150/s vs 50/s)"
        ),
        "pipeline efficiency vs bare httpx, 2 processes of 8 threads (PostgreSQL)": (
            "0.50 (150/s vs 300/s)"
        ),
        "latency at 100 events/s, 2 processes of 8 threads (PostgreSQL)": "p50 4.0 ms, p99 20.0 ms",
    }


def test_the_report_shows_a_profile_of_the_latency_run(tmp_path, monkeypatch):
    """``--profile`` also samples the latency run; the report gives its table."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    profile_report = importlib.import_module("profile_report")
    report = importlib.import_module("report")
    samples = tmp_path / "latency-1.txt"
    samples.write_text(
        "run (a.py:1);fan_out (rest_hooks/worker/fanout.py:100);"
        "get (django/db/models/query.py:631) 30\n"
        "run (a.py:1);AsyncDeliveryClient.post (rest_hooks/delivery/async_http.py:340) 10\n"
        "_run_once (asyncio/base_events.py:1);data_received (aiohttp/client_proto.py:1) 5\n"
    )
    summary = profile_report.summarise([samples], deliveries=10, rate=250)
    latency = {"rate": 100.0, "threads": 2, "profile": summary}
    results = {"ours": {"postgres": {"latency": [latency]}}}
    text = "\n".join(report.profile_tables(results))
    assert "the latency run at 100 events/s with 2 threads a process" in text
    # 30 samples at 250 a second over 10 events: 12 ms an event in the fan-out step.
    assert "| fan-out (dispatch actor: hook ids, bulk INSERT, enqueue) | 12.000 |" in text
    # The client's own frames and aiohttp's callbacks on the loop: the POST.
    assert "| HTTP POST (AsyncDeliveryClient over aiohttp, checked DNS) | 6.000 |" in text
