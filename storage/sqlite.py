"""The embedded default: SQLite through aiosqlite, in WAL mode, in DATA_DIR."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import mmap
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from storage.base import (
    MAX_ROOMS,
    LoginTaken,
    Message,
    Messages,
    Reads,
    Room,
    RoomActivity,
    Rooms,
    RoomTaken,
    Session,
    Sessions,
    StorageUnavailable,
    Store,
    User,
    Users,
    check_limit,
    login_key,
    new_session_id,
    now,
    refusal,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL,
    login_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS rooms (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY,
    checked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL REFERENCES rooms(slug),
    seq INTEGER NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    UNIQUE (room, seq),
    UNIQUE (room, user, client_id)
);
"""

# Changes to a database made by an earlier release, in order; PRAGMA user_version counts the
# ones applied, so a file kept for years is brought up to date on start, once.
MIGRATIONS = [
    # Rooms: edit and delete (rev orders the changes of a room), and unread counts.
    """
    ALTER TABLE messages ADD COLUMN edited_at INTEGER;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS messages_rev ON messages(room, rev) WHERE rev > 0;
    CREATE TABLE IF NOT EXISTS reads (
        user TEXT NOT NULL,
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user, room)
    ) WITHOUT ROWID;
    """,
]


# One statement, so one trip to the database thread: it takes the room's next seq and inserts
# under SQLite's write lock (atomic for every writer, in any process), or does nothing when
# this sender already stored this client_id (then nothing is returned).
ADD_MESSAGE = """
INSERT INTO messages (room, seq, user, text, created_at, client_id)
SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM messages WHERE room = ?1
ON CONFLICT (room, user, client_id) DO NOTHING
RETURNING id, seq
"""
# Also one statement: the room's next rev is taken under the write lock as the row changes.
# `rev > 0` lets SQLite use the partial index that holds only changed messages.
CHANGE_MESSAGE = """
UPDATE messages SET text = ?4, deleted = ?5, edited_at = ?6,
    rev = (SELECT COALESCE(MAX(rev), 0) + 1 FROM messages WHERE room = ?1 AND rev > 0)
WHERE room = ?1 AND seq = ?2 AND user = ?3 AND deleted = 0 AND created_at >= ?7
RETURNING *
"""
# One read for a socket's greeting: the room's last seq and last rev.
HEADS = """
SELECT (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room = ?1),
    (SELECT COALESCE(MAX(rev), 0) FROM messages WHERE room = ?1 AND rev > 0)
"""
MARK_READ = """
INSERT INTO reads (user, room, seq) VALUES (?, ?, ?)
ON CONFLICT (user, room) DO UPDATE SET seq = MAX(seq, excluded.seq)
"""
# A small write of no consequence: readiness checks make it, and so does the WAL's restart.
MARK_HEALTH = "INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)"
ROOM_ACTIVITY = """
SELECT r.*, COALESCE(m.seq, 0) AS last_seq, m.created_at AS last_at
FROM rooms r LEFT JOIN messages m
    ON m.room = r.slug AND m.seq = (SELECT MAX(seq) FROM messages WHERE room = r.slug)
ORDER BY COALESCE(m.created_at, r.created_at) DESC LIMIT ?
"""
WRITE_ATTEMPTS = 50
# In the WAL index (the `-shm` file, in native byte order; sqlite.org/walformat.html): the frames
# in the WAL, and those copied back to the database by checkpoints.
WAL_INDEX_MX_FRAME, WAL_INDEX_N_BACKFILL, WAL_INDEX_SIZE = 16, 96, 136
# Writes between WAL checkpoints. A message writes 3-4 pages, so the WAL holds up to ~3,500 (14
# MiB); the writes that come during a checkpoint pay a trip to a thread (see SqliteDb), and at
# thousands of messages a second checkpoints every 250 writes halved the rate.
CHECKPOINT_EVERY = 1000


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Say whether an error means another connection holds the lock (so try again, or wait)."""
    return "locked" in str(exc) or "busy" in str(exc)


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _user(row: Any) -> User:
    return User(
        id=str(row["id"]),
        login=row["login"],
        email=row["email"],
        password_hash=row["password_hash"],
        created_at=_dt(row["created_at"]),
    )


def _message(row: Any) -> Message:
    return Message(
        id=str(row["id"]),
        room=row["room"],
        seq=row["seq"],
        user=row["user"],
        text=row["text"],
        created_at=_dt(row["created_at"]),
        client_id=row["client_id"],
        edited_at=_dt(row["edited_at"]) if row["edited_at"] is not None else None,
        deleted=bool(row["deleted"]),
        rev=row["rev"],
    )


def _room(row: Any) -> Room:
    return Room(row["slug"], row["name"], _dt(row["created_at"]))


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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._writes_since_checkpoint = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._wal_index: mmap.mmap | None = None

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=5.0)
        conn.row_factory = aiosqlite.Row
        # executescript runs each PRAGMA to completion; a half-read PRAGMA cursor keeps a lock.
        await conn.executescript(
            "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
            " PRAGMA wal_autocheckpoint = 0;"
        )
        return conn

    def _open_inline(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        conn.row_factory = sqlite3.Row
        conn.executescript(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;"
        )
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
        if self._wal_index is not None:
            self._wal_index.close()  # before the last connection, which may remove the file
            self._wal_index = None
        if self._inline is not None:
            with contextlib.suppress(sqlite3.Error):
                self._inline.close()
        for conn in (self._reader, self._writer):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._reader = self._writer = self._inline = None

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

        Read from the WAL index that every connection to the file shares, mapped once. Without
        it (not mapped yet, or it cannot be), say no: the write runs on the event loop as before.
        """
        index = self._wal_index
        if index is None:
            try:
                with open(f"{self.path}-shm", "rb") as file:
                    index = self._wal_index = mmap.mmap(
                        file.fileno(), WAL_INDEX_SIZE, access=mmap.ACCESS_READ
                    )
            except (OSError, ValueError):
                return False
        (frames,) = struct.unpack_from("=I", index, WAL_INDEX_MX_FRAME)
        (copied,) = struct.unpack_from("=I", index, WAL_INDEX_N_BACKFILL)
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
                    await self._write_waiting(MARK_HEALTH, (_ms(now()),))
        except (sqlite3.Error, StorageUnavailable) as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpoint = None

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


