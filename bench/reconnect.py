"""Reconnect storm: restart the server under 5,000 sockets with messages flowing; who resumes, when.

    python bench/reconnect.py            # scenarios A and B, 5,000 sockets (~3 min)
    python bench/reconnect.py --smoke    # 40 sockets: checks the harness only

A: one product process (`app.py`, embedded store, in a temp directory; accounts made through the
real sign-up form, `SOCKETS_PER_USER` sockets each; the rate limits raised, not bypassed).
`--sockets` sockets over `--rooms` rooms, from `--addresses` source addresses 127.0.0.x, are
driven by `bench/storm_client.py` (one epoll loop in a process of its own, each client behaving
as the chat page: its backoff and jitter, `after` and `rev`, its outbox re-sending by
`client_id`). `--senders` of them post `--rate` messages a second in all. After `--before`
seconds the process gets SIGTERM; once it has exited it is started again on the same port and
DATA_DIR, and every client reconnects by itself. Measured: the time from SIGTERM until every
socket is resumed (its `hello` and its replay), the restarted process's CPU from its start to
its listening (start-up) and from then until all are resumed (per reconnect; also net of the
CPU the message flow cost before the restart), and, per socket, every `seq` received: lost,
duplicated, gaps, resets. Then the stored messages are read back over HTTP: each acknowledged
message stored once, none stored unacknowledged.

B: the same with two processes on two ports, sharing the SQLite file and a redis-server (no
persistence), sockets spread over both, senders on both; the second one restarts. Its clients
reconnect to either port, at random for each attempt (as a balancer without health checks
would send them).

PASS: every socket resumed within 30 s of SIGTERM, 0 lost, 0 duplicates (other than re-sends'
acknowledgements, which the protocol sends to their sender alone), every message stored once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))

from login_storm import percentile  # noqa: E402
from ws_fanout import (  # noqa: E402
    BENCH_LIMITS,
    ROOT,
    Redis,
    cpu_seconds,
    free_port,
    machine_seconds,
    sign_up,
    stop_process,
    wait_port,
)

TARGET_S = 30.0  # every socket resumed within this many seconds of SIGTERM
SOCKETS_PER_USER = 20  # the product's default SOCKETS_PER_USER: every account uses all of it
LIMITS = {
    **BENCH_LIMITS,
    "ROOM_LIMIT_USER": "1000",  # one account makes every room
    "LOG_LEVEL": "WARNING",
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
}


class Product:
    """One `app.py` process, which can be stopped with SIGTERM and started again."""

    def __init__(self, work: Path, port: int, env: dict[str, str], name: str) -> None:
        self.work, self.port, self.name = work, port, name
        self.env = {**os.environ, **LIMITS, **env, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.profile: Path | None = None  # where the next start writes its cProfile output

    def start(self) -> float:
        """Start it and wait until it listens; return its CPU seconds by then (start-up)."""
        self.starts += 1
        log = (self.work / f"{self.name}-{self.starts}.log").open("wb")
        profiler = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *profiler, str(ROOT / "app.py")],
            cwd=self.work,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_port(self.port, self.proc, 30, poll=0.01, name=self.name)
        return cpu_seconds(self.proc.pid)

    def terminate(self) -> float:
        """SIGTERM, wait for the exit; return the CPU seconds the process used in all."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid, _, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = 0
                return usage.ru_utime + usage.ru_stime
            time.sleep(0.005)
        self.proc.kill()
        raise RuntimeError(f"{self.name} did not stop within 30 s of SIGTERM")

    def stop(self) -> None:
        stop_process(self.proc, 30)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


async def accounts(url: str, users: int, rooms: int) -> tuple[list[str], list[str]]:
    """Sign up `users` accounts through the form; the first makes `rooms` rooms. Cookies, slugs."""
    cookies: list[str] = []

    async def one(i: int) -> tuple[str, aiohttp.ClientSession]:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        await sign_up(s, url, f"storm{i}")
        value = s.cookie_jar.filter_cookies(URL(url))["chat_session"].value
        return f'chat_session="{value}"', s

    first, session = await one(0)
    cookies.append(first)
    slugs: list[str] = []
    try:
        for r in range(rooms):
            async with session.get(url + "/") as resp:
                match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
                assert match, "no CSRF token on the room list"
            form = {"name": f"storm {r}", "csrf_token": match.group(1)}
            async with session.post(
                url + "/rooms", data=form, headers={"Origin": url}, allow_redirects=False
            ) as resp:
                assert resp.status == 302, f"room not created: {resp.status}"
                slugs.append(resp.headers["Location"].rsplit("/", 1)[-1])
    finally:
        await session.close()
    for start in range(1, users, 20):
        made = await asyncio.gather(*(one(i) for i in range(start, min(users, start + 20))))
        for cookie, s in made:
            cookies.append(cookie)
            await s.close()
    return cookies, slugs


