"""The socket registry: who is connected to which room, in-order fan-out, and closing."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator

from aiohttp import web

from chat.frames import message_frame, ws_text_frame
from storage.base import MAX_PAGE, Messages, Session, StorageUnavailable, now

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_SESSION_ENDED = 1008
CLOSE_TOO_SLOW = 1013
CLOSE_TIMEOUT = 2.0  # seconds a close handshake may take before the connection is cut
WRITE_BUFFER_HIGH = 64 * 1024  # bytes buffered for a socket before its frames are queued
DRAIN_POLL = 0.01  # seconds between checks of a backed-up socket's transport
TYPING_KEYS = 10_000  # typing times kept before stale ones are swept
PING_FRAME = b"\x89\x00"  # a WebSocket ping, empty
NO_SEQ = 2**63  # above every seq: a frame that is not a message is never skipped
# A broadcast this soon (seconds) after the room's previous one waits for the end of the event
# loop iteration, so that a burst leaves in one write per socket instead of one per message; a
# broadcast after a quiet spell goes at once, without that extra iteration.
BURST_GAP = 0.005


def direct_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """Return the socket under a plain TCP transport of asyncio's own loop, else None.

    Only there may the hub write frames to the socket itself (see `fan_out`): its file
    descriptor reads as -1 once the transport has closed it, so a frame can never reach a
    descriptor the system has since given to another connection. Never under TLS.
    """
    if (
        transport is None
        or os.name != "posix"
        or not isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop)
        or transport.get_extra_info("sslcontext") is not None
    ):
        return None
    sock = transport.get_extra_info("socket")
    return sock if sock is not None and sock.type == socket.SOCK_STREAM else None


def _write_now(sock: socket.socket, data: bytes) -> int:
    """Write to the socket itself: the bytes it took, 0 when full, -1 on an error (or closed)."""
    try:
        return os.write(sock.fileno(), data)
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError:
        return -1


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


Batch = list[tuple[bytes, int, str | None]]  # (frame, seq or 0, login whose sockets skip it)


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
    if ready:
        sent = [_write_now(c.sock, data) for c in ready]  # type: ignore[arg-type]
        if sent.count(len(data)) != len(sent):
            for conn, n in zip(ready, sent, strict=True):
                if n != len(data):
                    conn.wrote_part(data, n)
    return others


class Hub:
    """All open sockets of this process, by room, and the in-order delivery of each room's messages.

    Every room with sockets here has a `delivered` seq: messages reach its sockets strictly in
    seq order and once each. A message that arrives ahead of a gap (from another process, or
    after a broker outage) first has the gap filled from storage, the one source of truth.

    Frames broadcast to a room in a burst are written to each socket together: under load a
    socket gets one write (one system call) per event-loop iteration, not one per message.
    """

    def __init__(self, messages: Messages, burst_gap: float = BURST_GAP) -> None:
        self.messages = messages
        self.burst_gap = burst_gap
        self.rooms: dict[str, dict[Connection, None]] = collections.defaultdict(dict)
        self.per_user: collections.Counter[str] = collections.Counter()
        self.per_address: collections.Counter[str] = collections.Counter()
        self.delivered: dict[str, int] = {}
        self._post_locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._delivery_locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._typing: dict[tuple[str, str], float] = {}  # (room, user) -> last announced
        self._bursts: dict[str, Batch] = {}  # room -> frames waiting for the iteration's end
        self._sent_at: dict[str, float] = {}  # room -> when its last frames were written

    def typing_due(self, room: str, user: str, clock: float, interval: float) -> bool:
        """Say whether the user's typing in the room may be announced now (and note it if so)."""
        last = self._typing.get((room, user))
        if last is not None and clock - last < interval:
            return False
        if len(self._typing) > TYPING_KEYS:
            self._typing = {k: t for k, t in self._typing.items() if clock - t < interval}
        self._typing[(room, user)] = clock
        return True

    def room_lock(self, room: str) -> asyncio.Lock:
        """Return the lock a process holds from storing a room's message to delivering it."""
        return self._post_locks[room]

    async def register(self, conn: Connection) -> tuple[int, int]:
        """Add a socket to its room; return the room's last seq and rev, read under the lock.

        Messages up to that seq are in storage (replayed on resume); later ones are delivered to
        the socket's queue, so nothing falls between the two.
        """
        async with self._delivery_locks[conn.room]:
            last_seq, last_rev = await self.messages.heads(conn.room)
            self.rooms[conn.room][conn] = None
            self.per_user[conn.user] += 1
            self.per_address[conn.address] += 1
            self.delivered.setdefault(conn.room, last_seq)
            conn.skip_through = last_seq
        return last_seq, last_rev

    def unregister(self, conn: Connection) -> None:
        """Remove a socket; a room without sockets here is no longer tracked."""
        members = self.rooms.get(conn.room)
        if members is None or conn not in members:
            return
        del members[conn]
        for counter, key in ((self.per_user, conn.user), (self.per_address, conn.address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        if not members:
            del self.rooms[conn.room]
            self.delivered.pop(conn.room, None)
            self._sent_at.pop(conn.room, None)

    async def deliver(self, room: str, seq: int, frame: str) -> None:
        """Queue a stored message for the room's sockets, in seq order, once."""
        if room not in self.delivered:
            return
        async with self._delivery_locks[room]:
            last = self.delivered.get(room)
            if last is None or seq <= last:
                return
            if seq > last + 1:
                await self._fill(room, last, seq)
            self.delivered[room] = seq
            self.broadcast(room, frame, seq)

    async def catch_up(self) -> None:
        """Deliver whatever was stored but not delivered here (after a broker outage)."""
        for room in list(self.delivered):
            async with self._delivery_locks[room]:
                last = self.delivered.get(room)
                if last is not None:
                    await self._fill(room, last, None)

    async def _fill(self, room: str, last: int, upto: int | None) -> None:
        try:
            missing = await self.messages.after(room, last, MAX_PAGE)
        except StorageUnavailable as exc:
            log.warning("cannot fill a gap after seq %d in %s: %s", last, room, exc)
            return
        for message in missing:
            if upto is not None and message.seq >= upto:
                break
            self.broadcast(room, message_frame(message), message.seq)
            self.delivered[room] = message.seq

    def broadcast(self, room: str, frame: str, seq: int = 0, skip_user: str | None = None) -> None:
        """Send a frame to every socket in the room, but skip_user's (never waits on any).

        Frames reach each socket in the order they were broadcast: once a room has frames
        waiting for the end of the iteration, later ones join them.
        """
        item = (ws_text_frame(frame), seq, skip_user)  # encoded once for all sockets
        burst = self._bursts.get(room)
        if burst is None:
            if time.monotonic() - self._sent_at.get(room, float("-inf")) > self.burst_gap:
                self._send(room, [item])
                return
            burst = self._bursts[room] = []
            asyncio.get_running_loop().call_soon(self._flush, room)
        burst.append(item)

    def _flush(self, room: str) -> None:
        self._send(room, self._bursts.pop(room))

    def _send(self, room: str, batch: Batch) -> None:
        members = self.rooms.get(room)
        if not members:
            return
        if len(batch) > 1 and all(skip is None for _, _, skip in batch):
            data = b"".join(frame for frame, _, _ in batch)
            first_seq = next((seq for _, seq, _ in batch if seq), 0)
            for conn in fan_out(members, data, first_seq, None):
                if not conn.push_joined(data, first_seq):
                    for frame, seq, _ in batch:
                        conn.push(frame, seq)
        else:
            for frame, seq, skip_user in batch:
                for conn in fan_out(members, frame, seq, skip_user):
                    conn.push(frame, seq)
        self._sent_at[room] = time.monotonic()

    def ping_or_drop(self, interval: float) -> None:
        """Ping each socket quiet for `interval` seconds; drop those that left a ping unanswered."""
        clock = time.monotonic()
        for conn in self.connections():
            conn.ping_or_drop(clock, interval)

    def connections(self) -> Iterator[Connection]:
        """Iterate over every open socket."""
        for members in list(self.rooms.values()):
            yield from list(members)

    async def close_session(self, session_id: str, code: int, reason: str) -> None:
        """Close every socket opened under a login session (logout, expiry)."""
        await self._close(
            [c for c in self.connections() if c.session.id == session_id], code, reason
        )

    async def close_expired(self) -> None:
        """Close with 1008 the sockets whose login session has expired."""
        t = now()
        expired = [c for c in self.connections() if c.session.expires_at <= t]
        await self._close(expired, CLOSE_SESSION_ENDED, "session expired")

    async def close_all(
        self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutdown"
    ) -> None:
        """Close every socket, all at once."""
        await self._close(list(self.connections()), code, reason)

    async def _close(self, conns: list[Connection], code: int, reason: str) -> None:
        if conns:
            log.info("closing %d socket(s) with %d (%s)", len(conns), code, reason)
            await asyncio.gather(*(c.close(code, reason) for c in conns), return_exceptions=True)


HUB_KEY = web.AppKey("hub", Hub)
