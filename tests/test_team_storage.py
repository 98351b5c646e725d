"""The storage contract of a team's chat: roles, sessions, private and direct rooms, invitations."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from pymongo import MongoClient

from settings import Settings
from storage import open_store
from storage.base import (
    ADMIN,
    DIRECT,
    MEMBER,
    PRIVATE,
    ChangeRefused,
    LastAdmin,
    Store,
    login_skeleton,
    now,
)
from storage.sqlite import MIGRATIONS, SCHEMA, SqliteStore


async def make_users(store: Store, *logins: str) -> None:
    for login in logins:
        await store.users.create(login, f"{login}@example.com", "hash")


async def test_the_first_account_is_the_admin_and_later_ones_members(store: Store) -> None:
    assert not await store.users.exist()
    first = await store.users.create("alice", "a@example.com", "hash")
    second = await store.users.create("bob", "b@example.com", "hash")
    assert (first.role, second.role) == (ADMIN, MEMBER)
    assert await store.users.exist()
    assert [(u.login, u.role) for u in await store.users.list(10)] == [
        ("alice", ADMIN),
        ("bob", MEMBER),
    ]


async def test_of_accounts_created_at_once_on_an_empty_store_one_is_admin(store: Store) -> None:
    users = await asyncio.gather(
        *(store.users.create(f"user{n}", f"u{n}@example.com", "hash") for n in range(6))
    )
    assert [u.role for u in users].count(ADMIN) == 1
    listed = await store.users.list(10)
    assert [u.role for u in listed].count(ADMIN) == 1


async def test_admins_promote_and_demote_but_never_leave_none(store: Store) -> None:
    await make_users(store, "alice", "bob")
    assert (await store.users.set_role("bob", ADMIN)).role == ADMIN  # type: ignore[union-attr]
    assert (await store.users.set_role("ALICE", MEMBER)).role == MEMBER  # type: ignore[union-attr]
    with pytest.raises(LastAdmin):
        await store.users.set_role("bob", MEMBER)
    assert (await store.users.find_by_login("bob")).role == ADMIN  # type: ignore[union-attr]
    assert await store.users.set_role("nobody", ADMIN) is None


async def test_the_last_admin_cannot_be_deactivated(store: Store) -> None:
    await make_users(store, "alice", "bob")
    with pytest.raises(LastAdmin):
        await store.users.set_active("alice", False)
    assert (await store.users.find_by_login("alice")).active  # type: ignore[union-attr]


async def test_a_deactivated_account_keeps_its_row_but_no_session_finds_it(store: Store) -> None:
    await make_users(store, "alice", "bob")
    bob = await store.users.find_by_login("bob")
    assert bob is not None
    session = await store.sessions.create(bob, 3600, "Firefox on Linux")
    assert (await store.users.set_active("bob", False)).active is False  # type: ignore[union-attr]
    assert await store.sessions.find(session.id) is None
    assert await store.users.deactivated(["alice", "bob", "carol"]) == {"bob"}
    assert (await store.users.set_active("bob", True)).active  # type: ignore[union-attr]
    assert await store.sessions.find(session.id) is not None
    assert await store.users.deactivated(["alice", "bob"]) == set()


async def test_a_new_password_hash_is_kept(store: Store) -> None:
    await make_users(store, "alice")
    await store.users.set_password("alice", "new-hash")
    assert (await store.users.find_by_login("alice")).password_hash == "new-hash"  # type: ignore[union-attr]
    assert await store.users.set_password("nobody", "x") is None


async def test_sessions_are_listed_ended_together_and_seen(store: Store) -> None:
    await make_users(store, "alice")
    alice = await store.users.find_by_login("alice")
    assert alice is not None
    one = await store.sessions.create(alice, 3600, "Firefox on Linux")
    two = await store.sessions.create(alice, 3600, "Safari on iPhone")
    three = await store.sessions.create(alice, 3600)
    assert {s.id for s in await store.sessions.of_user(alice)} == {one.id, two.id, three.id}
    assert {s.device for s in await store.sessions.of_user(alice)} == {
        "Firefox on Linux",
        "Safari on iPhone",
        "",
    }
    later = now() + dt.timedelta(minutes=10)
    await store.sessions.seen(one, later)
    found = await store.sessions.find(one.id)
    assert found is not None and found.last_seen_at == later and found.user.last_seen_at == later
    assert (await store.sessions.of_user(alice))[0].id == one.id  # most recently seen first
    ended = await store.sessions.delete_of_user(alice, keep=one.id)
    assert set(ended) == {two.id, three.id}
    assert await store.sessions.live([one.id, two.id, three.id, "unknown"]) == {one.id}
    assert await store.sessions.delete_of_user(alice) == [one.id]
    assert await store.sessions.live([one.id]) == set()


async def test_a_private_room_is_visible_to_its_members_only(store: Store) -> None:
    await make_users(store, "alice", "bob", "carol")
    room = await store.rooms.create("plans-1a2b3c4d", "Plans", PRIVATE, "alice")
    assert room.private and room.kind == PRIVATE
    assert await store.rooms.visible(room.slug, "alice") == room
    assert await store.rooms.visible(room.slug, "bob") is None
    assert await store.rooms.add_member(room.slug, "bob")
    assert not await store.rooms.add_member(room.slug, "bob")  # already a member
    assert await store.rooms.members(room.slug, 10) == ["alice", "bob"]
    assert await store.rooms.visible(room.slug, "bob") == room
    assert [a.room.slug for a in await store.rooms.activity("carol", 10)] == ["general"]
    assert {a.room.slug for a in await store.rooms.activity("bob", 10)} == {"general", room.slug}
    assert await store.rooms.remove_member(room.slug, "bob")
    assert not await store.rooms.remove_member(room.slug, "bob")
    assert await store.rooms.visible(room.slug, "bob") is None
    assert await store.rooms.visible("general", "carol") is not None  # open rooms: everyone


async def test_two_people_have_one_direct_room_however_it_is_opened(store: Store) -> None:
    await make_users(store, "Alice", "bob")
    rooms = await asyncio.gather(
        *(store.rooms.direct(*pair) for pair in [("Alice", "bob"), ("bob", "Alice")] * 4)
    )
    assert len({r.slug for r in rooms}) == 1
    room = rooms[0]
    assert (room.kind, room.private, room.peers) == (DIRECT, True, ["Alice", "bob"])
    assert await store.rooms.members(room.slug, 10) == ["Alice", "bob"] or set(
        await store.rooms.members(room.slug, 10)
    ) == {"Alice", "bob"}
    assert await store.rooms.visible(room.slug, "bob") == room
    await make_users(store, "carol")
    assert await store.rooms.visible(room.slug, "carol") is None
    notes = await store.rooms.direct("bob", "bob")
    assert notes.slug != room.slug and notes.peers == ["bob"]
    assert await store.rooms.members(notes.slug, 10) == ["bob"]
    kinds = {a.room.slug: a.room.kind for a in await store.rooms.activity("bob", 10)}
    assert kinds == {"general": "open", room.slug: DIRECT, notes.slug: DIRECT}


async def test_a_moderator_deletes_anyone_s_message_however_old(store: Store) -> None:
    old = now() - dt.timedelta(days=30)
    message, _ = await store.messages.add("general", "bob", "spam", "c1")
    since = now() + dt.timedelta(minutes=1)  # past bob's edit window
    with pytest.raises(ChangeRefused) as refused:
        await store.messages.change("general", message.seq, "alice", None, since)
    assert refused.value.code == "forbidden"
    deleted = await store.messages.change(
        "general", message.seq, "alice", None, since, moderator=True
    )
    assert (deleted.deleted, deleted.text, deleted.user) == (True, "", "bob")
    assert deleted.rev > 0  # MongoDB may skip the rev the refused change took
    with pytest.raises(ChangeRefused) as again:
        await store.messages.change("general", message.seq, "alice", None, old, moderator=True)
    assert again.value.code == "deleted"
    with pytest.raises(ChangeRefused) as missing:
        await store.messages.change("general", 99, "alice", None, old, moderator=True)
    assert missing.value.code == "not_found"


async def test_a_moderator_cannot_edit_someone_else_s_message(store: Store) -> None:
    message, _ = await store.messages.add("general", "bob", "mine", "c1")
    with pytest.raises(ChangeRefused) as refused:
        await store.messages.change(
            "general", message.seq, "alice", "theirs", now() - dt.timedelta(hours=1), moderator=True
        )
    assert refused.value.code == "forbidden"


async def test_config_values_are_kept(store: Store) -> None:
    assert await store.config.get("signup_mode") is None
    await store.config.set("signup_mode", "open")
    await store.config.set("signup_mode", "closed")
    assert await store.config.get("signup_mode") == "closed"


async def test_invitations_are_live_until_revoked_or_expired(store: Store) -> None:
    invite = await store.invites.create("alice", 3600)
    assert len(invite.token) >= 22  # at least 128 bits, url-safe base64
    assert (await store.invites.find(invite.token)) == invite
    assert await store.invites.use(invite.token)
    assert await store.invites.use(invite.token)
    (live,) = await store.invites.live(10)
    assert (live.token, live.uses, live.created_by) == (invite.token, 2, "alice")
    assert await store.invites.revoke(invite.token)
    assert not await store.invites.use(invite.token)
    assert await store.invites.live(10) == []
    revoked = await store.invites.find(invite.token)
    assert revoked is not None and revoked.revoked and not revoked.live(now())
    assert not await store.invites.revoke("unknown")
    assert await store.invites.find("unknown") is None


async def test_an_expired_invitation_is_not_live(store: Store) -> None:
    invite = await store.invites.create("alice", 0)
    await asyncio.sleep(0.01)
    assert not await store.invites.use(invite.token)
    assert await store.invites.live(10) == []
    found = await store.invites.find(invite.token)
    assert found is not None and not found.live(now()) and found.uses == 0


async def test_sqlite_store_from_before_roles_makes_its_first_account_admin(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.sqlite3"
    with sqlite3.connect(path) as conn:  # the release before: SCHEMA and the first migration
        conn.executescript(SCHEMA)
        conn.executescript(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        for n, login in enumerate(["carol", "alice", "bob"], start=1):
            conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, 'hash', 0)",
                (n, login, login, f"{login}@example.com"),
            )
        conn.execute("INSERT INTO sessions VALUES ('s1', 2, 99999999999999)")
        conn.execute("INSERT INTO rooms VALUES ('general', 'General', 0)")
        conn.execute("INSERT INTO messages (room, seq, user, text, created_at, client_id)"
                     " VALUES ('general', 1, 'alice', 'kept', 0, 'c1')")  # fmt: skip
    store = SqliteStore(path)
    await store.setup()
    try:
        roles = {u.login: (u.role, u.active) for u in await store.users.list(10)}
        assert roles == {"carol": (ADMIN, True), "alice": (MEMBER, True), "bob": (MEMBER, True)}
        session = await store.sessions.find("s1")
        assert session is not None and session.user.login == "alice"
        (message,) = await store.messages.after("general", 0, 10)
        assert message.text == "kept"
        assert (await store.rooms.find("general")).kind == "open"  # type: ignore[union-attr]
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["secantus"])
async def test_mongo_store_from_before_roles_makes_its_first_account_admin(
    settings: Settings,
) -> None:
    with MongoClient(settings.mongodb_uri) as client:
        db = client[settings.mongodb_db]
        for login in ["carol", "alice"]:  # documents as the release before wrote them
            db["users"].insert_one(
                {
                    "login": login,
                    "login_key": login,
                    "email": f"{login}@example.com",
                    "password_hash": "hash",
                    "created_at": now(),
                }
            )
        db["rooms"].insert_one({"_id": "general", "name": "General", "created_at": now()})
    store = open_store(settings)
    await store.setup()
    try:
        await store.setup()  # a second start changes nothing
        roles = {u.login: u.role for u in await store.users.list(10)}
        assert roles == {"carol": ADMIN, "alice": MEMBER}
        assert (await store.users.create("dave", "d@example.com", "hash")).role == MEMBER
        assert (await store.rooms.find("general")).kind == "open"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_sqlite_accounts_from_before_skeletons_get_theirs(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    with sqlite3.connect(path) as conn:  # the release before: every migration but the last
        conn.executescript(SCHEMA)
        for migration in MIGRATIONS[:-1]:
            conn.executescript(migration)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
        conn.execute(
            "INSERT INTO users (login, login_key, email, password_hash, created_at)"
            " VALUES ('W0rm', 'w0rm', 'w@example.com', 'hash', 0)"
        )
    store = SqliteStore(path)
    await store.setup()
    try:
        twin = await store.users.find_by_skeleton(login_skeleton("worm"))
        assert twin is not None and twin.login == "W0rm"
        await store.users.create("bob", "b@example.com", "hash")
        assert (await store.users.find_by_skeleton("bob")).login == "bob"  # type: ignore[union-attr]
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["secantus"])
async def test_mongo_accounts_from_before_skeletons_get_theirs(settings: Settings) -> None:
    with MongoClient(settings.mongodb_uri) as client:
        client[settings.mongodb_db]["users"].insert_one(
            {
                "login": "W0rm",
                "login_key": "w0rm",
                "email": "w@example.com",
                "password_hash": "hash",
                "created_at": now(),
            }
        )
    store = open_store(settings)
    await store.setup()
    try:
        twin = await store.users.find_by_skeleton(login_skeleton("worm"))
        assert twin is not None and twin.login == "W0rm"
        await store.users.create("bob", "b@example.com", "hash")
        assert (await store.users.find_by_skeleton("bob")).login == "bob"  # type: ignore[union-attr]
    finally:
        await store.close()
