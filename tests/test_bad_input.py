"""Clumsy or hostile input: each gets a clear, typed answer and nobody else notices."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import pytest
from aiohttp import WSMsgType

from conftest import Auth, client_frame, raw_ws_connect, receive, receive_until
from storage import STORE_KEY

# The default burst, with a refill too slow to add a token while the test runs: at the default
# 100 a minute one more message got through whenever the flood took over 0.6 s (a loaded machine).
FLOOD_RATES = {"message_burst": 10, "message_per_minute": 1}


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked, short payloads only)."""
    assert len(payload) < 126
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + body


async def close_code_from(sock: socket.socket) -> int:
    """Read what the server sends until it closes; return its close code."""
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(10):
        while True:
            chunk = await loop.sock_recv(sock, 65536)
            data += chunk
            pos = data.find(b"\r\n\r\n") + 4 if data.startswith(b"HTTP/") else 0
            while len(data) - pos >= 2:
                opcode, length, head = data[pos] & 0x0F, data[pos + 1] & 0x7F, 2
                if length >= 126:  # a 16- or 64-bit length follows
                    head += 2 if length == 126 else 8
                    if len(data) - pos < head:
                        break
                    length = int.from_bytes(data[pos + 2 : pos + head], "big")
                if len(data) - pos < head + length:
                    break
                if opcode == 8:
                    return int.from_bytes(data[pos + head : pos + head + 2], "big")
                pos += head + length
            if not chunk:
                raise ConnectionError("closed without a close frame")


async def test_invalid_utf8_text_frame_is_closed_with_1007(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    witness = await connect(bob)
    sock = await raw_ws_connect(alice)
    try:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, masked(0x1, b'{"type": "message", "text": "\xff\xfe"}'))
        # Not UTF-8 is a broken WebSocket, not a bad chat frame: RFC 6455 says close with 1007.
        assert await close_code_from(sock) == 1007
    finally:
        sock.close()
    await witness.send_str(json.dumps({"type": "message", "text": "fine", "client_id": "w1"}))
    assert (await receive_until(witness, "message"))["text"] == "fine"


@pytest.mark.parametrize("settings_overrides", [FLOOD_RATES])
async def test_burst_of_10000_frames_is_cut_off_and_others_are_unaffected(
    auth: Auth, make_user: Any, connect: Any
) -> None:
    await auth.signup("alice")
    bob = await make_user("bob")
    witness = await connect(bob)
    flood = await connect(auth)
    await receive(witness)  # alice joined
    frame = json.dumps({"type": "message", "text": "spam", "client_id": "x"})
    for i in range(10_000):
        try:
            await flood.send_str(frame.replace('"x"', f'"x{i}"'))
        except ConnectionError:
            break
    codes = []
    while True:
        msg = await flood.receive(timeout=10)
        if msg.type == WSMsgType.TEXT:
            codes.append(json.loads(msg.data).get("code"))
            continue
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)
        break
    assert "rate_limited" in codes
    stored = await auth.client.app[STORE_KEY].messages.last_seq("general")
    assert stored == FLOOD_RATES["message_burst"]  # only the burst allowance got through
    await witness.send_str(json.dumps({"type": "message", "text": "still fine", "client_id": "w"}))
    got = await receive_until(witness, "message")
    while got["text"] != "still fine":
        got = await receive_until(witness, "message")
    assert got["seq"] == stored + 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "message", "text": "x" * 60_000, "client_id": "big"}, "too_long"),
        ({"type": "message", "text": "hi", "client_id": "i" * 10_000}, "bad_frame"),
        ({"type": "message", "text": ["hi"], "client_id": "c"}, "bad_frame"),
        ({"type": "message", "text": {"a": 1}, "client_id": "c"}, "bad_frame"),
        ({"type": "message", "text": None, "client_id": "c"}, "bad_frame"),
        ({"type": "message", "text": "hi", "client_id": ["c"]}, "bad_frame"),
        ({"type": ["message"], "text": "hi", "client_id": "c"}, "bad_frame"),
        ({"type": "presence", "event": "join"}, "bad_frame"),
        ({"type": "hello"}, "bad_frame"),
        ({}, "bad_frame"),
    ],
)
async def test_huge_and_wrong_typed_fields(ws: Any, frame: dict[str, Any], code: str) -> None:
    await ws.send_str(json.dumps(frame))
    error = await receive(ws)
    assert (error["type"], error["code"]) == ("error", code)
    assert not ws.closed


async def test_extra_fields_are_ignored(ws: Any) -> None:
    frame = {"type": "message", "text": "hi", "client_id": "c", "seq": 99, "user": "mallory"}
    await ws.send_str(json.dumps(frame))
    stored = await receive(ws)
    assert (stored["seq"], stored["user"], stored["text"]) == (1, "alice", "hi")


@pytest.mark.parametrize(
    "login",
    [
        "\u0430lice",  # Cyrillic a: looks like "alice"
        "\uff41lice",  # full-width a
        "al\u200dice",  # zero-width joiner
        "ali\u0301ce",  # combining accent
        "alice\u00a0",  # no-break space
        "\u0391lice",  # Greek capital alpha
    ],
)
async def test_confusable_logins_are_rejected(auth: Auth, make_client: Any, login: str) -> None:
    await auth.signup("alice")
    other = Auth(await make_client())
    resp = await other.signup(login, email="someone@example.com")
    # Refused as not a valid login (400), or, once trimmed of spaces, as alice's (409).
    assert resp.status in (400, 409)
    assert 'id="login-error"' in await resp.text()
    assert await auth.client.app[STORE_KEY].users.find_by_login(login) is None


async def test_unmasked_client_frame_is_closed_with_1002(
    client: Any, make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    witness = await connect(bob)
    sock = await raw_ws_connect(alice)
    try:
        loop = asyncio.get_running_loop()
        text = json.dumps({"type": "message", "text": "unmasked", "client_id": "u1"})
        # RFC 6455 5.1: a server MUST close the connection on an unmasked client frame.
        await loop.sock_sendall(sock, client_frame(0x1, text.encode(), mask=False))
        assert await close_code_from(sock) == 1002
    finally:
        sock.close()
    await witness.send_str(json.dumps({"type": "message", "text": "fine", "client_id": "w1"}))
    got = await receive_until(witness, "message")
    assert got["text"] == "fine"  # the unmasked message was never posted
    assert [m.text for m in await client.app[STORE_KEY].messages.after("general", 0, 10)] == [
        "fine"
    ]


async def test_masked_frames_before_an_unmasked_one_still_count(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    witness = await connect(bob)
    sock = await raw_ws_connect(alice)
    try:
        loop = asyncio.get_running_loop()
        long_text = "x" * 300  # a 16-bit length
        data = b"".join(
            client_frame(
                0x1, json.dumps({"type": "message", "text": t, "client_id": t[:9]}).encode()
            )
            for t in ("first", long_text)
        ) + client_frame(0x1, b'{"type": "typing"}', mask=False)
        for i in range(len(data)):  # a byte at a time: headers split across reads
            await loop.sock_sendall(sock, data[i : i + 1])
            if i < 40 or i % 50 == 0:
                await asyncio.sleep(0.001)
        assert await close_code_from(sock) == 1002
    finally:
        sock.close()
    assert (await receive_until(witness, "message"))["text"] == "first"
    assert (await receive_until(witness, "message"))["text"] == long_text
