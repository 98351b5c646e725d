"""The embedded default: the chat's tables and queries on SQLite (see storage/sqlite_engine.py)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

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
from storage.sqlite_engine import HEALTH_TABLE, SqliteDb

SCHEMA = f"""
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
{HEALTH_TABLE};
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
ROOM_ACTIVITY = """
SELECT r.*, COALESCE(m.seq, 0) AS last_seq, m.created_at AS last_at
FROM rooms r LEFT JOIN messages m
    ON m.room = r.slug AND m.seq = (SELECT MAX(seq) FROM messages WHERE room = r.slug)
ORDER BY COALESCE(m.created_at, r.created_at) DESC LIMIT ?
"""


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
        await self.db.mark_health()

    async def close(self) -> None:
        await self.db.close()
