"""MongoDB through PyMongo's async client (`AsyncMongoClient`, the successor of Motor)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from storage.base import (
    ADMIN,
    DIRECT,
    MAX_PAGE,
    MAX_ROOMS,
    MEMBER,
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
from storage.mongo_search import MongoSearch, index_terms

Doc = dict[str, Any]

APP_NAME = "aiohttp-chat"  # shown in MongoDB's logs and currentOp
SEQ_ATTEMPTS = 100  # bound on retries when other writers take the same seq
FIRST_ADMIN = "first_admin"  # the config document whose insertion makes one account the first
ACTIVE_ADMINS = {"role": ADMIN, "active": {"$ne": False}}


@asynccontextmanager
async def _unavailable() -> AsyncIterator[None]:
    """Report any driver failure other than a duplicate key as StorageUnavailable."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except PyMongoError as exc:
        raise StorageUnavailable(f"MongoDB failed: {exc}") from exc


def _index_of(exc: DuplicateKeyError) -> dict[str, Any]:
    return dict((exc.details or {}).get("keyPattern") or {})


def _user(doc: Doc) -> User:
    return User(
        id=str(doc["_id"]),
        login=doc["login"],
        email=doc["email"],
        password_hash=doc["password_hash"],
        created_at=doc["created_at"],
        role=doc.get("role", MEMBER),
        active=doc.get("active", True),
        last_seen_at=doc.get("last_seen_at"),
    )


def _session(doc: Doc, user: Doc) -> Session:
    return Session(
        doc["_id"],
        _user(user),
        doc["expires_at"],
        doc.get("created_at"),
        doc.get("last_seen_at"),
        doc.get("device", ""),
    )


def _invite(doc: Doc) -> Invite:
    return Invite(
        doc["_id"],
        doc["created_by"],
        doc["created_at"],
        doc["expires_at"],
        int(doc.get("uses", 0)),
        bool(doc.get("revoked", False)),
    )


def _bot(doc: Doc) -> Bot:
    return Bot(
        doc["login"],
        doc["key_hash"],
        doc["created_by"],
        doc["created_at"],
        doc.get("initials", ""),
        doc.get("webhook_url", ""),
        bool(doc.get("revoked", False)),
    )


def _message(doc: Doc) -> Message:
    return Message(
        id=str(doc["_id"]),
        room=doc["room"],
        seq=doc["seq"],
        user=doc["user"],
        text=doc["text"],
        created_at=doc["created_at"],
        client_id=doc["client_id"],
        edited_at=doc.get("edited_at"),
        deleted=bool(doc.get("deleted", False)),
        rev=int(doc.get("rev", 0)),
        reply_to=doc.get("reply_to"),
        attachment=Attachment(**doc["attachment"]) if doc.get("attachment") else None,
        mentions=tuple(doc.get("mentions", ())),
    )


def _room(doc: Doc) -> Room:
    return Room(doc["_id"], doc["name"], doc["created_at"], doc.get("kind", OPEN))