async def stored(url: str, cookie: str, slugs: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Every message of the rooms, read back over the history endpoint: (seq, client_id)."""
    found: dict[str, list[tuple[int, str]]] = {}
    async with aiohttp.ClientSession(headers={"Cookie": cookie}) as s:
        for slug in slugs:
            rows: list[tuple[int, str]] = []
            after = 0
            for _ in range(10_000):  # bounded: 100 a page
                async with s.get(f"{url}/rooms/{slug}/messages?after={after}&limit=100") as resp:
                    assert resp.status == 200, resp.status
                    page = await resp.json()
                rows += [(m["seq"], m["client_id"]) for m in page["messages"]]
                if not page["has_more"] or not page["messages"]:
                    break
                after = page["messages"][-1]["seq"]
            found[slug] = rows
    return found


class Lines:
    """The storm client's output, read with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)

    def read(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        if not self.selector.select(timeout):
            raise TimeoutError(f"no word from the storm client within {timeout:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the storm client ended (exit {self.proc.wait(10)})")
        return line

    def tell(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


def scenario(args: argparse.Namespace, name: str, processes: int) -> dict[str, object]:
    """Run one storm: `processes` products (the last one restarts), the clients, the checks."""
    work = Path(tempfile.mkdtemp(prefix=f"chat-storm-{name}-"))
    redis = Redis() if processes > 1 else None
    env = {"DATA_DIR": str(work / "data")}
    if redis is not None:
        env["REDIS_URL"] = redis.url
    products = [Product(work, free_port(), env, f"p{k}") for k in range(processes)]
    victim = products[-1]
    client: subprocess.Popen[str] | None = None
    print(f"scenario {name}: {args.sockets} sockets, {args.rooms} rooms, {processes} process(es)")
    try:
        fresh_start = [p.start() for p in products]
        users = -(-args.sockets // SOCKETS_PER_USER)
        url = f"http://127.0.0.1:{products[0].port}"
        cookies, slugs = asyncio.run(accounts(url, users, args.rooms))
        # Socket i: account i // 20 (one socket in each of 20 rooms), room i % rooms, process
        # (i // rooms) % processes: every room has sockets on every process.
        sockets = [
            {
                "cookie": cookies[i // SOCKETS_PER_USER],
                "user": f"storm{i // SOCKETS_PER_USER}",
                "room": slugs[i % args.rooms],
                "port": products[(i // args.rooms) % processes].port,
            }
            for i in range(args.sockets)
        ]
        # The senders: one socket in each of the first rooms, on each process in turn.
        senders = [k + args.rooms * (k % processes) for k in range(args.senders)]
        plan = {
            "ports": [p.port for p in products],
            "addresses": [f"127.0.0.{2 + k}" for k in range(args.addresses)],
            "spread": processes > 1,
            "rate": args.rate,
            "sockets": sockets,
            "senders": senders,
            "grace": args.grace,
        }
        (work / "plan.json").write_text(json.dumps(plan))
        client = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "storm_client.py"), str(work / "plan.json")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = Lines(client)
        cpu_open0 = [cpu_seconds(p.pid) for p in products]
        if lines.read(600).strip() != "connected":  # each batch has its own bound
            raise RuntimeError("the storm client did not connect")
        open_cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(products, cpu_open0, strict=True))
        lines.tell("go")
        steady0, wall0 = [cpu_seconds(p.pid) for p in products], time.monotonic()
        time.sleep(args.before)
        steady = [
            (cpu_seconds(p.pid) - c) / (time.monotonic() - wall0)
            for p, c in zip(products, steady0, strict=True)
        ]  # cores each process spends on the flow alone
        others = products[:-1]
        others0 = [cpu_seconds(p.pid) for p in others]
        cpu_term = cpu_seconds(victim.pid)
        busy0, steal0 = machine_seconds()
        client_cpu0 = cpu_seconds(client.pid)
        t_term = time.monotonic()
        total_old = victim.terminate()
        t_exit = time.monotonic()
        if args.profile:
            victim.profile = work / "restarted.prof"
        startup = victim.start()
        t_listen = time.monotonic()
        try:
            line = lines.read(max(1.0, t_term + args.deadline - time.monotonic()))
            assert line.startswith("resumed "), line
            t_resumed = float(line.split()[2])
        except TimeoutError:
            t_resumed = float("nan")  # not all resumed by the deadline: the report says who
        cpu_resumed = cpu_seconds(victim.pid)
        t_seen = time.monotonic()
        others_storm = [cpu_seconds(p.pid) - c for p, c in zip(others, others0, strict=True)]
        busy1, steal1 = machine_seconds()
        client_storm = cpu_seconds(client.pid) - client_cpu0
        time.sleep(args.tail)
        lines.tell("stop")
        line = lines.read(args.grace + 30)
        while line.startswith("resumed "):  # a later storm of its own (a gap, say)
            line = lines.read(args.grace + 30)
        report = json.loads(line)
        rows = asyncio.run(stored(url, cookies[0], slugs))
    finally:
        if client is not None:
            if client.stdin is not None:
                client.stdin.close()
            try:
                client.wait(30)
            except subprocess.TimeoutExpired:
                client.kill()
        for p in products:
            p.stop()
        if redis is not None:
            redis.stop()
        if victim.profile is not None and victim.profile.exists():
            stats = pstats.Stats(str(victim.profile))
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    window = t_seen - t_listen
    on_port = report["reconnects_by_port"]
    initial_per_port = {str(p.port): sum(s["port"] == p.port for s in sockets) for p in products}
    # Hellos on each port after the first ones: on the restarted one, all its new process took.
    reconnects = {port: on_port.get(port, 0) - n for port, n in initial_per_port.items()}
    storm_cpu = cpu_resumed - startup
    closed = [
        r - t_term
        for c, r in zip(report["closed_at"], report["resumed_at"], strict=True)
        if c >= t_term
    ]
    stored_ok = True
    stored_count = 0
    for slug, seqs in rows.items():
        stored_count += len(seqs)
        ids = [cid for _, cid in seqs]
        if len(set(ids)) != len(ids) or [s for s, _ in seqs] != report["acked"].get(slug, []):
            stored_ok = False
    victim_reconnects = max(1, reconnects[str(victim.port)])
    figures: dict[str, object] = {
        "sockets": report["sockets"],
        "sockets_closed": len(closed),
        "reconnects": reconnects,
        "shutdown_s": t_exit - t_term,
        "down_s": t_listen - t_term,
        "all_resumed_s": t_resumed - t_term,
        "resumed_after_listening_s": t_resumed - t_listen,
        "resumed_p50_s": percentile(closed, 0.5),
        "resumed_p90_s": percentile(closed, 0.9),
        "startup_cpu_s": startup,
        "fresh_startup_cpu_s": fresh_start[-1],
        "shutdown_cpu_s": total_old - cpu_term,
        "storm_cpu_s": storm_cpu,
        "cpu_ms_per_reconnect": storm_cpu / victim_reconnects * 1e3,
        "cpu_ms_per_reconnect_net": (storm_cpu - steady[-1] * window) / victim_reconnects * 1e3,
        "open_cpu_ms_per_socket": open_cpu / args.sockets * 1e3,
        "steady_cores": steady,
        "others_storm_cpu_s": others_storm,
        # From SIGTERM: the others also hear of the restarted one's sockets leaving (Redis).
        "others_cpu_ms_per_reconnect": [
            cpu / max(1, reconnects[str(p.port)]) * 1e3
            for p, cpu in zip(products[:-1], others_storm, strict=True)
        ],
        "client_storm_cpu_s": client_storm,
        "rest_cores": max(
            0.0,
            (
                (busy1 - busy0)
                - (total_old - cpu_term)
                - cpu_resumed
                - client_storm
                - sum(others_storm)
            )
            / (t_seen - t_term),
        ),
        "steal_cores": (steal1 - steal0) / (t_seen - t_term),
        "stored": stored_count,
        "stored_matches_acked": stored_ok,
        **{
            k: report[k]
            for k in (
                "not_resumed",
                "session_ended",
                "resets",
                "gaps",
                "duplicates",
                "ack_duplicates",
                "lost",
                "sockets_with_loss",
                "loss_sample",
                "frames_checked",
                "messages_made",
                "messages_acked",
                "messages_resent",
                "unacked",
                "seq_mismatches",
                "double_stored",
                "failed_attempts",
                "cpu_s",
            )
        },  # fmt: skip
    }
    figures["pass"] = bool(
        figures["all_resumed_s"] <= TARGET_S  # type: ignore[operator]  (NaN: not all)
        and report["not_resumed"] == 0
        and report["lost"] == 0
        and report["duplicates"] == report["ack_duplicates"]
        and report["double_stored"] == 0
        and report["seq_mismatches"] == 0
        and report["unacked"] == 0
        and stored_ok
    )
    show(name, figures)
    return figures


def show(name: str, f: dict[str, object]) -> None:
    print(
        f"  {name}: {f['sockets_closed']} sockets closed by SIGTERM; down {f['down_s']:.2f} s "
        f"(shutdown {f['shutdown_s']:.2f} s); all resumed {f['all_resumed_s']:.2f} s after "
        f"SIGTERM ({f['resumed_after_listening_s']:.2f} s after listening; p50 "
        f"{f['resumed_p50_s']:.2f} s, p90 {f['resumed_p90_s']:.2f} s)\n"
        f"  {name}: reconnects by port {f['reconnects']}; failed attempts {f['failed_attempts']}\n"
        f"  {name}: restarted process CPU: start-up {f['startup_cpu_s']:.2f} s (fresh store "
        f"{f['fresh_startup_cpu_s']:.2f} s), storm {f['storm_cpu_s']:.2f} s = "
        f"{f['cpu_ms_per_reconnect']:.2f} ms per reconnect ({f['cpu_ms_per_reconnect_net']:.2f} "
        f"net of the flow's {f['steady_cores'][-1]:.2f} core); shutdown "
        f"{f['shutdown_cpu_s']:.2f} s; calm opening {f['open_cpu_ms_per_socket']:.2f} ms per "
        f"socket; other process {sum(f['others_storm_cpu_s']):.2f} s "
        f"({sum(f['others_cpu_ms_per_reconnect']):.2f} ms per reconnect it took); client "
        f"{f['client_storm_cpu_s']:.2f} s; rest of machine "
        f"{f['rest_cores']:.2f} core (steal {f['steal_cores']:.2f})\n"
        f"  {name}: messages made {f['messages_made']}, acknowledged {f['messages_acked']}, "
        f"re-sent {f['messages_resent']}, unacknowledged {f['unacked']}, stored {f['stored']} "
        f"(each once, as acknowledged: {f['stored_matches_acked']}); frames checked "
        f"{f['frames_checked']}: lost {f['lost']}, duplicates {f['duplicates']} (of which "
        f"re-sends' acknowledgements {f['ack_duplicates']}), gaps {f['gaps']}, resets "
        f"{f['resets']}, not resumed {f['not_resumed']}: {'PASS' if f['pass'] else 'FAIL'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: check the harness")
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second, in all")
    parser.add_argument("--addresses", type=int, default=8, help="source addresses 127.0.0.x")
    parser.add_argument("--before", type=float, default=5.0, help="seconds of flow, then SIGTERM")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds of flow after")
    parser.add_argument("--deadline", type=float, default=90.0, help="give up after (s)")
    parser.add_argument("--grace", type=float, default=20.0)
    parser.add_argument("--scenarios", default="A,B", help="A (one process), B (two + Redis)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--profile", action="store_true", help="run the restarted process under cProfile"
    )
    args = parser.parse_args()
    if args.smoke:
        args.sockets, args.rooms, args.senders, args.rate = 40, 4, 2, 5.0
        args.addresses, args.before, args.tail = 2, 1.0, 0.5
    if args.senders > args.rooms:
        parser.error("--senders must be at most --rooms (one sender a room)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.sockets + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        parser.error(f"RLIMIT_NOFILE is {hard}: {need} descriptors are needed (ulimit -n)")
    started = time.monotonic()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    summary: dict[str, object] = {}
    for name in args.scenarios.split(","):
        summary[name] = scenario(args, name, 1 if name == "A" else 2)
    print(f"took {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")
    print("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
