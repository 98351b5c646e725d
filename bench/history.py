"""History benchmark: does reading history stay fast as the embedded store grows?

    python bench/history.py           # 1,000 vs 1,000,000 stored messages
    python bench/history.py --smoke   # 1,000 vs 5,000: checks the harness, not the numbers

Fills the SQLite store with N messages (the product's own schema), starts the product on it and
times, from a client on 127.0.0.1: the chat page, the history endpoint (first page and a deep
page), a resume of 500 messages over /ws, and message writes with concurrent senders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
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

from ws_fanout import Server  # noqa: E402

from storage.sqlite import SCHEMA  # noqa: E402

PASSWORD = "bench password 123"


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


async def p50_ms(session: aiohttp.ClientSession, url: str, times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
            assert resp.status == 200, (url, resp.status)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def measure(
    url: str, count: int, reps: int, senders: int, per_sender: int
) -> dict[str, float]:
    """Time the reads and writes against a running product holding `count` messages."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.get(url + "/signup") as resp:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
            assert token
        form = {"login": "reader", "email": "reader@example.com", "password": PASSWORD,
                "password_confirm": PASSWORD, "csrf_token": token.group(1)}  # fmt: skip
        async with s.post(url + "/signup", data=form, headers={"Origin": url}) as resp:
            assert resp.status == 200
        result = {
            "chat page": await p50_ms(s, url + "/rooms/general", reps),
            "history, first page": await p50_ms(s, url + "/rooms/general/messages", reps),
            "history, deep page": await p50_ms(
                s, url + "/rooms/general/messages?before=100&limit=50", reps
            ),
        }
        resumes = []
        for _ in range(max(3, reps // 5)):
            started = time.perf_counter()
            async with s.ws_connect(
                url + f"/ws?after={count - 500}", headers={"Origin": url}
            ) as ws:
                got = 0
                while got < 500:
                    if (await ws.receive_json(timeout=10))["type"] == "message":
                        got += 1
            resumes.append((time.perf_counter() - started) * 1000)
        result["resume of 500"] = statistics.median(resumes)
        sockets = [await s.ws_connect(url + "/ws", headers={"Origin": url}) for _ in range(senders)]
        for ws in sockets:
            await ws.receive_json(timeout=10)
        started = time.perf_counter()

        async def send_all(n: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            for i in range(per_sender):
                await ws.send_str(
                    json.dumps({"type": "message", "text": f"w{i}", "client_id": f"{n}-{i}"})
                )

        async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
            got = 0
            while got < senders * per_sender:  # every socket sees every message
                if (await ws.receive_json(timeout=30))["type"] == "message":
                    got += 1

        await asyncio.gather(*(send_all(n, ws) for n, ws in enumerate(sockets)))
        await drain(sockets[0])
        result["writes per s"] = senders * per_sender / (time.perf_counter() - started)
        for ws in sockets:
            await ws.close()
    return result


def run(count: int, reps: int, senders: int, per_sender: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="chat-history-"))
    try:
        started = time.monotonic()
        fill(work / "data" / "chat.sqlite3", count)
        print(f"  filled {count:,} messages in {time.monotonic() - started:.1f} s", flush=True)
        env = {
            "DATA_DIR": str(work / "data"),
            "LOG_LEVEL": "WARNING",
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "1024",
            # The senders send as fast as they can from one address: limits raised, not bypassed.
            "MESSAGE_BURST": "100000",
            "MESSAGE_PER_MINUTE": "10000000",
        }
        server = Server("product", [sys.executable, str(ROOT / "app.py")], env, work)
        server.start()
        try:
            url = f"http://127.0.0.1:{server.port}"
            return asyncio.run(measure(url, count, reps, senders, per_sender))
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="small and quick: check the harness")
    args = parser.parse_args()
    small, large, reps, senders, per_sender = 1_000, 1_000_000, 50, 20, 100
    if args.smoke:
        large, reps, senders, per_sender = 5_000, 5, 4, 10
    print(f"history benchmark: {small:,} vs {large:,} stored messages, p50 of {reps} requests")
    a = run(small, reps, senders, per_sender)
    b = run(large, reps, senders, per_sender)
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
