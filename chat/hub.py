"""The socket registry: who is connected to which room, in-order delivery, and closing."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterator

from aiohttp import web

from chat.connection import CLOSE_GOING_AWAY, CLOSE_SESSION_ENDED, Connection, fan_out
from chat.frames import activity_frame, message_frame, ws_text_frame
from storage.base import (
    DIRECT,
    MAX_PAGE,
    Messages,
    Room,
    Rooms,
    Sessions,
    StorageUnavailable,
    login_key,
    now,
)

log = logging.getLogger(__name__)

TYPING_KEYS = 10_000  # typing times kept before stale ones are swept
# A broadcast this soon (seconds) after the room's previous one waits for the end of the event
# loop iteration, so that a burst leaves in one write per socket instead of one per message; a
# broadcast after a quiet spell goes at once, without that extra iteration.
BURST_GAP = 0.005
MEMBERS_KEPT = 10_000  # private rooms whose members the hub keeps in memory

Batch = list[tuple[bytes, int, str | None]]  # (frame, seq or 0, login whose sockets skip it)


class Hub:
    """All open sockets of this process, by room, and the in-order delivery of each room's messages.

    Every room with sockets here has a `delivered` seq: messages reach its sockets strictly in
    seq order and once each. A message that arrives ahead of a gap (from another process, or
    after a broker outage) first has the gap filled from storage, the one source of truth.

    Frames broadcast to a room in a burst are written to each socket together: under load a
    socket gets one write (one system call) per event-loop iteration, not one per message.
    """

    def __init__(
        self, messages: Messages, burst_gap: float = BURST_GAP, rooms: Rooms | None = None
    ) -> None:
        self.messages = messages
        self.burst_gap = burst_gap
        self.rooms: dict[str, dict[Connection, None]] = collections.defaultdict(dict)
        # Activity and read frames go to a person's sockets in any room: found by login key.
        self.room_store = rooms  # None: no activity frames (a hub tested on its own)
        self.by_user: dict[str, dict[Connection, None]] = {}
        self.count = 0  # sockets registered, in all rooms
        self._members: dict[str, frozenset[str]] = {}  # private room -> its members' keys
        self._members_epoch = 0  # bumped when members change: a load under way is not kept
        # Frames for single sockets (activity, read) written at the iteration's end, together.
        self._pending: dict[Connection, list[bytes]] = {}
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
            self.by_user.setdefault(login_key(conn.user), {})[conn] = None
            self.count += 1
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
        self.count -= 1
        key = login_key(conn.user)
        mine = self.by_user.get(key)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.by_user[key]
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

    async def activity(self, room: str, seq: int, user: str, mentions: tuple[str, ...]) -> None:
        """Tell the sockets in other rooms of everyone who belongs to the room of a new message.

        Only sockets outside the room are looked at (those in it get the message itself): a
        process whose sockets are all in the room does nothing more per message.
        """
        if self.room_store is None or self.count <= len(self.rooms.get(room, ())):
            return
        try:
            found = await self.room_store.find(room)
            audience = await self._audience(found) if found is not None and found.private else None
        except StorageUnavailable as exc:
            log.warning("no activity frames for %s, seq %d: %s", room, seq, exc)
            return
        if found is None:
            return
        plain = ws_text_frame(activity_frame(room, seq, user, False))
        mentioned = {login_key(m) for m in mentions}
        marked = ws_text_frame(activity_frame(room, seq, user, True)) if mentioned else plain
        if audience is None:  # an open room: everyone belongs to it
            for slug, members in self.rooms.items():
                if slug != room:
                    for conn in members:
                        mention = bool(mentioned) and login_key(conn.user) in mentioned
                        self._queue(conn, marked if mention else plain)
            return
        for key in audience:
            for conn in self.by_user.get(key, ()):
                if conn.room != room:
                    self._queue(conn, marked if key in mentioned else plain)

    async def _audience(self, room: Room) -> frozenset[str]:
        """Return the login keys of a private or direct room's members (kept in memory)."""
        if room.kind == DIRECT:
            return frozenset(login_key(p) for p in room.peers)
        members = self._members.get(room.slug)
        if members is None:
            assert self.room_store is not None
            epoch = self._members_epoch
            logins = await self.room_store.members(room.slug, MAX_PAGE)
            members = frozenset(login_key(m) for m in logins)
            if epoch == self._members_epoch:  # no change of members came in meanwhile
                while len(self._members) >= MEMBERS_KEPT:
                    del self._members[next(iter(self._members))]
                self._members[room.slug] = members
        return members

    def forget_members(self, room: str | None = None) -> None:
        """Drop what is kept of a room's members (of every room's: None); they changed."""
        self._members_epoch += 1
        if room is None:
            self._members.clear()
        else:
            self._members.pop(room, None)

    def send_user(self, user: str, frame: str, skip: Connection | None = None) -> None:
        """Send a frame to every socket of a person here, in any room, but `skip`."""
        sockets = self.by_user.get(login_key(user))
        if sockets:
            data = ws_text_frame(frame)
            for conn in sockets:
                if conn is not skip:
                    self._queue(conn, data)

    def _queue(self, conn: Connection, frame: bytes) -> None:
        """Hold a frame for one socket until the iteration's end, then write its frames at once."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush_pending)
        self._pending.setdefault(conn, []).append(frame)

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for conn, frames in pending.items():
            conn.push(frames[0] if len(frames) == 1 else b"".join(frames))
            self.frames_delivered += len(frames)

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
        self.forget_members()  # a change of members whose word was lost heals here too
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
