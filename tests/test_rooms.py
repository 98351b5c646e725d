"""Rooms, unread counts, typing, and editing or deleting one's own messages (HTTP and /ws)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from chat.reads import READS_KEY
from chat.views import slugify
from conftest import Auth, hello, receive, receive_until
from settings import Settings
from storage import STORE_KEY, open_store
from storage.base import StorageUnavailable


async def send(ws: Any, **frame: Any) -> None:
    await ws.send_str(json.dumps(frame))


async def post_message(ws: Any, text: str, client_id: str) -> dict[str, Any]:
    """Send a message and return its acknowledgement (the stored message)."""
    await send(ws, type="message", text=text, client_id=client_id)
    return await receive_until(ws, "message")


async def create_room(person: Auth, name: str, **kw: Any) -> Any:
    return await person.post("/rooms", {"name": name}, csrf_path="/", **kw)


def unread_on_index(body: str) -> dict[str, int]:
    """Return the unread badge of each room on the room list (rooms without one are 0)."""
    counts = {}
    for slug, entry in re.findall(r'data-slug="([^"]+)">(.*?)</li>', body, re.S):
        badge = re.search(r'class="unread"[^>]*>(\d+)', entry)
        counts[slug] = int(badge.group(1)) if badge else 0
    return counts


@pytest.fixture
async def alice(make_user: Any) -> Auth:
    """Alice, signed up with a client of her own."""
    return await make_user("alice")


@pytest.fixture
async def bob(make_user: Any) -> Auth:
    """Bob, signed up with a client of his own."""
    return await make_user("bob")


# 1. Rooms


def test_slugs_are_derived_from_names() -> None:
    assert slugify("Dev Talk!") == "dev-talk"
    assert slugify("  Café  au lait ") == "cafe-au-lait"
    assert slugify("a" * 60) == "a" * 40
    assert re.fullmatch(r"room-[0-9a-f]{6}", slugify("日本語"))


async def test_create_room_redirects_to_it(auth: Auth) -> None:
    await auth.signup("alice")
    resp = await create_room(auth, "  Dev   Talk ")
    assert resp.status == 302
    assert resp.headers["Location"] == "/rooms/dev-talk"
    page = await auth.client.get("/rooms/dev-talk")
    body = await page.text()
    assert page.status == 200 and "#Dev Talk" in body and 'data-room="dev-talk"' in body


async def test_created_room_is_listed_first(auth: Auth) -> None:
    await auth.signup("alice")
    await create_room(auth, "  Dev   Talk ")
    index = await (await auth.client.get("/")).text()
    assert 'href="/rooms/dev-talk"' in index and 'href="/rooms/general"' in index
    assert index.index("/rooms/dev-talk") < index.index("/rooms/general")  # newest activity first


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("", 400, "Give the room a name."),
        ("   ", 400, "Give the room a name."),
        ("x" * 41, 400, "Use at most 40 characters."),
        ("bad\x00name", 400, "Use letters, digits, spaces and punctuation only."),
        ("GENERAL", 409, "A room with this name exists already; choose another name."),
    ],
)
async def test_create_room_refuses_bad_or_taken_names(
    auth: Auth, name: str, status: int, error: str
) -> None:
    await auth.signup("alice")
    resp = await create_room(auth, name)
    body = await resp.text()
    assert resp.status == status
    assert error in body and 'aria-invalid="true"' in body
    rooms = await auth.client.app[STORE_KEY].rooms.activity("alice", 10)
    assert [a.room.slug for a in rooms] == ["general"]


async def test_create_room_needs_login(client: TestClient[Any, Any], auth: Auth) -> None:
    resp = await create_room(auth, "Dev")
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    assert await client.app[STORE_KEY].rooms.find("dev") is None


async def test_create_room_needs_the_csrf_token(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    resp = await auth.post("/rooms", {"name": "Dev", "csrf_token": "forged"})
    assert resp.status == 403
    assert await client.app[STORE_KEY].rooms.find("dev") is None


async def test_create_room_needs_this_origin(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    resp = await create_room(auth, "Dev", headers={"Origin": "http://evil.example"})
    assert resp.status == 403
    assert await client.app[STORE_KEY].rooms.find("dev") is None


@pytest.mark.parametrize("settings_overrides", [{"room_limit_user": 2}])
async def test_room_creation_is_rate_limited_per_person(auth: Auth) -> None:
    await auth.signup("alice")
    assert (await create_room(auth, "One")).status == 302
    assert (await create_room(auth, "Two")).status == 302
    resp = await create_room(auth, "Three")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


async def test_unknown_room_is_404_everywhere(auth: Auth) -> None:
    await auth.signup("alice")
    assert (await auth.client.get("/rooms/nope")).status == 404
    assert (await auth.client.get("/rooms/nope/messages")).status == 404
    assert (await auth.client.get("/rooms/general")).status == 200


async def test_room_page_needs_login(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/rooms/general", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302


async def test_presence_is_per_room(alice: Auth, bob: Auth, connect: Any) -> None:
    await create_room(alice, "Dev")
    a_general = await connect(alice)
    a_dev = await alice.ws("?room=dev")
    dev_hello = await hello(a_dev)
    assert (dev_hello["room"], dev_hello["online"], dev_hello["last_seq"]) == ("dev", ["alice"], 0)
    b_dev = await bob.ws("?room=dev")
    assert (await hello(b_dev))["online"] == ["alice", "bob"]
    # Presence in dev reaches dev only: the next frame on general is general's own message.
    assert (await receive(a_dev))["event"] == "join"
    await send(a_general, type="message", text="in general", client_id="g1")
    assert (await receive(a_general))["text"] == "in general"
    for ws in (a_dev, b_dev):
        await ws.close()


async def test_seq_history_and_resume_are_per_room(alice: Auth, bob: Auth, connect: Any) -> None:
    await create_room(alice, "Dev")
    a_general = await connect(alice)
    a_dev = await connect(alice, "?room=dev")
    b_dev = await connect(bob, "?room=dev")
    assert (await receive(a_dev))["event"] == "join"
    await post_message(a_general, "in general", "g1")
    first_dev = await post_message(b_dev, "in dev", "d1")
    second_dev = await post_message(b_dev, "again dev", "d2")
    assert (first_dev["seq"], first_dev["room"], second_dev["seq"]) == (1, "dev", 2)
    # Alice's dev socket also hears of general's message (`activity`), but its messages are dev's.
    for frame in (await receive_until(a_dev, "message"), await receive_until(a_dev, "message")):
        assert frame["room"] == "dev"
    general_only = await post_message(a_general, "general two", "g2")
    assert general_only["seq"] == 2  # numbered apart from dev's
    history = await (await alice.client.get("/rooms/dev/messages")).json()
    assert [m["text"] for m in history["messages"]] == ["in dev", "again dev"]
    resumed = await alice.ws("?room=dev&after=1")
    assert (await hello(resumed))["last_seq"] == 2
    assert (await receive(resumed))["text"] == "again dev"
    await resumed.close()


# 2. Unread counts and the divider


async def test_unread_counts_follow_read_marks_on_every_device(
    alice: Auth, bob: Auth, make_user: Any, connect: Any
) -> None:
    await create_room(alice, "Dev")
    a = await connect(alice)
    for i in range(5):
        await post_message(a, f"m{i}", f"c{i}")
    index = await (await bob.client.get("/")).text()
    assert unread_on_index(index) == {"general": 5, "dev": 0}
    b = await connect(bob)
    await send(b, type="read", seq=3)
    await send(b, type="read", seq=2)  # an older mark never moves it back
    await post_message(b, "sync", "s1")  # processed in order: the marks are stored by now
    await b.close()
    # A second device: a new login session of the same person sees the same counts.
    second = await make_user("carol")
    await second.logout()
    assert (await second.login("bob")).status == 302
    for device in (bob, second):
        body = await (await device.client.get("/")).text()
        assert unread_on_index(body) == {"general": 3, "dev": 0}  # m3, m4 and bob's own "sync"


async def test_read_mark_never_passes_the_last_message(alice: Auth, connect: Any) -> None:
    a = await connect(alice)
    await post_message(a, "one", "c1")
    await send(a, type="read", seq=10**9)
    await post_message(a, "two", "c2")
    await a.close()
    assert unread_on_index(await (await alice.client.get("/")).text())["general"] == 1


async def test_divider_marks_the_first_unread_message(alice: Auth, bob: Auth, connect: Any) -> None:
    a = await connect(alice)
    for i in range(4):
        await post_message(a, f"m{i}", f"c{i}")
    b = await connect(bob)
    await send(b, type="read", seq=2)
    await post_message(b, "sync", "s1")
    await b.close()
    await a.close()
    body = await (await bob.client.get("/rooms/general")).text()
    assert 'data-last-read="2"' in body
    divider = body.index('id="unread-divider"')
    assert body.rindex('data-seq="2"', 0, divider) < divider < body.index('data-seq="3"')


async def test_no_divider_once_everything_is_read(alice: Auth, bob: Auth, connect: Any) -> None:
    a = await connect(alice)
    for i in range(4):
        await post_message(a, f"m{i}", f"c{i}")
    b = await connect(bob)
    await post_message(b, "sync", "s1")
    await send(b, type="read", seq=5)
    await b.close()  # the server answers the close after handling the read
    assert "unread-divider" not in await (await bob.client.get("/rooms/general")).text()


@pytest.mark.parametrize("bad", [{"seq": -1}, {"seq": "3"}, {"seq": True}, {}])
async def test_bad_read_frames_get_an_error(alice: Auth, connect: Any, bad: dict[str, Any]) -> None:
    a = await connect(alice)
    await send(a, type="read", **bad)
    error = await receive(a)
    assert error["type"] == "error" and error["code"] == "bad_frame"


# 3. Typing


@pytest.fixture
async def a_and_b(alice: Auth, bob: Auth, connect: Any) -> tuple[Any, Any]:
    """Alice's and Bob's sockets on general, once Alice has seen Bob join."""
    a = await connect(alice)
    b = await connect(bob)
    assert (await receive(a))["type"] == "presence"
    return a, b


async def test_typing_reaches_the_others_in_the_room(a_and_b: tuple[Any, Any]) -> None:
    a, b = a_and_b
    await send(b, type="typing")
    assert await receive(a) == {"type": "typing", "room": "general", "user": "bob"}
    await send(b, type="message", text="hi", client_id="c1")
    assert (await receive(b))["type"] == "message"  # bob gets no typing frame of his own


async def test_typing_is_announced_at_most_every_3_seconds(a_and_b: tuple[Any, Any]) -> None:
    a, b = a_and_b
    await send(b, type="typing")
    assert (await receive(a))["type"] == "typing"
    await send(b, type="typing")  # within 3 s: not announced again
    await send(b, type="message", text="hi", client_id="c1")
    assert (await receive(a))["type"] == "message"  # and alice no second one


async def test_typing_stays_in_its_room(
    alice: Auth, a_and_b: tuple[Any, Any], connect: Any
) -> None:
    a, b = a_and_b
    await create_room(alice, "Dev")
    a_dev = await connect(alice, "?room=dev")
    await send(b, type="typing")
    assert (await receive(a))["type"] == "typing"
    await send(a_dev, type="message", text="dev", client_id="d1")
    own = await receive(a_dev)
    assert (own["type"], own["room"]) == ("message", "dev")  # nothing leaked to dev


async def test_typing_is_never_stored(alice: Auth, a_and_b: tuple[Any, Any]) -> None:
    a, b = a_and_b
    await send(b, type="typing")
    await send(b, type="typing")
    await post_message(b, "hi", "c1")
    store = alice.client.app[STORE_KEY]
    assert await store.messages.last_seq("general") == 1


# 4. Edit and delete


@pytest.fixture
async def helo_and_oops(a_and_b: tuple[Any, Any]) -> dict[str, Any]:
    """Alice's messages 1 ("helo") and 2 ("oops"), seen by Bob; return message 1."""
    a, b = a_and_b
    first = await post_message(a, "helo", "c1")
    await post_message(a, "oops", "c2")
    for _ in range(2):
        await receive(b)
    return first


