"""The benchmarks' smoke mode: the harness runs end to end and measures something real.

No timing is asserted here (speed is the benchmarks' business); only that every frame was
delivered and every figure was produced.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.bench


def run_smoke(script: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke", *args],
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
        figures = ("frames_per_s", "p50_ms", "p99_ms", "cpu_us_per_frame", "rss_kib_per_socket")
        for key in (*figures, "open_cpu_us_per_socket"):
            assert row[key] == row[key] and row[key] >= 0, (server, key)  # a number, not NaN
        assert row["cpu_us_per_frame"] > 0, server  # the CPU clock registers even a short run
    ratios = point["ratios"]
    assert all(value == value and value > 0 for value in ratios.values()), ratios
    stall = summary["stall"]
    assert isinstance(stall, dict) and stall["delivery"] == 1.0
    for key in ("p99_change", "calm_vs_calm"):
        assert stall[key] == stall[key] and stall[key] > -1, key  # a number, not NaN
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


def test_history_search_smoke() -> None:
    summary = run_smoke("history.py", "--search")
    searches = {
        f"search, {kind}{tail}"
        for kind in ("one word", "two words", "phrase")
        for tail in ("", " p99")
    }
    for size in ("small", "large"):
        figures = summary[size]
        assert isinstance(figures, dict)
        assert set(figures) == {
            "chat page",
            "history, first page",
            "history, deep page",
            "resume of 500",
            "writes per s",
            *searches,
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


def test_flagged_runs_are_run_again_while_the_budget_lasts(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("ws_fanout", ROOT / "bench" / "ws_fanout.py")
    assert spec is not None and spec.loader is not None
    ws_fanout = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ws_fanout", ws_fanout)  # dataclasses look it up there
    spec.loader.exec_module(ws_fanout)
    rest = iter([0.5, 0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5])  # cores used elsewhere, run by run
    calls = []

    def fake_run_load(server, sockets, rate, duration, stall=False):  # type: ignore[no-untyped-def]
        calls.append(stall)
        busy = next(rest)
        return ws_fanout.Result("product", sockets, rate, {}, 1.0, 0.0, 1.0, busy, busy, 0.5, 0.5)

    monkeypatch.setattr(ws_fanout, "run_load", fake_run_load)
    runner = ws_fanout.Runner(duration=1.0, budget=1.0)
    # Flagged, then flagged again twice: given up after two re-runs, still flagged.
    assert runner.run(None, 10, 1.0).flagged and runner.reruns == 2
    # Calm at once: no re-run.
    assert not runner.run(None, 10, 1.0).flagged and runner.reruns == 2
    runner.budget = 0.0  # spent: a flagged run is kept as it is
    assert runner.run(None, 10, 1.0, stall=True).flagged and runner.reruns == 2
    assert calls == [False, False, False, False, True]


def test_login_storm_smoke() -> None:
    summary = run_smoke("login_storm.py")
    assert summary["logins"] == 10 and summary["status_other"] == 0
    answered = sum(summary[f"status_{code}"] for code in (302, 401, 503))  # type: ignore[misc]
    assert answered == 10
    assert summary["status_302"] >= 1 and summary["status_401"] >= 1  # right and wrong passwords
    for key in ("rss_mib_before", "rss_mib_peak", "healthz_p99_ms", "loop_lag_p99_ms"):
        value = summary[key]
        assert isinstance(value, float) and value == value and value >= 0, key
    assert summary["rss_mib_peak"] >= summary["rss_mib_before"]  # type: ignore[operator]
    assert summary["healthz_probes"] > 0 and summary["healthz_failed"] == 0


def test_markdown_smoke() -> None:
    summary = run_smoke("markdown.py")
    for key in ("page_100_ordinary_ms", "page_100_long_ms"):
        value = summary[key]
        assert isinstance(value, float) and value > 0, key
    hostile = summary["hostile"]
    assert isinstance(hostile, dict) and len(hostile) >= 10
    for name, row in hostile.items():
        assert row["us_2000"] > 0 and row["ratio_2000_to_1000"] > 0, name  # numbers, not NaN


def test_upload_smoke() -> None:
    summary = run_smoke("upload.py")
    assert summary["delivery"] == 1.0 and summary["uploads"] >= 1
    assert summary["upload_statuses"] == [201]
    for key in ("calm_p99_ms", "upload_p99_ms", "p99_ratio", "rss_growth_mib", "upload_mb_per_s"):
        value = summary[key]
        assert isinstance(value, float) and value == value and value >= 0, key
    assert summary["bomb_type"] == "application/octet-stream"  # refused before decoding
    assert summary["photo_type"] == "image/jpeg"
    assert 0 <= summary["bomb_rss_growth_mib"] < 100  # type: ignore[operator]


def test_connections_smoke() -> None:
    summary = run_smoke("connections.py", "--gc-log")
    # 20 people, each in the big room, 4 rooms of 10 and 5 of 2: 200 sockets in 59 rooms.
    assert summary["sockets"] == 200 and summary["rooms"] == 59
    assert summary["delivery"] == 1.0 and summary["leaked"] == 0
    assert summary["lost"] == 0 and summary["idle_lost"] == 0
    assert summary["idle_pongs"] > 0  # WS_HEARTBEAT=2 over 5 s idle: pings came, were answered
    for key in ("open_cpu_us_per_socket", "rss_kib_per_socket", "idle_core", "p50_ms", "p99_ms"):
        value = summary[key]
        assert isinstance(value, float) and value == value and value >= 0, key  # not NaN
    assert summary["open_cpu_us_per_socket"] > 0  # type: ignore[operator]
    passed = summary["passed"]
    assert isinstance(passed, dict) and set(passed) == {"rss", "idle", "p99", "delivery"}
    assert summary["gc_full_total"] >= 1  # type: ignore[operator]  # start-up's, at least
    for phase in ("gc_idle", "gc_messages"):  # the server ran under bench/gcwatch.py
        counts = summary[phase]
        assert isinstance(counts, dict) and counts["full"] >= 0 and counts["wall_s"] >= 0, phase


def test_reconnect_smoke() -> None:
    summary = run_smoke("reconnect.py")
    for name, closed in (("A", 40), ("B", 20)):  # B restarts one of two processes
        figures = summary[name]
        assert isinstance(figures, dict)
        assert figures["sockets"] == 40 and figures["sockets_closed"] == closed, name
        assert figures["not_resumed"] == 0 and figures["session_ended"] == 0, name
        assert figures["lost"] == 0 and figures["gaps"] == 0 and figures["resets"] == 0, name
        # Every duplicate is a re-send's acknowledgement, which goes to its sender alone.
        assert figures["duplicates"] == figures["ack_duplicates"], name
        assert figures["double_stored"] == 0 and figures["seq_mismatches"] == 0, name
        assert figures["unacked"] == 0 and figures["stored_matches_acked"] is True, name
        assert figures["messages_acked"] == figures["stored"] > 0, name
        reconnects = figures["reconnects"]
        assert isinstance(reconnects, dict) and sum(reconnects.values()) >= closed, name
        for key in ("all_resumed_s", "startup_cpu_s", "storm_cpu_s", "cpu_ms_per_reconnect"):
            value = figures[key]
            assert isinstance(value, float) and value == value and value > 0, (name, key)


def test_workers_smoke() -> None:
    summary = run_smoke("workers.py")
    for count in (1, 2):
        row = summary[f"workers{count}"]
        assert isinstance(row, dict)
        assert row["pids"] == count  # every worker answered on the shared port
        assert row["rate"] == 20 and row["delivery"] == 1.0  # the tiny ramp: 10 and 20 messages/s
        assert len(row["worker_cores"]) == count
        figures = ("frames_per_s", "p99_ms", "cpu_us_per_frame", "loadgen_cores", "redis_cores")
        for key in (*figures, "idle_cores"):
            assert row[key] == row[key] and row[key] >= 0, (count, key)  # a number, not NaN
        assert sum(row["worker_cores"]) > 0, count  # the CPU clocks register even a short run
    gain = summary["gain"]
    assert isinstance(gain, float) and gain > 0
