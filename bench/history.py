"""History benchmark: does reading history stay fast as the embedded store grows?

    python bench/history.py           # 1,000 vs 1,000,000 stored messages
    python bench/history.py --smoke   # 1,000 vs 5,000: checks the harness, not the numbers

Fills two SQLite stores, with 1,000 and with N messages (the product's own schema), starts the
product on each and times them in turn, A/B/B/A, from a client on 127.0.0.1: the chat page, the
history endpoint (first page and a deep page), a resume of 500 messages over /ws, and message
writes with concurrent senders. Timed in turn rather than one store after the other, so that the
machine's pace, which drifts on a VM, weighs on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ws_fanout import Server, sign_up  # noqa: E402

from storage.sqlite import SCHEMA  # noqa: E402


def fill(path: Path, count: int) -> None:
    """Write `count` messages to the general room, as the product stores them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode = WAL;" + SCHEMA)
    now = int(time.time() * 1000)
    db.execute("INSERT OR IGNORE INTO rooms VALUES ('general', 'General', ?)", (now,))
    batch = 50_000
    for start in range(1, count + 1, batch):
        rows = [
            ("general", seq, f"user{seq % 50}", f"message number {seq} " + "x" * 60,
             now - (count - seq) * 1000, f"fill-{seq}")
            for seq in range(start, min(count, start + batch - 1) + 1)
        ]  # fmt: skip
        db.executemany(
            "INSERT INTO messages (room, seq, user, text, created_at, client_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.commit()
    db.close()


async def timed_ms(session: aiohttp.ClientSession, url: str, times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
            assert resp.status == 200, (url, resp.status)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def time_reads(
    session: aiohttp.ClientSession, url: str, count: int, times: int
) -> dict[str, list[float]]:
    """Time each read `times` times, and one resume of the last 500 messages."""
    samples = {
        "chat page": await timed_ms(session, url + "/rooms/general", times),
        "history, first page": await timed_ms(session, url + "/rooms/general/messages", times),
        "history, deep page": await timed_ms(
            session, url + "/rooms/general/messages?before=100&limit=50", times
        ),
    }
    started = time.perf_counter()
    async with session.ws_connect(url + f"/ws?after={count - 500}", headers={"Origin": url}) as ws:
        got = 0
        while got < 500:
            if (await ws.receive_json(timeout=10))["type"] == "message":
                got += 1
    samples["resume of 500"] = [(time.perf_counter() - started) * 1000]
    return samples


async def writes_per_s(
    session: aiohttp.ClientSession, url: str, senders: int, per_sender: int, run: int
) -> float:
    """Stored messages per second, `senders` sockets sending as fast as they can."""
    sockets = [
        await session.ws_connect(url + "/ws", headers={"Origin": url}) for _ in range(senders)
    ]
    for ws in sockets:
        await ws.receive_json(timeout=10)
    started = time.perf_counter()

    async def send_all(n: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        for i in range(per_sender):
            await ws.send_str(
                json.dumps({"type": "message", "text": f"w{i}", "client_id": f"{run}-{n}-{i}"})
            )

    async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
        got = 0
        while got < senders * per_sender:  # every socket sees every message
            if (await ws.receive_json(timeout=30))["type"] == "message":
                got += 1

    await asyncio.gather(*(send_all(n, ws) for n, ws in enumerate(sockets)))
    await drain(sockets[0])
    rate = senders * per_sender / (time.perf_counter() - started)
    for ws in sockets:
        await ws.close()
    return rate


async def measure(
    urls: list[str], counts: list[int], rounds: int, times: int, senders: int, per_sender: int
) -> list[dict[str, float]]:
    """Time both stores in turn, A/B/B/A, so a change in the machine's pace hits both alike."""
    jars = [aiohttp.CookieJar(unsafe=True) for _ in urls]
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=jar)) for jar in jars
        ]
        for session, url in zip(sessions, urls, strict=True):
            await sign_up(session, url, "reader")
        samples: list[dict[str, list[float]]] = [collections.defaultdict(list) for _ in urls]
        for _ in range(rounds):
            for i in (0, 1, 1, 0):
                for key, values in (
                    await time_reads(sessions[i], urls[i], counts[i], times)
                ).items():
                    samples[i][key] += values
        # Writes last: they add messages. Each store twice, A/B/B/A, half the messages each time.
        for run, i in enumerate((0, 1, 1, 0)):
            rate = await writes_per_s(sessions[i], urls[i], senders, per_sender // 2, run)
            samples[i]["writes per s"].append(rate)
    return [{key: statistics.median(values) for key, values in s.items()} for s in samples]


def start(work: Path, count: int) -> Server:
    """Fill a store with `count` messages and start the product on it."""
    started = time.monotonic()
    fill(work / "data" / "chat.sqlite3", count)
    print(f"  filled {count:,} messages in {time.monotonic() - started:.1f} s", flush=True)
    env = {
        "DATA_DIR": str(work / "data"),
        "LOG_LEVEL": "WARNING",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "SIGNUP_MODE": "open",
        # The senders send as fast as they can from one address: limits raised, not bypassed.
        "MESSAGE_BURST": "100000",
        "MESSAGE_PER_MINUTE": "10000000",
    }
    server = Server("product", [sys.executable, str(ROOT / "app.py")], env, work)
    server.start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="small and quick: check the harness")
    args = parser.parse_args()
    small, large, rounds, times, senders, per_sender = 1_000, 1_000_000, 10, 10, 20, 100
    if args.smoke:
        large, rounds, times, senders, per_sender = 5_000, 1, 3, 4, 10
    print(
        f"history benchmark: {small:,} vs {large:,} stored messages, both served at once and timed "
        f"in turn (A/B/B/A x{rounds}); p50 of {2 * rounds * times} requests and {2 * rounds} "
        "resumes each, writes the median of 2 runs"
    )
    works = [Path(tempfile.mkdtemp(prefix="chat-history-")) for _ in range(2)]
    servers: list[Server] = []
    try:
        for work, count in zip(works, (small, large), strict=True):
            servers.append(start(work, count))
        urls = [f"http://127.0.0.1:{server.port}" for server in servers]
        a, b = asyncio.run(measure(urls, [small, large], rounds, times, senders, per_sender))
    finally:
        for server in servers:
            server.stop()
        for work in works:
            shutil.rmtree(work, ignore_errors=True)
    print(f"  {'':22} {small:>12,} {large:>12,}   ratio  target")
    for key in a:
        ratio = b[key] / a[key]
        if key == "writes per s":
            verdict = "ok" if b[key] >= 2000 else "BELOW 2000/s"
            print(f"  {key:22} {a[key]:12.0f} {b[key]:12.0f}  {ratio:6.2f}  {verdict}")
            continue
        target = ratio <= 1.5 and (not key.startswith("history") or b[key] < 5)
        print(f"  {key:22} {a[key]:10.2f}ms {b[key]:10.2f}ms  {ratio:6.2f}  "
              f"{'ok' if target else 'MISSED'}")  # fmt: skip
    print("SUMMARY " + json.dumps({"small": a, "large": b}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
