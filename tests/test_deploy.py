"""deploy/: the Prometheus config and alert rules pass promtool, and every query of the
rules and of the Grafana dashboard names metric families and labels the app exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import FAMILIES, exposed_families

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules" / "rest_hooks.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "rest_hooks.json"

SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
NAME = re.compile(r"\b(rest_hooks_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(rest_hooks_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
# Labels Prometheus adds to every series, and le of histogram buckets.
ADDED_LABELS = {"job", "instance", "le"}


def promtool(*args: str) -> str:
    if shutil.which("promtool") is None:
        pytest.fail(
            "promtool is not installed: scripts/test installs the Debian package "
            "'prometheus' with apt-get (ensure_prometheus in scripts/lib.sh); see its output."
        )
    proc = subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_prometheus_config_is_valid(tmp_path):
    # The token file the config names sits beside it (it is a secret, not in the repo).
    config = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, config)
    (config / "rest_hooks_metrics_token").write_text("a-token\n")
    out = promtool("check", "config", str(config / "prometheus.yml"))
    assert "SUCCESS: 6 rules found" in out


def test_alert_rules_are_valid():
    assert "SUCCESS" in promtool("check", "rules", str(RULES))


def test_alert_rules_unit_tests_pass():
    promtool("test", "rules", str(PROMETHEUS / "tests" / "rest_hooks.test.yml"))


def test_every_alert_has_a_unit_test():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "tests" / "rest_hooks.test.yml").read_text())["tests"]
    firing = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")
    }
    assert firing == alerts


# -- names ------------------------------------------------------------------------------


def sample_names() -> dict[str, str]:
    """Every series name a query may use -> its family."""
    return {
        name + suffix: name
        for name, kind in exposed_families().items()
        for suffix in SUFFIXES[kind]
    }


def queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query in the rules and the dashboard."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule['alert']}", rule["expr"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query: Any = variable.get("query")
        if isinstance(query, dict):
            yield f"variable {variable['name']}", query["query"]


def test_the_families_tested_in_test_metrics_are_the_app_s():
    assert exposed_families() == {name: kind for name, (kind, _) in FAMILIES.items()}


def test_every_query_names_only_exposed_families_and_labels():
    names = sample_names()
    problems = []
    seen = 0
    for where, expr in queries():
        used = NAME.findall(expr)
        if not used:
            problems.append(f"{where}: names no rest_hooks_ metric: {expr}")
        for name in used:
            seen += 1
            if name not in names:
                problems.append(f"{where}: {name} is not exposed")
        for name, matchers in SELECTOR.findall(expr):
            family = names.get(name)
            labels = FAMILIES[family][1] if family else set()
            for label in MATCHER.findall(matchers):
                if label not in labels | ADDED_LABELS:
                    problems.append(f"{where}: {name} has no label {label!r}")
    assert not problems, "\n".join(problems)
    assert seen > 20  # the extraction found the queries


def test_the_name_check_can_fail():
    names = sample_names()
    assert "rest_hooks_delivery_attempts_total" in names
    assert "rest_hooks_delivery_attempts" not in names  # a counter is queried with _total
    assert "rest_hooks_breakers_total" not in names


def test_dashboard_has_the_panels_the_issue_asks_for():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(expr for _, expr in queries())
    for family in (
        "rest_hooks_delivery_attempts_total",
        "rest_hooks_delivery_duration_seconds_bucket",
        "rest_hooks_delivery_lag_seconds_bucket",
        "rest_hooks_deferrals_total",
        "rest_hooks_breakers",
        "rest_hooks_outbox_pending_events",
    ):
        assert family in exprs
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "rest-hooks"