class SqliteUsers(Users):
    """Accounts in the users table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def create(self, login: str, email: str, password_hash: str) -> User:
        created = now()
        try:
            async with self.db.transaction() as conn:
                cur = await conn.execute(
                    "INSERT INTO users (login, login_key, email, password_hash, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (login, login_key(login), email, password_hash, _ms(created)),
                )
                user_id = cur.lastrowid
        except sqlite3.IntegrityError:
            raise LoginTaken(login) from None
        return User(str(user_id), login, email, password_hash, created)

    async def find_by_login(self, login: str) -> User | None:
        row = await self.db.fetch_one(
            "SELECT * FROM users WHERE login_key = ?", (login_key(login),)
        )
        return _user(row) if row else None


class SqliteSessions(Sessions):
    """Server-side sessions in the sessions table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def create(self, user: User, max_age: int) -> Session:
        session = Session(new_session_id(), user, now() + dt.timedelta(seconds=max_age))
        async with self.db.transaction() as conn:
            # Expired rows are swept here, so the table stays as small as the live sessions.
            await conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (_ms(now()),))
            await conn.execute(
                "INSERT INTO sessions (id, user_id, expires_at) VALUES (?, ?, ?)",
                (session.id, int(user.id), _ms(session.expires_at)),
            )
        return session

    async def find(self, session_id: str) -> Session | None:
        row = await self.db.fetch_one(
            "SELECT s.id AS sid, s.expires_at, u.* FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.id = ? AND s.expires_at > ?",
            (session_id, _ms(now())),
        )
        return Session(row["sid"], _user(row), _dt(row["expires_at"])) if row else None

    async def delete(self, session_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))


class SqliteRooms(Rooms):
    """Rooms in the rooms table."""

    def __init__(self, db: SqliteDb) -> None:
        super().__init__()
        self.db = db

    async def ensure(self, slug: str, name: str) -> Room:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO rooms (slug, name, created_at) VALUES (?, ?, ?)",
                (slug, name, _ms(now())),
            )
        room = await self.find(slug)
        assert room is not None
        return room

    async def _load(self, slug: str) -> Room | None:
        row = await self.db.fetch_one("SELECT * FROM rooms WHERE slug = ?", (slug,))
        return _room(row) if row else None

    async def create(self, slug: str, name: str) -> Room:
        room = Room(slug, name, now())
        try:
            await self.db.write_one(
                "INSERT INTO rooms (slug, name, created_at) VALUES (?, ?, ?)",
                (slug, name, _ms(room.created_at)),
            )
        except sqlite3.IntegrityError:
            raise RoomTaken(slug) from None
        return room

    async def activity(self, limit: int) -> list[RoomActivity]:
        rows = await self.db.fetch(ROOM_ACTIVITY, (check_limit(limit),))
        return [
            RoomActivity(
                _room(r), r["last_seq"], _dt(r["last_at"]) if r["last_at"] is not None else None
            )
            for r in rows
        ]


