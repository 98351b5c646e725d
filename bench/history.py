"""History benchmark: does reading history stay fast as the embedded store grows?

    python bench/history.py           # 1,000 vs 1,000,000 stored messages
    python bench/history.py --smoke   # 1,000 vs 5,000: checks the harness, not the numbers
    python bench/history.py --search  # the same, with varied text, and search timed too

Fills two SQLite stores, with 1,000 and with N messages (the product's own schema), starts the
product on each and times them in turn, A/B/B/A, from a client on 127.0.0.1: the chat page, the
history endpoint (first page and a deep page), a resume of 500 messages over /ws, and message
writes with concurrent senders. Timed in turn rather than one store after the other, so that the
machine's pace, which drifts on a VM, weighs on both alike.

The stores are made by the product's own setup (so the search index is there, and every message
written goes into it). With --search the messages are sentences of a Zipf-distributed vocabulary
(Latin, with some Cyrillic and Chinese), and `/search/messages` is timed for one-word, two-word
and phrase queries (p50 and p99, each query a different one).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import random
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

from storage.sqlite import SqliteStore  # noqa: E402
from storage.sqlite_search import BACKFILL, FUNCTIONS  # noqa: E402

SEARCH_QUERIES = 50  # different queries of each kind, each asked twice per store and turn
SEARCH_KINDS = ("search, one word", "search, two words", "search, phrase")


class Corpus:
    """Sentences of a Zipf-distributed vocabulary, and queries that find some of them."""

    def __init__(self, seed: int = 21) -> None:
        self.rng = random.Random(seed)
        syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
        endings = ["", "n", "s", "r", *syllables]
        pick = self.rng.choice
        words = {pick(syllables) + pick(syllables) + pick(endings) for _ in range(8000)}
        self.latin = sorted(words)[:5000]
        self.rng.shuffle(self.latin)
        self.cyrillic = ["привет", "спасибо", "Москва", "работа", "сервер", "ошибка", "релиз"]
        self.han = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会"
        self.weights = list(itertools.accumulate(1 / r for r in range(1, len(self.latin) + 1)))

    def text(self) -> str:
        """Return one message: Latin words, sometimes Cyrillic, sometimes a Chinese sentence."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.1:
            return "".join(rng.choice(self.han) for _ in range(rng.randint(6, 20)))
        words = rng.choices(self.latin, cum_weights=self.weights, k=rng.randint(5, 15))
        if kind < 0.2:
            words.insert(rng.randint(0, len(words)), rng.choice(self.cyrillic))
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        return " ".join(words) + rng.choice([".", "!", "?", ""])

    def queries(self, kind: str, samples: list[str]) -> list[str]:
        """Return SEARCH_QUERIES queries of a kind; phrases are taken from stored messages."""
        rng = random.Random(kind)
        if kind == "search, one word":
            return [rng.choice(self.latin[20:2000]) for _ in range(SEARCH_QUERIES)]
        if kind == "search, two words":
            return [" ".join(rng.sample(self.latin[20:500], 2)) for _ in range(SEARCH_QUERIES)]
        phrases = []
        latin = [t.split() for t in samples if not any(c in self.han for c in t)]
        while len(phrases) < SEARCH_QUERIES:
            words = rng.choice(latin)
            i = rng.randrange(len(words) - 1)
            phrases.append('"' + " ".join(words[i : i + 2]).strip(".!?") + '"')
        return phrases