async def test_edit_reaches_everyone(a_and_b: tuple[Any, Any], helo_and_oops: Any) -> None:
    first = helo_and_oops
    assert first["edited_at"] is None and first["deleted"] is False
    await send(a_and_b[0], type="edit", seq=1, text="  hello  ", client_id="e1")
    for ws in a_and_b:
        change = await receive(ws)
        assert change["type"] == "change"
        assert (change["seq"], change["text"], change["deleted"]) == (1, "hello", False)
        assert change["edited_at"].endswith("Z") and change["rev"] == 1
        assert (change["id"], change["created_at"]) == (first["id"], first["created_at"])


async def test_delete_reaches_everyone(a_and_b: tuple[Any, Any], helo_and_oops: Any) -> None:
    await send(a_and_b[0], type="delete", seq=2)
    for ws in a_and_b:
        change = await receive(ws)
        assert (change["type"], change["seq"], change["deleted"], change["text"]) == (
            "change",
            2,
            True,
            "",
        )


async def test_history_and_page_show_edits_and_deletes(
    bob: Auth, a_and_b: tuple[Any, Any], helo_and_oops: Any
) -> None:
    a, b = a_and_b
    await send(a, type="edit", seq=1, text="  hello  ", client_id="e1")
    await send(a, type="delete", seq=2)
    for _ in range(2):
        await receive_until(b, "change")
    history = await (await bob.client.get("/rooms/general/messages")).json()
    assert [(m["text"], m["deleted"], m["edited_at"] is not None) for m in history["messages"]] == [
        ("hello", False, True),
        ("", True, True),
    ]
    page = await (await bob.client.get("/rooms/general")).text()
    assert "(edited)" in page and "message deleted" in page and "oops" not in page


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "edit", "seq": 1, "text": "mine now"}, "forbidden"),
        ({"type": "delete", "seq": 1}, "forbidden"),
        ({"type": "edit", "seq": 99, "text": "x"}, "not_found"),
        ({"type": "edit", "seq": 1, "text": "   "}, "empty"),
        ({"type": "edit", "seq": 1, "text": "x" * 2001}, "too_long"),
        ({"type": "edit", "seq": 0, "text": "x"}, "bad_frame"),
        ({"type": "delete"}, "bad_frame"),
    ],
)
async def test_others_and_bad_changes_are_refused_clearly(
    alice: Auth, bob: Auth, connect: Any, frame: dict[str, Any], code: str
) -> None:
    a = await connect(alice)
    await post_message(a, "alice's", "c1")
    b = await connect(bob)
    await send(b, **frame, client_id="x1")
    error = await receive(b)
    assert (error["type"], error["code"], error["client_id"]) == ("error", code, "x1")
    assert error["message"]
    if code in ("forbidden", "not_found"):
        assert error["seq"] == frame["seq"]
    (kept,) = (await (await bob.client.get("/rooms/general/messages")).json())["messages"]
    assert (kept["text"], kept["deleted"], kept["edited_at"]) == ("alice's", False, None)


