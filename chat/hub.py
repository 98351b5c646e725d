"""The socket registry: who is connected to which room, in-order delivery, and closing."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterator

from aiohttp import web

from chat.connection import CLOSE_GOING_AWAY, CLOSE_SESSION_ENDED, Connection, fan_out
from chat.frames import message_frame, ws_text_frame
from storage.base import MAX_PAGE, Messages, Rooms, Sessions, StorageUnavailable, now

log = logging.getLogger(__name__)

TYPING_KEYS = 10_000  # typing times kept before stale ones are swept
# A broadcast this soon (seconds) after the room's previous one waits for the end of the event
# loop iteration, so that a burst leaves in one write per socket instead of one per message; a
# broadcast after a quiet spell goes at once, without that extra iteration.
BURST_GAP = 0.005

Batch = list[tuple[bytes, int, str | None]]  # (frame, seq or 0, login whose sockets skip it)


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
        # Frames handed to sockets, for /metrics: counted per batch, never per frame and socket.
        self.frames_delivered = 0

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
            self.frames_delivered += len(batch) * len(members)
        else:
            for frame, seq, skip_user in batch:
                for conn in fan_out(members, frame, seq, skip_user):
                    conn.push(frame, seq)
                skipped = 0 if skip_user is None else sum(c.user == skip_user for c in members)
                self.frames_delivered += len(members) - skipped
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

    async def close_member(self, room: str, user: str, code: int, reason: str) -> None:
        """Close a person's sockets in one room (they left it)."""
        members = self.rooms.get(room, {})
        await self._close([c for c in members if c.user == user], code, reason)

    async def close_ended(self, sessions: Sessions) -> None:
        """Close with 1008 the sockets whose login session was ended without a word to us.

        The command line ends sessions in the store alone (and, with Redis, says so there).
        """
        ids = sorted({c.session.id for c in self.connections()})
        ended: set[str] = set()
        for start in range(0, len(ids), MAX_PAGE):
            batch = ids[start : start + MAX_PAGE]
            ended.update(set(batch) - await sessions.live(batch))
        conns = [c for c in self.connections() if c.session.id in ended]
        await self._close(conns, CLOSE_SESSION_ENDED, "session ended")

    async def close_strangers(self, rooms: Rooms) -> None:
        """Close the sockets of people no longer members of the private room they are in.

        Leaving closes them at once on every process; this catches a leave whose word was lost
        (Redis down at that moment).
        """
        for slug, members in list(self.rooms.items()):
            room = await rooms.find(slug)
            if room is None or not room.private:
                continue
            for user in {c.user for c in members}:
                if not await rooms.is_member(slug, user):
                    await self.close_member(slug, user, CLOSE_SESSION_ENDED, "left the room")

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