class MongoUsers(Users):
    """Accounts in the users collection."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["users"]
        self.config = db["config"]

    async def create(self, login: str, email: str, password_hash: str) -> User:
        doc = {
            "login": login,
            "login_key": login_key(login),
            "login_skeleton": login_skeleton(login),
            "email": email,
            "password_hash": password_hash,
            "created_at": now(),
            "role": MEMBER,
            "active": True,
        }
        try:
            async with _unavailable():
                await self.col.insert_one(doc)
        except DuplicateKeyError:
            raise LoginTaken(login) from None
        if await self.claim_first(doc["_id"]):
            doc["role"] = ADMIN
        return _user(doc)

    async def claim_first(self, user_id: ObjectId) -> bool:
        """Make the account the admin if no account was ever first (a unique _id decides)."""
        try:
            async with _unavailable():
                await self.config.insert_one({"_id": FIRST_ADMIN, "user_id": user_id})
                await self.col.update_one({"_id": user_id}, {"$set": {"role": ADMIN}})
        except DuplicateKeyError:
            return False
        return True

    async def find_by_login(self, login: str) -> User | None:
        async with _unavailable():
            doc = await self.col.find_one({"login_key": login_key(login)})
        return _user(doc) if doc else None

    async def find_by_skeleton(self, skeleton: str) -> User | None:
        async with _unavailable():
            doc = await self.col.find_one({"login_skeleton": skeleton})
        return _user(doc) if doc else None

    async def exist(self) -> bool:
        async with _unavailable():
            return await self.col.find_one({}, projection={"_id": 1}) is not None

    async def list(self, limit: int) -> list[User]:
        async with _unavailable():
            cursor = self.col.find({}, sort=[("_id", ASCENDING)], limit=check_limit(limit))
            return [_user(d) for d in await cursor.to_list()]

    async def _update(self, login: str, change: Doc, undo: Doc) -> User | None:
        """Change an account; undone (LastAdmin) when it left no active admin.

        Without transactions, two admins demoting each other at once both see none left and
        both undo: the chat keeps its admins.
        """
        async with _unavailable():
            doc = await self.col.find_one_and_update(
                {"login_key": login_key(login)},
                {"$set": change},
                return_document=ReturnDocument.BEFORE,
            )
            if doc is None:
                return None
            if await self.col.find_one(ACTIVE_ADMINS, projection={"_id": 1}) is None:
                await self.col.update_one({"_id": doc["_id"]}, {"$set": undo})
                raise LastAdmin(login)
        return _user({**doc, **change})

    async def set_role(self, login: str, role: str) -> User | None:
        before = await self.find_by_login(login)
        undo = {"role": before.role} if before else {}
        return await self._update(login, {"role": role}, undo)

    async def set_active(self, login: str, active: bool) -> User | None:
        return await self._update(login, {"active": active}, {"active": not active})

    async def set_password(self, login: str, password_hash: str) -> User | None:
        async with _unavailable():
            doc = await self.col.find_one_and_update(
                {"login_key": login_key(login)},
                {"$set": {"password_hash": password_hash}},
                return_document=ReturnDocument.AFTER,
            )
        return _user(doc) if doc else None

    async def deactivated(self, logins: list[str]) -> set[str]:
        if not logins:
            return set()
        async with _unavailable():
            docs = await self.col.find(
                {"login": {"$in": logins[:MAX_PAGE]}, "active": False},
                projection={"login": 1},
                limit=MAX_PAGE,
            ).to_list()
        return {d["login"] for d in docs}


class MongoSessions(Sessions):
    """Server-side sessions; a TTL index removes expired ones."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["sessions"]
        self.users = db["users"]

    async def create(self, user: User, max_age: int, device: str = "") -> Session:
        t = now()
        session = Session(
            new_session_id(), user, t + dt.timedelta(seconds=max_age), t, t, device[:100]
        )
        async with _unavailable():
            await self.col.insert_one(
                {
                    "_id": session.id,
                    "user_id": ObjectId(user.id),
                    "expires_at": session.expires_at,
                    "created_at": t,
                    "last_seen_at": t,
                    "device": session.device,
                }
            )
        return session

    async def find(self, session_id: str) -> Session | None:
        async with _unavailable():
            doc = await self.col.find_one({"_id": session_id, "expires_at": {"$gt": now()}})
            user = await self.users.find_one({"_id": doc["user_id"]}) if doc else None
        if not doc or not user or user.get("active") is False:
            return None
        return _session(doc, user)

    async def delete(self, session_id: str) -> None:
        async with _unavailable():
            await self.col.delete_one({"_id": session_id})

    async def of_user(self, user: User) -> list[Session]:
        async with _unavailable():
            user_doc = await self.users.find_one({"_id": ObjectId(user.id)})
            docs = await self.col.find(
                {"user_id": ObjectId(user.id), "expires_at": {"$gt": now()}},
                sort=[("last_seen_at", DESCENDING)],
                limit=MAX_PAGE,
            ).to_list()
        return [_session(d, user_doc) for d in docs] if user_doc else []

    async def delete_of_user(self, user: User, keep: str | None = None) -> list[str]:
        query: Doc = {"user_id": ObjectId(user.id)}
        if keep is not None:
            query["_id"] = {"$ne": keep}
        async with _unavailable():
            found = self.col.find(query, projection={"_id": 1}, limit=20 * MAX_PAGE)
            ids = [d["_id"] for d in await found.to_list()]
            if ids:
                await self.col.delete_many({"_id": {"$in": ids}})
        return ids

    async def seen(self, session: Session, at: dt.datetime) -> None:
        async with _unavailable():
            await self.col.update_one({"_id": session.id}, {"$set": {"last_seen_at": at}})
            await self.users.update_one(
                {"_id": ObjectId(session.user.id)}, {"$set": {"last_seen_at": at}}
            )

    async def live(self, session_ids: list[str]) -> set[str]:
        ids = session_ids[:MAX_PAGE]
        if not ids:
            return set()
        async with _unavailable():
            docs = await self.col.find(
                {"_id": {"$in": ids}, "expires_at": {"$gt": now()}}, projection={"_id": 1}
            ).to_list()
        return {d["_id"] for d in docs}


