"""Ten thousand sockets on one process: memory, idle CPU with heartbeats, delivery to 1,000.

    python bench/connections.py          # 10,000 sockets, ~3 minutes
    python bench/connections.py --smoke  # 200 sockets, seconds: checks the harness only
    python bench/connections.py --gc-log # also the server's full garbage collections, by phase

Starts the product (`app.py`, embedded store, temp directory), signs up `--people` accounts through
the real form and creates the rooms through `POST /rooms` (rate limits raised, not bypassed).
Everyone is in one big room (`--people`), four rooms of `--mid` and five of `--small`: 10 sockets
a person, 10,000 for 1,000 people (1 room of 1,000, 40 of 100, 500 of 10). A separate process
(`bench/crowdgen.py`, raw sockets on one epoll loop) opens them from several 127.0.0.x source
addresses, all authenticated with the person's session cookie, and answers every ping. Measured:
server RSS per socket, CPU per socket opened, the server's idle CPU over `--idle` seconds with
`WS_HEARTBEAT=--heartbeat` (several rounds of pings), then `--messages` messages into the big
room at `--rate`/s: latency at all of its receivers and delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crowdgen import raise_nofile  # noqa: E402
from ws_fanout import (  # noqa: E402
    BENCH_LIMITS,
    ROOT,
    Server,
    cpu_seconds,
    machine_seconds,
    sign_up_users,
)

KIB = 1024
TARGETS = {"idle_core": 0.05, "rss_kib": 20.0, "p99_ms": 100.0}
MID_ROOMS, SMALL_ROOMS = 4, 5  # rooms of each size a person is in, besides the big room


def plan_sockets(people: int, mid: int, small: int) -> tuple[dict[str, list[int]], list[str]]:
    """Return each room's members (by index) and the room names, big room first.

    People are split into groups of `mid` (and of `small`); each group shares MID_ROOMS rooms
    (and SMALL_ROOMS), so every room has exactly its size in distinct people.
    """
    if people % mid or people % small:
        raise SystemExit("--people must be a multiple of --mid and of --small")
    rooms: dict[str, list[int]] = {"crowd": list(range(people))}
    for size, per_person, word in ((mid, MID_ROOMS, "hall"), (small, SMALL_ROOMS, "table")):
        groups = people // size
        for k in range(groups * per_person):
            group = k % groups
            rooms[f"{word} {k}"] = list(range(group * size, (group + 1) * size))
    return rooms, list(rooms)


async def create_rooms(port: int, cookie: str, names: list[str]) -> dict[str, str]:
    """Create the rooms through the room list's form; return each name's slug."""
    url = f"http://127.0.0.1:{port}"
    headers = {"Cookie": cookie, "Origin": url}
    slugs: dict[str, str] = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(url + "/") as resp:
            match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
            assert match, "no CSRF token on the room list"

        async def one(name: str) -> None:
            form = {"name": name, "csrf_token": match.group(1)}
            async with session.post(url + "/rooms", data=form, allow_redirects=False) as resp:
                assert resp.status == 302, f"room {name!r} not created: {resp.status}"
                slugs[name] = resp.headers["Location"].rsplit("/", 1)[1]

        for start in range(0, len(names), 20):
            await asyncio.gather(*(one(n) for n in names[start : start + 20]))
    return slugs


def status_kib(pid: int, field: str) -> float:
    """Read one figure (VmRSS, VmHWM) of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise KeyError(field)


def collections_between(log: Path | None, start: float, end: float) -> dict[str, float]:
    """Sum the server's full collections (bench/gcwatch.py's log) that began in [start, end)."""
    full, young = [0, 0.0, 0.0], [0, 0.0]
    if log is not None and log.exists():
        for line in log.read_text().splitlines():
            at, generation, wall, cpu, _ = line.split()
            if not start <= float(at) < end:
                continue
            if generation == "2":
                full[0] += 1
                full[1] += float(wall) / 1000
                full[2] += float(cpu) / 1000
            else:  # a young collection logged for taking over 10 ms
                young[0] += 1
                young[1] += float(wall) / 1000
    return {
        "full": full[0],
        "wall_s": full[1],
        "cpu_s": full[2],
        "young_over_10ms": young[0],
        "young_wall_s": young[1],
    }


def read_json(gen: subprocess.Popen[str], prefix: str = "") -> dict[str, float]:
    """Read the generator's next line, which must be JSON after prefix."""
    assert gen.stdout is not None
    line = gen.stdout.readline()
    if not line.startswith(prefix):
        gen.kill()
        raise RuntimeError(f"load generator failed: {line!r}")
    figures: dict[str, float] = json.loads(line.removeprefix(prefix))
    return figures


