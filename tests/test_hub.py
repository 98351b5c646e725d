"""Connection: frames go straight to a socket that keeps up, and queue only while it lags."""

from __future__ import annotations

import asyncio
from typing import Any

from chat.hub import CLOSE_TOO_SLOW, WRITE_BUFFER_HIGH, Connection


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


def connection(transport: FakeTransport, limit: int = 8) -> Connection:
    session: Any = None  # a Connection only carries its session, for closing by session
    return Connection(FakeSocket(), transport, "alice", "general", session, limit)  # type: ignore[arg-type]


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
    for _ in range(100):
        if conn.queue is None:
            break
        await asyncio.sleep(0.01)
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