@pytest.mark.parametrize("settings_overrides", [{"edit_window": 1}])
async def test_changes_are_refused_after_the_edit_window(make_user: Any, connect: Any) -> None:
    await make_user("root")  # the first account is the admin, who may delete at any time
    alice = await make_user("alice")
    a = await connect(alice)
    await post_message(a, "one", "c1")
    await send(a, type="edit", seq=1, text="in time")
    assert (await receive(a))["type"] == "change"
    await asyncio.sleep(1.2)
    for frame in ({"type": "edit", "seq": 1, "text": "late"}, {"type": "delete", "seq": 1}):
        await send(a, **frame)
        error = await receive(a)
        assert (error["code"], error["seq"]) == ("too_late", 1)
    # A refusal changes nothing: asked again, the delete is refused again, naming its frame.
    await send(a, type="delete", seq=1, client_id="again")
    error = await receive(a)
    assert (error["type"], error["code"], error["seq"]) == ("error", "too_late", 1)
    assert error["client_id"] == "again"
    (kept,) = (await (await alice.client.get("/rooms/general/messages")).json())["messages"]
    assert (kept["text"], kept["deleted"]) == ("in time", False)


async def test_deleted_message_cannot_be_edited(alice: Auth, connect: Any) -> None:
    a = await connect(alice)
    await post_message(a, "one", "c1")
    await send(a, type="delete", seq=1)
    assert (await receive(a))["deleted"] is True
    await send(a, type="edit", seq=1, text="back")
    assert (await receive(a))["code"] == "deleted"


