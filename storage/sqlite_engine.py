"""The SQLite engine: three connections to one file, writes on the event loop, WAL checkpoints.

It knows nothing of the chat's tables but `health`, whose one row the readiness check and the
WAL's restart write. See docs/sqlite.md for why writes and checkpoints run where they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from storage.base import StorageUnavailable

log = logging.getLogger(__name__)

HEALTH_TABLE = """
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY,
    checked_at INTEGER NOT NULL
)"""
# A small write of no consequence: readiness checks make it, and so does the WAL's restart.
MARK_HEALTH = "INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)"
WRITE_ATTEMPTS = 50
# In the WAL index (the `-shm` file, in native byte order; sqlite.org/walformat.html): the frames
# in the WAL, and those copied back to the database by checkpoints.
WAL_INDEX_MX_FRAME, WAL_INDEX_N_BACKFILL, WAL_INDEX_SIZE = 16, 96, 136
# Writes between WAL checkpoints. A message writes 3-4 pages, so the WAL holds up to ~3,500 (14
# MiB); the writes that come during a checkpoint pay a trip to a thread (see SqliteDb), and at
# thousands of messages a second checkpoints every 250 writes halved the rate.
CHECKPOINT_EVERY = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Say whether an error means another connection holds the lock (so try again, or wait)."""
    return "locked" in str(exc) or "busy" in str(exc)


