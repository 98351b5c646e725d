"""Search on MongoDB: each message keeps its normalised `terms`, under a multikey index.

No `$text` index (SecantusDB, the tests' server, has none, and MongoDB's own neither folds
Cyrillic accents nor splits CJK): the index narrows by every term (`$all`), a prefix by an
anchored regex on the terms, and phrases and excluded phrases are checked on each candidate.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from storage.base import MAX_ROOMS, OPEN, Message, StorageUnavailable, check_limit
from storage.search import Found, Query, QueryError, Search, matches, terms

log = logging.getLogger(__name__)

Doc = dict[str, Any]
OPEN_ROOMS_MAX = 10_000  # open rooms searched at once
SCAN_MAX = 2_000  # candidates checked per page; past it the page ends with has_more
CHECK_CHARS_MAX = 200_000  # characters of candidates checked per page, likewise
BACKFILL_BATCH = 1_000
INDEXED = "search_indexed"  # the config document saying every older message has its terms


def index_terms(text: str) -> list[str]:
    """Return the distinct terms a message document keeps (what `$all` needs)."""
    return sorted(set(terms(text)))


def cursor_id(before: str | None) -> ObjectId | None:
    """Return the message id a cursor names (None: past the newest)."""
    if before is None:
        return None
    try:
        return ObjectId(before)
    except (InvalidId, TypeError):
        raise QueryError("before must be a cursor from an earlier page of results.") from None


class MongoSearch(Search):
    """Search over the messages collection's `terms`."""

    def __init__(self, db: AsyncDatabase[Doc], to_message: Callable[[Doc], Message]) -> None:
        self.db = db
        self.col = db["messages"]
        self.to_message = to_message

    async def _rooms(self, user: str, room: str | None) -> list[str]:
        """Return the slugs of the rooms searched: the one asked, or all the person may see."""
        rooms, members = self.db["rooms"], self.db["members"]
        if room is not None:
            doc = await rooms.find_one({"_id": room}, projection={"kind": 1})
            if doc is None:
                return []
            if doc.get("kind", OPEN) == OPEN:
                return [room]
            return [room] if await members.find_one({"room": room, "user": user}) else []
        mine = await members.find({"user": user}, projection={"room": 1}, limit=MAX_ROOMS).to_list()
        open_rooms = await rooms.find(
            {"kind": {"$in": [OPEN, None]}}, projection={"_id": 1}, limit=OPEN_ROOMS_MAX
        ).to_list()
        return [d["_id"] for d in open_rooms] + [d["room"] for d in mine]

    def _filter(self, query: Query, rooms: list[str], before: ObjectId | None) -> Doc:
        wanted = sorted({t for p in query.phrases for t in p})
        single = sorted({p[0] for p in query.excluded if len(p) == 1})
        conditions: list[Doc] = [{"room": {"$in": rooms}}, {"deleted": {"$ne": True}}]
        if wanted:
            conditions.append({"terms": {"$all": wanted}})
        if query.prefix is not None:
            conditions.append({"terms": {"$regex": "^" + re.escape(query.prefix)}})
        if single:
            conditions.append({"terms": {"$nin": single}})
        if query.author is not None:
            conditions.append({"user": query.author})
        if before is not None:
            conditions.append({"_id": {"$lt": before}})
        return {"$and": conditions}

    async def messages(
        self, user: str, query: Query, room: str | None, before: str | None, limit: int
    ) -> Found:
        check_limit(limit)
        start = cursor_id(before)
        found: list[Message] = []
        last: ObjectId | None = None
        try:
            rooms = await self._rooms(user, room)
            if not rooms:
                return Found([], False, None)
            cursor = self.col.find(
                self._filter(query, rooms, start),
                sort=[("_id", DESCENDING)],
                limit=SCAN_MAX,
                batch_size=min(SCAN_MAX, 4 * (limit + 1)),
            )
            scanned = checked = 0
            async for doc in cursor:
                checked += len(doc["text"])
                if checked > CHECK_CHARS_MAX and scanned:  # checked in Python, on the loop
                    scanned = SCAN_MAX  # the page ends before this one: the cursor goes on
                    break
                scanned += 1
                last = doc["_id"]
                if matches(query, doc["text"]):
                    found.append(self.to_message(doc))
                    if len(found) > limit:
                        break
            await cursor.close()
        except PyMongoError as exc:
            raise StorageUnavailable(f"MongoDB failed: {exc}") from exc
        if len(found) > limit:
            return Found(found[:limit], True, found[limit - 1].id)
        if scanned >= SCAN_MAX and last is not None:  # candidates left unchecked: go on from here
            return Found(found, True, str(last))
        return Found(found, False, None)

    async def setup(self) -> None:
        """Create the index; give every message stored before it its terms, once."""
        await self.col.create_index([("terms", ASCENDING), ("_id", DESCENDING)], name="terms")
        config = self.db["config"]
        if await config.find_one({"_id": INDEXED}) is not None:
            return
        started, done, last = time.monotonic(), 0, None
        log.info("search: indexing the stored messages")
        while True:
            query: Doc = {} if last is None else {"_id": {"$gt": last}}
            docs = await self.col.find(
                query,
                projection={"text": 1, "deleted": 1, "terms": 1},
                sort=[("_id", ASCENDING)],
                limit=BACKFILL_BATCH,
            ).to_list()
            if not docs:
                break
            updates = [
                # Only a document still without terms: an edit meanwhile has set its own.
                UpdateOne(
                    {"_id": d["_id"], "terms": {"$exists": False}},
                    {"$set": {"terms": [] if d.get("deleted") else index_terms(d["text"])}},
                )
                for d in docs
                if "terms" not in d
            ]
            if updates:
                await self.col.bulk_write(updates, ordered=False)
            done += len(docs)
            last = docs[-1]["_id"]
            log.info("search: indexed %d messages (%.0f s)", done, time.monotonic() - started)
        await config.update_one({"_id": INDEXED}, {"$set": {"at": time.time()}}, upsert=True)
