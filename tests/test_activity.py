"""Live activity across rooms (both stores): mentions, `activity` and `read` frames, on one
process and across two through Redis."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from test_cluster import cluster, frame, people  # noqa: F401 (fixtures)
from test_cluster import send as cluster_send

from chat.mentions import candidates
from conftest import Auth, receive, receive_until
from harness import CSRF_RE, AppProcess


async def send(ws: Any, **fields: Any) -> None:
    await ws.send_str(json.dumps(fields))


async def post(ws: Any, text: str, client_id: str) -> dict[str, Any]:
    """Post a message and return its acknowledgement."""
    await send(ws, type="message", text=text, client_id=client_id)
    return await receive_until(ws, "message")


async def make_room(owner: Auth, name: str, private: bool = False) -> str:
    data = {"name": name, **({"private": "on"} if private else {})}
    resp = await owner.post("/rooms", data, csrf_path="/")
    assert resp.status == 302, await resp.text()
    return resp.headers["Location"].removeprefix("/rooms/")


async def add_member(owner: Auth, slug: str, login: str) -> None:
    resp = await owner.post(f"/rooms/{slug}/members", {"login": login}, csrf_path="/")
    assert resp.status == 302, await resp.text()


async def next_not_presence(ws: Any) -> dict[str, Any]:
    """Receive the next frame that is not presence or typing."""
    while True:
        got = await receive(ws)
        if got["type"] not in ("presence", "typing"):
            return got


@pytest.fixture
async def alice(make_user: Any) -> Auth:
    return await make_user("alice")


@pytest.fixture
async def bob(make_user: Any) -> Auth:
    return await make_user("bob")


@pytest.fixture
async def carol(make_user: Any) -> Auth:
    return await make_user("carol")


# Mentions


def test_candidates_are_logins_after_an_at_outside_words_and_code() -> None:
    assert candidates("hi @bob and @Carol.") == ["bob", "Carol"]
    assert candidates("mail a@b.c or bob@example.com") == []
    assert candidates("@bob @BOB @bob") == ["bob"]  # once, as first written
    assert candidates("`@bob` and ```\n@carol\n``` but @dave") == ["dave"]
    assert candidates("@ab @" + "x" * 33) == []  # too short, too long
    assert candidates("(@bob), @bob's, @al.ice") == ["bob", "al.ice"]
    assert candidates("no at sign") == []


async def test_message_objects_carry_the_mentions_of_existing_logins(
    alice: Auth, bob: Auth, carol: Auth, connect: Any
) -> None:
    a = await connect(alice)
    said = await post(a, "hi @carol @BOB @bob @nobody a@bob.c `@alice`", "m1")
    assert said["mentions"] == ["bob", "carol"]  # sorted, each once, the accounts' logins
    plain = await post(a, "nobody", "m2")
    assert plain["mentions"] == []
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert [m["mentions"] for m in history["messages"]] == [["bob", "carol"], []]
    await send(a, type="edit", seq=1, text="only @alice now")
    changed = await receive_until(a, "change")
    assert changed["mentions"] == ["alice"]  # recomputed; a self-mention counts
    await send(a, type="delete", seq=1)
    assert (await receive_until(a, "change"))["mentions"] == []
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert history["messages"][0]["mentions"] == []


async def test_in_a_private_room_only_members_are_mentioned(
    alice: Auth, bob: Auth, carol: Auth, connect: Any
) -> None:
    slug = await make_room(alice, "Plans", private=True)
    await add_member(alice, slug, "bob")
    a = await connect(alice, f"?room={slug}")
    said = await post(a, "@bob @carol look", "m1")
    assert said["mentions"] == ["bob"]
    dm = (await alice.client.get("/dm/bob", allow_redirects=False)).headers["Location"]
    d = await connect(alice, "?room=" + dm.removeprefix("/rooms/"))
    assert (await post(d, "@bob @carol @alice", "m2"))["mentions"] == ["alice", "bob"]


# Activity


async def test_activity_reaches_a_persons_sockets_in_other_rooms(
    alice: Auth, bob: Auth, connect: Any
) -> None:
    dev = await make_room(alice, "Dev")
    b_general = await connect(bob)
    b_dev = await connect(bob, f"?room={dev}")
    a_dev = await connect(alice, f"?room={dev}")
    a_general = await connect(alice)  # the author's own socket elsewhere gets it too
    said = await post(a_dev, "plain", "m1")
    assert await next_not_presence(b_general) == {
        "type": "activity",
        "room": dev,
        "seq": said["seq"],
        "user": "alice",
        "mention": False,
    }
    assert (await next_not_presence(a_general))["mention"] is False
    await post(a_dev, "hey @bob", "m2")
    got = await next_not_presence(b_general)
    assert (got["type"], got["seq"], got["mention"]) == ("activity", 2, True)
    assert (await next_not_presence(a_general))["mention"] is False
    # In the room itself: the messages, and no activity frame for them.
    assert [(await next_not_presence(b_dev))["seq"] for _ in range(2)] == [1, 2]
    await post(a_general, "over here", "m3")
    got = await next_not_presence(b_dev)
    assert (got["type"], got["room"]) == ("activity", "general")


async def test_no_activity_for_edits_and_deletes(alice: Auth, bob: Auth, connect: Any) -> None:
    dev = await make_room(alice, "Dev")
    b = await connect(bob)
    a = await connect(alice, f"?room={dev}")
    await post(a, "first", "m1")
    await send(a, type="edit", seq=1, text="first, edited")
    await receive_until(a, "change")
    await send(a, type="delete", seq=1)
    await receive_until(a, "change")
    await post(a, "second", "m2")
    assert [(await next_not_presence(b))["seq"] for _ in range(2)] == [1, 2]


async def test_private_room_activity_reaches_members_only(
    alice: Auth, bob: Auth, carol: Auth, connect: Any
) -> None:
    slug = await make_room(alice, "Plans", private=True)
    a = await connect(alice, f"?room={slug}")
    b = await connect(bob)
    c = await connect(carol)
    await post(a, "before bob", "m1")  # the hub learns the members: alice only
    await add_member(alice, slug, "bob")  # ...and forgets them
    await post(a, "@bob @carol welcome", "m2")
    got = await next_not_presence(b)
    assert (got["type"], got["room"], got["seq"], got["mention"]) == ("activity", slug, 2, True)
    # carol is in no room of the private one: her first frame is general's own message.
    g = await connect(alice)
    said = await post(g, "in general", "m3")
    assert await next_not_presence(c) == said
    assert await next_not_presence(b) == said
    resp = await bob.post(f"/rooms/{slug}/leave", {}, csrf_path="/")
    assert resp.status == 302
    await post(a, "after bob", "m4")
    said = await post(g, "again in general", "m5")
    assert await next_not_presence(b) == said  # no activity of the room he left


async def test_direct_messages_make_activity_for_both_people(
    alice: Auth, bob: Auth, carol: Auth, connect: Any
) -> None:
    dm = (await alice.client.get("/dm/bob", allow_redirects=False)).headers["Location"]
    slug = dm.removeprefix("/rooms/")
    b = await connect(bob)
    c = await connect(carol)
    a = await connect(alice, f"?room={slug}")
    await post(a, "psst", "m1")
    got = await next_not_presence(b)
    assert (got["type"], got["room"], got["user"], got["mention"]) == (
        "activity",
        slug,
        "alice",
        False,
    )
    g = await connect(alice)
    said = await post(g, "in general", "m2")
    assert await next_not_presence(c) == said


async def test_a_bots_message_makes_activity_and_mentions(
    alice: Auth, bob: Auth, connect: Any
) -> None:
    from test_bots import api, make_bot

    key = await make_bot(alice)
    dev = await make_room(alice, "Dev")
    b = await connect(bob)
    resp = await alice.client.post(api(key, dev), json={"text": "build done @bob"})
    assert resp.status == 201
    assert (await resp.json())["message"]["mentions"] == ["bob"]
    got = await next_not_presence(b)
    assert (got["type"], got["room"], got["user"], got["mention"]) == (
        "activity",
        dev,
        "helper",
        True,
    )


# Read marks


async def test_a_read_frame_reaches_the_persons_other_sockets_not_the_sender(
    alice: Auth, bob: Auth, connect: Any
) -> None:
    dev = await make_room(alice, "Dev")
    a = await connect(alice)
    b_general = await connect(bob)
    b_dev = await connect(bob, f"?room={dev}")
    b_again = await connect(bob)
    said = await post(a, "read me", "m1")
    await receive_until(b_general, "message")
    await receive_until(b_again, "message")
    assert (await next_not_presence(b_dev))["type"] == "activity"
    await send(b_general, type="read", seq=said["seq"])
    for ws in (b_dev, b_again):
        assert await next_not_presence(ws) == {"type": "read", "room": "general", "seq": 1}
    await send(b_general, type="read", seq=1)  # not forward: nobody is told again
    await send(b_general, type="read", seq=0)
    again = await post(a, "and me", "m2")
    assert await next_not_presence(b_general) == again  # the sender got no read frame
    assert await next_not_presence(b_again) == again
    got = await next_not_presence(b_dev)
    assert (got["type"], got["seq"]) == ("activity", 2)
    # Alice's sockets are told nothing of bob's reading.
    await send(a, type="message", text="third", client_id="m3")
    assert (await next_not_presence(a))["seq"] == 3


# Two processes


async def make_open_room(session: aiohttp.ClientSession, app: AppProcess, name: str) -> str:
    async with session.get(app.url + "/") as resp:
        match = CSRF_RE.search(await resp.text())
        assert match
    async with session.post(
        app.url + "/rooms",
        data={"name": name, "csrf_token": match.group(1)},
        headers={"Origin": app.url},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"].removeprefix("/rooms/")


@pytest.mark.cluster
async def test_activity_and_read_cross_processes(
    cluster: list[AppProcess],  # noqa: F811
    people: Any,  # noqa: F811
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    bob = await people(p2, "bob")
    dev = await make_open_room(alice.session, p1, "Dev")
    a_dev = await alice.connect(p1, f"?room={dev}")
    b_general = await bob.connect(p2)  # on the other process
    b_dev = await bob.connect(p1, f"?room={dev}")
    await cluster_send(a_dev, "hi @bob", "a-1")
    got = await frame(b_general, "activity")
    assert got == {"type": "activity", "room": dev, "seq": 1, "user": "alice", "mention": True}
    await frame(b_dev, "message")
    await b_dev.send_str(json.dumps({"type": "read", "seq": 1}))
    assert await frame(b_general, "read") == {"type": "read", "room": dev, "seq": 1}
    await cluster_send(a_dev, "plain", "a-2")
    got = await frame(b_general, "activity")
    assert (got["seq"], got["mention"]) == (2, False)
    # The reading socket got no read frame: its next frame is the message.
    assert (await b_dev.receive_json(timeout=10))["seq"] == 2
    for ws in (a_dev, b_general, b_dev):
        await ws.close()


# Notification levels


async def notify(person: Auth, slug: str, level: str, **kw: Any) -> Any:
    return await person.post(f"/rooms/{slug}/notify", {"level": level}, csrf_path="/", **kw)


async def sidebar(person: Auth) -> dict[str, dict[str, Any]]:
    resp = await person.client.get("/sidebar.json")
    assert resp.status == 200
    return {e["slug"]: e for e in (await resp.json())["rooms"]}


async def test_notify_levels_default_by_kind_and_are_stored(alice: Auth, bob: Auth) -> None:
    slug = await make_room(alice, "Plans", private=True)
    dm = (await alice.client.get("/dm/bob", allow_redirects=False)).headers["Location"]
    direct = dm.removeprefix("/rooms/")
    levels = {s: e["notify"] for s, e in (await sidebar(alice)).items()}
    assert levels == {"general": "mentions", slug: "mentions", direct: "all"}
    resp = await notify(alice, slug, "nothing", headers={"Accept": "application/json"})
    assert resp.status == 200
    assert await resp.json() == {"room": slug, "level": "nothing"}
    resp = await notify(alice, "general", "all")  # a form: back to the room
    assert (resp.status, resp.headers["Location"]) == (303, "/rooms/general")
    levels = {s: e["notify"] for s, e in (await sidebar(alice)).items()}
    assert levels == {"general": "all", slug: "nothing", direct: "all"}
    assert (await sidebar(bob))["general"]["notify"] == "mentions"  # per person


async def test_notify_refuses_bad_levels_strangers_and_forged_requests(
    alice: Auth, bob: Auth
) -> None:
    slug = await make_room(alice, "Plans", private=True)
    json_accept = {"Accept": "application/json"}
    bad = await notify(alice, "general", "loud", headers=json_accept)
    assert bad.status == 400
    assert "all, mentions, nothing" in (await bad.json())["error"]
    assert (await notify(alice, "general", "loud")).status == 400
    for room in (slug, "no-such-room"):  # someone else's private room is no room at all
        resp = await notify(bob, room, "all", headers=json_accept)
        assert resp.status == 404, room
    headers = {"Origin": "http://127.0.0.1:1", **json_accept}
    no_token = await alice.client.post(
        "/rooms/general/notify", data={"level": "all"}, headers=json_accept
    )
    assert no_token.status == 403
    token = await alice.csrf("/")
    foreign = await alice.client.post(
        "/rooms/general/notify", data={"level": "all", "csrf_token": token}, headers=headers
    )
    assert foreign.status == 403
    by_header = await alice.client.post(
        "/rooms/general/notify",
        data={"level": "nothing"},
        headers={"X-CSRF-Token": token, "Origin": origin_of(alice), **json_accept},
    )
    assert by_header.status == 200
    assert (await sidebar(alice))["general"]["notify"] == "nothing"
    wrong = await alice.client.post(
        "/rooms/general/notify",
        data={"level": "all"},
        headers={"X-CSRF-Token": "forged", "Origin": origin_of(alice), **json_accept},
    )
    assert wrong.status == 403
    assert (await sidebar(alice))["general"]["notify"] == "nothing"


def origin_of(person: Auth) -> str:
    return f"http://{person.client.host}:{person.client.port}"


# The sidebar


async def test_sidebar_json_counts_unread_and_mentions(
    alice: Auth, bob: Auth, carol: Auth, connect: Any
) -> None:
    dev = await make_room(alice, "Dev")
    zoo = await make_room(alice, "aardvarks")
    dm = (await bob.client.get("/dm/alice", allow_redirects=False)).headers["Location"]
    direct = dm.removeprefix("/rooms/")
    a = await connect(alice, f"?room={dev}")
    b = await connect(bob, f"?room={dev}")
    await post(b, "one", "b1")
    await post(b, "two @alice", "b2")
    await post(a, "mine @alice", "a1")  # her own: never unread
    await post(b, "three @alice", "b3")
    d = await connect(bob, f"?room={direct}")
    await post(d, "psst @alice", "b4")
    entries = await sidebar(alice)
    assert list(entries) == [zoo, dev, "general", direct]  # rooms by name, then directs
    assert entries[dev] == {
        "slug": dev,
        "name": "#Dev",
        "kind": "open",
        "url": f"/rooms/{dev}",
        "unread": 3,
        "mentions": 2,
        "notify": "mentions",
        "last_seq": 4,
        "current": False,
    }
    assert (entries[direct]["name"], entries[direct]["kind"]) == ("bob", "direct")
    assert (entries[direct]["unread"], entries[direct]["mentions"]) == (1, 1)
    assert (entries["general"]["unread"], entries["general"]["last_seq"]) == (0, 0)
    await send(a, type="read", seq=2)
    entries = await sidebar(alice)  # pending marks count at once
    assert (entries[dev]["unread"], entries[dev]["mentions"]) == (1, 1)
    assert (await sidebar(carol)).keys() == {zoo, dev, "general"}  # not their conversation


async def test_sidebar_json_needs_a_login(client: Any) -> None:
    resp = await client.get("/sidebar.json")
    assert resp.status == 401
    assert "error" in await resp.json()


async def test_the_chat_page_gets_the_sidebar_with_the_current_room(
    alice: Auth, bob: Auth, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chat.views

    seen: list[dict[str, Any]] = []
    render = chat.views.render_page

    async def capture(request: Any, template: str, context: dict[str, Any], *a: Any) -> Any:
        seen.append(context)
        return await render(request, template, context, *a)

    monkeypatch.setattr(chat.views, "render_page", capture)
    dev = await make_room(alice, "Dev")
    b = await connect(bob, f"?room={dev}")
    await post(b, "hi @alice", "b1")
    resp = await alice.client.get(f"/rooms/{dev}")
    assert resp.status == 200
    entries = {e["slug"]: e for e in seen[-1]["sidebar"]}
    assert entries[dev]["current"] and not entries["general"]["current"]
    assert (entries[dev]["unread"], entries[dev]["mentions"]) == (1, 1)