class MongoRooms(Rooms):
    """Rooms in the rooms collection, keyed by slug."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        super().__init__()
        self.col = db["rooms"]
        self.messages = db["messages"]
        self.members_col = db["members"]
        self.notify_col = db["notify"]

    async def ensure(self, slug: str, name: str) -> Room:
        async with _unavailable():
            await self.col.update_one(
                {"_id": slug},
                {"$setOnInsert": {"name": name, "created_at": now()}},
                upsert=True,
            )
        room = await self.find(slug)
        assert room is not None
        return room

    async def _load(self, slug: str) -> Room | None:
        async with _unavailable():
            doc = await self.col.find_one({"_id": slug})
        return _room(doc) if doc else None

    async def create(
        self, slug: str, name: str, kind: str = OPEN, creator: str | None = None
    ) -> Room:
        room = Room(slug, name, now(), kind)
        try:
            async with _unavailable():
                await self.col.insert_one(
                    {"_id": slug, "name": name, "created_at": room.created_at, "kind": kind}
                )
        except DuplicateKeyError:
            raise RoomTaken(slug) from None
        if creator is not None and kind != OPEN:
            await self.add_member(slug, creator)
        return room

    async def direct(self, a: str, b: str) -> Room:
        key = dm_key(a, b)
        async with _unavailable():
            doc = await self.col.find_one({"dm_key": key})
            if doc is None:
                doc = {
                    "_id": f"dm-{new_room_suffix()}{new_room_suffix()}",
                    "name": dm_name(a, b),
                    "created_at": now(),
                    "kind": DIRECT,
                    "dm_key": key,
                }
                try:
                    await self.col.insert_one(doc)
                except DuplicateKeyError:  # another process created it first
                    doc = await self.col.find_one({"dm_key": key})
                    if doc is None:
                        raise StorageUnavailable("the conversation vanished; try again") from None
        # Either way both people are added: whoever created it may not have done so yet.
        for login in {a, b}:
            await self.add_member(doc["_id"], login)
        room = await self.find(doc["_id"])
        assert room is not None
        return room

    async def activity(self, user: str, limit: int) -> list[RoomActivity]:
        found = []
        async with _unavailable():
            mine = await self.members_col.find(
                {"user": user}, projection={"room": 1}, limit=MAX_ROOMS
            ).to_list()
            query = {
                "$or": [
                    {"kind": {"$in": [OPEN, None]}},
                    {"_id": {"$in": [m["room"] for m in mine]}},
                ]
            }
            # One indexed lookup per room (room_seq), rather than a scan of all messages.
            async for doc in self.col.find(query, limit=check_limit(limit)):
                last = await self.messages.find_one(
                    {"room": doc["_id"]},
                    sort=[("seq", DESCENDING)],
                    projection={"seq": 1, "created_at": 1},
                )
                found.append(
                    RoomActivity(
                        _room(doc),
                        int(last["seq"]) if last else 0,
                        last["created_at"] if last else None,
                    )
                )
        return sorted(found, key=lambda a: a.last_activity, reverse=True)

    async def members(self, slug: str, limit: int) -> list[str]:
        async with _unavailable():
            docs = await self.members_col.find(
                {"room": slug},
                sort=[("added_at", ASCENDING), ("user", ASCENDING)],
                limit=check_limit(limit),
            ).to_list()
        return [d["user"] for d in docs]

    async def is_member(self, slug: str, login: str) -> bool:
        async with _unavailable():
            doc = await self.members_col.find_one({"room": slug, "user": login})
        return doc is not None

    async def add_member(self, slug: str, login: str) -> bool:
        async with _unavailable():
            result = await self.members_col.update_one(
                {"room": slug, "user": login},
                {"$setOnInsert": {"added_at": now()}},
                upsert=True,
            )
        return result.upserted_id is not None

    async def remove_member(self, slug: str, login: str) -> bool:
        async with _unavailable():
            result = await self.members_col.delete_one({"room": slug, "user": login})
        return result.deleted_count > 0

    async def set_notify(self, slug: str, login: str, level: str) -> None:
        async with _unavailable():
            await self.notify_col.update_one(
                {"user": login, "room": slug}, {"$set": {"level": level}}, upsert=True
            )

    async def notify_levels(self, login: str) -> dict[str, str]:
        async with _unavailable():
            docs = await self.notify_col.find({"user": login}, limit=MAX_ROOMS).to_list()
        return {d["room"]: d["level"] for d in docs}


class MongoMessages(Messages):
    """Messages in the messages collection.

    A seq exists only on an inserted document, and the unique (room, seq) index lets one
    writer win each number, so seqs have no gaps and no repeats across any number of
    processes, without transactions (which a standalone mongod lacks).
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["messages"]
        self.rooms = db["rooms"]
        self.reactions = db["reactions"]

    async def _find_sent(self, room: str, user: str, client_id: str) -> Message | None:
        doc = await self.col.find_one({"room": room, "user": user, "client_id": client_id})
        return _message(doc) if doc else None

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
        message, created = await self._add(
            room, user, text, client_id, reply_to, attachment, mentions
        )
        return (await self.complete(room, [message], new=created))[0], created

    async def _add(
        self,
        room: str,
        user: str,
        text: str,
        client_id: str,
        reply_to: int | None,
        attachment: Attachment | None,
        mentions: tuple[str, ...] = (),
    ) -> tuple[Message, bool]:
        async with _unavailable():
            sent = await self._find_sent(room, user, client_id)
            if sent:
                return sent, False
            for _ in range(SEQ_ATTEMPTS):
                seq = await self.last_seq(room) + 1
                doc = {
                    "room": room,
                    "seq": seq,
                    "user": user,
                    "text": text,
                    "created_at": now(),
                    "client_id": client_id,
                    "terms": index_terms(text),
                }
                if reply_to is not None:
                    doc["reply_to"] = reply_to
                if attachment is not None:
                    doc["attachment"] = dataclasses.asdict(attachment)
                if mentions:  # absent: none (as on messages stored before mentions)
                    doc["mentions"] = list(mentions)
                try:
                    await self.col.insert_one(doc)
                except DuplicateKeyError as exc:
                    if "client_id" in _index_of(exc):
                        sent = await self._find_sent(room, user, client_id)
                        if sent:
                            return sent, False
                    continue  # another writer took this seq: read the new last one
                return _message(doc), True
        raise StorageUnavailable("too many concurrent writers to this room; try again")

    async def before(self, room: str, before: int | None, limit: int) -> list[Message]:
        query: Doc = {"room": room}
        if before is not None:
            query["seq"] = {"$lt": before}
        async with _unavailable():
            cursor = self.col.find(query, sort=[("seq", DESCENDING)], limit=check_limit(limit))
            docs = await cursor.to_list()
        return await self.complete(room, [_message(d) for d in reversed(docs)])

    async def after(self, room: str, after: int, limit: int) -> list[Message]:
        async with _unavailable():
            cursor = self.col.find(
                {"room": room, "seq": {"$gt": after}},
                sort=[("seq", ASCENDING)],
                limit=check_limit(limit),
            )
            docs = await cursor.to_list()
        return await self.complete(room, [_message(d) for d in docs])

    async def last_seq(self, room: str) -> int:
        async with _unavailable():
            doc = await self.col.find_one(
                {"room": room}, sort=[("seq", DESCENDING)], projection={"seq": 1}
            )
        return int(doc["seq"]) if doc else 0

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
        query: Doc = {"room": room, "seq": seq, "deleted": {"$ne": True}}
        if not moderated:
            query.update(user=user, created_at={"$gte": since})
        async with _unavailable():
            doc = await self.col.find_one_and_update(
                query,
                {
                    "$set": {
                        "text": text or "",
                        "deleted": text is None,
                        "edited_at": now(),
                        "terms": index_terms(text or ""),
                        "mentions": list(mentions),
                    }
                },
            )
            if doc is None:
                found = await self.col.find_one({"room": room, "seq": seq})
                raise refusal(_message(found) if found else None, user, since, moderated)
            doc = await self._stamp(room, seq)
        if doc is None:
            raise refusal(None, user, since)
        return (await self.complete(room, [_message(doc)]))[0]

    async def _stamp(self, room: str, seq: int) -> Doc | None:
        """Give a message whose change is stored the room's next rev, and read it back.

        The change is stored before its rev is taken, and revs only go up (`$max`): so the
        state read with a rev holds every change given that rev or a lower one, whichever
        process made them, and a resume from any rev misses none.
        """
        counter = await self.rooms.find_one_and_update(
            {"_id": room}, {"$inc": {"rev": 1}}, return_document=ReturnDocument.AFTER
        )
        rev = int(counter["rev"]) if counter else 0
        return await self.col.find_one_and_update(
            {"room": room, "seq": seq},
            {"$max": {"rev": rev}},
            return_document=ReturnDocument.AFTER,
        )

    async def changes(self, room: str, after_rev: int, limit: int) -> list[Message]:
        async with _unavailable():
            cursor = self.col.find(
                {"room": room, "rev": {"$gt": after_rev}},
                sort=[("rev", ASCENDING)],
                limit=check_limit(limit),
            )
            docs = await cursor.to_list()
        return await self.complete(room, [_message(d) for d in docs])

    async def last_rev(self, room: str) -> int:
        async with _unavailable():
            doc = await self.col.find_one(
                {"room": room, "rev": {"$gt": 0}}, sort=[("rev", DESCENDING)], projection={"rev": 1}
            )
        return int(doc["rev"]) if doc else 0

    async def react(self, room: str, seq: int, user: str, emoji: str) -> Message:
        # One document per reaction, unique per (room, seq, emoji, user). Two processes adding a
        # new emoji to a message at once may pass REACTIONS_MAX by one each: a bound still.
        async with _unavailable():
            found = await self.col.find_one({"room": room, "seq": seq}, projection={"deleted": 1})
            if found is None:
                raise reaction_refusal("not_found")
            if found.get("deleted"):
                raise reaction_refusal("deleted")
            # Reactions are ordered by a ticket of their own: the rev comes after the change.
            ticket = await self.rooms.find_one_and_update(
                {"_id": room}, {"$inc": {"reaction_n": 1}}, return_document=ReturnDocument.AFTER
            )
            if ticket is None:
                raise reaction_refusal("not_found")
            n = int(ticket["reaction_n"])
            key = {"room": room, "seq": seq, "emoji": emoji, "user": user}
            removed = await self.reactions.delete_one(key)
            if not removed.deleted_count:
                first = await self.reactions.find_one(
                    {"room": room, "seq": seq, "emoji": emoji}, sort=[("ord", ASCENDING)]
                )
                if first is None:
                    present = await self.reactions.distinct("emoji", {"room": room, "seq": seq})
                    if len(present) >= REACTIONS_MAX:
                        raise reaction_refusal("too_many_reactions")
                # A second socket of the same person adding it at once: it is there either way.
                with contextlib.suppress(DuplicateKeyError):
                    await self.reactions.insert_one(
                        {**key, "ord": n if first is None else first["ord"], "n": n}
                    )
            doc = await self._stamp(room, seq)
        if doc is None:
            raise reaction_refusal("not_found")
        return (await self.complete(room, [_message(doc)]))[0]

    async def unread(self, user: str, marks: dict[str, int]) -> dict[str, tuple[int, int]]:
        asked = list(marks.items())[:MAX_ROOMS]

        async def count(room: str, seq: int) -> tuple[str, tuple[int, int]]:
            after: Doc = {"room": room, "seq": {"$gt": seq}, "user": {"$ne": user}}
            unread = await self.col.count_documents(after, limit=UNREAD_CAP)
            mentioned = (
                await self.col.count_documents({**after, "mentions": user}, limit=UNREAD_CAP)
                if unread
                else 0
            )
            return room, (unread, mentioned)

        async with _unavailable():
            return dict(await asyncio.gather(*(count(room, seq) for room, seq in asked)))

    async def find_many(self, room: str, seqs: list[int]) -> list[Message]:
        seqs = seqs[:MAX_PAGE]
        if not seqs:
            return []
        async with _unavailable():
            docs = await self.col.find(
                {"room": room, "seq": {"$in": seqs}}, limit=len(seqs)
            ).to_list()
        return [_message(d) for d in docs]

    async def _reactions(self, room: str, seqs: list[int]) -> dict[int, tuple[Reaction, ...]]:
        async with _unavailable():
            docs = await self.reactions.find(
                {"room": room, "seq": {"$in": seqs[:MAX_PAGE]}},
                sort=[("seq", ASCENDING), ("ord", ASCENDING), ("n", ASCENDING)],
                limit=REACTION_ROWS_MAX,
            ).to_list()
        return group_reactions([(d["seq"], d["emoji"], d["user"]) for d in docs])


