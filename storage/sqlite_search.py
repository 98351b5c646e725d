"""Search on SQLite: an FTS5 index of the messages' terms, filled in batches, edits by triggers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from storage.base import Message, StorageUnavailable, check_limit
from storage.search import Found, Query, QueryError, Search, index_text
from storage.sqlite_engine import SqliteDb

log = logging.getLogger(__name__)

FUNCTIONS = {"search_terms": index_text}  # every connection has it: the triggers call it
BACKFILL_BATCH = 20_000  # message ids indexed per transaction when an existing store upgrades
# New messages are indexed in batches this many seconds after the first of them is stored, and
# before any search: indexing each one in its own write (a trigger) cost ~140 us of a cold CPU
# a message at 40 messages/s, a batch of 40 a few us each. At most INDEX_BATCH a statement
# (the event loop runs them: the terms of a message of 2,000 characters take ~1 ms, of a short
# one ~30 us), at most INDEX_ROUNDS statements a call.
INDEX_DELAY = 1.0
INDEX_BATCH = 25
INDEX_ROUNDS = 4000

# The migration (one of storage/sqlite.py's MIGRATIONS): the index, and how far an upgraded
# store's older messages are indexed. The `ascii` tokenizer splits the terms at the spaces
# index_text puts between them and keeps every other character; the terms are normalised
# already. No column sizes: they serve only ranking, and results are by date.
MIGRATION = """
CREATE VIRTUAL TABLE IF NOT EXISTS message_search
    USING fts5(terms, tokenize = 'ascii', columnsize = 0);
CREATE TABLE IF NOT EXISTS search_backfill (next_id INTEGER NOT NULL, last_id INTEGER NOT NULL);
INSERT INTO search_backfill SELECT 1, COALESCE(MAX(id), 0) FROM messages
"""
# Created on every start (their bodies hold semicolons, which the migrations are split at).
# Messages above the index's highest rowid are not indexed yet (INDEX_PENDING indexes them in
# id order, with their text as it is then); an edit or delete of one at or below it changes
# the index in the writing statement itself. So once a search has indexed what is pending, an
# edit is found by its new text only and a deleted message by nothing. The insert trigger of
# earlier releases is dropped.
OLD_TRIGGERS = ("message_search_add", "message_search_change")
TRIGGERS = (
    """
    CREATE TRIGGER IF NOT EXISTS message_search_change AFTER UPDATE OF text, deleted ON messages
    WHEN old.id <= (SELECT MAX(rowid) FROM message_search)
    BEGIN
        DELETE FROM message_search WHERE rowid = old.id;
        INSERT INTO message_search (rowid, terms)
        SELECT new.id, search_terms(new.text) WHERE new.deleted = 0;
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS message_search_remove AFTER DELETE ON messages BEGIN
        DELETE FROM message_search WHERE rowid = old.id;
    END
    """,
)
# One statement, so it needs no transaction of its own and runs on the event loop's connection.
INDEX_PENDING = f"""
INSERT INTO message_search (rowid, terms)
SELECT id, search_terms(text) FROM messages
WHERE id > (SELECT COALESCE(MAX(rowid), 0) FROM message_search) AND deleted = 0
ORDER BY id LIMIT {INDEX_BATCH}
"""
PENDING = """
SELECT EXISTS (SELECT 1 FROM messages
    WHERE id > (SELECT COALESCE(MAX(rowid), 0) FROM message_search) AND deleted = 0)
"""
BACKFILL = """
INSERT INTO message_search (rowid, terms)
SELECT id, search_terms(text) FROM messages m
WHERE id >= ?1 AND id < ?2 AND deleted = 0
    AND NOT EXISTS (SELECT 1 FROM message_search WHERE rowid = m.id)
"""
# The index drives (CROSS JOIN keeps it the outer loop), newest first; each hit is checked
# against the rooms the person may see: the open ones and those they are a member of. At most
# SCAN_MAX hits are checked for one page, so a common word in a quiet room or from a quiet
# author cannot keep the read connection busy: past them, the page ends and a cursor goes on.
SCAN_MAX = 2_000
CANDIDATES = """
SELECT rowid AS id FROM message_search WHERE message_search MATCH ?1 AND rowid < ?2
ORDER BY rowid DESC LIMIT {scan}
"""
SEARCH = f"""
SELECT m.* FROM ({CANDIDATES}) s CROSS JOIN messages m ON m.id = s.id
WHERE m.deleted = 0
    AND m.room IN (SELECT slug FROM rooms WHERE kind = 'open'
                   UNION ALL SELECT room FROM room_members WHERE user = ?3)
    {{filters}}
