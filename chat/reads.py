"""Read marks, buffered: a `read` frame is noted in memory and stored in batches.

A busy room would otherwise cost one database write per reader per message; batching makes it one
write per reader and room per flush, however many messages they read meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from common.tasks import running
from storage.base import Reads, StorageUnavailable

log = logging.getLogger(__name__)

FLUSH_EVERY = 2.0  # seconds from the first mark noted to its batch being stored
MARKS_KEPT = 100_000  # (person, room) marks remembered to tell a forward move (oldest go)


class ReadMarks:
    """The last seq each person read in each room: pending ones in memory, the rest stored."""

    def __init__(self, reads: Reads) -> None:
        self.reads = reads
        self.pending: dict[str, dict[str, int]] = {}  # user -> room -> seq
        self.noted = asyncio.Event()  # set while marks are pending: an idle server never wakes
        # The highest mark noted here per (person, room), flushed or not: a mark beyond it moves
        # forward (one this process never saw counts as forward: telling again is harmless).
        self.latest: dict[tuple[str, str], int] = {}

    def note(self, user: str, room: str, seq: int) -> bool:
        """Remember a read mark until the next flush (never moving one back); say if it moved."""
        rooms = self.pending.setdefault(user, {})
        if seq > rooms.get(room, 0):
            rooms[room] = seq
        self.noted.set()
        key = (user, room)
        if seq <= self.latest.get(key, 0):
            return False
        self.latest.pop(key, None)  # re-inserted last: the oldest marks are the first to go
        while len(self.latest) >= MARKS_KEPT:
            del self.latest[next(iter(self.latest))]
        self.latest[key] = seq
        return True

    async def of_user(self, user: str) -> dict[str, int]:
        """Return the person's read marks, stored and pending."""
        marks = await self.reads.of_user(user)
        for room, seq in self.pending.get(user, {}).items():
            if seq > marks.get(room, 0):
                marks[room] = seq
        return marks

    async def flush(self) -> None:
        """Store the pending marks; on failure they stay pending for the next try."""
        if self.pending:
            batch = [
                (user, room, seq)
                for user, rooms in self.pending.items()
                for room, seq in rooms.items()
            ]
            self.pending = {}
            try:
                await self.reads.mark_many(batch)
            except StorageUnavailable as exc:
                log.warning("%d read mark(s) not stored yet: %s", len(batch), exc)
                for user, room, seq in batch:
                    self.note(user, room, seq)
        if not self.pending:  # marks noted meanwhile keep the flag for the next batch
            self.noted.clear()


READS_KEY = web.AppKey("reads", ReadMarks)


async def reads_ctx(app: web.Application) -> AsyncIterator[None]:
    """Flush read marks a few seconds after one is noted, and once more at shutdown."""
    marks = app[READS_KEY]

    async def run() -> None:
        while True:
            await marks.noted.wait()
            await asyncio.sleep(FLUSH_EVERY)
            await marks.flush()

    async with running(run()):
        yield
    await marks.flush()
