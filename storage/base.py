"""The storage interface the views use, its domain types and its errors; backends implement it."""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import hashlib
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.search import Search
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

MAX_PAGE = 500  # no query returns more rows than this
REACTIONS_MAX = 20  # distinct emoji on one message
EXCERPT_MAX = 140  # characters of the replied message a reply quotes
REACTION_ROWS_MAX = 100_000  # reactions read for one page of messages
MAX_ROOMS = MAX_PAGE  # the room list and a person's read marks are bounded by this too
ROOMS_KEPT = 10_000  # rooms kept in memory once found (the oldest found goes first)
UNREAD_CAP = 100  # unread and mention counts of one room stop here (the page shows "99+")
# How much of a room notifies a person: every message, mentions of them only, or nothing.
NOTIFY_ALL, NOTIFY_MENTIONS, NOTIFY_NOTHING = "all", "mentions", "nothing"
NOTIFY_LEVELS = (NOTIFY_ALL, NOTIFY_MENTIONS, NOTIFY_NOTHING)

ADMIN, MEMBER = "admin", "member"  # an account's role
ROLES = (ADMIN, MEMBER)
# A room's kind: open to everyone, private to its members, or a direct conversation (private,
# between two people or with oneself, its members fixed).
OPEN, PRIVATE, DIRECT = "open", "private", "direct"
# A bot's account has this instead of a password hash: no password ever matches it.
BOT_PASSWORD_HASH = "!bot: no password"


class StorageError(Exception):
    """Base class of storage errors."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or refused the operation; try again later."""


class LoginTaken(StorageError):
    """Another account already has this login (case-insensitively)."""


class RoomTaken(StorageError):
    """Another room already has this slug."""


class LastAdmin(StorageError):
    """The change would leave the chat without an active admin."""


class ChangeRefused(StorageError):
    """An edit, delete, reaction or reply was refused; `code` says why (the protocol's code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def refusal(
    message: Message | None, user: str, since: dt.datetime, moderator: bool = False
) -> ChangeRefused:
    """Explain why `user` may not change `message` (None: there is no such message)."""
    if message is None:
        return ChangeRefused("not_found", "There is no such message in this room.")
    if moderator and message.deleted:
        return ChangeRefused("deleted", "This message was deleted.")
    if message.user != user:
        return ChangeRefused("forbidden", "You can only edit or delete your own messages.")
    if message.deleted:
        return ChangeRefused("deleted", "This message was deleted.")
    if message.created_at < since:
        return ChangeRefused("too_late", "Too late: this message can no longer be changed.")
    return ChangeRefused("unavailable", "The message changed meanwhile; try again.")


REACTION_REFUSALS = {
    "not_found": "There is no such message in this room.",
    "deleted": "This message was deleted.",
    "too_many_reactions": f"A message takes at most {REACTIONS_MAX} different reactions.",
}


def reaction_refusal(code: str) -> ChangeRefused:
    """Explain why a reaction was refused (a code of REACTION_REFUSALS)."""
    return ChangeRefused(code, REACTION_REFUSALS[code])


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """An account."""

    id: str
    login: str
    email: str
    password_hash: str
    created_at: dt.datetime
    role: str = MEMBER
    active: bool = True  # a deactivated account cannot log in; its messages stay
    last_seen_at: dt.datetime | None = None

    @property
    def is_admin(self) -> bool:
        """Say whether this account may administer the chat."""
        return self.role == ADMIN and self.active

    @property
    def is_bot(self) -> bool:
        """Say whether this is a bot's account (which never logs in with a password)."""
        return self.password_hash == BOT_PASSWORD_HASH


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A server-side login session; deleting it logs the cookie holder out."""

    id: str
    user: User
    expires_at: dt.datetime
    created_at: dt.datetime | None = None  # None: made before sessions kept these
    last_seen_at: dt.datetime | None = None
    device: str = ""  # a hint for people, from the browser's User-Agent

    @property
    def public_id(self) -> str:
        """Return a handle that names the session on pages without revealing its id."""
        return hashlib.sha256(self.id.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True, slots=True)
class Room:
    """A chat room, addressed by its slug. A direct room's name is its people's logins."""

    slug: str
    name: str
    created_at: dt.datetime
    kind: str = OPEN

    @property
    def private(self) -> bool:
        """Say whether only the room's members may see it."""
        return self.kind != OPEN

    @property
    def peers(self) -> list[str]:
        """Return the logins of a direct room's people (one for notes to oneself)."""
        return self.name.split() if self.kind == DIRECT else []


