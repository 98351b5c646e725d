"""The /ws socket, held to docs/PROTOCOL.md."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp_session
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from app import create_app
from chat.hub import HUB_KEY
from conftest import Auth, base_settings, hello, raw_ws_connect, receive, receive_until
from storage import STORE_KEY
from storage.base import now


async def send_message(ws: Any, text: str, client_id: str) -> None:
    await ws.send_str(json.dumps({"type": "message", "text": text, "client_id": client_id}))


async def test_refused_when_not_logged_in(auth: Auth) -> None:
    resp = await auth.upgrade()
    assert resp.status == 401


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"}, {}])
async def test_refused_from_foreign_or_missing_origin(
    client: TestClient[Any, Any], auth: Auth, headers: dict[str, str]
) -> None:
    await auth.signup("alice")
    resp = await auth.upgrade(headers=headers)
    assert resp.status == 403
    assert HUB_KEY in client.app and not list(client.app[HUB_KEY].connections())


@pytest.mark.parametrize(
    ("query", "status"), [("?room=nope", 404), ("?after=-1", 400), ("?after=x", 400)]
)
async def test_unknown_room_and_bad_after(auth: Auth, query: str, status: int) -> None:
    await auth.signup("alice")
    resp = await auth.upgrade(query)
    assert resp.status == status


async def test_hello_names_the_person_the_room_and_who_is_online(make_user: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a = await alice.ws()
    first = await hello(a)
    assert first == {
        "type": "hello",
        "user": "alice",
        "room": "general",
        "online": ["alice"],
        "last_seq": 0,
        "last_rev": 0,
    }
    b = await bob.ws()
    assert (await hello(b))["online"] == ["alice", "bob"]
    for ws in (a, b):
        await ws.close()


async def test_presence_announces_join_and_leave(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a = await connect(alice)
    b = await connect(bob)
    join = await receive(a)
    assert join == {"type": "presence", "event": "join", "user": "bob", "online": ["alice", "bob"]}
    await b.close()
    leave = await receive(a)
    assert leave == {"type": "presence", "event": "leave", "user": "bob", "online": ["alice"]}


async def test_message_reaches_everyone_and_acknowledges_the_sender(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a = await connect(alice)
    b = await connect(bob)
    await receive(a)  # bob joined
    await send_message(a, "  hello <b>world</b>  ", "c-1")
    for ws in (a, b):
        frame = await receive(ws)
        assert frame["type"] == "message"
        assert frame["seq"] == 1
        assert frame["user"] == "alice"
        assert frame["text"] == "hello <b>world</b>"  # trimmed, stored as text
        assert frame["client_id"] == "c-1"
        assert frame["room"] == "general"
        assert frame["created_at"].endswith("Z")
        assert isinstance(frame["id"], str) and frame["id"]


async def test_presence_counts_sockets_per_user(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a = await connect(alice)
    b1 = await connect(bob)
    assert (await receive(a))["event"] == "join"
    b2 = await connect(bob)  # a second tab: no second join
    await b1.close()  # one tab left: no leave
    await send_message(a, "ping", "c1")
    assert (await receive(a))["type"] == "message"
    await b2.close()
    assert (await receive(a))["event"] == "leave"


@pytest.mark.parametrize(
    ("raw", "code", "client_id"),
    [
        ("not json", "bad_frame", None),
        ("[1, 2]", "bad_frame", None),
        ('"text"', "bad_frame", None),
        ('{"type": "dance", "client_id": "c1"}', "bad_frame", "c1"),
        ('{"text": "no type", "client_id": "c1"}', "bad_frame", "c1"),
        ('{"type": "message", "text": "no id"}', "bad_frame", None),
        ('{"type": "message", "text": "x", "client_id": 5}', "bad_frame", None),
        ('{"type": "message", "text": "x", "client_id": ""}', "bad_frame", None),
        ('{"type": "message", "text": "x", "client_id": "' + "i" * 65 + '"}', "bad_frame", None),
        ('{"type": "message", "client_id": "c1"}', "bad_frame", "c1"),
        ('{"type": "message", "text": 42, "client_id": "c1"}', "bad_frame", "c1"),
        ('{"type": "message", "text": "   \\n\\t ", "client_id": "c1"}', "empty", "c1"),
        ('{"type": "message", "text": "' + "x" * 2001 + '", "client_id": "c1"}', "too_long", "c1"),
    ],
)
async def test_bad_frames_get_errors_and_socket_stays_open(
    auth: Auth, ws: Any, raw: str, code: str, client_id: str | None
) -> None:
    await ws.send_str(raw)
    error = await receive(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error.get("client_id") == client_id
    await send_message(ws, "still here", "ok-1")
    assert (await receive(ws))["text"] == "still here"
    assert await auth.client.app[STORE_KEY].messages.last_seq("general") == 1


async def test_limits_are_exact(ws: Any) -> None:
    await send_message(ws, " " + "x" * 2000 + " ", "i" * 64)
    frame = await receive(ws)
    assert frame["type"] == "message" and len(frame["text"]) == 2000


async def test_binary_frame_is_refused(ws: Any) -> None:
    await ws.send_bytes(b'{"type": "message"}')
    assert (await receive(ws))["code"] == "bad_frame"
    assert not ws.closed


async def test_frame_over_64k_closes_with_1009(ws: Any) -> None:
    await ws.send_str("x" * (64 * 1024 + 1))
    msg = await ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1009


async def test_resend_is_stored_once_and_acknowledged(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a = await connect(alice)
    b = await connect(bob)
    await receive(a)  # bob joined
    await send_message(a, "once", "dup-1")
    original = await receive(a)
    assert (await receive(b))["seq"] == original["seq"]
    await a.close()
    a2 = await connect(alice, "?after=0")  # reconnect, unsure whether it arrived: send again
    assert (await receive(a2))["client_id"] == "dup-1"  # the resume replays it
    await send_message(a2, "once", "dup-1")
    ack = await receive(a2)
    assert ack == original
    await send_message(b, "next", "b-1")
    assert (await receive_until(b, "message"))["seq"] == 2  # bob never saw a second copy
    stored = await alice.client.app[STORE_KEY].messages.after("general", 0, 10)
    assert [m.text for m in stored] == ["once", "next"]


async def test_resume_delivers_missed_then_live_without_gap_or_duplicate(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a = await connect(alice)
    for i in range(1, 6):
        await send_message(a, f"m{i}", f"a{i}")
        await receive(a)
    b = await bob.ws("?after=2")
    greeting = await hello(b)
    assert greeting["last_seq"] == 5
    replay = [await receive(b) for _ in range(3)]
    assert [f["seq"] for f in replay] == [3, 4, 5]
    await send_message(a, "live", "a6")
    assert (await receive_until(b, "message"))["seq"] == 6


async def test_resume_races_with_concurrent_sends(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a = await connect(alice)
    total = 60

    async def sender() -> None:
        for i in range(total):
            await send_message(a, f"m{i}", f"a{i}")
            await asyncio.sleep(0)

    task = asyncio.create_task(sender())
    await asyncio.sleep(0.01)
    b = await connect(bob, "?after=0")
    await task
    seen: list[int] = []
    async with asyncio.timeout(10):
        while len(seen) < total:
            frame = await receive(b)
            if frame["type"] == "message":
                seen.append(frame["seq"])
    assert seen == list(range(1, total + 1))


async def test_resume_more_than_500_missed_sends_reset(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    messages = auth.client.app[STORE_KEY].messages
    for i in range(502):
        await messages.add("general", "alice", f"m{i}", f"c{i}")
    ws = await auth.ws("?after=1")
    assert (await hello(ws))["last_seq"] == 502
    assert await receive(ws) == {"type": "reset", "last_seq": 502}
    await send_message(ws, "after reset", "new")
    assert (await receive(ws))["seq"] == 503
    exactly = await connect(auth, "?after=3")  # 500 missed (4..503): replayed in full
    frames = [await receive(exactly) for _ in range(500)]
    assert [f["seq"] for f in frames] == list(range(4, 504))


async def test_resume_after_beyond_last_seq_sends_reset(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    ws = await connect(auth, "?after=99")
    assert await receive(ws) == {"type": "reset", "last_seq": 0}


async def test_concurrent_senders_get_gapless_seq_in_order(make_user: Any, connect: Any) -> None:
    people = [await make_user(f"user{i}") for i in range(4)]
    sockets = [await connect(p) for p in people]
    per_sender = 25

    async def blast(ws: Any, n: int) -> None:
        for i in range(per_sender):
            await send_message(ws, f"{n}-{i}", f"{n}-{i}")

    await asyncio.gather(*(blast(ws, n) for n, ws in enumerate(sockets)))
    total = per_sender * len(sockets)
    for ws in sockets:
        seqs: list[int] = []
        async with asyncio.timeout(10):
            while len(seqs) < total:
                frame = await receive(ws)
                if frame["type"] == "message":
                    seqs.append(frame["seq"])
        assert seqs == list(range(1, total + 1))  # every socket, in order, no gap or repeat


@pytest.mark.parametrize("settings_overrides", [{"ws_queue_size": 16}])
async def test_stalled_client_is_closed_and_others_get_everything(
    client: TestClient[Any, Any], make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    stalled = await make_user("carol")
    sock = await raw_ws_connect(stalled)
    hub = client.app[HUB_KEY]
    async with asyncio.timeout(5):
        while not any(c.user == "carol" for c in hub.connections()):
            await asyncio.sleep(0.01)
    (carol,) = [c for c in hub.connections() if c.user == "carol"]
    # A small fixed send buffer on the server side stands for a slow link to this client.
    assert carol.transport is not None
    carol.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    a = await connect(alice)
    b = await connect(bob)
    total = 300
    text = "y" * 1900
    for i in range(total):
        await send_message(a, text, f"a{i}")
    for ws in (a, b):
        got = 0
        async with asyncio.timeout(20):
            while got < total:
                if (await receive(ws))["type"] == "message":
                    got += 1
    try:
        async with asyncio.timeout(10):
            while any(c.user == "carol" for c in hub.connections()):
                await asyncio.sleep(0.05)
    finally:
        sock.close()


async def test_open_socket_keeps_no_cookie_session(client: TestClient[Any, Any], ws: Any) -> None:
    """After the upgrade the cookie session is dropped: its request lives as long as the socket."""
    (conn,) = client.app[HUB_KEY].connections()
    request = conn.ws._req  # aiohttp keeps the upgrade's request for the socket's whole life
    assert request is not None and aiohttp_session.SESSION_KEY not in request
    await send_message(ws, "still works", "c1")
    assert (await receive_until(ws, "message"))["text"] == "still works"


async def test_logout_closes_sockets_with_1008(auth: Auth, ws: Any) -> None:
    await auth.logout()
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)


async def test_expired_session_socket_closed_with_1008(auth: Auth, ws: Any) -> None:
    hub = auth.client.app[HUB_KEY]
    (conn,) = list(hub.connections())
    conn.session = dataclasses.replace(conn.session, expires_at=now() - dt.timedelta(seconds=1))
    await hub.close_expired()
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)


async def test_shutdown_closes_sockets_with_1001(auth: Auth, ws: Any) -> None:
    await auth.client.app.shutdown()
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)


@pytest.mark.parametrize("settings_overrides", [{"ws_heartbeat": 0.2}])
async def test_server_pings(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    ws = await connect(auth, autoping=False)
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.PING
    await ws.pong(msg.data)


async def hub_emptied(auth: Auth) -> None:
    """Wait (a second at most) until the server has let go of every socket."""
    for _ in range(100):
        if not list(auth.client.app[HUB_KEY].connections()):
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("settings_overrides", [{"ws_heartbeat": 0.2}])
async def test_a_client_that_leaves_a_ping_unanswered_is_dropped(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    ws = await connect(auth, autoping=False)
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.PING  # and no answer: the server drops the connection
    msg = await ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
    await hub_emptied(auth)
    assert not list(auth.client.app[HUB_KEY].connections())


@pytest.mark.parametrize("settings_overrides", [{"ws_heartbeat": 0.2}])
async def test_a_client_that_answers_pings_stays(ws: Any) -> None:
    # The socket answers pings while it reads, as a browser does.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):  # five heartbeats pass, with nothing else to read
            await ws.receive()
    await send_message(ws, "still here", "c1")
    frame = await receive_until(ws, "message")
    assert frame["text"] == "still here"


async def test_a_client_ping_gets_its_pong(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    ws = await connect(auth, autoping=False)
    await ws.ping(b"are you there")
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.PONG, b"are you there")


async def test_a_client_that_closes_gets_the_close_answered(auth: Auth, ws: Any) -> None:
    assert await ws.close(code=1000)
    assert ws.close_code == 1000
    await hub_emptied(auth)
    assert not list(auth.client.app[HUB_KEY].connections())


def test_default_heartbeat_is_25s() -> None:
    from settings import Settings

    assert Settings(secret_key="k").ws_heartbeat == 25.0


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frame_encoding(size: int) -> None:
    from chat.frames import ws_text_frame

    frame = ws_text_frame("x" * size)
    assert frame[0] == 0x81  # final text frame
    if size < 126:
        assert frame[1] == size and len(frame) == 2 + size
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4]) == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10]) == size
    assert frame.endswith(b"x" * size)


async def test_direct_writes_off_keeps_every_socket_on_its_transport(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    app = create_app(base_settings(tmp_path, ws_direct_writes=False))
    alice = Auth(await aiohttp_client(app))
    await alice.signup("alice")
    ws = await alice.ws()
    await hello(ws)
    (conn,) = app[HUB_KEY].connections()
    assert conn.sock is None and not conn.direct
    await send_message(ws, "through the transport", "c-1")
    assert (await receive(ws))["text"] == "through the transport"
    await ws.close()
