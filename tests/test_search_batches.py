"""SQLite's search index filled in batches after each message's write, not in it: every stored
message is found all the same, edits and deletes of ones not indexed yet included, whichever
process stored them, and what a stopped process left unindexed is indexed on the next start."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from typing import Any

import pytest

import storage.sqlite_search as sqlite_search
from settings import Settings
from storage import open_store
from storage.search import parse
from storage.sqlite import SqliteStore

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # any message may be edited


def indexed(settings: Settings) -> set[int]:
    """Return the rowids in the index, read from the file by a connection of its own."""
    with sqlite3.connect(settings.data_dir / "chat.sqlite3") as conn:
        return {row[0] for row in conn.execute("SELECT rowid FROM message_search")}


async def found(store: Any, q: str) -> list[str]:
    result = await store.search.messages("bob", parse(q), None, None, 20)
    return [m.text for m in result.messages]


@pytest.fixture
async def store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr("storage.sqlite_search.INDEX_DELAY", 3600.0)  # no batch unless asked
    opened = open_store(settings)
    assert isinstance(opened, SqliteStore)
    await opened.setup()
    yield opened
    await opened.close()


async def test_a_message_is_not_indexed_in_its_own_write_but_found_by_a_search(
    store: Any, settings: Settings
) -> None:
    message, _ = await store.messages.add("general", "alice", "lantern by the door", "c1")
    assert int(message.id) not in indexed(settings)  # its write did not index it
    assert await found(store, "lantern") == ["lantern by the door"]
    assert int(message.id) in indexed(settings)


async def test_stored_messages_are_indexed_soon_without_a_search(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storage.sqlite_search.INDEX_DELAY", 0.01)
    store = open_store(settings)
    await store.setup()
    try:
        ids = set()
        for i in range(2):
            message, _ = await store.messages.add("general", "alice", f"m{i}", f"c{i}")
            ids.add(int(message.id))
        for _ in range(200):  # bounded: up to ~2 s
            if ids <= indexed(settings):
                break
            await asyncio.sleep(0.01)
        assert ids <= indexed(settings)
    finally:
        await store.close()


async def test_edits_and_deletes_before_the_batch_are_searched_as_they_are_now(
    store: Any,
) -> None:
    edited, _ = await store.messages.add("general", "alice", "kettle whistles", "c1")
    deleted, _ = await store.messages.add("general", "alice", "kettle boils", "c2")
    await store.messages.change("general", edited.seq, "alice", "teapot whistles", SINCE)
    await store.messages.change("general", deleted.seq, "alice", None, SINCE)
    assert await found(store, "kettle") == []
    assert await found(store, "teapot") == ["teapot whistles"]
    assert await found(store, "boils") == []
    # Once indexed, a change goes into the index in its own write, as before.
    await store.messages.change("general", edited.seq, "alice", "samovar whistles", SINCE)
    assert await found(store, "teapot") == []
    assert await found(store, "samovar") == ["samovar whistles"]
    await store.messages.change("general", edited.seq, "alice", None, SINCE)
    assert await found(store, "whistles") == []


async def test_messages_another_process_stored_are_found_here(
    store: Any, settings: Settings
) -> None:
    other = open_store(settings)  # another process's store on the same file
    await other.setup()
    try:
        await other.messages.add("general", "carol", "from the other process", "c1")
    finally:
        await other.close()
    assert await found(store, "other") == ["from the other process"]


async def test_what_a_stopped_process_left_unindexed_is_indexed_on_the_next_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storage.sqlite_search.INDEX_DELAY", 3600.0)
    store = open_store(settings)
    await store.setup()
    try:
        message, _ = await store.messages.add("general", "alice", "left behind", "c1")
    finally:
        await store.close()
    assert int(message.id) not in indexed(settings)
    again = open_store(settings)
    await again.setup()
    try:
        assert int(message.id) in indexed(settings)
    finally:
        await again.close()


async def test_a_long_backlog_is_indexed_in_bounded_batches(
    store: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = sqlite_search.INDEX_PENDING.replace(f"LIMIT {sqlite_search.INDEX_BATCH}", "LIMIT 2")
    assert limited != sqlite_search.INDEX_PENDING
    monkeypatch.setattr("storage.sqlite_search.INDEX_PENDING", limited)
    for i in range(5):
        await store.messages.add("general", "alice", f"backlog item {i}", f"c{i}")
    assert len(await found(store, "backlog")) == 5