@dataclasses.dataclass(frozen=True, slots=True)
class Invite:
    """An invitation: whoever has its link may sign up until it expires or is revoked."""

    token: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime
    uses: int = 0
    revoked: bool = False

    def live(self, at: dt.datetime) -> bool:
        """Say whether the invitation may be used at `at`."""
        return not self.revoked and at < self.expires_at


@dataclasses.dataclass(frozen=True, slots=True)
class Bot:
    """A bot: an account that posts with a key over HTTP; only the key's hash is kept."""

    login: str
    key_hash: str  # sha256 hex of the key; the key itself is shown once, never stored
    created_by: str
    created_at: dt.datetime
    initials: str
    webhook_url: str = ""  # "" : no outgoing webhook
    revoked: bool = False


def bot_key_hash(key: str) -> str:
    """Return the stored form of a bot key (keys are random and long: a plain hash suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_bot_key() -> str:
    """Return a fresh unguessable bot key (256 bits)."""
    return secrets.token_urlsafe(32)


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


# Where an upload is served (routes.py names these paths; a message object carries the URLs).
UPLOAD_PATH = "/uploads/{id}/{name}"
THUMB_PATH = "/thumbs/{id}"


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    """The file a message carries, as its message object's `attachment` describes it."""

    id: str
    name: str
    size: int
    content_type: str
    width: int | None = None  # images only (with height and a thumbnail)
    height: int | None = None

    def to_json(self) -> dict[str, object]:
        """Return the protocol's `attachment` object."""
        name = urllib.parse.quote(self.name, safe="")
        data: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "url": UPLOAD_PATH.format(id=self.id, name=name),
        }
        if self.width is not None:
            data.update(
                width=self.width, height=self.height, thumb_url=THUMB_PATH.format(id=self.id)
            )
        return data


@dataclasses.dataclass(frozen=True, slots=True)
class Upload:
    """A stored file: who sent it to which room (under which client_id), what it is."""

    id: str
    room: str
    user: str
    client_id: str
    name: str
    size: int
    content_type: str
    sha256: str
    created_at: dt.datetime
    width: int | None = None
    height: int | None = None
    thumb_type: str | None = None  # the thumbnail's content type; None: no thumbnail
    thumb_size: int = 0

    @property
    def attachment(self) -> Attachment:
        """Return what a message says of this file."""
        return Attachment(self.id, self.name, self.size, self.content_type, self.width, self.height)


@dataclasses.dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji (or short text) on a message and who reacted with it, first reacted first."""

    emoji: str
    users: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Quote:
    """What a reply shows of the message it answers: its author and current text's start."""

    seq: int
    user: str | None
    excerpt: str

    @classmethod
    def of(cls, message: Message) -> Quote:
        """Quote a message as it is now."""
        excerpt = "message deleted" if message.deleted else message.text[:EXCERPT_MAX]
        return cls(message.seq, message.user, excerpt)


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
    reply_to: int | None = None  # the seq of the message this one answers
    quote: Quote | None = None  # that message as it is now (filled in when read)
    reactions: tuple[Reaction, ...] = ()  # filled in when read
    attachment: Attachment | None = None  # a deleted message's file is gone with it
    mentions: tuple[str, ...] = ()  # logins it mentions, sorted (see chat/mentions.py)

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
            "reactions": [
                {"emoji": r.emoji, "users": list(r.users)}
                for r in (() if self.deleted else self.reactions)
            ],
            "reply_to": self._reply_json(),
            "attachment": (
                self.attachment.to_json() if self.attachment and not self.deleted else None
            ),
            "mentions": [] if self.deleted else list(self.mentions),
        }
        if kind == "change":
            frame["rev"] = self.rev
        return frame

    def _reply_json(self) -> dict[str, object] | None:
        if self.reply_to is None:
            return None
        quote = self.quote or Quote(self.reply_to, None, "message deleted")
        return {"seq": quote.seq, "user": quote.user, "excerpt": quote.excerpt}


def default_notify(kind: str) -> str:
    """Return the notification level of a room whose person never chose one."""
    return NOTIFY_ALL if kind == DIRECT else NOTIFY_MENTIONS


