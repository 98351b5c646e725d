"""The storage contract: the same tests against SQLite, SecantusDB (and real MongoDB if given)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from settings import Settings
from storage import open_store
from storage.base import LoginTaken, StorageUnavailable, Store


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """A set-up store on a throwaway database."""
    s = open_store(settings)
    await s.setup()
    yield s
    await s.close()


async def test_setup_is_repeatable_and_creates_general(store: Store, settings: Settings) -> None:
    await store.setup()
    room = await store.rooms.find("general")
    assert room is not None and room.name == "General"
    again = open_store(settings)
    await again.setup()
    await again.close()


async def test_user_create_and_find_case_insensitive(store: Store) -> None:
    user = await store.users.create("Alice", "a@example.com", "hash")
    found = await store.users.find_by_login("aLiCe")
    assert found == user
    assert found.login == "Alice"
    assert await store.users.find_by_login("bob") is None


async def test_login_unique_case_insensitive(store: Store) -> None:
    await store.users.create("alice", "a@example.com", "hash")
    with pytest.raises(LoginTaken):
        await store.users.create("ALICE", "b@example.com", "hash")


async def test_sessions_create_find_delete(store: Store) -> None:
    user = await store.users.create("alice", "a@example.com", "hash")
    session = await store.sessions.create(user, 3600)
    found = await store.sessions.find(session.id)
    assert found is not None and found.user == user
    assert found.expires_at > dt.datetime.now(dt.UTC)
    await store.sessions.delete(session.id)
    assert await store.sessions.find(session.id) is None
    assert await store.sessions.find("never-issued") is None


async def test_expired_session_is_not_found(store: Store) -> None:
    user = await store.users.create("alice", "a@example.com", "hash")
    session = await store.sessions.create(user, -1)
    assert await store.sessions.find(session.id) is None


async def test_room_ensure_is_idempotent(store: Store) -> None:
    first = await store.rooms.ensure("dev", "Dev")
    second = await store.rooms.ensure("dev", "Other name")
    assert first == second
    assert await store.rooms.find("nope") is None


async def test_messages_numbered_per_room(store: Store) -> None:
    await store.rooms.ensure("dev", "Dev")
    seqs = [
        (await store.messages.add("general", "alice", f"m{i}", f"c{i}"))[0].seq for i in range(3)
    ]
    other = (await store.messages.add("dev", "alice", "x", "c0"))[0]
    assert seqs == [1, 2, 3]
    assert other.seq == 1
    assert await store.messages.last_seq("general") == 3
    assert await store.messages.last_seq("dev") == 1


async def test_add_is_idempotent_on_client_id(store: Store) -> None:
    first, created = await store.messages.add("general", "alice", "hello", "c1")
    again, created_again = await store.messages.add("general", "alice", "changed", "c1")
    assert created and not created_again
    assert again == first
    other, created_other = await store.messages.add("general", "bob", "hello", "c1")
    assert created_other and other.seq == 2  # the key is per sender
    assert await store.messages.last_seq("general") == 2


async def test_message_fields_round_trip(store: Store) -> None:
    text = "<b>hi</b> ünïcødé 💬 \x00 nul"
    message, _ = await store.messages.add("general", "alice", text, "c1")
    (stored,) = await store.messages.after("general", 0, 10)
    assert stored == message
    assert stored.text == text
    assert stored.created_at.tzinfo is not None
    assert message.to_json()["created_at"].endswith("Z")


async def test_before_and_after_pages(store: Store) -> None:
    for i in range(1, 11):
        await store.messages.add("general", "alice", f"m{i}", f"c{i}")
    latest = await store.messages.before("general", None, 3)
    assert [m.seq for m in latest] == [8, 9, 10]
    older = await store.messages.before("general", 8, 3)
    assert [m.seq for m in older] == [5, 6, 7]
    first = await store.messages.before("general", 3, 5)
    assert [m.seq for m in first] == [1, 2]
    assert [m.seq for m in await store.messages.after("general", 7, 10)] == [8, 9, 10]
    assert [m.seq for m in await store.messages.after("general", 2, 2)] == [3, 4]
    assert await store.messages.after("general", 10, 5) == []


async def test_queries_are_bounded(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.messages.before("general", None, 0)
    with pytest.raises(ValueError):
        await store.messages.after("general", 0, 10_000)


async def test_concurrent_writers_get_gapless_unique_seqs(store: Store, settings: Settings) -> None:
    # A second store on the same database stands for a second process: no shared lock.
    other = open_store(settings)
    await other.setup()
    try:
        writes: list[Any] = []
        for i in range(40):
            s = store if i % 2 else other
            writes.append(s.messages.add("general", f"u{i % 4}", f"m{i}", f"c{i}"))
        results = await asyncio.gather(*writes)
    finally:
        await other.close()
    seqs = sorted(m.seq for m, created in results)
    assert all(created for _, created in results)
    assert seqs == list(range(1, 41))
    stored = await store.messages.after("general", 0, 100)
    assert [m.seq for m in stored] == list(range(1, 41))


async def test_concurrent_resends_store_once(store: Store) -> None:
    results = await asyncio.gather(
        *(store.messages.add("general", "alice", "once", "same-id") for _ in range(10))
    )
    assert sum(created for _, created in results) == 1
    assert {m.id for m, _ in results} == {results[0][0].id}
    assert await store.messages.last_seq("general") == 1


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_closed_store_reports_unavailable(store: Store) -> None:
    await store.close()
    with pytest.raises(StorageUnavailable):
        await store.ping()
        await store.messages.add("general", "alice", "x", "c1")
