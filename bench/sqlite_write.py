"""What storing one message costs the server's thread, back to back and after an idle gap.

    python bench/sqlite_write.py            # 400 writes per row
    python bench/sqlite_write.py --smoke    # 20 writes per row: checks the harness

Explains the fan-out benchmark's CPU per frame at N=200: the product stores each message (the
bare loop does not), and at 40 messages/s the event loop sleeps ~25 ms between messages, so the
write runs on a cold CPU. Each row is the thread's CPU time per call of the product's own
`messages.add` on the embedded store, and, as the control, of a tiny pure-Python loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.sqlite import SqliteStore  # noqa: E402


async def cpu_us(call: Callable[[int], Awaitable[object]], count: int, gap: float) -> float:
    """Median CPU time of this thread per call, in microseconds, sleeping `gap` s between."""
    times = []
    for i in range(count):
        started = time.thread_time_ns()
        await call(i)
        times.append((time.thread_time_ns() - started) / 1000)
        await asyncio.sleep(gap)
    return statistics.median(times)


async def main(count: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="chat-sqlite-"))
    store = SqliteStore(work / "chat.sqlite3")
    await store.setup()
    summary: dict[str, float] = {}
    try:

        async def add(i: int) -> object:
            return await store.messages.add("general", "bench", f"message {i}", f"{time.time_ns()}")

        async def control(i: int) -> object:
            return sum(range(100))

        calls = (("add", "store a message", add), ("control", "control: sum(range(100))", control))
        for gap in (0.0, 0.025):
            for key, name, call in calls:
                us = await cpu_us(call, count, gap)
                summary[f"{key}_{'idle' if gap else 'busy'}_us"] = us
                label = f"after {gap * 1000:g} ms idle" if gap else "back to back"
                print(f"  {name:26} {label:18} {us:7.1f} us CPU per call (median)")
    finally:
        await store.close()
        shutil.rmtree(work, ignore_errors=True)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: check the harness")
    args = parser.parse_args()
    summary = asyncio.run(main(20 if args.smoke else 400))
    print("SUMMARY " + json.dumps(summary))
