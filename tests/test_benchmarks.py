"""The benchmarks still run: tiny sizes, the output's shape, no timing assertions."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

ROWS = [
    ("acquire+release", "MemoryGate", 1),
    ("refused acquire", "MemoryGate", 1),
    ("acquire+release", "RedisGate", 1),
    ("refused acquire", "RedisGate", 1),
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
    assert table_rows(printed) == [*ROWS[:4], ("throughput", "RedisGate", 2)]
