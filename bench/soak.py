"""Soak: N authenticated clients at a steady message rate for a while, watching the server.

    python bench/soak.py --clients 500 --minutes 10     # the README's figures
    python bench/soak.py --smoke                        # seconds: checks the harness

Reports, every interval: the server's RSS, its open file descriptors and its event-loop lag (from
/healthz, p99 and max over the last minute), and how many health probes failed; at the end, the
load generator's delivery, latency and lost connections. Bounded and self-stopping; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ws_fanout import (  # noqa: E402
    BENCH_LIMITS,
    ROOT,
    SOCKETS_PER_USER,
    Server,
    rss_bytes,
    sign_up_users,
)


def sample(server: Server) -> dict[str, float]:
    """Read the server's RSS, open files and event-loop lag now."""
    row = {
        "rss_mib": rss_bytes(server.pid) / 2**20,
        "fds": float(len(os.listdir(f"/proc/{server.pid}/fd"))),
        "lag_p99_ms": float("nan"),
        "lag_max_ms": float("nan"),
        "probe_failed": 0.0,
    }
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2) as r:
            lag = json.load(r)["loop_lag_ms"]
        row["lag_p99_ms"], row["lag_max_ms"] = lag["p99"], lag["max"]
    except (OSError, ValueError, KeyError):
        row["probe_failed"] = 1.0
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second, in all")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: check the harness")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.minutes, args.interval = 20, 0.1, 1.0
    duration = args.minutes * 60

    work = Path(tempfile.mkdtemp(prefix="chat-soak-"))
    env = {
        "DATA_DIR": str(work / "data"),
        "LOG_LEVEL": "WARNING",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        **BENCH_LIMITS,
    }
    server = Server("product", [sys.executable, str(ROOT / "app.py")], env, work)
    samples: list[dict[str, float]] = []
    try:
        server.start()
        asyncio.run(sign_up_users(server, -(-args.clients // SOCKETS_PER_USER)))
        gen = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(server.port),
             "--sockets", str(args.clients), "--rate", str(args.rate),
             "--duration", str(duration), "--senders", str(min(50, args.clients)),
             "--cookies", json.dumps(server.cookies)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert gen.stdin is not None and gen.stdout is not None
        if gen.stdout.readline().strip() != "connected":
            gen.kill()
            raise RuntimeError("the load generator could not connect")
        print(
            f"soak: {args.clients} clients, {args.rate:g} messages/s for {args.minutes:g} min "
            f"({args.rate * args.clients:.0f} frames/s delivered)"
        )
        print(f"  {'t (s)':>6} {'RSS MiB':>8} {'fds':>5} {'lag p99':>8} {'lag max':>8}")
        started = time.monotonic()
        samples.append({"t": 0.0, **sample(server)})
        gen.stdin.write("go\n")
        gen.stdin.close()  # no pause between the report and closing the sockets
        deadline = started + duration + 60
        next_at = started + args.interval
        while gen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            if time.monotonic() >= next_at:
                next_at += args.interval
                row = {"t": time.monotonic() - started, **sample(server)}
                samples.append(row)
                print(
                    f"  {row['t']:6.0f} {row['rss_mib']:8.1f} {row['fds']:5.0f} "
                    f"{row['lag_p99_ms']:7.2f}ms {row['lag_max_ms']:7.2f}ms"
                    + ("  (health probe failed)" if row["probe_failed"] else "")
                )
        out = gen.stdout.readline()
        gen.wait(30)
        report = json.loads(out)
        samples.append({"t": time.monotonic() - started, **sample(server)})
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    lags = [s["lag_p99_ms"] for s in samples if s["lag_p99_ms"] == s["lag_p99_ms"]]
    summary = {
        "clients": args.clients,
        "minutes": args.minutes,
        "rss_mib_start": samples[0]["rss_mib"],
        "rss_mib_end": samples[-1]["rss_mib"],
        "rss_mib_max": max(s["rss_mib"] for s in samples),
        "fds_start": samples[0]["fds"],
        "fds_end": samples[-1]["fds"],
        "loop_lag_p99_ms_worst": max(lags) if lags else float("nan"),
        "probe_failures": sum(s["probe_failed"] for s in samples),
        "delivery": report["delivery"],
        "latency_p99_ms": report["p99_ms"],
        "lost_connections": report["lost"],
        "sent": report["sent"],
    }
    print(
        f"RSS {summary['rss_mib_start']:.1f} -> {summary['rss_mib_end']:.1f} MiB "
        f"(max {summary['rss_mib_max']:.1f}); fds {summary['fds_start']:.0f} -> "
        f"{summary['fds_end']:.0f}; loop lag p99 worst {summary['loop_lag_p99_ms_worst']:.2f} ms; "
        f"failed probes {summary['probe_failures']:.0f}; delivery {summary['delivery']:.2%}, "
        f"p99 {summary['latency_p99_ms']:.1f} ms, lost connections {summary['lost_connections']}"
    )
    print("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
