"""The benchmarks' smoke mode: the harness runs end to end and measures something real.

No timing is asserted here (speed is the benchmarks' business); only that every frame was
delivered and every figure was produced.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.bench


def run_smoke(script: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("SUMMARY ")]
    summary: dict[str, object] = json.loads(line.removeprefix("SUMMARY "))
    return summary


def test_ws_fanout_smoke() -> None:
    summary = run_smoke("ws_fanout.py")
    point = summary["N20"]
    assert isinstance(point, dict)
    for server in ("product", "baseline"):
        row = point[server]
        assert row["delivery"] == 1.0
        for key in ("frames_per_s", "p50_ms", "p99_ms", "cpu_us_per_frame", "rss_kib_per_socket"):
            assert row[key] == row[key] and row[key] >= 0, (server, key)  # a number, not NaN
        assert row["cpu_us_per_frame"] > 0, server  # the CPU clock registers even a short run
    ratios = point["ratios"]
    assert all(value == value and value > 0 for value in ratios.values()), ratios
    stall = summary["stall"]
    assert isinstance(stall, dict) and stall["delivery"] == 1.0
    for server in ("product", "baseline"):  # the tiny ramp: 10 and 20 messages/s into 20 sockets
        saturation = summary[f"saturation_{server}"]
        assert isinstance(saturation, dict) and saturation["rate"] == 20, saturation


def test_history_smoke() -> None:
    summary = run_smoke("history.py")
    for size in ("small", "large"):
        figures = summary[size]
        assert isinstance(figures, dict)
        assert set(figures) == {
            "chat page",
            "history, first page",
            "history, deep page",
            "resume of 500",
            "writes per s",
        }
        assert all(value > 0 for value in figures.values())


def test_soak_smoke() -> None:
    summary = run_smoke("soak.py")
    assert summary["delivery"] == 1.0
    assert summary["lost_connections"] == 0 and summary["probe_failures"] == 0
    for key in ("rss_mib_start", "rss_mib_end", "fds_start", "loop_lag_p99_ms_worst"):
        value = summary[key]
        assert isinstance(value, float) and value == value and value >= 0, key


def test_sqlite_write_smoke() -> None:
    summary = run_smoke("sqlite_write.py")
    assert set(summary) == {"add_busy_us", "control_busy_us", "add_idle_us", "control_idle_us"}
    assert all(isinstance(v, float) and v > 0 for v in summary.values()), summary
