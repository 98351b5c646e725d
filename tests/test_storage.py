"""The storage contract: the same tests against SQLite, SecantusDB (and real MongoDB if given)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import storage.base
from settings import Settings
from storage import open_store
from storage.base import ChangeRefused, LoginTaken, RoomTaken, StorageUnavailable, Store, now
from storage.sqlite import MIGRATIONS, SCHEMA, SqliteStore


async def test_setup_creates_general(store: Store) -> None:
    room = await store.rooms.find("general")
    assert room is not None and room.name == "General"


async def test_setup_is_repeatable(store: Store, settings: Settings) -> None:
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


async def test_unknown_user_is_not_found(store: Store) -> None:
    await store.users.create("alice", "a@example.com", "hash")
    assert await store.users.find_by_login("bob") is None


async def test_login_unique_case_insensitive(store: Store) -> None:
    await store.users.create("alice", "a@example.com", "hash")
    with pytest.raises(LoginTaken):
        await store.users.create("ALICE", "b@example.com", "hash")


async def test_session_is_found_until_deleted(store: Store) -> None:
    user = await store.users.create("alice", "a@example.com", "hash")
    session = await store.sessions.create(user, 3600)
    found = await store.sessions.find(session.id)
    assert found is not None and found.user == user
    assert found.expires_at > dt.datetime.now(dt.UTC)
    await store.sessions.delete(session.id)
    assert await store.sessions.find(session.id) is None


async def test_never_issued_session_is_not_found(store: Store) -> None:
    assert await store.sessions.find("never-issued") is None


async def test_expired_session_is_not_found(store: Store) -> None:
    user = await store.users.create("alice", "a@example.com", "hash")
    session = await store.sessions.create(user, -1)
    assert await store.sessions.find(session.id) is None


async def test_room_ensure_is_idempotent(store: Store) -> None:
    first = await store.rooms.ensure("dev", "Dev")
    second = await store.rooms.ensure("dev", "Other name")
    assert first == second


async def test_unknown_room_is_not_found(store: Store) -> None:
    assert await store.rooms.find("nope") is None


def count_room_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Note the slug of every room read from the database, in the list returned."""
    reads: list[str] = []
    load = store.rooms._load

    async def counted(slug: str) -> Any:
        reads.append(slug)
        return await load(slug)

    monkeypatch.setattr(store.rooms, "_load", counted)
    return reads


async def test_a_room_once_found_is_not_read_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.rooms.create("dev", "Dev")
    reads = count_room_reads(store, monkeypatch)
    for _ in range(3):
        assert (await store.rooms.find("dev")).name == "Dev"  # type: ignore[union-attr]
    assert reads == ["dev"]


async def test_a_room_not_found_is_looked_for_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A room that did not exist is looked for again: it may have been made since.
    reads = count_room_reads(store, monkeypatch)
    assert await store.rooms.find("late") is None
    await store.rooms.create("late", "Late")
    assert (await store.rooms.find("late")).name == "Late"  # type: ignore[union-attr]
    assert reads == ["late", "late"]