def fill(path: Path, count: int, corpus: Corpus | None = None) -> list[str]:
    """Write `count` messages to the general room, as the product stores (and indexes) them.

    Return a sample of the texts (what phrase queries are taken from).
    """
    path.parent.mkdir(parents=True, exist_ok=True)

    async def setup() -> None:
        store = SqliteStore(path)
        await store.setup()  # the product's schema, its search index and its triggers
        await store.close()

    asyncio.run(setup())
    db = sqlite3.connect(path)
    for name, function in FUNCTIONS.items():  # the index's statements call it
        db.create_function(name, 1, function, deterministic=True)
    db.executescript("PRAGMA synchronous = OFF;")
    now = int(time.time() * 1000)
    batch = 50_000
    samples: list[str] = []
    for start in range(1, count + 1, batch):
        seqs = range(start, min(count, start + batch - 1) + 1)
        texts = [corpus.text() if corpus else f"message number {seq} " + "x" * 60 for seq in seqs]
        samples += texts[:20]
        rows = [
            ("general", seq, f"user{seq % 50}", text, now - (count - seq) * 1000, f"fill-{seq}")
            for seq, text in zip(seqs, texts, strict=True)
        ]
        (first,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()
        db.executemany(
            "INSERT INTO messages (room, seq, user, text, created_at, client_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute(BACKFILL, (first, first + len(rows)))  # indexed as the product's batches do
        db.commit()
    db.close()
    return samples


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


async def time_search(
    session: aiohttp.ClientSession, url: str, queries: dict[str, list[str]]
) -> dict[str, list[float]]:
    """Time every query of every kind once: `/search/messages`, the first page of 20."""
    samples: dict[str, list[float]] = {}
    for kind, asked in queries.items():
        samples[kind] = []
        for q in asked:
            started = time.perf_counter()
            async with session.get(url + "/search/messages", params={"q": q}) as resp:
                body = await resp.json()
                assert resp.status == 200, (q, resp.status, body)
            samples[kind].append((time.perf_counter() - started) * 1000)
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
    urls: list[str],
    counts: list[int],
    rounds: int,
    times: int,
    senders: int,
    per_sender: int,
    queries: dict[str, list[str]] | None = None,
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
                if queries:
                    for key, values in (await time_search(sessions[i], urls[i], queries)).items():
                        samples[i][key] += values
        tails = [
            {f"{key} p99": percentile(s[key], 0.99) for key in SEARCH_KINDS if key in s}
            for s in samples
        ]
        # Writes last: they add messages. Each store twice, A/B/B/A, half the messages each time.
        for run, i in enumerate((0, 1, 1, 0)):
            rate = await writes_per_s(sessions[i], urls[i], senders, per_sender // 2, run)
            samples[i]["writes per s"].append(rate)
    return [
        {key: statistics.median(values) for key, values in s.items()} | tail
        for s, tail in zip(samples, tails, strict=True)
    ]


def percentile(values: list[float], q: float) -> float:
    """Return the q-quantile of the values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(work: Path, count: int, corpus: Corpus | None, samples: list[str]) -> Server:
    """Fill a store with `count` messages and start the product on it."""
    started = time.monotonic()
    samples += fill(work / "data" / "chat.sqlite3", count, corpus)
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
    parser.add_argument("--search", action="store_true", help="varied text, and time search too")
    parser.add_argument("--large", type=int, default=1_000_000, help="messages in the large store")
    args = parser.parse_args()
    small, large, rounds, times, senders, per_sender = 1_000, args.large, 10, 10, 20, 100
    if args.smoke:
        large, rounds, times, senders, per_sender = 5_000, 1, 3, 4, 10
    if args.search:
        rounds = max(1, rounds // 5)  # each turn also asks 150 queries
    print(
        f"history benchmark: {small:,} vs {large:,} stored messages, both served at once and timed "
        f"in turn (A/B/B/A x{rounds}); p50 of {2 * rounds * times} requests and {2 * rounds} "
        "resumes each, writes the median of 2 runs"
    )
    works = [Path(tempfile.mkdtemp(prefix="chat-history-")) for _ in range(2)]
    servers: list[Server] = []
    corpus = Corpus() if args.search else None
    samples: list[str] = []
    try:
        for work, count in zip(works, (small, large), strict=True):
            servers.append(start(work, count, corpus, samples))
        urls = [f"http://127.0.0.1:{server.port}" for server in servers]
        queries = {k: corpus.queries(k, samples) for k in SEARCH_KINDS} if corpus else None
        a, b = asyncio.run(
            measure(urls, [small, large], rounds, times, senders, per_sender, queries)
        )
    finally:
        for server in servers:
            server.stop()
        for work in works:
            shutil.rmtree(work, ignore_errors=True)
    print(f"  {'':22} {small:>12,} {large:>12,}   ratio  target")
    for key in a:
        ratio = b[key] / a[key]
        if key.startswith("search"):
            limit = 100 if key.endswith("p99") else 20
            verdict = "ok" if b[key] <= limit else f"ABOVE {limit} ms"
            print(f"  {key:22} {a[key]:10.2f}ms {b[key]:10.2f}ms  {ratio:6.2f}  {verdict}")
            continue
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