class MongoReads(Reads):
    """Read marks in the reads collection, one document per person and room."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["reads"]

    async def mark_many(self, marks: list[tuple[str, str, int]]) -> None:
        if not marks:
            return
        async with _unavailable():
            await self.col.bulk_write(
                [
                    UpdateOne({"user": user, "room": room}, {"$max": {"seq": seq}}, upsert=True)
                    for user, room, seq in marks
                ],
                ordered=False,
            )

    async def of_user(self, user: str) -> dict[str, int]:
        async with _unavailable():
            docs = await self.col.find({"user": user}, limit=MAX_ROOMS).to_list()
        return {d["room"]: int(d["seq"]) for d in docs}


class MongoConfig(Config):
    """Run-time settings in the config collection, one document per key."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["config"]

    async def get(self, key: str) -> str | None:
        async with _unavailable():
            doc = await self.col.find_one({"_id": key})
        return str(doc["value"]) if doc and "value" in doc else None

    async def set(self, key: str, value: str) -> None:
        async with _unavailable():
            await self.col.update_one({"_id": key}, {"$set": {"value": value}}, upsert=True)


class MongoInvites(Invites):
    """Invitations in the invites collection, keyed by token."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["invites"]

    async def create(self, created_by: str, ttl: int) -> Invite:
        t = now()
        invite = Invite(new_invite_token(), created_by, t, t + dt.timedelta(seconds=ttl))
        async with _unavailable():
            await self.col.insert_one(
                {
                    "_id": invite.token,
                    "created_by": created_by,
                    "created_at": t,
                    "expires_at": invite.expires_at,
                    "uses": 0,
                    "revoked": False,
                }
            )
        return invite

    async def find(self, token: str) -> Invite | None:
        async with _unavailable():
            doc = await self.col.find_one({"_id": token})
        return _invite(doc) if doc else None

    async def live(self, limit: int) -> list[Invite]:
        async with _unavailable():
            docs = await self.col.find(
                {"revoked": False, "expires_at": {"$gt": now()}},
                sort=[("created_at", DESCENDING)],
                limit=check_limit(limit),
            ).to_list()
        return [_invite(d) for d in docs]

    async def revoke(self, token: str) -> bool:
        async with _unavailable():
            result = await self.col.update_one({"_id": token}, {"$set": {"revoked": True}})
        return result.matched_count > 0

    async def use(self, token: str) -> bool:
        async with _unavailable():
            result = await self.col.update_one(
                {"_id": token, "revoked": False, "expires_at": {"$gt": now()}},
                {"$inc": {"uses": 1}},
            )
        return result.modified_count > 0


class MongoBots(Bots):
    """Bots in the bots collection, keyed by login_key; key_hash is uniquely indexed."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["bots"]

    async def create(self, login: str, key_hash: str, created_by: str, initials: str) -> Bot:
        bot = Bot(login, key_hash, created_by, now(), initials)
        try:
            async with _unavailable():
                await self.col.insert_one(
                    {
                        "_id": login_key(login),
                        "login": login,
                        "key_hash": key_hash,
                        "created_by": created_by,
                        "created_at": bot.created_at,
                        "initials": initials,
                        "webhook_url": "",
                        "revoked": False,
                    }
                )
        except DuplicateKeyError:
            raise LoginTaken(login) from None
        return bot

    async def find(self, login: str) -> Bot | None:
        async with _unavailable():
            doc = await self.col.find_one({"_id": login_key(login)})
        return _bot(doc) if doc else None

    async def find_by_key(self, key_hash: str) -> Bot | None:
        async with _unavailable():
            doc = await self.col.find_one({"key_hash": key_hash})
        return _bot(doc) if doc else None

    async def list(self, limit: int) -> list[Bot]:
        async with _unavailable():
            docs = await self.col.find(
                {}, sort=[("created_at", ASCENDING), ("_id", ASCENDING)], limit=check_limit(limit)
            ).to_list()
        return [_bot(d) for d in docs]

    async def revoke(self, login: str) -> bool:
        async with _unavailable():
            result = await self.col.update_one(
                {"_id": login_key(login)}, {"$set": {"revoked": True}}
            )
        return result.matched_count > 0

    async def set_webhook(self, login: str, url: str) -> bool:
        async with _unavailable():
            result = await self.col.update_one(
                {"_id": login_key(login)}, {"$set": {"webhook_url": url}}
            )
        return result.matched_count > 0

    async def rekey(self, login: str, key_hash: str) -> bool:
        async with _unavailable():
            result = await self.col.update_one(
                {"_id": login_key(login), "revoked": {"$ne": True}},
                {"$set": {"key_hash": key_hash}},
            )
        return result.matched_count > 0