def group_reactions(rows: list[tuple[int, str, str]]) -> dict[int, tuple[Reaction, ...]]:
    """Group (seq, emoji, user) rows, in reacting order, into each message's reactions."""
    by_seq: dict[int, dict[str, list[str]]] = {}
    for seq, emoji, user in rows:
        by_seq.setdefault(seq, {}).setdefault(emoji, []).append(user)
    return {
        seq: tuple(Reaction(e, tuple(users)) for e, users in emoji.items())
        for seq, emoji in by_seq.items()
    }


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


# ASCII look-alikes in a case-folded login: I (folded to i), l, 1 and |; o and 0; rn and m.
LOGIN_LOOKALIKES = str.maketrans({"i": "l", "1": "l", "|": "l", "0": "o"})


def login_skeleton(login: str) -> str:
    """Return what a login looks like: logins with the same skeleton pass for one another.

    Kept beside `login_key` (which alone decides uniqueness, so existing accounts stay as they
    are); sign-up refuses a new login whose skeleton an existing account already has.
    """
    return login.casefold().translate(LOGIN_LOOKALIKES).replace("rn", "m").replace("vv", "w")


def new_session_id() -> str:
    """Return a fresh unguessable session id."""
    return secrets.token_urlsafe(32)


def new_invite_token() -> str:
    """Return a fresh unguessable invitation token (192 bits)."""
    return secrets.token_urlsafe(24)


def new_upload_id() -> str:
    """Return a fresh unguessable upload id (128 bits, hex: safe as a file name)."""
    return secrets.token_hex(16)


def new_room_suffix() -> str:
    """Return a random slug suffix, so a private room's slug never collides with an open one's."""
    return secrets.token_hex(4)


def dm_key(a: str, b: str) -> str:
    """Return the key naming the one direct room of two logins (the same login twice: notes)."""
    return ":".join(sorted((login_key(a), login_key(b))))


def dm_name(a: str, b: str) -> str:
    """Return a direct room's name: its people's logins, in key order (one for notes)."""
    if login_key(a) == login_key(b):
        return a
    return " ".join(sorted((a, b), key=login_key))


class Users(abc.ABC):
    """Accounts."""

    @abc.abstractmethod
    async def create(self, login: str, email: str, password_hash: str) -> User:
        """Store a new account; raise LoginTaken when the login is in use.

        The first account of an empty store is its admin, however many are created at once.
        """

    @abc.abstractmethod
    async def find_by_login(self, login: str) -> User | None:
        """Return the account with this login, compared case-insensitively."""

    @abc.abstractmethod
    async def find_by_skeleton(self, skeleton: str) -> User | None:
        """Return an account whose login has this `login_skeleton`, if any."""

    @abc.abstractmethod
    async def exist(self) -> bool:
        """Say whether any account exists."""

    @abc.abstractmethod
    async def list(self, limit: int) -> list[User]:
        """Return up to `limit` accounts, oldest first."""

    @abc.abstractmethod
    async def set_role(self, login: str, role: str) -> User | None:
        """Make the account an admin or a member; raise LastAdmin rather than leave none."""

    @abc.abstractmethod
    async def set_active(self, login: str, active: bool) -> User | None:
        """Deactivate or reactivate the account; raise LastAdmin rather than leave none."""

    @abc.abstractmethod
    async def set_password(self, login: str, password_hash: str) -> User | None:
        """Replace the account's password hash."""

    @abc.abstractmethod
    async def deactivated(self, logins: list[str]) -> set[str]:
        """Return which of these logins belong to deactivated accounts."""


