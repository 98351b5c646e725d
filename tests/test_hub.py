"""Connection and Hub: frames go straight to a socket that keeps up and queue only while it lags;
a burst of broadcasts reaches each socket in one write, in order."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from chat.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_SLOW,
    WRITE_BUFFER_HIGH,
    Connection,
    direct_socket,
)
from chat.frames import ws_text_frame
from chat.hub import Hub


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(data)


class FakeSocket:
    def __init__(self) -> None:
        self.closed = False
        self.close_code: int | None = None

    async def close(self, code: int, message: bytes) -> None:
        self.closed, self.close_code = True, code


def connection(transport: FakeTransport, limit: int = 8, user: str = "alice") -> Connection:
    session: Any = None  # a Connection only carries its session, for closing by session
    return Connection(FakeSocket(), transport, user, "general", session, limit)  # type: ignore[arg-type]


class FakeMessages:
    """The one thing a Hub asks storage for here: the room's last seq and rev as a socket joins."""

    async def heads(self, room: str) -> tuple[int, int]:
        return 0, 0


def burst_hub() -> Hub:
    messages: Any = FakeMessages()
    # Every broadcast but a room's first counts as part of a burst, however slow the machine.
    return Hub(messages, burst_gap=60.0)


async def joined(
    hub: Hub, transport: FakeTransport, user: str = "alice", limit: int = 8
) -> Connection:
    conn = connection(transport, limit, user)
    await hub.register(conn)
    conn.start()
    return conn


def frame(text: str) -> bytes:
    return ws_text_frame(text)


async def alice_and_bob(hub: Hub) -> tuple[FakeTransport, FakeTransport]:
    alice, bob = FakeTransport(), FakeTransport()
    await joined(hub, alice)
    await joined(hub, bob, "bob")
    return alice, bob


async def caught_up(conn: Connection) -> None:
    """Wait (a second at most) until a lagging socket has sent its queue."""
    for _ in range(100):
        if conn.queue is None:
            return
        await asyncio.sleep(0.01)


async def test_lagging_socket_queues_in_order_then_gives_the_queue_back() -> None:
    transport = FakeTransport()
    conn = connection(transport)
    conn.start()
    conn.push(b"1", 1)
    assert transport.written == [b"1"] and conn.queue is None  # no queue while it keeps up
    transport.buffered = WRITE_BUFFER_HIGH + 1
    conn.push(b"2", 2)
    conn.push(b"3", 3)
    assert transport.written == [b"1"] and conn.queue is not None and len(conn.queue) == 2
    transport.buffered = 0
    await caught_up(conn)
    assert transport.written == [b"1", b"2", b"3"]
    assert conn.queue is None  # caught up: the memory is given back
    conn.push(b"4", 4)
    assert transport.written[-1] == b"4"
    await conn.stop()


async def test_socket_that_never_catches_up_is_closed_with_1013() -> None:
    transport = FakeTransport()
    transport.buffered = WRITE_BUFFER_HIGH + 1
    conn = connection(transport, limit=2)
    conn.start()
    for seq in (1, 2, 3):
        conn.push(b"x", seq)
    await asyncio.sleep(0.01)
    assert conn.ws.close_code == CLOSE_TOO_SLOW  # type: ignore[attr-defined]
    assert conn.queue is None and transport.written == []
    await conn.stop()


async def test_burst_reaches_each_socket_in_one_write_in_order() -> None:
    hub = burst_hub()
    alice, bob = await alice_and_bob(hub)
    hub.broadcast("general", "m1", 1)
    assert alice.written == [frame("m1")]  # after a quiet spell: written at once
    hub.broadcast("general", "m2", 2)
    hub.broadcast("general", "change", 0)
    hub.broadcast("general", "m3", 3)
    assert alice.written == [frame("m1")]  # the burst waits for the end of the iteration
    await asyncio.sleep(0)
    for transport in (alice, bob):
        assert transport.written == [frame("m1"), frame("m2") + frame("change") + frame("m3")]