async def changes_while_away(a: Any) -> None:
    """While Bob is away: one edit, one delete, one new message (4), on Alice's socket."""
    await send(a, type="edit", seq=1, text="m0 edited")
    await receive_until(a, "change")
    await send(a, type="delete", seq=2)
    await receive_until(a, "change")
    await post_message(a, "m3", "c3")


async def test_resume_replays_changes_made_while_away(alice: Auth, bob: Auth, connect: Any) -> None:
    a = await connect(alice)
    for i in range(3):
        await post_message(a, f"m{i}", f"c{i}")
    b = await bob.ws()
    bob_hello = await hello(b)
    assert bob_hello["last_rev"] == 0
    await b.close()
    await changes_while_away(a)
    b = await bob.ws(f"?after={bob_hello['last_seq']}&rev={bob_hello['last_rev']}")
    again = await hello(b)
    assert (again["last_seq"], again["last_rev"]) == (4, 2)
    new = await receive(b)
    assert (new["type"], new["seq"]) == ("message", 4)
    changes = [await receive(b), await receive(b)]
    assert [(c["type"], c["seq"], c["rev"]) for c in changes] == [
        ("change", 1, 1),
        ("change", 2, 2),
    ]
    assert changes[0]["text"] == "m0 edited" and changes[1]["deleted"] is True
    await b.close()