async def test_rooms_kept_in_memory_are_bounded(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Memory holds a bounded number of rooms: past it, the first found is read again.
    for slug in ("dev", "late", "third"):
        await store.rooms.create(slug, slug.title())
    monkeypatch.setattr(storage.base, "ROOMS_KEPT", 2)
    reads = count_room_reads(store, monkeypatch)
    assert await store.rooms.find("dev") is not None
    assert await store.rooms.find("late") is not None
    assert await store.rooms.find("third") is not None
    assert await store.rooms.find("dev") is not None
    assert reads == ["dev", "late", "third", "dev"]


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
    assert await store.messages.last_seq("general") == 1


async def test_client_id_is_per_sender(store: Store) -> None:
    await store.messages.add("general", "alice", "hello", "c1")
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


async def ten_messages(store: Store) -> None:
    """Add messages 1 to 10 to general."""
    for i in range(1, 11):
        await store.messages.add("general", "alice", f"m{i}", f"c{i}")


async def test_before_pages_back_to_the_first(store: Store) -> None:
    await ten_messages(store)
    latest = await store.messages.before("general", None, 3)
    assert [m.seq for m in latest] == [8, 9, 10]
    older = await store.messages.before("general", 8, 3)
    assert [m.seq for m in older] == [5, 6, 7]
    first = await store.messages.before("general", 3, 5)
    assert [m.seq for m in first] == [1, 2]


async def test_after_pages_forward_to_the_last(store: Store) -> None:
    await ten_messages(store)
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


async def test_room_create_is_unique_by_slug(store: Store) -> None:
    room = await store.rooms.create("dev-talk", "Dev talk")
    assert await store.rooms.find("dev-talk") == room
    with pytest.raises(RoomTaken):
        await store.rooms.create("dev-talk", "Dev Talk!")
    with pytest.raises(RoomTaken):
        await store.rooms.create("general", "General")


async def test_room_activity_most_recent_first(store: Store) -> None:
    await store.rooms.create("quiet", "Quiet")
    await store.rooms.create("busy", "Busy")
    await asyncio.sleep(0.01)
    for i in range(3):
        await store.messages.add("general", "alice", f"m{i}", f"c{i}")
    await asyncio.sleep(0.01)
    last, _ = await store.messages.add("busy", "alice", "latest", "c9")
    activity = await store.rooms.activity("alice", 10)
    assert [a.room.slug for a in activity] == ["busy", "general", "quiet"]
    busy, general, quiet = activity
    assert (busy.last_seq, busy.last_at) == (1, last.created_at)
    assert general.last_seq == 3
    assert (quiet.last_seq, quiet.last_at) == (0, None)
    assert quiet.last_activity == quiet.room.created_at


async def test_room_activity_is_limited(store: Store) -> None:
    await store.rooms.create("quiet", "Quiet")
    await store.rooms.create("busy", "Busy")
    assert len(await store.rooms.activity("alice", 2)) == 2


SINCE_15_MINUTES = dt.timedelta(minutes=15)


Changed = tuple[storage.base.Message, storage.base.Message, storage.base.Message]


async def edit_first_delete_second(store: Store) -> Changed:
    """Add messages 1 and 2 to general, edit 1, delete 2; return 1 as added, then both changes."""
    first, _ = await store.messages.add("general", "alice", "hello", "c1")
    await store.messages.add("general", "alice", "world", "c2")
    since = now() - SINCE_15_MINUTES
    edited = await store.messages.change("general", 1, "alice", "hello again", since)
    deleted = await store.messages.change("general", 2, "alice", None, since)
    return first, edited, deleted


async def test_nothing_changed_is_rev_0(store: Store) -> None:
    await store.messages.add("general", "alice", "hello", "c1")
    await store.messages.add("general", "alice", "world", "c2")
    assert await store.messages.last_rev("general") == 0


async def test_edit_own_message_takes_the_next_rev(store: Store) -> None:
    first, edited, _ = await edit_first_delete_second(store)
    assert (edited.text, edited.deleted) == ("hello again", False)
    assert (edited.seq, edited.id) == (1, first.id)
    assert edited.edited_at is not None and edited.rev >= 1


async def test_delete_own_message_takes_the_next_rev(store: Store) -> None:
    _, edited, deleted = await edit_first_delete_second(store)
    assert (deleted.text, deleted.deleted) == ("", True)
    assert deleted.rev > edited.rev
    assert await store.messages.last_rev("general") == deleted.rev
    assert await store.messages.heads("general") == (2, deleted.rev)
    assert await store.messages.heads("other") == (0, 0)


async def test_history_shows_changes_under_the_same_seq(store: Store) -> None:
    # History shows the change, under the same seq; nothing new is numbered.
    await edit_first_delete_second(store)
    stored = await store.messages.after("general", 0, 10)
    assert [(m.seq, m.text, m.deleted) for m in stored] == [
        (1, "hello again", False),
        (2, "", True),
    ]
    assert await store.messages.last_seq("general") == 2


async def test_changes_are_listed_after_a_rev_in_rev_order(store: Store) -> None:
    _, edited, deleted = await edit_first_delete_second(store)
    changes = await store.messages.changes("general", 0, 10)
    assert [m.seq for m in changes] == [1, 2]
    assert [m.seq for m in await store.messages.changes("general", edited.rev, 10)] == [2]
    assert await store.messages.changes("general", deleted.rev, 10) == []
    assert await store.messages.changes("other", 0, 10) == []


@pytest.mark.parametrize(
    ("seq", "user", "window", "code"),
    [
        (9, "alice", 15, "not_found"),
        (1, "bob", 15, "forbidden"),
        (1, "alice", -1, "too_late"),
        (2, "alice", 15, "deleted"),
    ],
)
async def test_change_refused_with_the_reason(
    store: Store, seq: int, user: str, window: int, code: str
) -> None:
    await store.messages.add("general", "alice", "hello", "c1")
    await store.messages.add("general", "alice", "gone", "c2")
    await store.messages.change("general", 2, "alice", None, now() - SINCE_15_MINUTES)
    with pytest.raises(ChangeRefused) as refused:
        await store.messages.change("general", seq, user, "x", now() - dt.timedelta(minutes=window))
    assert refused.value.code == code
    (kept,) = await store.messages.before("general", 2, 10)
    assert kept.text == "hello" and kept.edited_at is None


async def test_read_marks_only_move_forward(store: Store) -> None:
    await store.rooms.create("dev", "Dev")
    assert await store.reads.of_user("alice") == {}
    await store.reads.mark("alice", "general", 5)
    await store.reads.mark("alice", "general", 3)
    await store.reads.mark("alice", "dev", 1)
    await store.reads.mark("bob", "general", 9)
    assert await store.reads.of_user("alice") == {"general": 5, "dev": 1}
    await store.reads.mark("alice", "general", 7)
    assert (await store.reads.of_user("alice"))["general"] == 7


async def test_read_marks_in_a_batch_only_move_forward(store: Store) -> None:
    await store.rooms.create("dev", "Dev")
    await store.reads.mark("alice", "general", 7)
    await store.reads.mark("alice", "dev", 1)
    await store.reads.mark_many([("alice", "general", 6), ("alice", "dev", 4), ("carol", "dev", 2)])
    assert await store.reads.of_user("alice") == {"general": 7, "dev": 4}
    assert await store.reads.of_user("carol") == {"dev": 2}
    await store.reads.mark_many([])


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_closed_store_reports_unavailable(store: Store) -> None:
    await store.close()
    with pytest.raises(StorageUnavailable):
        await store.ping()


async def test_closed_store_refuses_writes(store: Store) -> None:
    await store.close()
    with pytest.raises(StorageUnavailable):
        await store.messages.add("general", "alice", "x", "c1")


async def test_sqlite_file_from_the_first_release_is_migrated(tmp_path: Path) -> None:
    # The first release's tables, with a message in them and no user_version.
    path = tmp_path / "chat.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.execute("INSERT INTO rooms VALUES ('general', 'General', 0)")
        conn.execute("INSERT INTO messages VALUES (1, 'general', 1, 'alice', 'old', 0, 'c1')")
    store = SqliteStore(path)
    await store.setup()
    try:
        (old,) = await store.messages.after("general", 0, 10)
        assert (old.text, old.edited_at, old.deleted, old.rev) == ("old", None, False, 0)
        await store.reads.mark("alice", "general", 1)
        new, _ = await store.messages.add("general", "alice", "new", "c2")
        assert new.seq == 2
    finally:
        await store.close()
    again = SqliteStore(path)  # a second start applies nothing twice
    await again.setup()
    await again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_write_waits_off_the_loop_for_another_process(
    store: Store, settings: Settings
) -> None:
    # A raw connection holding the write lock stands for another process mid-transaction.
    other = sqlite3.connect(settings.data_dir / "chat.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        adding = asyncio.create_task(store.messages.add("general", "alice", "waits", "c1"))
        # The event loop still runs while the write waits (a blocked loop would not get here
        # before the write's 5-second busy timeout gave up).
        await asyncio.sleep(0.3)
        assert not adding.done()
    finally:
        other.execute("COMMIT")
        other.close()
    message, created = await adding
    assert created and message.seq == 1


async def _checkpoint_finished(db: Any) -> None:
    """Wait (10 s at most) for the checkpoint task, if one is running, to finish."""
    if db._checkpoint is not None:
        await asyncio.wait_for(db._checkpoint, 10)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_wal_is_checkpointed_as_messages_are_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The event loop's connection never checkpoints; without these the WAL would only grow.
    monkeypatch.setattr("storage.sqlite_engine.CHECKPOINT_EVERY", 10)
    db = store.db  # type: ignore[attr-defined]
    for i in range(200):
        await store.messages.add("general", "alice", f"m{i}", f"c{i}")
        await _checkpoint_finished(db)  # as when messages come spaced out
    # Frames now in the WAL: a few writes' worth, where 200 writes make ~700 frames.
    (_, frames, _) = (await db.fetch("PRAGMA wal_checkpoint(PASSIVE)"))[0]
    assert 0 <= frames < 150
    assert len(await store.messages.after("general", 0, 500)) == 200


def _wal_salts(db: Any) -> bytes:
    """The WAL header's salts: SQLite draws new ones each time it restarts the WAL."""
    with open(f"{db.path}-wal", "rb") as wal:
        return wal.read(32)[16:24]


def _writes_on_the_thread(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Note the SQL of every write handed to the writing thread, in the list returned."""
    on_thread: list[str] = []
    write_waiting = db._write_waiting

    async def spy(sql: str, params: tuple[Any, ...]) -> list[Any]:
        on_thread.append(sql)
        return await write_waiting(sql, params)

    monkeypatch.setattr(db, "_write_waiting", spy)
    return on_thread


async def _write_until_a_checkpoint_starts(store: Store) -> None:
    """Add messages until the writes counted since the last checkpoint start one (<= 10)."""
    db = store.db  # type: ignore[attr-defined]
    for i in range(10):
        await store.messages.add("general", "alice", f"m{i}", f"c{i}")
        if db._checkpoint is not None:
            return
    raise AssertionError("no checkpoint after 10 writes")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_wal_restarts_off_the_event_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first write after a complete checkpoint restarts the WAL and syncs its header to
    # disk (an fdatasync, 80 ms once on this CI machine): it must not be a message's write,
    # which runs on the event loop, but a write on the writing thread right after the checkpoint.
    monkeypatch.setattr("storage.sqlite_engine.CHECKPOINT_EVERY", 10)
    db = store.db  # type: ignore[attr-defined]
    for conn in (db._reader, db._writer):  # only the checkpoint task checkpoints
        rows = await conn.execute_fetchall("PRAGMA wal_autocheckpoint")
        assert [tuple(r) for r in rows] == [(0,)]
    await _write_until_a_checkpoint_starts(store)
    before = _wal_salts(db)
    await _checkpoint_finished(db)
    restarted = _wal_salts(db)
    assert restarted != before  # the checkpoint was complete and the WAL restarted already
    await store.messages.add("general", "alice", "next", "c-next")
    assert _wal_salts(db) == restarted  # the message was appended: no restart on the loop
    assert (await store.messages.last_seq("general")) == len(
        await store.messages.after("general", 0, 50)
    )


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_writes_during_a_checkpoint_go_to_the_writing_thread(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Until the checkpoint task has restarted the WAL, a message write on the event loop could
    # be the one that restarts it: such writes go to the writing thread meanwhile.
    monkeypatch.setattr("storage.sqlite_engine.CHECKPOINT_EVERY", 10)
    db = store.db  # type: ignore[attr-defined]
    on_thread = _writes_on_the_thread(db, monkeypatch)
    await _write_until_a_checkpoint_starts(store)
    assert on_thread == []
    last = await store.messages.last_seq("general")
    message, created = await store.messages.add("general", "alice", "during", "c-during")
    assert created and message.seq == last + 1
    assert on_thread and "INSERT INTO messages" in on_thread[0]
    await _checkpoint_finished(db)
    seen = len(on_thread)
    await store.messages.add("general", "alice", "after", "c-after")
    assert len(on_thread) == seen  # back on the event loop's connection


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_wal_restarts_while_messages_keep_coming(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes made during a checkpoint leave it incomplete, and only a complete one lets the WAL
    # start over: under steady load the file would grow without end (gigabytes an hour at a few
    # hundred messages a second). The checkpoint's second pass holds this process's writes back.
    monkeypatch.setattr("storage.sqlite_engine.CHECKPOINT_EVERY", 10)
    db = store.db  # type: ignore[attr-defined]

    async def sender(name: str) -> None:
        for i in range(100):
            await store.messages.add("general", name, f"m{i}", f"c{i}")

    await asyncio.gather(*(sender(name) for name in ("alice", "bob", "carol")))
    await _checkpoint_finished(db)
    # 300 writes make ~1000 frames; only those since the last restart are left.
    (_, frames, _) = (await db.fetch("PRAGMA wal_checkpoint(PASSIVE)"))[0]
    assert 0 <= frames < 150
    assert await store.messages.last_seq("general") == 300


# Run in another process: which lock a process holds on the WAL index's "dead man switch" byte
# (offset 128 of the `-shm` file), held read-locked by every process with the database open.
# One that finds it free takes it, truncates the index and rebuilds it from the WAL.
WAL_INDEX_DMS_PROBE = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
ask = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)
kind, _, _, _, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, ask))
names = {fcntl.F_RDLCK: "read-locked", fcntl.F_WRLCK: "write-locked", fcntl.F_UNLCK: "unlocked"}
print(names[kind], pid)
"""


def _wal_index_lock(db: Any) -> str:
    """Say, as another process sees it, who holds the WAL index's dead man switch."""
    probe = [sys.executable, "-c", WAL_INDEX_DMS_PROBE, f"{db.path}-shm"]
    return subprocess.run(probe, capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_keeps_its_wal_index_locks_while_it_writes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine reads the WAL index itself (see the test below). Closing any descriptor of the
    # `-shm` file drops every POSIX lock the process holds on it, SQLite's own included: a backup
    # or a second worker opening the database would then rebuild the index under this process,
    # which died of it (SIGBUS) in a backup under load.
    monkeypatch.setattr("storage.sqlite_engine.CHECKPOINT_EVERY", 10)
    db = store.db  # type: ignore[attr-defined]
    held = f"read-locked {os.getpid()}\n"
    assert _wal_index_lock(db) == held
    await store.messages.add("general", "alice", "m1", "c1")  # the first write reads the index
    assert _wal_index_lock(db) == held
    await _write_until_a_checkpoint_starts(store)
    await _checkpoint_finished(db)
    await store.messages.add("general", "alice", "after", "c-after")
    assert _wal_index_lock(db) == held


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_wal_restart_after_another_process_checkpoint_is_off_the_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several processes may share the file: when another one's checkpoint has completed, the
    # next write restarts the WAL (and syncs its header) whoever makes it. This process sees
    # that in the shared WAL index and makes that write on the writing thread.
    db = store.db  # type: ignore[attr-defined]
    on_thread = _writes_on_the_thread(db, monkeypatch)
    await store.messages.add("general", "alice", "m1", "c1")
    assert on_thread == []
    other = sqlite3.connect(db.path, isolation_level=None)  # as another process would
    try:
        (_, frames, copied) = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        other.close()
    assert frames and frames == copied  # complete: the next write restarts the WAL
    before = _wal_salts(db)
    await store.messages.add("general", "alice", "m2", "c2")
    assert len(on_thread) == 1 and "INSERT INTO messages" in on_thread[0]
    assert _wal_salts(db) != before  # restarted, by that write on the thread
    await store.messages.add("general", "alice", "m3", "c3")
    assert len(on_thread) == 1  # then back on the event loop's connection
    assert await store.messages.last_seq("general") == 3