class SqliteDb:
    """Three connections to one file: reads, transactions, and single-statement writes.

    Reads run on their own connection (a worker thread), so a reader never sees another
    coroutine's uncommitted transaction (WAL gives it the last committed snapshot). Multi-statement
    transactions (accounts, sessions) run on a second worker thread. Single-statement writes, the
    hot path (a message, an edit), run on the event loop's own connection: in WAL mode without
    fsync such a write costs ~40 us of CPU, less than the two thread wake-ups of a hop to a worker
    (~65 us). That connection never waits for a lock (busy timeout 0): a write that meets another
    process's lock is handed to the transaction thread, which may wait. No connection checkpoints
    by itself (wal_autocheckpoint off): the WAL is checkpointed on the reading thread every
    CHECKPOINT_EVERY writes, so the event loop never waits for the fsync a checkpoint does. Nor
    for the other fsync of WAL mode: the first write after a complete checkpoint restarts the WAL
    and syncs its header. The checkpoint task makes that write itself, on the transaction
    thread, and while it runs the writes that would have run on the event loop go there too. A
    write that finds the WAL awaiting its restart (another process checkpointed) goes there too.
    """

    def __init__(
        self, path: Path, functions: dict[str, Callable[[str], str]] | None = None
    ) -> None:
        self.path = path
        # SQL functions of one argument every connection has (triggers call them).
        self.functions = dict(functions or {})
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._writes_since_checkpoint = 0
        self._checkpoint: asyncio.Task[None] | None = None
        # Open until the connections are closed: closing any descriptor of the `-shm` file drops
        # every POSIX lock this process holds on it, SQLite's included, and another process
        # opening the database would then rebuild the WAL index under this one (see close).
        self._wal_index: int | None = None

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=5.0)
        conn.row_factory = aiosqlite.Row
        # executescript runs each PRAGMA to completion; a half-read PRAGMA cursor keeps a lock.
        await conn.executescript(
            "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
            " PRAGMA wal_autocheckpoint = 0;"
        )
        for name, function in self.functions.items():
            await conn.create_function(name, 1, function, deterministic=True)
        return conn

    def _open_inline(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        conn.row_factory = sqlite3.Row
        conn.executescript(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;"
        )
        for name, function in self.functions.items():
            conn.create_function(name, 1, function, deterministic=True)
        return conn

    async def connect(self) -> None:
        """Open the connections; the file and its directory are created when missing."""
        if self._writer is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = await self._open()
            await self._writer.executescript("PRAGMA journal_mode = WAL;")
            self._reader = await self._open()
            self._inline = self._open_inline()
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StorageUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close the connections."""
        if self._checkpoint is not None:
            await self._checkpoint
        if self._inline is not None:
            with contextlib.suppress(sqlite3.Error):
                self._inline.close()
        for conn in (self._reader, self._writer):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._reader = self._writer = self._inline = None
        # Only now, with SQLite's locks on the `-shm` file given up: closing it earlier would drop
        # them while the connections still rely on them.
        if self._wal_index is not None:
            os.close(self._wal_index)
            self._wal_index = None

    async def fetch(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Run a read query and return its rows."""
        if self._reader is None:
            raise StorageUnavailable("the database is closed")
        try:
            # One trip to the reading thread (execute, fetch and free the cursor there), not
            # three: each trip costs two thread wake-ups.
            return list(await self._reader.execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"database read failed: {exc}") from exc

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run a read query and return its first row or None."""
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def write_one(self, sql: str, params: Iterable[Any]) -> list[Any]:
        """Run one writing statement on its own (atomic) and return the rows it returns.

        It runs on the event loop's connection unless another process holds the write lock, or
        a checkpoint is under way (the write after it restarts the WAL, with an fsync); then it
        is handed to the transaction thread, which waits for the lock.
        """
        params = tuple(params)
        async with self._write_lock:
            conn = self._inline
            if conn is None:
                raise StorageUnavailable("the database is closed")
            try:
                if self._checkpoint is not None or self._wal_restart_pending():
                    rows = await self._write_waiting(sql, params)
                else:
                    rows = conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise StorageUnavailable(f"database write failed: {exc}") from exc
                rows = await self._write_waiting(sql, params)
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"database write failed: {exc}") from exc
        self._wrote()
        return rows

    async def _write_waiting(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run a write on the transaction thread, waiting for another process's lock.

        In WAL mode a statement whose read snapshot went stale because another process wrote
        meanwhile fails at once with SQLITE_BUSY (no busy wait); it is simply run again.
        """
        conn = self._writer
        if conn is None:
            raise StorageUnavailable("the database is closed")
        for attempt in range(WRITE_ATTEMPTS):
            started = time.monotonic()
            try:
                return list(await conn.execute_fetchall(sql, params))
            except sqlite3.OperationalError as exc:
                # A lock held elsewhere already waited out busy_timeout: do not wait again.
                if not _busy(exc) or time.monotonic() - started > 1.0:
                    raise StorageUnavailable(f"database write failed: {exc}") from exc
                await asyncio.sleep(0.001 * (attempt + 1))
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"database write failed: {exc}") from exc
        raise StorageUnavailable("the database stayed busy; try again")

    def _wal_restart_pending(self) -> bool:
        """Say whether the WAL is wholly checkpointed, so that the next write restarts it.

        Read from the WAL index that every connection to the file shares (its file opened once).
        Without it (not there yet, or it cannot be read), say no: the write runs on the event loop
        as before.
        """
        if self._wal_index is None:
            try:
                self._wal_index = os.open(f"{self.path}-shm", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        # A read, not a map: Python's mmap keeps a descriptor of its own, and closes it (so
        # dropping SQLite's locks) when a mapping fails or ends.
        try:
            header = os.pread(self._wal_index, WAL_INDEX_SIZE, 0)
        except OSError:
            return False
        if len(header) < WAL_INDEX_SIZE:
            return False
        (frames,) = struct.unpack_from("=I", header, WAL_INDEX_MX_FRAME)
        (copied,) = struct.unpack_from("=I", header, WAL_INDEX_N_BACKFILL)
        return 0 < frames == copied

    def _wrote(self) -> None:
        """Count a write (or transaction); start a WAL checkpoint every CHECKPOINT_EVERY."""
        self._writes_since_checkpoint += 1
        if self._writes_since_checkpoint >= CHECKPOINT_EVERY and self._checkpoint is None:
            self._writes_since_checkpoint = 0
            self._checkpoint = asyncio.create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        """Checkpoint the WAL in two passes, then make the write that restarts it.

        The first pass copies the bulk while writes go on. Writes made meanwhile leave it
        incomplete, and the WAL only starts over after a complete one: under steady load it would
        grow without end. So the second pass, short, holds this process's writes back (they wait;
        the event loop does not), and so does the write that restarts the WAL and syncs its
        header, which is then never a message's write on the event loop.
        """
        try:
            reader = self._reader
            if reader is None:
                return
            # PASSIVE: copies what it can without taking the write lock or waiting for readers.
            await reader.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
            async with self._write_lock:
                rows = await reader.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                busy, frames, copied = next(iter(rows), (1, 0, 0))
                if not busy and frames and frames == copied:  # else readers or another process
                    await self._write_waiting(MARK_HEALTH, (_now_ms(),))
        except (sqlite3.Error, StorageUnavailable) as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpoint = None

    async def mark_health(self) -> None:
        """Make a readiness check's small write (a file that cannot be written is not ready)."""
        await self.write_one(MARK_HEALTH, (_now_ms(),))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run a write transaction; BEGIN IMMEDIATE also serialises writers in other processes."""
        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StorageUnavailable("the database is closed")
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"database write failed: {exc}") from exc
            try:
                yield conn
                await conn.execute("COMMIT")
                self._wrote()
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                    raise StorageUnavailable(f"database write failed: {exc}") from exc
                raise
