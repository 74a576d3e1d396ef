"""The README documents every setting and every system check the code has."""

from __future__ import annotations

import re

from rest_hooks.conf import DEFAULTS
from tests.helpers import ROOT, exposed_families

README = (ROOT / "README.md").read_text()


def test_every_rest_hooks_setting_is_documented():
    assert [key for key in DEFAULTS if f"`{key}`" not in README] == []


def test_every_check_id_is_in_the_checks_table():
    source = (ROOT / "rest_hooks" / "checks.py").read_text()
    ids = sorted(set(re.findall(r'id="(rest_hooks\.[EW]\d{3})"', source)))
    assert len(ids) > 10
    assert [i for i in ids if f"| `{i}` |" not in README] == []


def test_every_metric_family_is_in_the_metrics_table():
    names = [n + "_total" if k == "counter" else n for n, k in exposed_families().items()]
    assert len(names) == 13
    assert [n for n in names if f"| `{n}` |" not in README] == []
