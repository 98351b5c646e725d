"""Mentions, unread counts and notification levels in storage, on every backend."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from storage.base import UNREAD_CAP, Store
from storage.sqlite import MIGRATIONS, SqliteStore

LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


async def test_mentions_are_stored_and_read_back(store: Store) -> None:
    said, created = await store.messages.add("general", "alice", "hi @bob", "c1", mentions=("bob",))
    assert created and said.mentions == ("bob",)
    assert said.to_json()["mentions"] == ["bob"]
    (found,) = await store.messages.after("general", 0, 10)
    assert found.mentions == ("bob",)
    plain, _ = await store.messages.add("general", "alice", "hi", "c2")
    assert plain.mentions == () and plain.to_json()["mentions"] == []
    again, created = await store.messages.add("general", "alice", "hi @bob", "c1")
    assert not created and again.mentions == ("bob",)  # a re-send keeps what was stored


async def test_an_edit_replaces_the_mentions_and_a_delete_drops_them(store: Store) -> None:
    await store.messages.add("general", "alice", "hi @bob", "c1", mentions=("bob",))
    edited = await store.messages.change(
        "general", 1, "alice", "hi @carol", LONG_AGO, mentions=("carol",)
    )
    assert edited.mentions == ("carol",)
    assert (await store.messages.unread("bob", {"general": 0}))["general"] == (1, 0)
    assert (await store.messages.unread("carol", {"general": 0}))["general"] == (1, 1)
    deleted = await store.messages.change("general", 1, "alice", None, LONG_AGO)
    assert deleted.mentions == () and deleted.to_json()["mentions"] == []
    assert (await store.messages.unread("carol", {"general": 0}))["general"] == (1, 0)


async def test_unread_counts_others_messages_and_mentions_after_the_mark(store: Store) -> None:
    await store.rooms.ensure("dev", "Dev")
    await store.messages.add("general", "alice", "one", "c1")
    await store.messages.add("general", "bob", "two @alice", "c2", mentions=("alice",))
    await store.messages.add("general", "alice", "me @alice", "c3", mentions=("alice",))
    await store.messages.add("general", "bob", "four @alice", "c4", mentions=("alice",))
    await store.messages.add("dev", "bob", "dev", "c5")
    counts = await store.messages.unread("alice", {"general": 0, "dev": 0})
    assert counts == {"general": (2, 2), "dev": (1, 0)}  # her own messages are never unread
    assert await store.messages.unread("alice", {"general": 2, "dev": 1}) == {
        "general": (1, 1),
        "dev": (0, 0),
    }
    assert await store.messages.unread("alice", {}) == {}


async def test_unread_counts_stop_at_the_cap(store: Store) -> None:
    for i in range(UNREAD_CAP + 3):
        await store.messages.add("general", "bob", f"@alice {i}", f"c{i}", mentions=("alice",))
    assert await store.messages.unread("alice", {"general": 0}) == {
        "general": (UNREAD_CAP, UNREAD_CAP)
    }


async def test_notification_levels_are_stored_per_person_and_room(store: Store) -> None:
    assert await store.rooms.notify_levels("alice") == {}
    await store.rooms.set_notify("general", "alice", "nothing")
    await store.rooms.set_notify("dev", "alice", "all")
    await store.rooms.set_notify("general", "alice", "all")
    await store.rooms.set_notify("general", "bob", "mentions")
    assert await store.rooms.notify_levels("alice") == {"general": "all", "dev": "all"}
    assert await store.rooms.notify_levels("bob") == {"general": "mentions"}


async def test_sqlite_file_before_mentions_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    store = SqliteStore(path)
    await store.setup()
    await store.messages.add("general", "alice", "old @bob", "c1")
    await store.close()
    # Back to the release before mentions: drop what the last migration made.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE mentions")
        conn.execute("DROP TABLE notify")
        conn.execute("ALTER TABLE messages DROP COLUMN mentions")
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    again = SqliteStore(path)
    await again.setup()
    try:
        (old,) = await again.messages.after("general", 0, 10)
        assert old.mentions == () and old.to_json()["mentions"] == []
        new, _ = await again.messages.add("general", "bob", "@alice", "c2", mentions=("alice",))
        assert (await again.messages.unread("alice", {"general": 0}))["general"] == (1, 1)
        await again.rooms.set_notify("general", "alice", "nothing")
    finally:
        await again.close()