def tell(gen: subprocess.Popen[str], line: str) -> None:
    assert gen.stdin is not None
    gen.stdin.write(line + "\n")
    gen.stdin.flush()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: check the harness")
    parser.add_argument("--people", type=int, default=1000, help="accounts; the big room's size")
    parser.add_argument("--mid", type=int, default=100, help="size of the middle rooms")
    parser.add_argument("--small", type=int, default=10, help="size of the small rooms")
    parser.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.2...")
    parser.add_argument("--idle", type=float, default=75.0, help="seconds of idle measured")
    parser.add_argument("--heartbeat", type=float, default=25.0, help="WS_HEARTBEAT, seconds")
    parser.add_argument("--messages", type=int, default=50, help="messages into the big room")
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second")
    parser.add_argument(
        "--gc-log", action="store_true", help="log the server's full collections (gcwatch.py)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.people, args.mid, args.small = 20, 10, 2
        # A ping must be answered within WS_HEARTBEAT / 2: 1 s leaves room for a busy machine.
        args.idle, args.heartbeat, args.messages, args.rate = 5.0, 2.0, 5, 10.0
    rooms, names = plan_sockets(args.people, args.mid, args.small)
    count = sum(len(members) for members in rooms.values())
    # Inherited by the server and the load generator: each holds one descriptor per socket.
    soft, hard = raise_nofile(count + 256)
    work = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    gc_log = work / "gc.log" if args.gc_log else None
    watch = [str(ROOT / "bench" / "gcwatch.py"), str(gc_log)] if gc_log else []
    product = Server(
        "product",
        [sys.executable, *watch, str(ROOT / "app.py")],
        {"DATA_DIR": str(work / "data"), "LOG_LEVEL": "WARNING", "ARGON2_TIME_COST": "1",
         "ARGON2_MEMORY_KIB": "1024", "ROOM_LIMIT_USER": str(len(names)),
         "WS_HEARTBEAT": f"{args.heartbeat:g}", **BENCH_LIMITS},
        work,
    )  # fmt: skip
    started = time.monotonic()
    summary: dict[str, object] = {"sockets": count, "rooms": len(names), "people": args.people}
    gen: subprocess.Popen[str] | None = None
    try:
        product.start()
        asyncio.run(sign_up_users(product, args.people))
        slugs = asyncio.run(create_rooms(product.port, product.cookies[0], names))
        plan = {
            "cookies": product.cookies,
            "big_room": slugs["crowd"],
            # Person by person, each opening their rooms: as people arrive.
            "sockets": sorted(
                ([person, slugs[name]] for name, members in rooms.items() for person in members),
                key=lambda pair: pair[0],
            ),
        }
        plan_path = work / "plan.json"
        plan_path.write_text(json.dumps(plan))
        small_rooms = args.people // args.small * SMALL_ROOMS
        mid_rooms = args.people // args.mid * MID_ROOMS
        print(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; open "
            f"files: soft {soft}, hard {hard}; {count} sockets of {args.people} people in "
            f"{len(names)} rooms (1 of {args.people}, {mid_rooms} of {args.mid}, {small_rooms} "
            f"of {args.small}); {args.sources} source addresses; WS_HEARTBEAT={args.heartbeat:g}"
        )
        time.sleep(1.0)  # sign-up's hashing threads and writes settle
        pid = product.pid
        rss0, cpu0, wall0 = status_kib(pid, "VmRSS"), cpu_seconds(pid), time.monotonic()
        gen = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "crowdgen.py"), "--port", str(product.port),
             "--plan", str(plan_path), "--sources", str(args.sources)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        opening = read_json(gen, "connected ")
        open_cpu, open_wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
        time.sleep(2.0)
        rss1 = status_kib(pid, "VmRSS")
        rss_kib = (rss1 - rss0) / count
        print(
            f"opened {count} sockets in {open_wall:.1f} s (batches of {opening['batch']:g}: p50 "
            f"{opening['batch_p50_ms']:.0f} ms, max {opening['batch_max_ms']:.0f} ms); server CPU "
            f"{open_cpu:.2f} s, {open_cpu / count * 1e6:.0f} us per socket opened"
        )
        print(
            f"server RSS {rss0 / KIB:.1f} -> {rss1 / KIB:.1f} MiB: {rss_kib:.1f} KiB per socket "
            f"(target <= {TARGETS['rss_kib']:g}): {verdict(rss_kib <= TARGETS['rss_kib'])}"
        )
        # Idle: nobody sends, the server pings each socket every WS_HEARTBEAT and gets a pong.
        busy0, steal0 = machine_seconds()
        cpu0, gen0, wall0 = cpu_seconds(pid), cpu_seconds(gen.pid), time.monotonic()
        deadline = wall0 + args.idle
        while (left := deadline - time.monotonic()) > 0:
            if gen.poll() is not None or product.proc.poll() is not None:  # type: ignore[union-attr]
                raise RuntimeError("a process exited while idle")
            time.sleep(min(1.0, left))
        cpu1, gen1, wall1 = cpu_seconds(pid), cpu_seconds(gen.pid), time.monotonic()
        busy1, steal1 = machine_seconds()
        tell(gen, "idle over")
        idle = read_json(gen)
        elapsed = wall1 - wall0
        idle_core = (cpu1 - cpu0) / elapsed
        rest = max(0.0, ((busy1 - busy0) - (cpu1 - cpu0) - (gen1 - gen0)) / elapsed)
        idle_ok = idle_core < TARGETS["idle_core"] and idle["lost"] == 0
        per_ping = (cpu1 - cpu0) / max(1, idle["pongs"]) * 1e6
        print(
            f"idle {elapsed:.0f} s: server {idle_core:.2%} of a core, {idle['pongs']:g} pings "
            f"answered ({idle['pongs'] / count:.1f} a socket), {idle['lost']:g} sockets lost; "
            f"load generator {(gen1 - gen0) / elapsed:.2%}; rest of machine {rest:.2f} core "
            f"(steal {(steal1 - steal0) / elapsed:.2f}) (target < 5%): {verdict(idle_ok)}"
        )
        print(f"  idle server CPU per ping answered: {per_ping:.0f} us (all idle work included)")
        gc_idle = collections_between(gc_log, wall0, wall1)
        if gc_log:
            print(
                f"  full garbage collections in the idle window: {gc_idle['full']:g}, "
                f"{gc_idle['cpu_s']:.2f} s of CPU ({gc_idle['wall_s']:.2f} s wall)"
            )
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        tell(gen, f"send {args.messages} {args.rate:g}")
        report = read_json(gen)
        message_cpu = cpu_seconds(pid) - cpu0
        deliver_ok = report["delivery"] == 1.0 and report["leaked"] == 0 and report["lost"] == 0
        p99_ok = report["p99_ms"] < TARGETS["p99_ms"]
        print(
            f"{report['sent']:g} messages at {args.rate:g}/s into the room of "
            f"{report['receivers']:g}: p50 {report['p50_ms']:.1f} ms, p95 {report['p95_ms']:.1f} "
            f"ms, p99 {report['p99_ms']:.1f} ms, max {report['max_ms']:.1f} ms (target p99 < "
            f"{TARGETS['p99_ms']:g}): {verdict(p99_ok)}; server CPU "
            f"{message_cpu / max(1, report['sent']) * 1e3:.1f} ms a message"
        )
        print(
            f"delivered {report['received']:g} of {report['expected']:g} frames "
            f"({report['delivery']:.2%}), {report['leaked']:g} to other rooms, "
            f"{report['lost']:g} sockets lost (target 100%): {verdict(deliver_ok)}"
        )
        gc_send = collections_between(gc_log, wall0, time.monotonic())
        if gc_log:
            print(
                f"  full garbage collections while the messages went: {gc_send['full']:g}, "
                f"{gc_send['wall_s']:.2f} s wall; young ones over 10 ms: "
                f"{gc_send['young_over_10ms']:g}, {gc_send['young_wall_s']:.2f} s wall"
            )
        tell(gen, "close")
        gen.wait(60)
        summary.update(
            open_cpu_us_per_socket=open_cpu / count * 1e6,
            open_s=open_wall,
            rss_kib_per_socket=rss_kib,
            rss_mib_connected=rss1 / KIB,
            idle_core=idle_core,
            idle_us_per_ping=per_ping,
            idle_pongs=idle["pongs"],
            idle_lost=idle["lost"],
            idle_rest_cores=rest,
            delivery=report["delivery"],
            leaked=report["leaked"],
            p50_ms=report["p50_ms"],
            p99_ms=report["p99_ms"],
            lost=report["lost"],
            message_cpu_ms=message_cpu / max(1, report["sent"]) * 1e3,
            gc_idle=gc_idle if gc_log else None,
            gc_messages=gc_send if gc_log else None,
            gc_full_total=collections_between(gc_log, 0.0, float("inf"))["full"],
            passed={
                "rss": rss_kib <= TARGETS["rss_kib"],
                "idle": idle_ok,
                "p99": p99_ok,
                "delivery": deliver_ok,
            },
        )
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
        product.stop()
        shutil.rmtree(work, ignore_errors=True)
    passed = summary.get("passed", {})
    print(
        f"took {time.monotonic() - started:.0f} s; "
        + ", ".join(f"{k} {verdict(v)}" for k, v in passed.items())
    )  # type: ignore[union-attr]
    print("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
