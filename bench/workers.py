"""Workers: the aggregate delivery rate of `app.py --workers 2` against `--workers 1`.

    python bench/workers.py            # the ramp, both configurations interleaved (~3 minutes)
    python bench/workers.py --smoke    # seconds: checks the harness only

Starts the product twice on the embedded store, each with a redis-server of its own (so both
deliver through the same Redis broker and differ only by their number of processes): once with
one worker, once with two on one port (SO_REUSEPORT). Accounts are made through the real sign-up
form. One load generator process (`bench/loadgen.py`) holds the sockets of one room and ramps
the message rate; at each rate both configurations run in turn (A/B, then B/A at the next). A step
passes with p99 < 100 ms and delivery >= 99.9%; a configuration saturates when two runs in a row
miss. Each run reports the CPU (cores, from the process CPU clocks) of every worker, the load
generator, redis-server and the rest of the machine, and names what ran out first: the load
generator (0.9 core or more), the machine's cores (all but 0.2 of them busy), or the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ws_fanout import (  # noqa: E402
    BENCH_LIMITS,
    ROOT,
    SOCKETS_PER_USER,
    Redis,
    Server,
    cpu_seconds,
    machine_seconds,
    sign_up_users,
)

RATES = (50, 100, 150, 200, 250, 300, 400, 500, 600, 800)  # messages/s into SOCKETS sockets
SOCKETS = 1000
DURATION = 3.0
GRACE = 3.0  # seconds the load generator waits for the last frames
BUSY_CORES = 0.9  # a process that used this much was out of its core
IDLE_LEFT = 0.2  # the machine was out of cores when less than this was left idle
FLAG_CORES = 0.3  # a run is flagged when the rest of the machine used more than this
RERUN_BUDGET = 90.0  # seconds of re-runs of flagged misses (none in the smoke mode)
PID_RE = re.compile(r'^chat_process_info\{pid="(\d+)"', re.M)
PROBES = 200  # fresh connections tried before giving up on finding every worker


@dataclass
class Setup:
    """One configuration under test: the product with some workers, and its Redis."""

    workers: int
    server: Server
    redis: Redis
    pids: list[int] = field(default_factory=list)  # the processes that serve
    best_rate: float = 0.0
    best: dict[str, object] = field(default_factory=dict)
    limit: str = "none"
    flagged: int = 0  # runs during which the rest of the machine used more than FLAG_CORES

    @property
    def name(self) -> str:
        return f"{self.workers} worker" + ("s" if self.workers > 1 else "")

    def find_workers(self) -> None:
        """Learn the serving pids from /metrics, on fresh connections, until all have answered."""
        url = f"http://127.0.0.1:{self.server.port}/metrics"
        pids: set[int] = set()
        for _ in range(PROBES):
            with urllib.request.urlopen(url, timeout=5) as resp:  # a new connection each time
                match = PID_RE.search(resp.read().decode())
            if match:
                pids.add(int(match.group(1)))
            if len(pids) == self.workers:
                self.pids = sorted(pids)
                return
            time.sleep(0.05)  # a worker may still be starting
        raise RuntimeError(f"{self.name}: only {len(pids)} answered")


def run_load(setup: Setup, sockets: int, rate: float, duration: float) -> dict[str, object]:
    """Connect, send for `duration`, and account every process's CPU over the sending."""
    server = setup.server
    gen = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(server.port),
         "--sockets", str(sockets), "--rate", str(rate), "--duration", str(duration),
         "--senders", str(min(10, sockets)), "--cookies", json.dumps(server.cookies),
         "--grace", str(GRACE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert gen.stdin is not None and gen.stdout is not None
    line = gen.stdout.readline()
    if line.strip() != "connected":
        gen.kill()
        raise RuntimeError(f"load generator failed to connect: {line!r}")
    time.sleep(0.3)
    watched = [*setup.pids, gen.pid, setup.redis.proc.pid]
    cpu0, (busy0, steal0), wall0 = (
        [cpu_seconds(p) for p in watched],
        machine_seconds(),
        time.monotonic(),
    )
    gen.stdin.write("go\n")
    gen.stdin.flush()
    out = gen.stdout.readline()
    cpu1, (busy1, steal1), wall1 = (
        [cpu_seconds(p) for p in watched],
        machine_seconds(),
        time.monotonic(),
    )
    gen.stdin.close()  # now the load generator closes its sockets
    gen.wait(30)
    report = json.loads(out)
    wall = wall1 - wall0
    cores = [(b - a) / wall for a, b in zip(cpu0, cpu1, strict=True)]
    workers, loadgen, redis = cores[: len(setup.pids)], cores[-2], cores[-1]
    busy = (busy1 - busy0) / wall
    time.sleep(0.3)  # let the server notice the closed sockets before the next run
    return {
        **report,
        "worker_cores": [round(c, 3) for c in workers],
        # All the workers' CPU per frame delivered: what a second process costs on top.
        "cpu_us_per_frame": round(sum(workers) * wall / max(1, report["received"]) * 1e6, 3),
        "loadgen_cores": round(loadgen, 3),
        "redis_cores": round(redis, 3),
        "rest_cores": round(max(0.0, busy - sum(cores)), 3),
        "steal_cores": round((steal1 - steal0) / wall, 3),
        "idle_cores": round(max(0.0, (os.cpu_count() or 1) - busy), 3),
    }


def limit_of(run: dict[str, object]) -> str:
    """Name what ran out of CPU first in a missed run."""
    if float(run["loadgen_cores"]) >= BUSY_CORES:  # type: ignore[arg-type]
        return "load generator"
    if float(run["idle_cores"]) < IDLE_LEFT:  # type: ignore[arg-type]
        return "machine's cores"
    return "server"


def show(setup: Setup, rate: float, run: dict[str, object], verdict: str) -> None:
    workers = "+".join(f"{c:.2f}" for c in run["worker_cores"])  # type: ignore[attr-defined]
    print(
        f"  {setup.name:9} R={rate:<4g} frames/s={run['frames_per_s']:8.0f} "
        f"p99={run['p99_ms']:8.2f}ms delivery={run['delivery']:7.2%} "
        f"cpu/frame={run['cpu_us_per_frame']:5.2f}us cores: workers {workers}, "
        f"load generator {run['loadgen_cores']:.2f}, redis {run['redis_cores']:.2f}, "
        f"rest {run['rest_cores']:.2f} (steal {run['steal_cores']:.2f}), "
        f"idle {run['idle_cores']:.2f} {verdict}"
        + (" FLAGGED: rest of machine busy" if run["rest_cores"] > FLAG_CORES else ""),  # type: ignore[operator]
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: check the harness")
    parser.add_argument("--sockets", type=int, default=SOCKETS)
    parser.add_argument("--duration", type=float, default=DURATION)
    parser.add_argument(
        "--rates", default=",".join(map(str, RATES)), help="messages/s of the ramp's steps"
    )
    args = parser.parse_args()
    sockets, duration = args.sockets, args.duration
    rates = tuple(float(r) for r in args.rates.split(","))
    if args.smoke:
        sockets, rates, duration = 20, (10, 20), 1.0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so `finally` stops every server
    work = Path(tempfile.mkdtemp(prefix="chat-bench-workers-"))
    setups: list[Setup] = []
    started = time.monotonic()
    budget = 0.0 if args.smoke else RERUN_BUDGET
    try:
        for count in (1, 2):
            redis = Redis()
            env = {"DATA_DIR": str(work / f"data{count}"), "LOG_LEVEL": "WARNING",
                   "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024",
                   "REDIS_URL": redis.url, **BENCH_LIMITS}  # fmt: skip
            argv = [sys.executable, str(ROOT / "app.py"), "--workers", str(count)]
            setup = Setup(count, Server(f"workers{count}", argv, env, work), redis)
            setups.append(setup)
            setup.server.start()
            setup.find_workers()
            asyncio.run(sign_up_users(setup.server, -(-sockets // SOCKETS_PER_USER)))
        print(
            f"machine: {os.cpu_count()} cores; {sockets} sockets in one room, 10 senders, "
            f"{duration:g} s a step; one load generator process; configurations in turn"
        )
        for index, rate in enumerate(rates):
            order = setups if index % 2 == 0 else setups[::-1]
            for setup in order:
                if setup.limit != "none":
                    continue
                # A step fails only when it fails twice in a row: one full garbage collection
                # or a stall of the VM is enough to lift one run's p99 past 100 ms. A miss while
                # the rest of the machine was busy is run again while the budget lasts.
                misses = 0
                while misses < 2:
                    begun = time.monotonic()
                    run = run_load(setup, sockets, rate, duration)
                    flagged = run["rest_cores"] > FLAG_CORES  # type: ignore[operator]
                    setup.flagged += flagged
                    ok = run["p99_ms"] < 100 and run["delivery"] >= 0.999  # type: ignore[operator]
                    if not ok and flagged and budget > 0:
                        budget -= time.monotonic() - begun
                        show(setup, rate, run, "missed; run again")
                        continue
                    misses += not ok
                    show(setup, rate, run, "ok" if ok else "missed" if misses < 2 else "saturated")
                    if ok:
                        setup.best_rate, setup.best = rate, run
                        break
                else:
                    setup.limit = limit_of(run)
        summary: dict[str, object] = {}
        for setup in setups:
            tail = {
                "server": "",
                "none": " or more (the ramp ended first)",
                "load generator": " or more (the load generator ran out of its core first)",
                "machine's cores": " or more (the machine's cores ran out first)",
            }[setup.limit]
            print(
                f"saturation {setup.name}: {setup.best_rate:g} messages/s into {sockets} sockets, "
                f"{setup.best.get('frames_per_s', 0.0):.0f} frames/s{tail}; "
                f"{setup.flagged} run(s) flagged (rest of machine > {FLAG_CORES} core)"
            )
            summary[f"workers{setup.workers}"] = {
                "rate": setup.best_rate,
                "limit": setup.limit,
                "pids": len(setup.pids),
                "flagged_runs": setup.flagged,
                **setup.best,
            }
        one, two = (summary[f"workers{n}"] for n in (1, 2))
        a, b = (float(row.get("frames_per_s", 0.0)) for row in (one, two))  # type: ignore[union-attr]
        gain = b / a if a else 0.0
        print(f"2 workers / 1 worker, frames/s at the last passing step: {gain:.2f}")
        summary["gain"] = gain
    finally:
        for setup in setups:
            setup.server.stop()
            setup.redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"took {time.monotonic() - started:.0f} s")
    print("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