ORDER BY s.id DESC LIMIT ?4
"""
SCANNED = f"SELECT COUNT(*) AS n, MIN(id) AS last FROM ({CANDIDATES})"


def _phrase(terms: tuple[str, ...]) -> str:
    return '"' + " ".join(terms).replace('"', '""') + '"'


def fts_query(query: Query) -> str:
    """Return the FTS5 expression of a query: every phrase, the prefix, minus the exclusions."""
    parts = [_phrase(p) for p in query.phrases]
    if query.prefix is not None:
        parts.append(_phrase((query.prefix,)) + "*")
    expression = " AND ".join(parts)
    if query.excluded:
        expression = f"({expression}) NOT ({' OR '.join(_phrase(p) for p in query.excluded)})"
    return expression


def cursor_id(before: str | None) -> int:
    """Return the message id a cursor names (none: past the newest)."""
    if before is None:
        return 2**62
    if not (before.isascii() and before.isdigit()) or len(before) > 16:
        raise QueryError("before must be a cursor from an earlier page of results.")
    return int(before)


class SqliteSearch(Search):
    """Search with the message_search FTS5 table."""

    def __init__(self, db: SqliteDb, to_message: Callable[[Any], Message]) -> None:
        self.db = db
        self.to_message = to_message
        self._soon: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def added(self) -> None:
        """Have the messages stored meanwhile indexed within INDEX_DELAY seconds (never waits)."""
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_later(INDEX_DELAY, self._index_soon)

    def _index_soon(self) -> None:
        self._soon = None
        task = asyncio.create_task(self._index_in_background())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _index_in_background(self) -> None:
        try:
            await self.index_pending()
        except StorageUnavailable as exc:  # the next batch, or the next search, goes on
            log.warning("search: new messages not indexed yet: %s", exc)

    async def index_pending(self) -> None:
        """Index every message stored (by any process) since the index's newest one."""
        for _ in range(INDEX_ROUNDS):
            if not (await self.db.fetch_one(PENDING))[0]:
                return
            try:
                await self.db.write_one(INDEX_PENDING, ())
            except sqlite3.Error as exc:  # a rowid indexed meanwhile by an older release
                raise StorageUnavailable(f"cannot index the new messages: {exc}") from exc
            await asyncio.sleep(0)  # a long backlog leaves the event loop free between batches

    async def close(self) -> None:
        """Stop the batches: what they would have indexed is indexed on the next start."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def messages(
        self, user: str, query: Query, room: str | None, before: str | None, limit: int
    ) -> Found:
        await self.index_pending()  # so that every message stored so far can be found
        filters, params = "", [fts_query(query), cursor_id(before), user, check_limit(limit) + 1]
        if room is not None:
            filters += " AND m.room = ?5"
            params.append(room)
        if query.author is not None:
            filters += f" AND m.user = ?{len(params) + 1}"
            params.append(query.author)
        rows = await self.db.fetch(SEARCH.format(filters=filters, scan=SCAN_MAX), params)
        found = [self.to_message(r) for r in rows[:limit]]
        if len(rows) > limit:
            return Found(found, True, found[-1].id)
        scanned = await self.db.fetch_one(SCANNED.format(scan=SCAN_MAX), params[:2])
        if scanned is not None and scanned["n"] >= SCAN_MAX:  # hits left unchecked: go on
            return Found(found, True, str(scanned["last"]))
        return Found(found, False, None)

    async def setup(self, conn: Any) -> None:
        """Create the triggers, inside the transaction that applied the migrations."""
        for name in OLD_TRIGGERS:
            await conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for trigger in TRIGGERS:
            await conn.execute(trigger)

    async def backfill(self) -> None:
        """Index the messages stored before the index was, a batch per transaction."""
        row = await self.db.fetch_one("SELECT next_id, last_id FROM search_backfill")
        if row is None:
            return
        next_id, last_id = int(row[0]), int(row[1])
        if next_id <= last_id:
            log.info("search: indexing messages %d to %d", next_id, last_id)
        started = time.monotonic()
        try:
            while next_id <= last_id:
                upto = min(next_id + BACKFILL_BATCH, last_id + 1)
                async with self.db.transaction() as conn:
                    await conn.execute(BACKFILL, (next_id, upto))
                    await conn.execute("UPDATE search_backfill SET next_id = ?", (upto,))
                next_id = upto
                log.info(
                    "search: indexed %d of %d messages (%.0f s)",
                    next_id - 1,
                    last_id,
                    time.monotonic() - started,
                )
            async with self.db.transaction() as conn:
                await conn.execute("DELETE FROM search_backfill")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot index the messages for search: {exc}") from exc