async def test_resume_up_to_date_replays_nothing(alice: Auth, bob: Auth, connect: Any) -> None:
    a = await connect(alice)
    for i in range(3):
        await post_message(a, f"m{i}", f"c{i}")
    await changes_while_away(a)
    # Up to date: nothing is replayed; the next frame is a live one.
    b = await connect(bob, "?after=4&rev=2")
    await send(b, type="message", text="live", client_id="l1")
    live = await receive(b)
    assert (live["type"], live["seq"]) == ("message", 5)


@pytest.mark.parametrize("query", ["?rev=-1", "?rev=x", "?after=1&rev=1.5"])
async def test_bad_rev_is_refused_before_the_upgrade(alice: Auth, query: str) -> None:
    resp = await alice.upgrade(query)
    assert resp.status == 400 and "rev must be" in await resp.text()


# 5. Links stay plain text on the server


async def test_links_and_markup_are_stored_and_rendered_as_plain_text(
    alice: Auth, connect: Any
) -> None:
    a = await connect(alice)
    text = 'see https://example.com/a?b=1&c=<2> and <a href="javascript:alert(1)">x</a>'
    assert (await post_message(a, text, "c1"))["text"] == text
    await a.close()
    body = await (await alice.client.get("/rooms/general")).text()
    assert "https://example.com/a?b=1&amp;c=&lt;2&gt;" in body
    assert '<a href="javascript' not in body and "&lt;a href=" in body