class Sessions(abc.ABC):
    """Server-side sessions, so that logout really ends a session."""

    @abc.abstractmethod
    async def create(self, user: User, max_age: int, device: str = "") -> Session:
        """Start a session for the user lasting max_age seconds."""

    @abc.abstractmethod
    async def find(self, session_id: str) -> Session | None:
        """Return the live session with this id; None when unknown, expired or deactivated."""

    @abc.abstractmethod
    async def delete(self, session_id: str) -> None:
        """End a session."""

    @abc.abstractmethod
    async def of_user(self, user: User) -> list[Session]:
        """Return the user's live sessions, most recently seen first (at most MAX_PAGE)."""

    @abc.abstractmethod
    async def delete_of_user(self, user: User, keep: str | None = None) -> list[str]:
        """End every session of the user but `keep`; return the ids ended."""

    @abc.abstractmethod
    async def seen(self, session: Session, at: dt.datetime) -> None:
        """Note that the session (and so its account) was used at `at`."""

    @abc.abstractmethod
    async def live(self, session_ids: list[str]) -> set[str]:
        """Return which of these session ids are live sessions (at most MAX_PAGE asked)."""


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
    async def create(
        self, slug: str, name: str, kind: str = OPEN, creator: str | None = None
    ) -> Room:
        """Store a new room (its creator its first member); raise RoomTaken on a used slug."""

    @abc.abstractmethod
    async def direct(self, a: str, b: str) -> Room:
        """Return the direct room of two logins, creating it once (race-free) when missing."""

    @abc.abstractmethod
    async def activity(self, user: str, limit: int) -> list[RoomActivity]:
        """Return up to `limit` rooms the user may see, most recently active first."""

    @abc.abstractmethod
    async def members(self, slug: str, limit: int) -> list[str]:
        """Return up to `limit` logins of the room's members, first added first."""

    @abc.abstractmethod
    async def is_member(self, slug: str, login: str) -> bool:
        """Say whether the login is a member of the room."""

    @abc.abstractmethod
    async def add_member(self, slug: str, login: str) -> bool:
        """Make the login a member of the room; False when it was one already."""

    @abc.abstractmethod
    async def remove_member(self, slug: str, login: str) -> bool:
        """Take the login out of the room; False when it was not a member."""

    @abc.abstractmethod
    async def set_notify(self, slug: str, login: str, level: str) -> None:
        """Store how much of the room notifies the login (one of NOTIFY_LEVELS)."""

    @abc.abstractmethod
    async def notify_levels(self, login: str) -> dict[str, str]:
        """Return the levels the login chose, per room (at most MAX_ROOMS; unset rooms absent)."""

    async def visible(self, slug: str, login: str) -> Room | None:
        """Return the room when the login may see it, else None, exactly as for no room."""
        room = await self.find(slug)
        if room is None or (room.private and not await self.is_member(slug, login)):
            return None
        return room


class Messages(abc.ABC):
    """Chat messages, numbered per room."""

    @abc.abstractmethod
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
        """Store a message with the room's next seq; on a re-sent client_id return the stored one.

        The flag is True when this call stored it, False when it was already there. `reply_to`
        is the seq of the message it answers (the caller checked that it exists); `mentions`
        the logins it mentions (the caller found them).
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
        self,
        room: str,
        seq: int,
        user: str,
        text: str | None,
        since: dt.datetime,
        moderator: bool = False,
        mentions: tuple[str, ...] = (),
    ) -> Message:
        """Edit (new text) or delete (None) the user's own message, sent at `since` or later.

        A moderator's delete takes anyone's message, however old. The changed message gets the
        room's next rev, and `mentions` (those of the new text; a deleted one mentions nobody).
        Raise ChangeRefused (see `refusal`).
        """

    @abc.abstractmethod
    async def changes(self, room: str, after_rev: int, limit: int) -> list[Message]:
        """Return up to `limit` messages changed after `after_rev`, in rev order."""

    @abc.abstractmethod
    async def last_rev(self, room: str) -> int:
        """Return the room's highest rev, 0 when nothing was ever edited or deleted."""

    @abc.abstractmethod
    async def react(self, room: str, seq: int, user: str, emoji: str) -> Message:
        """Add the user's reaction to a message, or take it back when there; bump its rev.

        Anyone who may see the room may react to any message but a deleted one. Raise
        ChangeRefused: `not_found`, `deleted`, or `too_many_reactions` (REACTIONS_MAX emoji).
        """

    @abc.abstractmethod
    async def unread(self, user: str, marks: dict[str, int]) -> dict[str, tuple[int, int]]:
        """Count, per room of `marks` (room -> read mark), what the user has not read yet.

        Return room -> (messages by others after the mark, those of them that mention the
        user), each at most UNREAD_CAP; at most MAX_ROOMS rooms are asked.
        """

    @abc.abstractmethod
    async def find_many(self, room: str, seqs: list[int]) -> list[Message]:
        """Return the room's messages with these seqs (at most MAX_PAGE), without reactions."""

    @abc.abstractmethod
    async def _reactions(self, room: str, seqs: list[int]) -> dict[int, tuple[Reaction, ...]]:
        """Return the reactions on these messages of the room, by seq."""

    async def complete(
        self, room: str, messages: list[Message], new: bool = False
    ) -> list[Message]:
        """Fill in the messages' reactions and their replies' quotes (two batched reads).

        `new`: messages just stored, which have no reactions yet (a post reads nothing more
        unless it is a reply).
        """
        quoted = {m.seq: m for m in messages}
        wanted = sorted({m.reply_to for m in messages if m.reply_to and m.reply_to not in quoted})
        if not messages or (new and not wanted):
            return messages
        reactions = {} if new else await self._reactions(room, [m.seq for m in messages])
        if wanted:
            quoted.update((m.seq, m) for m in await self.find_many(room, wanted[:MAX_PAGE]))
        done = []
        for m in messages:
            original = quoted.get(m.reply_to) if m.reply_to else None
            done.append(
                dataclasses.replace(
                    m,
                    reactions=reactions.get(m.seq, ()),
                    quote=Quote.of(original) if original else None,
                )
            )
        return done


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


