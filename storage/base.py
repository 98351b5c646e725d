"""The storage interface the views use, its domain types and its errors; backends implement it."""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import secrets

MAX_PAGE = 500  # no query returns more rows than this
MAX_ROOMS = MAX_PAGE  # the room list and a person's read marks are bounded by this too
ROOMS_KEPT = 10_000  # rooms kept in memory once found (the oldest found goes first)


class StorageError(Exception):
    """Base class of storage errors."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or refused the operation; try again later."""


class LoginTaken(StorageError):
    """Another account already has this login (case-insensitively)."""


class RoomTaken(StorageError):
    """Another room already has this slug."""


class ChangeRefused(StorageError):
    """An edit or delete was refused; `code` says why (the protocol's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def refusal(message: Message | None, user: str, since: dt.datetime) -> ChangeRefused:
    """Explain why `user` may not change `message` (None: there is no such message)."""
    if message is None:
        return ChangeRefused("not_found", "There is no such message in this room.")
    if message.user != user:
        return ChangeRefused("forbidden", "You can only edit or delete your own messages.")
    if message.deleted:
        return ChangeRefused("deleted", "This message was deleted.")
    if message.created_at < since:
        return ChangeRefused("too_late", "Too late: this message can no longer be changed.")
    return ChangeRefused("unavailable", "The message changed meanwhile; try again.")


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """An account."""

    id: str
    login: str
    email: str
    password_hash: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A server-side login session; deleting it logs the cookie holder out."""

    id: str
    user: User
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Room:
    """A chat room, addressed by its slug."""

    slug: str
    name: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RoomActivity:
    """A room with its latest message's seq and time, for the room list."""

    room: Room
    last_seq: int
    last_at: dt.datetime | None

    @property
    def last_activity(self) -> dt.datetime:
        """Return when the room last had a message, or when it was created."""
        return self.last_at or self.room.created_at


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A stored chat message; `seq` numbers the room's messages 1, 2, 3... without gaps."""

    id: str
    room: str
    seq: int
    user: str
    text: str
    created_at: dt.datetime
    client_id: str
    edited_at: dt.datetime | None = None  # when last edited or deleted
    deleted: bool = False  # a deleted message keeps its seq; its text is erased
    rev: int = 0  # the room's change counter at its last edit or delete (0: never changed)

    def to_json(self, kind: str = "message") -> dict[str, object]:
        """Return the message as the protocol's `message` object (or a `change` frame)."""
        frame: dict[str, object] = {
            "type": kind,
            "seq": self.seq,
            "id": self.id,
            "room": self.room,
            "user": self.user,
            "text": self.text,
            "created_at": iso(self.created_at),
            "client_id": self.client_id,
            "edited_at": iso(self.edited_at) if self.edited_at else None,
            "deleted": self.deleted,
        }
        if kind == "change":
            frame["rev"] = self.rev
        return frame


