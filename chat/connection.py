"""One open socket (`Connection`) and the rule for writing frames to its descriptor directly.

Everything written to a started socket passes through its `Connection`, which therefore knows
when the transport holds bytes back. While it holds none, a broadcast may write to the socket
itself (`fan_out`): see docs/direct-socket-writes.md for why and when that is safe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time

from aiohttp import web

from chat.frames import ws_text_frame
from storage.base import Session

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_SESSION_ENDED = 1008
CLOSE_TOO_SLOW = 1013
CLOSE_TIMEOUT = 2.0  # seconds a close handshake may take before the connection is cut
WRITE_BUFFER_HIGH = 64 * 1024  # bytes buffered for a socket before its frames are queued
DRAIN_POLL = 0.01  # seconds between checks of a backed-up socket's transport
PING_FRAME = b"\x89\x00"  # a WebSocket ping, empty
NO_SEQ = 2**63  # above every seq: a frame that is not a message is never skipped


def direct_socket(
    transport: asyncio.BaseTransport | None, *, allowed: bool = True
) -> socket.socket | None:
    """Return the socket under a plain TCP transport of asyncio's own loop, else None.

    Only there may the hub write frames to the socket itself (see `fan_out`): once the
    transport has closed it, its descriptor reads as -1 and a send fails, so a frame can never
    reach a descriptor the system has since given to another connection. Never under TLS, and
    never when the settings turn direct writes off (`WS_DIRECT_WRITES=false`): `allowed` is
    False.

    It is the socket object the transport itself holds and closes, not asyncio's read-only
    wrapper of it (`get_extra_info("socket")`): a `send` on it is one system call, where
    `os.write` on the wrapper's descriptor went through two Python calls and the kernel's
    file layer (~0.5 us a frame, see docs/direct-socket-writes.md). The wrapper keeps it as
    `_sock` (private, checked by tests/test_hub.py); without it, no direct writes.
    """
    if (
        not allowed
        or transport is None
        or os.name != "posix"
        or not isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop)
        or transport.get_extra_info("sslcontext") is not None
    ):
        return None
    sock = getattr(transport.get_extra_info("socket"), "_sock", None)
    return sock if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM else None


class Connection:
    """One open socket: its identity and a bounded queue of frames it could not take yet.

    Frames arrive as ready-made WebSocket frames (encoded once per broadcast, not per socket)
    and go out at once while the socket keeps up; only a socket whose transport is backed up
    gets a queue and a sender task. The hub never awaits a socket, so one stalled client cannot
    delay anyone else; when its queue is full it is closed with 1013.

    `direct` says the hub may write to the socket itself, with no transport in between: it is
    started and not closing, nothing is queued, and the transport held nothing back after the
    last write through it. Every frame to a started socket goes through this class (pings and
    pongs included; see `ChatSocket`), so the transport's buffer cannot fill behind its back.
    """

    __slots__ = (
        "ws", "transport", "user", "room", "session", "limit", "queue", "skip_through",
        "closing", "started", "_pump", "address", "sock", "direct", "heard_at", "pinged_at",
    )  # fmt: skip

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        user: str,
        room: str,
        session: Session,
        limit: int,
        address: str = "",
        sock: socket.socket | None = None,
    ) -> None:
        self.ws = ws
        self.address = address
        self.transport = transport
        self.sock = sock  # from direct_socket(transport); None: always through the transport
        self.direct = False
        self.heard_at = time.monotonic()  # when the client last sent anything (a pong counts)
        self.pinged_at: float | None = None  # a ping not answered yet was sent then
        self.user = user
        self.room = room
        self.session = session
        self.limit = limit
        # (seq, frame); seq 0 marks frames that are always sent (presence, acks, errors).
        # Made only for a socket that falls behind: an empty deque costs 0.7 KiB per socket.
        self.queue: collections.deque[tuple[int, bytes]] | None = None
        self.skip_through = 0  # message frames up to this seq were already sent by the resume
        self.closing = False
        self.started = False
        self._pump: asyncio.Task[None] | None = None

    def push(self, frame: bytes, seq: int = 0) -> None:
        """Send a frame now if the socket keeps up, else queue it; 1013 when it cannot keep up."""
        if self.closing:
            return
        if self._keeps_up():
            self._write(seq, frame)
            return
        self.direct = False
        if self.queue is None:
            self.queue = collections.deque()
        elif len(self.queue) >= self.limit:
            self.close_soon(CLOSE_TOO_SLOW, "too slow, resume with after")
            return
        self.queue.append((seq, frame))
        if self.started:
            self._start_pump()

    def push_joined(self, data: bytes, first_seq: int) -> bool:
        """Write several frames in one go if the socket keeps up and needs them all; else False.

        first_seq is the first message seq among them (0 for none): a socket whose resume
        already sent it takes the frames one by one instead, so it can skip those.
        """
        if self.closing or (first_seq and first_seq <= self.skip_through) or not self._keeps_up():
            return False
        self._write(0, data)
        return True

    def send_text(self, text: str) -> None:
        """Send one text frame to this socket alone (errors, acknowledgements, presence)."""
        self.push(ws_text_frame(text))

    def _keeps_up(self) -> bool:
        """Say whether a frame may go straight out: sending started, nothing queued, room left."""
        return self.started and not self.queue and self._writable()

    def _writable(self) -> bool:
        t = self.transport
        return (
            t is not None
            and not t.is_closing()
            and not self.ws.closed
            and t.get_write_buffer_size() <= WRITE_BUFFER_HIGH
        )

    def _write(self, seq: int, frame: bytes) -> None:
        """Write a frame through the transport, unless it is a message the resume already sent."""
        if not (seq and seq <= self.skip_through):
            self.transport.write(frame)  # type: ignore[union-attr]
            self._note_direct()

    def _note_direct(self) -> None:
        """Say whether the hub may write to the socket itself now (see `direct` above)."""
        self.direct = (
            self.sock is not None
            and not self.queue  # the sender task writes the queue's frames one by one
            and self._writable()
            and not self.transport.get_write_buffer_size()  # type: ignore[union-attr]
        )

    def wrote_part(self, data: bytes, sent: int) -> None:
        """Finish a write to the socket itself that did not take all of data (-1: it failed).

        The transport's buffer was empty, so the rest goes through it in order; after an error
        the transport meets the error itself and closes the connection as it always does.
        """
        self.direct = False
        self.transport.write(data if sent <= 0 else memoryview(data)[sent:])  # type: ignore[union-attr]

    def _start_pump(self) -> None:
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_pump())

    def start(self) -> None:
        """Start sending (after hello and any resume were sent), the queue first."""
        self.started = True
        if self.queue:
            self._start_pump()
        else:
            self._note_direct()

    def heard(self) -> None:
        """Note that the client sent something: it is alive, no ping is awaited."""
        self.heard_at = time.monotonic()
        self.pinged_at = None

    def ping_or_drop(self, clock: float, interval: float) -> None:
        """Ping a client quiet for `interval` seconds; drop one that left a ping unanswered.

        A client gets interval / 2 seconds to answer, as with aiohttp's own heartbeat (which
        the socket does not use: its pings would reach the transport behind this class's back).
        """
        if self.closing or not self.started:
            return
        if self.pinged_at is not None:
            if clock - self.pinged_at >= interval / 2:
                log.info("socket dropped: no answer to a ping user=%s", self.user)
                self.closing = True
                self.direct = False
                self._abort()
        elif clock - self.heard_at >= interval:
            self.pinged_at = clock
            self.push(PING_FRAME)

    async def _run_pump(self) -> None:
        """Send the queue as the transport drains; ends when the queue is empty."""
        try:
            while self.queue and not self.closing:
                if not self._writable():
                    if self.transport is None or self.transport.is_closing() or self.ws.closed:
                        return
                    await asyncio.sleep(DRAIN_POLL)
                    continue
                self._write(*self.queue.popleft())
        finally:
            self._pump = None
            if not self.queue:
                self.queue = None  # caught up: give the memory back

    async def stop(self) -> None:
        """Stop the sender task."""
        self.closing = True
        self.direct = False
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def close_soon(self, code: int, reason: str) -> None:
        """Close the socket in the background with a close code."""
        if self.closing:
            return
        self.closing = True
        self.direct = False
        self.queue = None
        task = asyncio.create_task(self.close(code, reason))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def close(self, code: int, reason: str) -> None:
        """Close with a code; cut the connection if the client does not answer in time."""
        self.closing = True
        self.direct = False
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._abort()
            return
        # Closed, but a client that stopped reading may still hold back the transport's
        # graceful close: cut it if it has not gone by then.
        if self.transport is not None and self.transport.get_write_buffer_size() > 0:
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


_background: set[asyncio.Task[None]] = set()


def fan_out(
    members: dict[Connection, None], data: bytes, seq: int, skip_user: str | None
) -> list[Connection]:
    """Write data to the socket itself of every member that is `direct`; return the others.

    The hot path of a broadcast. Per socket it reads only our Connection and the socket, not
    the transport and the WebSocketResponse, whose scattered objects cost more than the
    writing: in bench/ws_fanout.py it took 12-13% less CPU per frame than `transport.write`.
    A write that does not take all of the data leaves the rest to the transport. The others
    (lagging, starting, resumed past seq) get the frames through `Connection.push`. seq 0
    marks a frame that is never skipped.
    """
    limit = seq or NO_SEQ
    if skip_user is None:
        ready = [c for c in members if c.direct and c.skip_through < limit]
    else:
        ready = [c for c in members if c.direct and c.skip_through < limit and c.user != skip_user]
    others = (
        [c for c in members if not (c.direct and c.skip_through < limit) and c.user != skip_user]
        if len(ready) < len(members)
        else []
    )
    size = len(data)
    for conn in ready:
        try:
            sent = conn.sock.send(data)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the connection failed, or is closed (the descriptor reads -1)
            sent = -1
        if sent != size:
            conn.wrote_part(data, sent)
    return others