# The socket's replay logic is the same on every backend, and `changes` has its contract test;
# 1,000 writes take 20 s on SecantusDB, so this one runs on SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_too_many_changes_while_away_get_a_reset(alice: Auth, connect: Any) -> None:
    store = alice.client.app[STORE_KEY]
    since = (await store.messages.add("general", "alice", "first", "c0"))[0].created_at
    for seq in range(2, 503):
        await store.messages.add("general", "alice", "busy", f"c{seq}")
    for seq in range(2, 503):  # 501 messages changed, one after the other (rev = seq - 1)
        await store.messages.change("general", seq, "alice", f"edit {seq}", since)
    a = await alice.ws("?after=502&rev=0")
    first = await hello(a)
    assert first["last_rev"] == 501
    assert await receive(a) == {"type": "reset", "last_seq": 502}
    await a.close()
    a = await connect(alice, "?after=502&rev=1")  # 500 to replay: sent one by one, in rev order
    replayed = [await receive(a) for _ in range(500)]
    assert [(c["type"], c["rev"], c["seq"]) for c in replayed] == [
        ("change", rev, rev + 1) for rev in range(2, 502)
    ]


@pytest.fixture
async def alice_after_three_messages(alice: Auth, connect: Any) -> Any:
    """Alice's open socket on general, where she has posted messages 1 to 3."""
    a = await connect(alice)
    for i in range(3):
        await post_message(a, f"m{i}", f"c{i}")
    return a


async def test_read_marks_are_flushed_in_the_background_only_once_noted(
    alice_after_three_messages: Any, client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chat.reads.FLUSH_EVERY", 0.01)
    a = alice_after_three_messages
    marks = client.app[READS_KEY]
    store = client.app[STORE_KEY]
    flushes = 0
    real_flush = marks.flush

    async def counted() -> None:
        nonlocal flushes
        flushes += 1
        await real_flush()

    marks.flush = counted  # type: ignore[method-assign]
    await asyncio.sleep(0.1)
    assert flushes == 0  # nothing to store: the flusher sleeps until a mark comes
    await send(a, type="read", seq=2)
    await post_message(a, "sync", "s1")
    for _ in range(500):
        if not marks.noted.is_set() and await store.reads.of_user("alice") == {"general": 2}:
            break
        await asyncio.sleep(0.01)
    assert await store.reads.of_user("alice") == {"general": 2}
    assert flushes == 1 and not marks.pending and not marks.noted.is_set()


async def test_read_marks_are_noted_then_stored_by_a_flush(
    alice_after_three_messages: Any, client: TestClient[Any, Any]
) -> None:
    a = alice_after_three_messages
    marks = client.app[READS_KEY]
    store = client.app[STORE_KEY]
    await send(a, type="read", seq=2)
    await post_message(a, "sync", "s1")
    assert await store.reads.of_user("alice") == {}  # noted, not yet written
    await marks.flush()
    assert await store.reads.of_user("alice") == {"general": 2}


async def test_a_failed_batch_of_read_marks_stays_pending(
    alice_after_three_messages: Any, client: TestClient[Any, Any]
) -> None:
    # A failed batch stays pending, counts meanwhile, and is written by a later flush.
    a = alice_after_three_messages
    marks = client.app[READS_KEY]
    store = client.app[STORE_KEY]
    await send(a, type="read", seq=3)
    await post_message(a, "sync", "s2")
    real = store.reads.mark_many

    async def down(batch: list[tuple[str, str, int]]) -> None:
        raise StorageUnavailable("down for the test")

    store.reads.mark_many = down  # type: ignore[method-assign]
    await marks.flush()
    assert await marks.of_user("alice") == {"general": 3}
    assert await store.reads.of_user("alice") == {}
    store.reads.mark_many = real  # type: ignore[method-assign]
    await marks.flush()
    assert await store.reads.of_user("alice") == {"general": 3}


async def test_read_marks_pending_at_shutdown_are_stored(
    alice_after_three_messages: Any, client: TestClient[Any, Any], settings: Settings
) -> None:
    a = alice_after_three_messages
    await send(a, type="read", seq=3)
    await post_message(a, "sync", "s3")
    await a.close()
    await client.close()  # shutdown flushes what is pending
    again = open_store(settings)
    await again.setup()
    try:
        assert await again.reads.of_user("alice") == {"general": 3}
    finally:
        await again.close()


CYRILLIC_COPY = "\u0421\u043e\u0440\u0443"  # С о р у: all Cyrillic, looks like "Copy"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("G\u0435neral", "Use one alphabet per word"),  # a Cyrillic е in a Latin word
        ("D\u0435v", "Use one alphabet per word"),
        ("\u0391lpha", "Use one alphabet per word"),  # a Greek Α
        ("dev\u202eved", "Use letters, digits, spaces and punctuation only."),  # bidi override
        ("d\u200bev", "Use letters, digits, spaces and punctuation only."),  # zero width space
        ("dev\u2066x", "Use letters, digits, spaces and punctuation only."),  # bidi isolate
        ("\u3164", "Use letters, digits, spaces and punctuation only."),  # Hangul filler
        ("dev\ufe01", "Use letters, digits, spaces and punctuation only."),  # variation selector
        ("dev\U000e0041", "Use letters, digits, spaces and punctuation only."),  # a tag
        ("dev\u2060", "Use letters, digits, spaces and punctuation only."),  # word joiner
    ],
)
async def test_names_that_lie_are_refused(auth: Auth, name: str, error: str) -> None:
    await auth.signup("alice")
    resp = await create_room(auth, name)
    assert resp.status == 400
    assert error in await resp.text()
    rooms = await auth.client.app[STORE_KEY].rooms.activity("alice", 10)
    assert [a.room.slug for a in rooms] == ["general"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Copy", CYRILLIC_COPY),
        (CYRILLIC_COPY, "COPY"),
        ("General", "ＧＥＮＥＲＡＬ"),  # fullwidth
        ("Café", "Cafe"),
        ("Привет", "привет"),
        ("会議", "会議"),
    ],
)
async def test_a_look_alike_of_an_existing_room_is_refused(
    auth: Auth, first: str, second: str
) -> None:
    await auth.signup("alice")
    if first != "General":
        assert (await create_room(auth, first)).status == 302
    resp = await create_room(auth, second)
    assert resp.status == 409
    assert "exists already; choose another name." in await resp.text()
    rooms = await auth.client.app[STORE_KEY].rooms.activity("alice", 10)
    assert len(rooms) == (1 if first == "General" else 2)