GRIDFS_CHUNK = 255 * 1024  # GridFS's own default chunk size


def _upload_doc(upload: Upload) -> Doc:
    doc = dataclasses.asdict(upload)
    doc["_id"] = doc.pop("id")
    return doc


def _upload(doc: Doc) -> Upload:
    fields = {k: v for k, v in doc.items() if k != "_id"}
    return Upload(id=doc["_id"], **fields)


class MongoUploads(Uploads):
    """Uploads' metadata in the uploads collection, their bytes in GridFS (shared by dynos)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["uploads"]
        self.messages = db["messages"]
        self.bucket = AsyncGridFSBucket(
            db, bucket_name="upload_bytes", chunk_size_bytes=GRIDFS_CHUNK
        )

    @staticmethod
    def _file_id(upload_id: str, thumb: bool = False) -> str:
        return f"{upload_id}.thumb" if thumb else upload_id

    async def _put(self, file_id: str, name: str, path: Path) -> None:
        loop = asyncio.get_running_loop()
        stream = self.bucket.open_upload_stream_with_id(file_id, name)
        try:
            with path.open("rb") as f:
                while chunk := await loop.run_in_executor(None, f.read, GRIDFS_CHUNK):
                    await stream.write(chunk)
        except BaseException:
            await stream.abort()
            raise
        await stream.close()

    async def _drop_bytes(self, upload_id: str) -> None:
        for thumb in (False, True):
            try:
                await self.bucket.delete(self._file_id(upload_id, thumb))
            except NoFile:
                pass

    async def add(self, upload: Upload, original: Path, thumb: Path | None) -> tuple[Upload, bool]:
        try:
            async with _unavailable():
                # Bytes first: metadata never names a file that is not there.
                await self._put(upload.id, upload.name, original)
                if thumb is not None:
                    await self._put(self._file_id(upload.id, True), upload.name, thumb)
                try:
                    await self.col.insert_one(_upload_doc(upload))
                except DuplicateKeyError:
                    await self._drop_bytes(upload.id)
                    doc = await self.col.find_one(
                        {"room": upload.room, "user": upload.user, "client_id": upload.client_id}
                    )
                    if doc is None:
                        raise StorageUnavailable(
                            "the upload was neither stored nor found; try again"
                        ) from None
                    return _upload(doc), False
        finally:
            original.unlink(missing_ok=True)
            if thumb is not None:
                thumb.unlink(missing_ok=True)
        return upload, True

    async def find(self, upload_id: str) -> Upload | None:
        async with _unavailable():
            doc = await self.col.find_one({"_id": upload_id})
        return _upload(doc) if doc else None

    async def delete(self, upload_id: str) -> bool:
        async with _unavailable():
            doc = await self.col.find_one_and_delete({"_id": upload_id})
            if doc is None:
                return False
            # The message keeps no trace of the file: not even its name.
            await self.messages.update_one(
                {"room": doc["room"], "user": doc["user"], "client_id": doc["client_id"]},
                {"$unset": {"attachment": ""}},
            )
            await self._drop_bytes(upload_id)
        return True

    async def _sum(self, match: Doc) -> tuple[int, int]:
        async with _unavailable():
            cursor = await self.col.aggregate(
                [
                    {"$match": match},
                    {
                        "$group": {
                            "_id": None,
                            "count": {"$sum": 1},
                            "bytes": {"$sum": {"$add": ["$size", "$thumb_size"]}},
                        }
                    },
                ]
            )
            docs = await cursor.to_list(1)
        return (int(docs[0]["count"]), int(docs[0]["bytes"])) if docs else (0, 0)

    async def usage(self, user: str) -> int:
        return (await self._sum({"user": user}))[1]

    async def totals(self) -> tuple[int, int]:
        return await self._sum({})

    async def read(self, upload: Upload, thumb: bool, start: int, end: int) -> AsyncIterator[bytes]:
        async with _unavailable():
            stream = await self.bucket.open_download_stream(self._file_id(upload.id, thumb))
            try:
                await stream.seek(start)
                while start < end:
                    chunk = await stream.read(min(GRIDFS_CHUNK, end - start))
                    if not chunk:
                        return
                    start += len(chunk)
                    yield chunk
            finally:
                await stream.close()


class MongoStore(Store):
    """The MongoDB store."""

    def __init__(self, uri: str, db_name: str, timeout_ms: int = 3000) -> None:
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(
            uri,
            appname=APP_NAME,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms * 2,
        )
        self.db = self.client[db_name]
        self.users = MongoUsers(self.db)
        self.sessions = MongoSessions(self.db)
        self.rooms = MongoRooms(self.db)
        self.messages = MongoMessages(self.db)
        self.reads = MongoReads(self.db)
        self.config = MongoConfig(self.db)
        self.invites = MongoInvites(self.db)
        self.bots = MongoBots(self.db)
        self.search = MongoSearch(self.db, _message)
        self.uploads = MongoUploads(self.db)

    async def setup(self) -> None:
        async with _unavailable():
            await self.db["users"].create_index("login_key", unique=True, name="login_key")
            await self.db["users"].create_index("login_skeleton", name="login_skeleton")
            # Accounts from before skeletons get theirs (once: later ones are stored with it).
            await self._fill_login_skeletons()
            await self.db["sessions"].create_index(
                "expires_at", expireAfterSeconds=0, name="expires_at"
            )
            await self.db["messages"].create_index(
                [("room", ASCENDING), ("seq", ASCENDING)], unique=True, name="room_seq"
            )
            await self.db["messages"].create_index(
                [("room", ASCENDING), ("user", ASCENDING), ("client_id", ASCENDING)],
                unique=True,
                name="room_user_client",
            )
            await self.db["messages"].create_index(
                [("room", ASCENDING), ("rev", ASCENDING)], name="room_rev"
            )
            await self.db["reactions"].create_index(
                [
                    ("room", ASCENDING),
                    ("seq", ASCENDING),
                    ("emoji", ASCENDING),
                    ("user", ASCENDING),
                ],
                unique=True,
                name="room_seq_emoji_user",
            )
            await self.db["reactions"].create_index(
                [("room", ASCENDING), ("seq", ASCENDING), ("ord", ASCENDING), ("n", ASCENDING)],
                name="room_seq_ord",
            )
            await self.db["reads"].create_index(
                [("user", ASCENDING), ("room", ASCENDING)], unique=True, name="user_room"
            )
            await self.db["sessions"].create_index("user_id", name="user_id")
            await self.db["rooms"].create_index(
                "dm_key",
                unique=True,
                name="dm_key",
                partialFilterExpression={"dm_key": {"$type": "string"}},
            )
            await self.db["members"].create_index(
                [("room", ASCENDING), ("user", ASCENDING)], unique=True, name="room_user"
            )
            await self.db["members"].create_index(
                [("user", ASCENDING), ("room", ASCENDING)], name="user_room"
            )
            await self.db["invites"].create_index("created_at", name="created_at")
            await self.db["bots"].create_index("key_hash", unique=True, name="key_hash")
            await self.search.setup()  # the terms index, and older messages' terms
            await self.db["uploads"].create_index(
                [("room", ASCENDING), ("user", ASCENDING), ("client_id", ASCENDING)],
                unique=True,
                name="room_user_client",
            )
            await self.db["uploads"].create_index("user", name="user")
            # Unread mentions of a person: their mentions in a room after their read mark.
            await self.db["messages"].create_index(
                [("mentions", ASCENDING), ("room", ASCENDING), ("seq", ASCENDING)],
                name="mentions_room_seq",
                sparse=True,
            )
            await self.db["notify"].create_index(
                [("user", ASCENDING), ("room", ASCENDING)], unique=True, name="user_room"
            )
            # A store from before roles: its first account becomes the admin, once.
            oldest = await self.db["users"].find_one({}, sort=[("_id", ASCENDING)])
        if oldest is not None:
            await self.users.claim_first(oldest["_id"])
        await self.rooms.ensure("general", "General")

    async def ping(self) -> None:
        async with _unavailable():
            await self.db.command("ping")

    async def _fill_login_skeletons(self) -> None:
        """Give accounts stored before skeletons theirs, a page at a time."""
        users = self.db["users"]
        missing = {"login_skeleton": {"$exists": False}}
        while older := await users.find(missing, {"login": 1}).to_list(MAX_PAGE):
            for doc in older:
                skeleton = login_skeleton(doc["login"])
                await users.update_one({"_id": doc["_id"]}, {"$set": {"login_skeleton": skeleton}})

    async def close(self) -> None:
        await self.client.close()
