"""Lighthouse (mobile) on the login page and a logged-in room: scores >= 95, CLS < 0.05.

Scores are not timings: Lighthouse simulates the same phone and network whatever the machine, so
the targets are asserted here as in bench/lighthouse.py, which this runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from node_tools import NodeToolsMissing, ensure_node_tools

from conftest import ROOT

pytestmark = pytest.mark.browser


def test_lighthouse_scores_meet_the_targets() -> None:
    try:
        ensure_node_tools()
    except NodeToolsMissing as exc:
        pytest.fail(str(exc))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "lighthouse.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("SUMMARY ")] or [""]
    assert line, f"no summary:\n{done.stdout}\n{done.stderr[-3000:]}"
    rows = json.loads(line.removeprefix("SUMMARY "))
    assert set(rows) == {"login", "room"}
    report = done.stdout.replace(line, "").strip()
    for page, row in rows.items():
        for category in ("performance", "accessibility", "best-practices"):
            assert row[category] >= 95, f"{page} {category}:\n{report}"
        assert row["cls"] < 0.05, f"{page} CLS:\n{report}"
    assert done.returncode == 0, report