async def test_a_look_alike_in_another_script_names_the_room_it_imitates(auth: Auth) -> None:
    await auth.signup("alice")
    assert (await create_room(auth, "Copy")).status == 302
    resp = await create_room(auth, CYRILLIC_COPY)
    assert resp.status == 409
    assert "A room whose name looks the same (#Copy) exists already" in await resp.text()


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("ｄｅｖ", "dev"),  # fullwidth: NFKC
        ("Привет", "Привет"),
        ("会議", "会議"),
        ("🎉 Party", "🎉 Party"),
        ("❤️ team", "❤️ team"),
        ("Dev Привет", "Dev Привет"),  # one alphabet per word, not per name
        ("Ελληνικά", "Ελληνικά"),
    ],
)
async def test_real_names_in_any_script_are_accepted_in_nfkc(
    auth: Auth, name: str, shown: str
) -> None:
    await auth.signup("alice")
    resp = await create_room(auth, name)
    assert resp.status == 302, await resp.text()
    slug = resp.headers["Location"].removeprefix("/rooms/")
    room = await auth.client.app[STORE_KEY].rooms.find(slug)
    assert room is not None and room.name == shown


async def test_digits_that_pass_for_letters_are_refused(auth: Auth) -> None:
    await auth.signup("alice")
    for name in ("Genera1", "GENERA1", "C0py"):
        if name == "C0py":
            assert (await create_room(auth, "Copy")).status == 302
        resp = await create_room(auth, name)
        assert resp.status == 409, name
        assert "A room whose name looks the same (#" in await resp.text()
    assert (await create_room(auth, "Room 101")).status == 302  # no room "room-lol"
    assert (await create_room(auth, "2010 plans")).status == 302


async def test_a_private_room_may_share_an_open_rooms_name(auth: Auth) -> None:
    # Private names are never checked against anything: a 409 would reveal a private room.
    await auth.signup("alice")
    resp = await auth.post("/rooms", {"name": "Secret", "private": "on"}, csrf_path="/")
    assert resp.status == 302
    assert (await create_room(auth, "Secret")).status == 302