class Config(abc.ABC):
    """Settings an admin changes at run time; they override the environment's."""

    @abc.abstractmethod
    async def get(self, key: str) -> str | None:
        """Return the stored value, None when never set."""

    @abc.abstractmethod
    async def set(self, key: str, value: str) -> None:
        """Store a value."""


class Invites(abc.ABC):
    """Invitations to sign up."""

    @abc.abstractmethod
    async def create(self, created_by: str, ttl: int) -> Invite:
        """Store a new invitation that expires after `ttl` seconds."""

    @abc.abstractmethod
    async def find(self, token: str) -> Invite | None:
        """Return the invitation with this token, live or not."""

    @abc.abstractmethod
    async def live(self, limit: int) -> list[Invite]:
        """Return up to `limit` invitations neither expired nor revoked, newest first."""

    @abc.abstractmethod
    async def revoke(self, token: str) -> bool:
        """Revoke an invitation; False when there is none."""

    @abc.abstractmethod
    async def use(self, token: str) -> bool:
        """Count one use of a live invitation; False when it is not live (nothing counted)."""


class Bots(abc.ABC):
    """Bots: their key hashes, who made them, their outgoing webhook."""

    @abc.abstractmethod
    async def create(self, login: str, key_hash: str, created_by: str, initials: str) -> Bot:
        """Store a new bot for the account `login`; raise LoginTaken when it has one already."""

    @abc.abstractmethod
    async def find(self, login: str) -> Bot | None:
        """Return the bot of this login (case-insensitively), revoked or not."""

    @abc.abstractmethod
    async def find_by_key(self, key_hash: str) -> Bot | None:
        """Return the bot whose key has this hash, revoked or not."""

    @abc.abstractmethod
    async def list(self, limit: int) -> list[Bot]:
        """Return up to `limit` bots, oldest first."""

    @abc.abstractmethod
    async def revoke(self, login: str) -> bool:
        """Make the bot's key stop working for good; False when there is no such bot."""

    @abc.abstractmethod
    async def set_webhook(self, login: str, url: str) -> bool:
        """Set (or with "" clear) the bot's outgoing webhook; False when there is no such bot."""

    @abc.abstractmethod
    async def rekey(self, login: str, key_hash: str) -> bool:
        """Give a bot a new key, the old one stopping at once; False when none or revoked."""


class Uploads(abc.ABC):
    """Uploaded files: their metadata, and their bytes (a file and, for images, a thumbnail)."""

    @abc.abstractmethod
    async def add(self, upload: Upload, original: Path, thumb: Path | None) -> tuple[Upload, bool]:
        """Store a file from `original` (and its thumbnail), which this call takes over.

        Unique per (room, user, client_id), like messages: when that upload exists already the
        new bytes are dropped and the stored one is returned, with False.
        """

    @abc.abstractmethod
    async def find(self, upload_id: str) -> Upload | None:
        """Return the upload with this id."""

    @abc.abstractmethod
    async def delete(self, upload_id: str) -> bool:
        """Delete an upload's bytes and metadata; False when there is none."""

    @abc.abstractmethod
    async def usage(self, user: str) -> int:
        """Return the bytes a person's uploads take (originals and thumbnails)."""

    @abc.abstractmethod
    async def totals(self) -> tuple[int, int]:
        """Return how many uploads are stored and the bytes they take in all."""

    @abc.abstractmethod
    def read(self, upload: Upload, thumb: bool, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield the bytes start..end (end excluded) of the file or its thumbnail."""


class Store(abc.ABC):
    """One database: its collections and its life cycle."""

    users: Users
    sessions: Sessions
    rooms: Rooms
    messages: Messages
    reads: Reads
    config: Config
    invites: Invites
    bots: Bots
    search: Search
    uploads: Uploads

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
