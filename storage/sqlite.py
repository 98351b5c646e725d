"""The embedded default: the chat's tables and queries on SQLite (see storage/sqlite_engine.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from storage.base import (
    MAX_PAGE,
    MAX_ROOMS,
    OPEN,
    REACTION_ROWS_MAX,
    REACTIONS_MAX,
    UNREAD_CAP,
    Attachment,
    Bot,
    Bots,
    Config,
    Invite,
    Invites,
    LastAdmin,
    LoginTaken,
    Message,
    Messages,
    Reaction,
    Reads,
    Room,
    RoomActivity,
    Rooms,
    RoomTaken,
    Session,
    Sessions,
    StorageUnavailable,
    Store,
    Upload,
    Uploads,
    User,
    Users,
    check_limit,
    dm_key,
    dm_name,
    group_reactions,
    login_key,
    login_skeleton,
    new_invite_token,
    new_room_suffix,
    new_session_id,
    now,
    reaction_refusal,
    refusal,
)
from storage.sqlite_engine import HEALTH_TABLE, SqliteDb
from storage.sqlite_search import FUNCTIONS, SqliteSearch
from storage.sqlite_search import MIGRATION as SEARCH_MIGRATION

log = logging.getLogger(__name__)

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
    # A team's own chat: roles (the first account of an existing store becomes its admin),
    # deactivation, sessions people can see, private and direct rooms, invitations, settings.
    """
    ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
    ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE users ADD COLUMN last_seen_at INTEGER;
    UPDATE users SET role = 'admin' WHERE id = (SELECT MIN(id) FROM users);
    ALTER TABLE sessions ADD COLUMN created_at INTEGER;
    ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
    ALTER TABLE sessions ADD COLUMN device TEXT NOT NULL DEFAULT '';
    CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
    ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'open';
    ALTER TABLE rooms ADD COLUMN dm_key TEXT;
    CREATE UNIQUE INDEX IF NOT EXISTS rooms_dm_key ON rooms(dm_key) WHERE dm_key IS NOT NULL;
    CREATE TABLE IF NOT EXISTS room_members (
        room TEXT NOT NULL REFERENCES rooms(slug),
        user TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (room, user)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS room_members_user ON room_members(user, room);
    CREATE TABLE IF NOT EXISTS config (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS invites (
        token TEXT PRIMARY KEY,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        uses INTEGER NOT NULL DEFAULT 0,
        revoked INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS invites_expires ON invites(expires_at);
    """,
    # Look-alike logins: the skeleton of each login (filled in for older rows on start).
    """
    ALTER TABLE users ADD COLUMN login_skeleton TEXT;
    CREATE INDEX IF NOT EXISTS users_login_skeleton ON users(login_skeleton);
    """,
    # Reactions and replies: the seq a message answers, and who reacted with what. `ord` orders
    # a message's emoji (the rev that first put the emoji on it), `n` its people (their rev).
    """
    ALTER TABLE messages ADD COLUMN reply_to INTEGER;
    CREATE TABLE IF NOT EXISTS reactions (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        emoji TEXT NOT NULL,
        user TEXT NOT NULL,
        ord INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (room, seq, emoji, user)
    ) WITHOUT ROWID;
    """,
    # Bots: an account each, posting with a key of which only the hash is kept.
    """
    CREATE TABLE IF NOT EXISTS bots (
        login_key TEXT PRIMARY KEY,
        login TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        initials TEXT NOT NULL,
        webhook_url TEXT NOT NULL DEFAULT '',
        revoked INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    # Search: a full-text index of the messages (storage/sqlite_search.py), older ones filled
    # in on start.
    SEARCH_MIGRATION,
    # Files and images: a message's attachment (JSON), and the uploads' metadata; the bytes are
    # files under DATA_DIR/uploads.
    """
    ALTER TABLE messages ADD COLUMN attachment TEXT;
    CREATE TABLE IF NOT EXISTS uploads (
        id TEXT PRIMARY KEY,
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        client_id TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        width INTEGER,
        height INTEGER,
        thumb_type TEXT,
        thumb_size INTEGER NOT NULL DEFAULT 0,
        UNIQUE (room, user, client_id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS uploads_user ON uploads(user);
    """,
    # Activity: the logins a message mentions (JSON, as shown), one row per mention of someone
    # else for counting their unread mentions, and each person's notification level per room.
    """
    ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE IF NOT EXISTS mentions (
        user TEXT NOT NULL,
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user, room, seq)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS mentions_message ON mentions(room, seq);
    CREATE TABLE IF NOT EXISTS notify (
        user TEXT NOT NULL,
        room TEXT NOT NULL,
        level TEXT NOT NULL,
        PRIMARY KEY (user, room)
    ) WITHOUT ROWID;
    """,
]


# One statement, so one trip to the database thread: it takes the room's next seq and inserts
# under SQLite's write lock (atomic for every writer, in any process), or does nothing when
# this sender already stored this client_id (then nothing is returned).
ADD_MESSAGE = """
INSERT INTO messages (room, seq, user, text, created_at, client_id, reply_to, attachment, mentions)
SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM messages WHERE room = ?1
ON CONFLICT (room, user, client_id) DO NOTHING
RETURNING id, seq
"""
# Also one statement: the room's next rev is taken under the write lock as the row changes.
# A moderator's delete (CHANGE_ANY) takes anyone's message, however old.
# `rev > 0` lets SQLite use the partial index that holds only changed messages.
CHANGE_MESSAGE = """
UPDATE messages SET text = ?4, deleted = ?5, edited_at = ?6,
    rev = (SELECT COALESCE(MAX(rev), 0) + 1 FROM messages WHERE room = ?1 AND rev > 0)
WHERE room = ?1 AND seq = ?2 AND user = ?3 AND deleted = 0 AND created_at >= ?7
RETURNING *
"""
CHANGE_ANY = """
UPDATE messages SET text = ?4, deleted = ?5, edited_at = ?6,
    rev = (SELECT COALESCE(MAX(rev), 0) + 1 FROM messages WHERE room = ?1 AND rev > 0)
WHERE room = ?1 AND seq = ?2 AND deleted = 0
RETURNING *
"""
NEXT_REV = "SELECT COALESCE(MAX(rev), 0) + 1 FROM messages WHERE room = ? AND rev > 0"
# Where a reaction goes: the emoji's place when someone has it already, and how many there are.
REACTION_SLOT = """
SELECT (SELECT MIN(ord) FROM reactions WHERE room = ?1 AND seq = ?2 AND emoji = ?3),
    (SELECT COUNT(DISTINCT emoji) FROM reactions WHERE room = ?1 AND seq = ?2)
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
# The rooms a person may see: every open one, and the private and direct ones they belong to.
ROOM_ACTIVITY = """
SELECT r.*, COALESCE(m.seq, 0) AS last_seq, m.created_at AS last_at
FROM rooms r LEFT JOIN messages m
    ON m.room = r.slug AND m.seq = (SELECT MAX(seq) FROM messages WHERE room = r.slug)
WHERE r.kind = 'open' OR r.slug IN (SELECT room FROM room_members WHERE user = ?)
ORDER BY COALESCE(m.created_at, r.created_at) DESC LIMIT ?
"""
ADD_MENTION = "INSERT OR IGNORE INTO mentions (user, room, seq) VALUES (?, ?, ?)"
# Per room asked (a `marks` row: room, read mark), its messages by others after the mark and
# those that mention the person; each count reads at most UNREAD_CAP index entries.
UNREAD = """
WITH marks(room, seq) AS (VALUES {values})
SELECT room,
    (SELECT COUNT(*) FROM (SELECT 1 FROM messages m
        WHERE m.room = marks.room AND m.seq > marks.seq AND m.user != ?1 LIMIT ?2)),
    (SELECT COUNT(*) FROM (SELECT 1 FROM mentions n
        WHERE n.user = ?1 AND n.room = marks.room AND n.seq > marks.seq LIMIT ?2))
FROM marks
"""
# Who may still administer: an UPDATE that would leave no active admin changes nothing.
ADD_MEMBER = "INSERT OR IGNORE INTO room_members (room, user, added_at) VALUES (?, ?, ?)"
ADMINS_LEFT = "SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = 1"
SESSION_COLUMNS = (
    "s.id AS sid, s.expires_at, s.created_at AS s_created_at, s.last_seen_at AS s_seen_at,"
    " s.device, u.*"
)


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _opt_dt(ms: int | None) -> dt.datetime | None:
    return _dt(ms) if ms is not None else None


def _user(row: Any) -> User:
    return User(
        id=str(row["id"]),
        login=row["login"],
        email=row["email"],
        password_hash=row["password_hash"],
        created_at=_dt(row["created_at"]),
        role=row["role"],
        active=bool(row["active"]),
        last_seen_at=_opt_dt(row["last_seen_at"]),
    )


def _session(row: Any) -> Session:
    return Session(
        row["sid"],
        _user(row),
        _dt(row["expires_at"]),
        _opt_dt(row["s_created_at"]),
        _opt_dt(row["s_seen_at"]),
        row["device"],
    )


def _invite(row: Any) -> Invite:
    return Invite(
        row["token"],
        row["created_by"],
        _dt(row["created_at"]),
        _dt(row["expires_at"]),
        row["uses"],
        bool(row["revoked"]),
    )


def _bot(row: Any) -> Bot:
    return Bot(
        row["login"],
        row["key_hash"],
        row["created_by"],
        _dt(row["created_at"]),
        row["initials"],
        row["webhook_url"],
        bool(row["revoked"]),
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
        edited_at=_opt_dt(row["edited_at"]),
        deleted=bool(row["deleted"]),
        rev=row["rev"],
        reply_to=row["reply_to"],
        attachment=_attachment(row["attachment"]),
        mentions=tuple(json.loads(row["mentions"])),
    )


def _attachment(stored: str | None) -> Attachment | None:
    return Attachment(**json.loads(stored)) if stored else None


def _upload(row: Any) -> Upload:
    return Upload(
        **{k: row[k] for k in row.keys() if k != "created_at"}, created_at=_dt(row["created_at"])
    )


def _room(row: Any) -> Room:
    return Room(row["slug"], row["name"], _dt(row["created_at"]), row["kind"])


class SqliteUsers(Users):
    """Accounts in the users table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def create(self, login: str, email: str, password_hash: str) -> User:
        created = now()
        try:
            # BEGIN IMMEDIATE serialises writers of every process: one of them is first.
            async with self.db.transaction() as conn:
                rows = await conn.execute_fetchall(
                    "INSERT INTO users"
                    " (login, login_key, login_skeleton, email, password_hash, created_at, role)"
                    " VALUES (?, ?, ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM users)"
                    " THEN 'member' ELSE 'admin' END) RETURNING id, role",
                    (
                        login,
                        login_key(login),
                        login_skeleton(login),
                        email,
                        password_hash,
                        _ms(created),
                    ),
                )
                user_id, role = next(iter(rows))
        except sqlite3.IntegrityError:
            raise LoginTaken(login) from None
        return User(str(user_id), login, email, password_hash, created, role)

    async def find_by_login(self, login: str) -> User | None:
        row = await self.db.fetch_one(
            "SELECT * FROM users WHERE login_key = ?", (login_key(login),)
        )
        return _user(row) if row else None

    async def find_by_skeleton(self, skeleton: str) -> User | None:
        row = await self.db.fetch_one(
            "SELECT * FROM users WHERE login_skeleton = ? LIMIT 1", (skeleton,)
        )
        return _user(row) if row else None

    async def exist(self) -> bool:
        return await self.db.fetch_one("SELECT 1 FROM users LIMIT 1") is not None

    async def list(self, limit: int) -> list[User]:
        rows = await self.db.fetch("SELECT * FROM users ORDER BY id LIMIT ?", (check_limit(limit),))
        return [_user(r) for r in rows]

    async def _update(
        self, login: str, assignment: str, value: Any, keep_an_admin: bool = True
    ) -> User | None:
        """Change one column of an account, refused (LastAdmin) when no active admin is left."""
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(
                f"UPDATE users SET {assignment} WHERE login_key = ? RETURNING *",
                (value, login_key(login)),
            )
            if not rows:
                return None
            if keep_an_admin:
                ((admins,),) = await conn.execute_fetchall(ADMINS_LEFT)
                if not admins:
                    raise LastAdmin(login)  # rolls the transaction back
        return _user(next(iter(rows)))

    async def set_role(self, login: str, role: str) -> User | None:
        return await self._update(login, "role = ?", role)

    async def set_active(self, login: str, active: bool) -> User | None:
        return await self._update(login, "active = ?", int(active))

    async def set_password(self, login: str, password_hash: str) -> User | None:
        return await self._update(login, "password_hash = ?", password_hash, keep_an_admin=False)

    async def deactivated(self, logins: list[str]) -> set[str]:
        if not logins:
            return set()
        marks = ",".join("?" * len(logins[:MAX_PAGE]))
        rows = await self.db.fetch(
            f"SELECT login FROM users WHERE active = 0 AND login IN ({marks})", logins[:MAX_PAGE]
        )
        return {r["login"] for r in rows}


class SqliteSessions(Sessions):
    """Server-side sessions in the sessions table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def create(self, user: User, max_age: int, device: str = "") -> Session:
        t = now()
        session = Session(
            new_session_id(), user, t + dt.timedelta(seconds=max_age), t, t, device[:100]
        )
        async with self.db.transaction() as conn:
            # Expired rows are swept here, so the table stays as small as the live sessions.
            await conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (_ms(t),))
            await conn.execute(
                "INSERT INTO sessions (id, user_id, expires_at, created_at, last_seen_at, device)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session.id, int(user.id), _ms(session.expires_at), _ms(t), _ms(t), session.device),
            )
        return session

    async def find(self, session_id: str) -> Session | None:
        row = await self.db.fetch_one(
            f"SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.id = ? AND s.expires_at > ? AND u.active = 1",
            (session_id, _ms(now())),
        )
        return _session(row) if row else None

    async def delete(self, session_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    async def of_user(self, user: User) -> list[Session]:
        rows = await self.db.fetch(
            f"SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.user_id = ? AND s.expires_at > ?"
            " ORDER BY COALESCE(s.last_seen_at, 0) DESC LIMIT ?",
            (int(user.id), _ms(now()), MAX_PAGE),
        )
        return [_session(r) for r in rows]

    async def delete_of_user(self, user: User, keep: str | None = None) -> list[str]:
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "DELETE FROM sessions WHERE user_id = ? AND id IS NOT ? RETURNING id",
                (int(user.id), keep),
            )
        return [r[0] for r in rows]

    async def seen(self, session: Session, at: dt.datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE sessions SET last_seen_at = ? WHERE id = ?", (_ms(at), session.id)
            )
            await conn.execute(
                "UPDATE users SET last_seen_at = ? WHERE id = ?", (_ms(at), int(session.user.id))
            )

    async def live(self, session_ids: list[str]) -> set[str]:
        ids = session_ids[:MAX_PAGE]
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = await self.db.fetch(
            f"SELECT id FROM sessions WHERE expires_at > ? AND id IN ({marks})",
            (_ms(now()), *ids),
        )
        return {r["id"] for r in rows}


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

    async def create(
        self, slug: str, name: str, kind: str = OPEN, creator: str | None = None
    ) -> Room:
        room = Room(slug, name, now(), kind)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO rooms (slug, name, created_at, kind) VALUES (?, ?, ?, ?)",
                    (slug, name, _ms(room.created_at), kind),
                )
                if creator is not None and kind != OPEN:
                    await conn.execute(ADD_MEMBER, (slug, creator, _ms(room.created_at)))
        except sqlite3.IntegrityError:
            raise RoomTaken(slug) from None
        return room

    async def direct(self, a: str, b: str) -> Room:
        key = dm_key(a, b)
        t = _ms(now())
        # One transaction (BEGIN IMMEDIATE): of two processes opening it at once, one creates it.
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall("SELECT slug FROM rooms WHERE dm_key = ?", (key,))
            if rows:
                (slug,) = next(iter(rows))
            else:
                slug = f"dm-{new_room_suffix()}{new_room_suffix()}"
                await conn.execute(
                    "INSERT INTO rooms (slug, name, created_at, kind, dm_key)"
                    " VALUES (?, ?, ?, 'direct', ?)",
                    (slug, dm_name(a, b), t, key),
                )
                await conn.executemany(ADD_MEMBER, [(slug, login, t) for login in {a, b}])
        room = await self.find(slug)
        assert room is not None
        return room

    async def activity(self, user: str, limit: int) -> list[RoomActivity]:
        rows = await self.db.fetch(ROOM_ACTIVITY, (user, check_limit(limit)))
        return [RoomActivity(_room(r), r["last_seq"], _opt_dt(r["last_at"])) for r in rows]

    async def members(self, slug: str, limit: int) -> list[str]:
        rows = await self.db.fetch(
            "SELECT user FROM room_members WHERE room = ? ORDER BY added_at, user LIMIT ?",
            (slug, check_limit(limit)),
        )
        return [r["user"] for r in rows]

    async def is_member(self, slug: str, login: str) -> bool:
        row = await self.db.fetch_one(
            "SELECT 1 FROM room_members WHERE room = ? AND user = ?", (slug, login)
        )
        return row is not None

    async def add_member(self, slug: str, login: str) -> bool:
        rows = await self.db.write_one(ADD_MEMBER + " RETURNING user", (slug, login, _ms(now())))
        return bool(rows)

    async def remove_member(self, slug: str, login: str) -> bool:
        rows = await self.db.write_one(
            "DELETE FROM room_members WHERE room = ? AND user = ? RETURNING user", (slug, login)
        )
        return bool(rows)

    async def set_notify(self, slug: str, login: str, level: str) -> None:
        await self.db.write_one(
            "INSERT INTO notify (user, room, level) VALUES (?, ?, ?)"
            " ON CONFLICT (user, room) DO UPDATE SET level = excluded.level",
            (login, slug, level),
        )

    async def notify_levels(self, login: str) -> dict[str, str]:
        rows = await self.db.fetch(
            "SELECT room, level FROM notify WHERE user = ? LIMIT ?", (login, MAX_ROOMS)
        )
        return {r["room"]: r["level"] for r in rows}


class SqliteMessages(Messages):
    """Messages in the messages table; seq is taken inside the inserting transaction."""

    def __init__(self, db: SqliteDb, added: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.added = added  # told of each message stored (search indexes them in batches)

    async def add(
        self,
        room: str,
        user: str,
        text: str,
        client_id: str,
        reply_to: int | None = None,
        attachment: Attachment | None = None,
        mentions: tuple[str, ...] = (),
    ) -> tuple[Message, bool]:
        created = now()
        stored = json.dumps(dataclasses.asdict(attachment)) if attachment else None
        params = (room, user, text, _ms(created), client_id, reply_to, stored, json.dumps(mentions))
        others = [login for login in mentions if login != user]  # one's own are never unread
        if others:  # the message and its mention rows in one transaction
            async with self.db.transaction() as conn:
                rows = list(await conn.execute_fetchall(ADD_MESSAGE, params))
                if rows:
                    seq = rows[0][1]
                    await conn.executemany(ADD_MENTION, [(m, room, seq) for m in others])
        else:
            rows = await self.db.write_one(ADD_MESSAGE, params)
        if rows:
            self.added()
            message_id, seq = rows[0]
            message = Message(
                str(message_id),
                room,
                seq,
                user,
                text,
                created,
                client_id,
                reply_to=reply_to,
                attachment=attachment,
                mentions=mentions,
            )
            return (await self.complete(room, [message], new=True))[0], True
        row = await self.db.fetch_one(
            "SELECT * FROM messages WHERE room = ? AND user = ? AND client_id = ?",
            (room, user, client_id),
        )
        if row is None:
            raise StorageUnavailable("the message was neither stored nor found; try again")
        return (await self.complete(room, [_message(row)]))[0], False

    async def before(self, room: str, before: int | None, limit: int) -> list[Message]:
        rows = await self.db.fetch(
            "SELECT * FROM messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (room, before if before is not None else 2**62, check_limit(limit)),
        )
        return await self.complete(room, [_message(r) for r in reversed(rows)])

    async def after(self, room: str, after: int, limit: int) -> list[Message]:
        rows = await self.db.fetch(
            "SELECT * FROM messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?",
            (room, after, check_limit(limit)),
        )
        return await self.complete(room, [_message(r) for r in rows])

    async def last_seq(self, room: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COALESCE(MAX(seq), 0) AS seq FROM messages WHERE room = ?", (room,)
        )
        return int(row["seq"])

    async def heads(self, room: str) -> tuple[int, int]:
        row = await self.db.fetch_one(HEADS, (room,))
        return int(row[0]), int(row[1])

    async def change(
        self,
        room: str,
        seq: int,
        user: str,
        text: str | None,
        since: dt.datetime,
        moderator: bool = False,
        mentions: tuple[str, ...] = (),
    ) -> Message:
        moderated = moderator and text is None
        mentions = mentions if text is not None else ()
        params = (room, seq, user, text or "", text is None, _ms(now()), _ms(since))
        # One transaction: the text, its mentions and their rows change together.
        async with self.db.transaction() as conn:
            if moderated:  # anyone's message, however old: the window (?7) is not bound
                rows = list(await conn.execute_fetchall(CHANGE_ANY, params[:6]))
            else:
                rows = list(await conn.execute_fetchall(CHANGE_MESSAGE, params))
            if rows:
                author = rows[0]["user"]
                await conn.execute(
                    "UPDATE messages SET mentions = ? WHERE room = ? AND seq = ?",
                    (json.dumps(mentions), room, seq),
                )
                await conn.execute("DELETE FROM mentions WHERE room = ? AND seq = ?", (room, seq))
                await conn.executemany(
                    ADD_MENTION, [(m, room, seq) for m in mentions if m != author]
                )
        if rows:
            changed = dataclasses.replace(_message(rows[0]), mentions=mentions)
            return (await self.complete(room, [changed]))[0]
        row = await self.db.fetch_one(
            "SELECT * FROM messages WHERE room = ? AND seq = ?", (room, seq)
        )
        raise refusal(_message(row) if row else None, user, since, moderated)

    async def changes(self, room: str, after_rev: int, limit: int) -> list[Message]:
        rows = await self.db.fetch(
            "SELECT * FROM messages WHERE room = ? AND rev > ? AND rev > 0 ORDER BY rev LIMIT ?",
            (room, after_rev, check_limit(limit)),
        )
        return await self.complete(room, [_message(r) for r in rows])

    async def last_rev(self, room: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COALESCE(MAX(rev), 0) AS rev FROM messages WHERE room = ? AND rev > 0", (room,)
        )
        return int(row["rev"])

    async def react(self, room: str, seq: int, user: str, emoji: str) -> Message:
        # One transaction: the limit of distinct emoji holds however many react at once.
        async with self.db.transaction() as conn:
            found = await conn.execute_fetchall(
                "SELECT deleted FROM messages WHERE room = ? AND seq = ?", (room, seq)
            )
            if not found:
                raise reaction_refusal("not_found")
            if found[0][0]:
                raise reaction_refusal("deleted")
            key = (room, seq, emoji, user)
            async with conn.execute(
                "DELETE FROM reactions WHERE room = ? AND seq = ? AND emoji = ? AND user = ?", key
            ) as cur:
                removed = cur.rowcount > 0
            rows = await conn.execute_fetchall(NEXT_REV, (room,))
            rev = int(rows[0][0])
            if not removed:
                rows = await conn.execute_fetchall(REACTION_SLOT, (room, seq, emoji))
                ord_, distinct = rows[0][0], int(rows[0][1])
                if ord_ is None and distinct >= REACTIONS_MAX:
                    raise reaction_refusal("too_many_reactions")
                await conn.execute(
                    "INSERT INTO reactions (room, seq, emoji, user, ord, n)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (*key, rev if ord_ is None else ord_, rev),
                )
            rows = await conn.execute_fetchall(
                "UPDATE messages SET rev = ? WHERE room = ? AND seq = ? RETURNING *",
                (rev, room, seq),
            )
        return (await self.complete(room, [_message(rows[0])]))[0]

    async def unread(self, user: str, marks: dict[str, int]) -> dict[str, tuple[int, int]]:
        asked = list(marks.items())[:MAX_ROOMS]
        if not asked:
            return {}
        params: list[Any] = [user, UNREAD_CAP]
        for room, seq in asked:
            params += [room, seq]
        values = ", ".join(f"(?{3 + 2 * i}, ?{4 + 2 * i})" for i in range(len(asked)))
        rows = await self.db.fetch(UNREAD.format(values=values), params)
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    async def find_many(self, room: str, seqs: list[int]) -> list[Message]:
        seqs = seqs[:MAX_PAGE]
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        rows = await self.db.fetch(
            f"SELECT * FROM messages WHERE room = ? AND seq IN ({marks})", (room, *seqs)
        )
        return [_message(r) for r in rows]

    async def _reactions(self, room: str, seqs: list[int]) -> dict[int, tuple[Reaction, ...]]:
        seqs = seqs[:MAX_PAGE]
        marks = ",".join("?" * len(seqs))
        rows = await self.db.fetch(
            f"SELECT seq, emoji, user FROM reactions WHERE room = ? AND seq IN ({marks})"
            " ORDER BY seq, ord, n LIMIT ?",
            (room, *seqs, REACTION_ROWS_MAX),
        )
        return group_reactions([(r[0], r[1], r[2]) for r in rows])


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


class SqliteConfig(Config):
    """Run-time settings in the config table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        row = await self.db.fetch_one("SELECT value FROM config WHERE key = ?", (key,))
        return row["value"] if row else None

    async def set(self, key: str, value: str) -> None:
        await self.db.write_one(
            "INSERT INTO config (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class SqliteInvites(Invites):
    """Invitations in the invites table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def create(self, created_by: str, ttl: int) -> Invite:
        t = now()
        invite = Invite(new_invite_token(), created_by, t, t + dt.timedelta(seconds=ttl))
        await self.db.write_one(
            "INSERT INTO invites (token, created_by, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (invite.token, created_by, _ms(t), _ms(invite.expires_at)),
        )
        return invite

    async def find(self, token: str) -> Invite | None:
        row = await self.db.fetch_one("SELECT * FROM invites WHERE token = ?", (token,))
        return _invite(row) if row else None

    async def live(self, limit: int) -> list[Invite]:
        rows = await self.db.fetch(
            "SELECT * FROM invites WHERE revoked = 0 AND expires_at > ?"
            " ORDER BY created_at DESC LIMIT ?",
            (_ms(now()), check_limit(limit)),
        )
        return [_invite(r) for r in rows]

    async def revoke(self, token: str) -> bool:
        rows = await self.db.write_one(
            "UPDATE invites SET revoked = 1 WHERE token = ? RETURNING token", (token,)
        )
        return bool(rows)

    async def use(self, token: str) -> bool:
        rows = await self.db.write_one(
            "UPDATE invites SET uses = uses + 1"
            " WHERE token = ? AND revoked = 0 AND expires_at > ? RETURNING token",
            (token, _ms(now())),
        )
        return bool(rows)


class SqliteBots(Bots):
    """Bots in the bots table."""

    def __init__(self, db: SqliteDb) -> None:
        self.db = db

    async def create(self, login: str, key_hash: str, created_by: str, initials: str) -> Bot:
        bot = Bot(login, key_hash, created_by, now(), initials)
        try:
            await self.db.write_one(
                "INSERT INTO bots (login_key, login, key_hash, created_by, created_at, initials)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (login_key(login), login, key_hash, created_by, _ms(bot.created_at), initials),
            )
        except sqlite3.IntegrityError:
            raise LoginTaken(login) from None
        return bot

    async def find(self, login: str) -> Bot | None:
        row = await self.db.fetch_one("SELECT * FROM bots WHERE login_key = ?", (login_key(login),))
        return _bot(row) if row else None

    async def find_by_key(self, key_hash: str) -> Bot | None:
        row = await self.db.fetch_one("SELECT * FROM bots WHERE key_hash = ?", (key_hash,))
        return _bot(row) if row else None

    async def list(self, limit: int) -> list[Bot]:
        rows = await self.db.fetch(
            "SELECT * FROM bots ORDER BY created_at, login_key LIMIT ?", (check_limit(limit),)
        )
        return [_bot(r) for r in rows]

    async def revoke(self, login: str) -> bool:
        rows = await self.db.write_one(
            "UPDATE bots SET revoked = 1 WHERE login_key = ? RETURNING login", (login_key(login),)
        )
        return bool(rows)

    async def set_webhook(self, login: str, url: str) -> bool:
        rows = await self.db.write_one(
            "UPDATE bots SET webhook_url = ? WHERE login_key = ? RETURNING login",
            (url, login_key(login)),
        )
        return bool(rows)

    async def rekey(self, login: str, key_hash: str) -> bool:
        rows = await self.db.write_one(
            "UPDATE bots SET key_hash = ? WHERE login_key = ? AND NOT revoked RETURNING login",
            (key_hash, login_key(login)),
        )
        return bool(rows)


UPLOAD_COLUMNS = (
    "id, room, user, client_id, name, size, content_type, sha256, created_at,"
    " width, height, thumb_type, thumb_size"
)
READ_CHUNK = 256 * 1024


class SqliteUploads(Uploads):
    """Uploads' metadata in the uploads table, their bytes in files under `directory`."""

    def __init__(self, db: SqliteDb, directory: Path) -> None:
        self.db = db
        self.directory = directory

    def _path(self, upload_id: str, thumb: bool = False) -> Path:
        return self.directory / (f"{upload_id}.thumb" if thumb else upload_id)

    def _remove(self, upload_id: str) -> None:
        for thumb in (False, True):
            self._path(upload_id, thumb).unlink(missing_ok=True)

    async def add(self, upload: Upload, original: Path, thumb: Path | None) -> tuple[Upload, bool]:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Bytes first: metadata never names a file that is not there.
        os.replace(original, self._path(upload.id))
        if thumb is not None:
            os.replace(thumb, self._path(upload.id, True))
        values = dataclasses.astuple(upload)
        try:
            await self.db.write_one(
                f"INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
                (*values[:8], _ms(upload.created_at), *values[9:]),
            )
        except sqlite3.IntegrityError:
            pass  # this (room, user, client_id) was stored before: answer with that one
        except BaseException:
            self._remove(upload.id)
            raise
        else:
            return upload, True
        self._remove(upload.id)
        row = await self.db.fetch_one(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE room = ? AND user = ? AND client_id = ?",
            (upload.room, upload.user, upload.client_id),
        )
        if row is None:
            raise StorageUnavailable("the upload was neither stored nor found; try again")
        return _upload(row), False

    async def find(self, upload_id: str) -> Upload | None:
        row = await self.db.fetch_one(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?", (upload_id,)
        )
        return _upload(row) if row else None

    async def delete(self, upload_id: str) -> bool:
        rows = await self.db.write_one(
            "DELETE FROM uploads WHERE id = ? RETURNING room, user, client_id", (upload_id,)
        )
        if not rows:
            return False
        # The message keeps no trace of the file: not even its name.
        await self.db.write_one(
            "UPDATE messages SET attachment = NULL WHERE room = ? AND user = ? AND client_id = ?",
            tuple(rows[0]),
        )
        self._remove(upload_id)
        return True

    async def usage(self, user: str) -> int:
        row = await self.db.fetch_one(
            "SELECT COALESCE(SUM(size + thumb_size), 0) FROM uploads WHERE user = ?", (user,)
        )
        return int(row[0])

    async def totals(self) -> tuple[int, int]:
        row = await self.db.fetch_one(
            "SELECT COUNT(*), COALESCE(SUM(size + thumb_size), 0) FROM uploads"
        )
        return int(row[0]), int(row[1])

    async def read(self, upload: Upload, thumb: bool, start: int, end: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        with open(self._path(upload.id, thumb), "rb") as f:
            f.seek(start)
            while start < end:
                chunk = await loop.run_in_executor(None, f.read, min(READ_CHUNK, end - start))
                if not chunk:
                    return
                start += len(chunk)
                yield chunk


class SqliteStore(Store):
    """The SQLite store."""

    def __init__(self, path: Path) -> None:
        self.db = SqliteDb(path, FUNCTIONS)
        self.users = SqliteUsers(self.db)
        self.sessions = SqliteSessions(self.db)
        self.rooms = SqliteRooms(self.db)
        self.search = SqliteSearch(self.db, _message)
        self.messages = SqliteMessages(self.db, self.search.added)
        self.reads = SqliteReads(self.db)
        self.config = SqliteConfig(self.db)
        self.invites = SqliteInvites(self.db)
        self.bots = SqliteBots(self.db)
        self.uploads = SqliteUploads(self.db, path.parent / "uploads")

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
                await self.search.setup(conn)
                # Accounts from before skeletons get theirs (once: later ones are stored with it).
                rows = await conn.execute_fetchall(
                    "SELECT id, login FROM users WHERE login_skeleton IS NULL"
                )
                await conn.executemany(
                    "UPDATE users SET login_skeleton = ? WHERE id = ?",
                    [(login_skeleton(r[1]), r[0]) for r in rows],
                )
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot create the SQLite schema: {exc}") from exc
        await self.search.backfill()
        await self.search.index_pending()  # what the last run stored after its last batch
        await self.rooms.ensure("general", "General")

    async def ping(self) -> None:
        await self.db.mark_health()

    async def close(self) -> None:
        await self.search.close()
        await self.db.close()