async def test_burst_skips_what_a_resume_already_sent_and_queues_for_a_lagging_socket() -> None:
    hub = burst_hub()
    keeps_up, resumed, lagging = FakeTransport(), FakeTransport(), FakeTransport()
    await joined(hub, keeps_up)
    resumed_conn = await joined(hub, resumed, "bob")
    resumed_conn.skip_through = 2  # its resume replayed messages 1 and 2 from storage
    lagging_conn = await joined(hub, lagging, "carol")
    lagging.buffered = WRITE_BUFFER_HIGH + 1
    for seq in (1, 2, 3):
        hub.broadcast("general", f"m{seq}", seq)
    await asyncio.sleep(0)
    assert keeps_up.written == [frame("m1"), frame("m2") + frame("m3")]
    assert resumed.written == [frame("m3")]
    assert lagging.written == [] and lagging_conn.queue is not None and len(lagging_conn.queue) == 3
    lagging.buffered = 0
    await caught_up(lagging_conn)
    assert lagging.written == [frame("m1"), frame("m2"), frame("m3")]
    await lagging_conn.stop()


async def test_burst_with_a_frame_for_others_keeps_the_order_and_skips_its_sender() -> None:
    hub = burst_hub()
    alice, bob = await alice_and_bob(hub)
    hub.broadcast("general", "m1", 1)
    hub.broadcast("general", "alice is typing", skip_user="alice")
    hub.broadcast("general", "m2", 2)
    await asyncio.sleep(0)
    assert b"".join(alice.written) == frame("m1") + frame("m2")
    assert b"".join(bob.written) == frame("m1") + frame("alice is typing") + frame("m2")


async def test_closing_sends_the_waiting_burst_before_the_close_frame() -> None:
    hub = burst_hub()
    transport = FakeTransport()
    conn = await joined(hub, transport)
    hub.broadcast("general", "m1", 1)
    hub.broadcast("general", "m2", 2)  # waits for the end of the iteration
    await hub.close_all()  # the closes run as tasks, so after the waiting burst
    assert conn.ws.close_code == CLOSE_GOING_AWAY  # type: ignore[attr-defined]
    assert transport.written == [frame("m1"), frame("m2")]


async def test_burst_for_a_room_left_empty_is_dropped() -> None:
    hub = burst_hub()
    transport = FakeTransport()
    conn = await joined(hub, transport)
    hub.broadcast("general", "m1", 1)
    hub.broadcast("general", "m2", 2)
    hub.unregister(conn)
    await asyncio.sleep(0)
    assert transport.written == [frame("m1")] and "general" not in hub.rooms


class _Accepted(asyncio.Protocol):
    def __init__(self, accepted: asyncio.Future[asyncio.Transport]) -> None:
        self.accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accepted.set_result(transport)  # type: ignore[arg-type]


async def tcp_pair(small: bool = False) -> tuple[asyncio.Transport, socket.socket]:
    """Return a real server-side transport on 127.0.0.1 and its client's non-blocking socket.

    small: the client's receive buffer is small, so it fills up while the client does not read.
    """
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.Transport] = loop.create_future()
    server = await loop.create_server(lambda: _Accepted(accepted), "127.0.0.1", 0)
    client = socket.socket()
    if small:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(server.sockets[0].getsockname())
    client.setblocking(False)
    transport = await asyncio.wait_for(accepted, 5)
    server.close()
    return transport, client


async def read_exactly(client: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(client, size - len(data)), 5)
        assert chunk, "the connection closed early"
        data += chunk
    return data


async def joined_tcp(
    hub: Hub, transport: asyncio.Transport, user: str = "alice", allowed: bool = True
) -> Connection:
    session: Any = None
    conn = Connection(
        FakeSocket(),  # type: ignore[arg-type]
        transport,
        user,
        "general",
        session,
        8,
        sock=direct_socket(transport, allowed=allowed),
    )
    await hub.register(conn)
    conn.start()
    return conn


class WriteSpy:
    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport_write = transport.write
        self.calls: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.calls.append(bytes(data))
        self.transport_write(data)


async def test_broadcast_writes_to_the_socket_itself_not_through_the_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = Hub(FakeMessages())  # type: ignore[arg-type]
    (alice, alice_client), (bob, bob_client) = await tcp_pair(), await tcp_pair()
    alice_conn = await joined_tcp(hub, alice)
    await joined_tcp(hub, bob, "bob")
    assert alice_conn.direct
    spies = [WriteSpy(t) for t in (alice, bob)]
    for transport, spy in zip((alice, bob), spies, strict=True):
        monkeypatch.setattr(transport, "write", spy)
    hub.broadcast("general", "m1", 1)
    hub.broadcast("general", "alice is typing", skip_user="alice")
    expected = frame("m1")
    assert await read_exactly(alice_client, len(expected)) == expected
    expected += frame("alice is typing")
    assert await read_exactly(bob_client, len(expected)) == expected
    assert [spy.calls for spy in spies] == [[], []]
    for t, c in ((alice, alice_client), (bob, bob_client)):
        t.close()
        c.close()


