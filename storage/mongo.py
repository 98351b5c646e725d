"""MongoDB through PyMongo's async client (`AsyncMongoClient`, the successor of Motor)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

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

Doc = dict[str, Any]

APP_NAME = "aiohttp-chat"  # shown in MongoDB's logs and currentOp
SEQ_ATTEMPTS = 100  # bound on retries when other writers take the same seq


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
    )


def _room(doc: Doc) -> Room:
    return Room(doc["_id"], doc["name"], doc["created_at"])


class MongoUsers(Users):
    """Accounts in the users collection."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["users"]

    async def create(self, login: str, email: str, password_hash: str) -> User:
        doc = {
            "login": login,
            "login_key": login_key(login),
            "email": email,
            "password_hash": password_hash,
            "created_at": now(),
        }
        try:
            async with _unavailable():
                await self.col.insert_one(doc)
        except DuplicateKeyError:
            raise LoginTaken(login) from None
        return _user(doc)

    async def find_by_login(self, login: str) -> User | None:
        async with _unavailable():
            doc = await self.col.find_one({"login_key": login_key(login)})
        return _user(doc) if doc else None


class MongoSessions(Sessions):
    """Server-side sessions; a TTL index removes expired ones."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["sessions"]
        self.users = db["users"]

    async def create(self, user: User, max_age: int) -> Session:
        session = Session(new_session_id(), user, now() + dt.timedelta(seconds=max_age))
        async with _unavailable():
            await self.col.insert_one(
                {"_id": session.id, "user_id": ObjectId(user.id), "expires_at": session.expires_at}
            )
        return session

    async def find(self, session_id: str) -> Session | None:
        async with _unavailable():
            doc = await self.col.find_one({"_id": session_id, "expires_at": {"$gt": now()}})
            user = await self.users.find_one({"_id": doc["user_id"]}) if doc else None
        if not doc or not user:
            return None
        return Session(doc["_id"], _user(user), doc["expires_at"])

    async def delete(self, session_id: str) -> None:
        async with _unavailable():
            await self.col.delete_one({"_id": session_id})


class MongoRooms(Rooms):
    """Rooms in the rooms collection, keyed by slug."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        super().__init__()
        self.col = db["rooms"]
        self.messages = db["messages"]

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

    async def create(self, slug: str, name: str) -> Room:
        room = Room(slug, name, now())
        try:
            async with _unavailable():
                await self.col.insert_one(
                    {"_id": slug, "name": name, "created_at": room.created_at}
                )
        except DuplicateKeyError:
            raise RoomTaken(slug) from None
        return room

    async def activity(self, limit: int) -> list[RoomActivity]:
        found = []
        async with _unavailable():
            # One indexed lookup per room (room_seq), rather than a scan of all messages.
            async for doc in self.col.find({}, limit=check_limit(limit)):
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


class MongoMessages(Messages):
    """Messages in the messages collection.

    A seq exists only on an inserted document, and the unique (room, seq) index lets one
    writer win each number, so seqs have no gaps and no repeats across any number of
    processes, without transactions (which a standalone mongod lacks).
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db["messages"]
        self.rooms = db["rooms"]

    async def _find_sent(self, room: str, user: str, client_id: str) -> Message | None:
        doc = await self.col.find_one({"room": room, "user": user, "client_id": client_id})
        return _message(doc) if doc else None

    async def add(self, room: str, user: str, text: str, client_id: str) -> tuple[Message, bool]:
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
                }
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
        return [_message(d) for d in reversed(docs)]

    async def after(self, room: str, after: int, limit: int) -> list[Message]:
        async with _unavailable():
            cursor = self.col.find(
                {"room": room, "seq": {"$gt": after}},
                sort=[("seq", ASCENDING)],
                limit=check_limit(limit),
            )
            docs = await cursor.to_list()
        return [_message(d) for d in docs]

    async def last_seq(self, room: str) -> int:
        async with _unavailable():
            doc = await self.col.find_one(
                {"room": room}, sort=[("seq", DESCENDING)], projection={"seq": 1}
            )
        return int(doc["seq"]) if doc else 0

    async def change(
        self, room: str, seq: int, user: str, text: str | None, since: dt.datetime
    ) -> Message:
        async with _unavailable():
            # The room document counts changes; a rev taken by a refused change is simply unused.
            counter = await self.rooms.find_one_and_update(
                {"_id": room}, {"$inc": {"rev": 1}}, return_document=ReturnDocument.AFTER
            )
            if counter is None:
                raise refusal(None, user, since)
            doc = await self.col.find_one_and_update(
                {
                    "room": room,
                    "seq": seq,
                    "user": user,
                    "deleted": {"$ne": True},
                    "created_at": {"$gte": since},
                },
                {
                    "$set": {
                        "text": text or "",
                        "deleted": text is None,
                        "edited_at": now(),
                        "rev": int(counter["rev"]),
                    }
                },
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return _message(doc)
            found = await self.col.find_one({"room": room, "seq": seq})
        raise refusal(_message(found) if found else None, user, since)

    async def changes(self, room: str, after_rev: int, limit: int) -> list[Message]:
        async with _unavailable():
            cursor = self.col.find(
                {"room": room, "rev": {"$gt": after_rev}},
                sort=[("rev", ASCENDING)],
                limit=check_limit(limit),
            )
            docs = await cursor.to_list()
        return [_message(d) for d in docs]

    async def last_rev(self, room: str) -> int:
        async with _unavailable():
            doc = await self.col.find_one(
                {"room": room, "rev": {"$gt": 0}}, sort=[("rev", DESCENDING)], projection={"rev": 1}
            )
        return int(doc["rev"]) if doc else 0


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

    async def setup(self) -> None:
        async with _unavailable():
            await self.db["users"].create_index("login_key", unique=True, name="login_key")
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
            await self.db["reads"].create_index(
                [("user", ASCENDING), ("room", ASCENDING)], unique=True, name="user_room"
            )
        await self.rooms.ensure("general", "General")

    async def ping(self) -> None:
        async with _unavailable():
            await self.db.command("ping")

    async def close(self) -> None:
        await self.client.close()