def now() -> dt.datetime:
    """Return the current UTC time at millisecond precision (what MongoDB keeps)."""
    t = dt.datetime.now(dt.UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def iso(t: dt.datetime) -> str:
    """Format a UTC time as ISO 8601 with milliseconds and a Z."""
    # isoformat ends "+00:00" for UTC; it costs half what strftime does (once per message sent).
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def login_key(login: str) -> str:
    """Return the case-insensitive key under which a login is unique."""
    return login.casefold()


def new_session_id() -> str:
    """Return a fresh unguessable session id."""
    return secrets.token_urlsafe(32)


class Users(abc.ABC):
    """Accounts."""

    @abc.abstractmethod
    async def create(self, login: str, email: str, password_hash: str) -> User:
        """Store a new account; raise LoginTaken when the login is in use."""

    @abc.abstractmethod
    async def find_by_login(self, login: str) -> User | None:
        """Return the account with this login, compared case-insensitively."""


class Sessions(abc.ABC):
    """Server-side sessions, so that logout really ends a session."""

    @abc.abstractmethod
    async def create(self, user: User, max_age: int) -> Session:
        """Start a session for the user lasting max_age seconds."""

    @abc.abstractmethod
    async def find(self, session_id: str) -> Session | None:
        """Return the live session with this id, or None when unknown or expired."""

    @abc.abstractmethod
    async def delete(self, session_id: str) -> None:
        """End a session."""


class Rooms(abc.ABC):
    """Chat rooms. A room is never renamed or removed, so a room once found is kept here."""

    def __init__(self) -> None:
        self._known: dict[str, Room] = {}  # at most ROOMS_KEPT, in the order they were found

    @abc.abstractmethod
    async def ensure(self, slug: str, name: str) -> Room:
        """Return the room, creating it first when it does not exist."""

    async def find(self, slug: str) -> Room | None:
        """Return the room with this slug (from memory once found: every socket asks)."""
        room = self._known.get(slug)
        if room is None:
            room = await self._load(slug)
            if room is not None:
                while len(self._known) >= ROOMS_KEPT:
                    del self._known[next(iter(self._known))]
                self._known[slug] = room
        return room

    @abc.abstractmethod
    async def _load(self, slug: str) -> Room | None:
        """Read the room with this slug from the database."""

    @abc.abstractmethod
    async def create(self, slug: str, name: str) -> Room:
        """Store a new room; raise RoomTaken when the slug is in use."""

    @abc.abstractmethod
    async def activity(self, limit: int) -> list[RoomActivity]:
        """Return up to `limit` rooms with their latest message, most recently active first."""


class Messages(abc.ABC):
    """Chat messages, numbered per room."""

    @abc.abstractmethod
    async def add(self, room: str, user: str, text: str, client_id: str) -> tuple[Message, bool]:
        """Store a message with the room's next seq; on a re-sent client_id return the stored one.

        The flag is True when this call stored it, False when it was already there.
        """

    @abc.abstractmethod
    async def before(self, room: str, before: int | None, limit: int) -> list[Message]:
        """Return up to `limit` messages with seq < before (the latest when None), oldest first."""

    @abc.abstractmethod
    async def after(self, room: str, after: int, limit: int) -> list[Message]:
        """Return up to `limit` messages with seq > after, oldest first."""

    @abc.abstractmethod
    async def last_seq(self, room: str) -> int:
        """Return the room's highest seq, 0 when it has no messages."""

    async def heads(self, room: str) -> tuple[int, int]:
        """Return the room's highest seq and highest rev (what a socket is greeted with)."""
        return await self.last_seq(room), await self.last_rev(room)

    @abc.abstractmethod
    async def change(
        self, room: str, seq: int, user: str, text: str | None, since: dt.datetime
    ) -> Message:
        """Edit (new text) or delete (None) the user's own message, sent at `since` or later.

        The changed message gets the room's next rev. Raise ChangeRefused (see `refusal`).
        """

    @abc.abstractmethod
    async def changes(self, room: str, after_rev: int, limit: int) -> list[Message]:
        """Return up to `limit` messages changed after `after_rev`, in rev order."""

    @abc.abstractmethod
    async def last_rev(self, room: str) -> int:
        """Return the room's highest rev, 0 when nothing was ever edited or deleted."""


class Reads(abc.ABC):
    """How far each person has read each room: the last seq read."""

    @abc.abstractmethod
    async def mark_many(self, marks: list[tuple[str, str, int]]) -> None:
        """Record (user, room, seq) read marks at once; an older mark never moves one back."""

    async def mark(self, user: str, room: str, seq: int) -> None:
        """Record that the user read the room up to seq."""
        await self.mark_many([(user, room, seq)])

    @abc.abstractmethod
    async def of_user(self, user: str) -> dict[str, int]:
        """Return the user's last read seq per room (rooms never opened are absent)."""


class Store(abc.ABC):
    """One database: the five collections and its life cycle."""

    users: Users
    sessions: Sessions
    rooms: Rooms
    messages: Messages
    reads: Reads

    @abc.abstractmethod
    async def setup(self) -> None:
        """Create tables or indexes and the default room; safe to run on every start."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageUnavailable when the database cannot serve reads and writes."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


def check_limit(limit: int) -> int:
    """Refuse unbounded or oversized queries."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1..{MAX_PAGE}")
    return limit