async def test_a_write_the_socket_takes_only_part_of_goes_on_through_the_transport_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = Hub(FakeMessages())  # type: ignore[arg-type]
    transport, client = await tcp_pair(small=True)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn = await joined_tcp(hub, transport)
    spy = WriteSpy(transport)
    monkeypatch.setattr(transport, "write", spy)
    texts = [f"{n:03d}" + "x" * 8000 for n in range(200)]
    frames = [frame(text) for text in texts]
    seq = 0
    while not spy.calls:  # the client does not read: the socket fills up
        seq += 1
        assert seq <= len(frames), "the socket never filled up"
        hub.broadcast("general", texts[seq - 1], seq)
    assert not conn.direct  # until a write through the transport leaves it holding nothing
    written_directly = b"".join(frames[: seq - 1])
    assert spy.calls[0] != frames[seq - 1]  # the rest of a frame, not a whole one
    hub.broadcast("general", texts[seq], seq + 1)  # queued behind, in order
    data = await read_exactly(client, len(written_directly) + 2 * len(frames[0]))
    assert data == written_directly + frames[seq - 1] + frames[seq]
    await asyncio.sleep(0.05)  # the transport sends what it held
    assert transport.get_write_buffer_size() == 0
    calls = len(spy.calls)
    hub.broadcast("general", "m", seq + 2)  # through the transport, which now holds nothing
    hub.broadcast("general", "n", seq + 3)  # so this one goes to the socket again
    assert conn.direct and len(spy.calls) == calls + 1
    tail = frame("m") + frame("n")
    assert await read_exactly(client, len(tail)) == tail
    await conn.stop()
    transport.close()
    client.close()


async def test_a_socket_closed_under_a_connection_never_gets_its_frames_on_another() -> None:
    hub = Hub(FakeMessages())  # type: ignore[arg-type]
    transport, client = await tcp_pair()
    conn = await joined_tcp(hub, transport)
    fd = transport.get_extra_info("socket").fileno()
    transport.abort()  # the connection is gone; the hub has not heard yet
    await asyncio.sleep(0.01)
    assert transport.get_extra_info("socket").fileno() == -1
    a, b = socket.socketpair()  # takes the lowest free descriptors: the one just closed
    assert fd in (a.fileno(), b.fileno())
    a.setblocking(False)
    b.setblocking(False)
    hub.broadcast("general", "m1", 1)  # no exception, and nothing lands on the new sockets
    for s in (a, b):
        with pytest.raises(BlockingIOError):
            s.recv(100)
    assert not conn.direct
    for s in (a, b, client):
        s.close()


async def test_direct_writes_go_to_the_socket_object_the_transport_closes() -> None:
    transport, client = await tcp_pair()
    sock = direct_socket(transport)
    # asyncio's wrapper keeps it as `_sock` (private): should that go, direct writes stop.
    assert isinstance(sock, socket.socket)
    assert sock.fileno() == transport.get_extra_info("socket").fileno()
    transport.abort()
    await asyncio.sleep(0.01)
    assert sock.fileno() == -1
    with pytest.raises(OSError):
        sock.send(b"x")
    client.close()


async def test_no_writes_to_the_socket_itself_under_tls() -> None:
    class TlsTransport(FakeTransport):
        def get_extra_info(self, name: str) -> object:
            return {"sslcontext": object(), "socket": object()}.get(name)

    assert direct_socket(TlsTransport()) is None  # type: ignore[arg-type]
    assert direct_socket(None) is None


async def test_with_direct_writes_off_every_frame_goes_through_the_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = Hub(FakeMessages())  # type: ignore[arg-type]
    transport, client = await tcp_pair()
    conn = await joined_tcp(hub, transport, allowed=False)
    assert conn.sock is None and not conn.direct
    spy = WriteSpy(transport)
    monkeypatch.setattr(transport, "write", spy)
    hub.broadcast("general", "m1", 1)
    hub.broadcast("general", "m2", 2)
    await asyncio.sleep(0.01)  # m2 came within the burst gap: it waits for the iteration's end
    expected = frame("m1") + frame("m2")
    assert await read_exactly(client, len(expected)) == expected
    assert b"".join(spy.calls) == expected
    await conn.stop()
    transport.close()
    client.close()