class SqliteMessages(Messages):
    """Messages in the messages table; seq is taken inside the inserting transaction."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def add(self, room: str, user: str, text: str, client_id: str) -> tuple[Message, bool]:
        created = now()
        rows = await self.db.write_one(ADD_MESSAGE, (room, user, text, _ms(created), client_id))
        if rows:
            message_id, seq = rows[0]
            return Message(str(message_id), room, seq, user, text, created, client_id), True
        row = await self.db.fetch_one(
            "SELECT * FROM messages WHERE room = ? AND user = ? AND client_id = ?",
            (room, user, client_id),
        )
        if row is None:
            raise StorageUnavailable("the message was neither stored nor found; try again")
        return _message(row), False

    async def before(self, room: str, before: int | None, limit: int) -> list[Message]:
        rows = await self.db.fetch(
            "SELECT * FROM messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (room, before if before is not None else 2**62, check_limit(limit)),
        )
        return [_message(r) for r in reversed(rows)]

    async def after(self, room: str, after: int, limit: int) -> list[Message]:
        rows = await self.db.fetch(
            "SELECT * FROM messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?",
            (room, after, check_limit(limit)),
        )
        return [_message(r) for r in rows]

    async def last_seq(self, room: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COALESCE(MAX(seq), 0) AS seq FROM messages WHERE room = ?", (room,)
        )
        return int(row["seq"])

    async def heads(self, room: str) -> tuple[int, int]:
        row = await self.db.fetch_one(HEADS, (room,))
        return int(row[0]), int(row[1])

    async def change(
        self, room: str, seq: int, user: str, text: str | None, since: dt.datetime
    ) -> Message:
        params = (room, seq, user, text or "", text is None, _ms(now()), _ms(since))
        rows = await self.db.write_one(CHANGE_MESSAGE, params)
        if rows:
            return _message(rows[0])
        row = await self.db.fetch_one(
            "SELECT * FROM messages WHERE room = ? AND seq = ?", (room, seq)
        )
        raise refusal(_message(row) if row else None, user, since)

    async def changes(self, room: str, after_rev: int, limit: int) -> list[Message]:
        rows = await self.db.fetch(
            "SELECT * FROM messages WHERE room = ? AND rev > ? AND rev > 0 ORDER BY rev LIMIT ?",
            (room, after_rev, check_limit(limit)),
        )
        return [_message(r) for r in rows]

    async def last_rev(self, room: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COALESCE(MAX(rev), 0) AS rev FROM messages WHERE room = ? AND rev > 0", (room,)
        )
        return int(row["rev"])


class SqliteReads(Reads):
    """Read marks in the reads table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def mark_many(self, marks: list[tuple[str, str, int]]) -> None:
        if marks:
            async with self.db.transaction() as conn:
                await conn.executemany(MARK_READ, marks)

    async def of_user(self, user: str) -> dict[str, int]:
        rows = await self.db.fetch(
            "SELECT room, seq FROM reads WHERE user = ? LIMIT ?", (user, MAX_ROOMS)
        )
        return {r["room"]: r["seq"] for r in rows}


class SqliteStore(Store):
    """The SQLite store."""

    def __init__(self, path: Path) -> None:
        self.db = SqliteDb(path)
        self.users = SqliteUsers(self.db)
        self.sessions = SqliteSessions(self.db)
        self.rooms = SqliteRooms(self.db)
        self.messages = SqliteMessages(self.db)
        self.reads = SqliteReads(self.db)

    async def setup(self) -> None:
        await self.db.connect()
        try:
            async with self.db.transaction() as conn:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        await conn.execute(statement)
                async with conn.execute("PRAGMA user_version") as cur:
                    (version,) = await cur.fetchone()  # type: ignore[misc]
                for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in migration.split(";"):
                        if statement.strip():
                            await conn.execute(statement)
                    await conn.execute(f"PRAGMA user_version = {number}")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot create the SQLite schema: {exc}") from exc
        await self.rooms.ensure("general", "General")

    async def ping(self) -> None:
        # A write, not just a read: a file that can be read but not written is not ready.
        await self.db.write_one(MARK_HEALTH, (_ms(now()),))

    async def close(self) -> None:
        await self.db.close()
