"""Live traffic between processes: in-process by default, Redis pub/sub when REDIS_URL is set.

The broker carries two things: stored messages (a doorbell: every process delivers them to its
own sockets in seq order, filling gaps from storage) and presence (who is online in a room).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from chat.connection import CLOSE_SESSION_ENDED, Connection
from chat.frames import presence_frame
from chat.hub import Hub

log = logging.getLogger(__name__)

CHANNEL = "chat:events"
POOL_SIZE = 100  # connections to Redis per process (redis-py's default)
CLOSE_WAIT = 5.0  # seconds close() waits for the broker's tasks to end
POOL_WAIT = 2.0  # seconds a command waits for a free one, as long as a command's own timeout


class LocalBroker:
    """One process: presence is this process's sockets, nothing is published."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # room -> login -> number of this process's sockets
        self.local: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )

    async def start(self) -> None:
        """Connect to the broker, if any."""

    async def close(self) -> None:
        """Disconnect from the broker, if any."""

    def status(self) -> dict[str, str]:
        """Describe the broker for /readyz; empty when there is none."""
        return {}

    async def publish_message(
        self, room: str, seq: int, frame: str, user: str = "", mentions: tuple[str, ...] = ()
    ) -> None:
        """Tell other processes a message was stored (nothing to tell here).

        With its author (`user`) and `mentions`, each process also sends the `activity` frames.
        """

    async def send_user(self, user: str, frame: str, skip: Connection | None = None) -> None:
        """Send a frame to a person's sockets here (but `skip`) and on other processes."""
        self.hub.send_user(user, frame, skip)
        await self._publish_user(user, frame)

    async def _publish_user(self, user: str, frame: str) -> None:
        """Tell other processes to send a frame to a person's sockets (nothing to tell here)."""

    async def members_changed(self, room: str) -> None:
        """Forget what is known of a private room's members, here and on other processes."""
        self.hub.forget_members(room)
        await self._publish_members(room)

    async def _publish_members(self, room: str) -> None:
        """Tell other processes a room's members changed (nothing to tell here)."""

    async def publish_room(self, room: str, frame: str, skip_user: str | None = None) -> None:
        """Send a frame to the room's sockets on other processes (an edit, typing)."""

    async def end_session(self, session_id: str) -> None:
        """Close the session's sockets here (1008) and tell other processes to close theirs."""
        await self.hub.close_session(session_id, CLOSE_SESSION_ENDED, "logged out")
        await self._publish_session_end(session_id)

    async def _publish_session_end(self, session_id: str) -> None:
        """Tell other processes a session ended (nothing to tell here)."""

    async def leave_room(self, room: str, user: str) -> None:
        """Close a person's sockets in a room they left (1008), here and on other processes."""
        self.hub.forget_members(room)
        await self.hub.close_member(room, user, CLOSE_SESSION_ENDED, "left the room")
        await self._publish_room_leave(room, user)

    async def _publish_room_leave(self, room: str, user: str) -> None:
        """Tell other processes someone left a room (nothing to tell here)."""

    async def join(self, conn: Connection) -> list[str]:
        """Count a new socket in; announce the user when it is their first. Return who is online."""
        counts = self.local[conn.room]
        counts[conn.user] += 1
        joined = counts[conn.user] == 1 and await self._joined(conn.room, conn.user)
        online = await self.online(conn.room)
        if joined:
            await self._presence_change(conn.room, "join", conn.user, online)
        return online

    async def leave(self, conn: Connection) -> None:
        """Count a closed socket out; announce the user's leaving when it was their last."""
        counts = self.local[conn.room]
        counts[conn.user] -= 1
        if counts[conn.user] > 0:
            return
        del counts[conn.user]
        if not counts:
            del self.local[conn.room]
        if await self._left(conn.room, conn.user):
            await self._presence_change(conn.room, "leave", conn.user, await self.online(conn.room))

    async def online(self, room: str) -> list[str]:
        """Return the logins online in the room."""
        return sorted(self.local.get(room, ()))

    async def _joined(self, room: str, user: str) -> bool:
        """Record the user's first socket here; say whether they just came online."""
        return True

    async def _left(self, room: str, user: str) -> bool:
        """Record that the user has no socket here any more; say whether they went offline."""
        return True

    async def _presence_change(self, room: str, event: str, user: str, online: list[str]) -> None:
        """Announce a join or leave to this process's sockets, then to the other processes."""
        self.announce(room, event, user, online)
        await self._publish_presence(room, event, user, online)

    async def _publish_presence(self, room: str, event: str, user: str, online: list[str]) -> None:
        """Tell other processes about a presence change (nothing to tell here)."""

    def announce(self, room: str, event: str, user: str, online: list[str]) -> None:
        """Send a presence frame to this process's sockets in the room, but the user's own."""
        self.hub.broadcast(room, presence_frame(event, user, online), skip_user=user)


class RedisBroker(LocalBroker):
    """Several processes sharing one Redis: pub/sub for events, hashes for global presence.

    Presence: `chat:online:<room>` counts, per login, the processes where it has a socket;
    `chat:proc-online:<proc>` lists what this process added, and `chat:proc:<proc>` is a
    heartbeat key with a TTL. A process whose heartbeat expired is swept by the others, which
    take its users out and announce the ones that left.
    """

    def __init__(self, hub: Hub, url: str, presence_ttl: float) -> None:
        super().__init__(hub)
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.proc = uuid.uuid4().hex[:12]
        self.ttl = presence_ttl
        # One immediate retry replaces a pooled connection that went stale in an outage;
        # more would hold up the sender while Redis is really down. The pool waits for a free
        # connection: redis-py's default pool fails the command at once when all its 100 are
        # busy, as they are when a restart's reconnect storm joins hundreds of sockets at once.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
            socket_timeout=2,
            socket_connect_timeout=2,
            decode_responses=True,
            retry=Retry(NoBackoff(), 1),
        )
        self.redis = redis.Redis.from_pool(pool)
        self.healthy = False
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        # Each listener runs while its generation is the current one. A read in redis-py's
        # pubsub can swallow a cancellation, so a replaced listener is also told by this, and
        # its subscription closed under it (see _drop_subscriptions).
        self._generation = 0
        self._pubsubs: set[Any] = set()
        self._closing = False
        # room -> (seq, frame) of the last message stored here while Redis was unavailable,
        # published once it is back: the other processes fill the gap before it from storage.
        self._unpublished: dict[str, tuple[int, str]] = {}

    def status(self) -> dict[str, str]:
        return {"redis": "ok" if self.healthy else "unavailable"}

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._heartbeat()),
        ]
        # Give the first subscription a moment, so a fresh process does not miss early events.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 3)

    async def close(self) -> None:
        self._closing = True
        self._generation += 1
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await self._drop_subscriptions()
        # Bounded: a task whose cancellation was swallowed must not hold up the shutdown.
        done, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT) if tasks else (set(), set())
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("broker task ended with %r", task.exception())
        if pending:
            log.warning("%d broker task(s) still running at close", len(pending))
        with contextlib.suppress(Exception):
            await self._sweep_proc(self.proc)
            await self.redis.delete(self._proc_key(self.proc))
        await self.redis.aclose()

    def _outage(self, exc: BaseException) -> None:
        if self.healthy:
            log.warning("Redis unavailable (%s); live traffic stays on this process", exc)
        self.healthy = False

    async def publish_message(
        self, room: str, seq: int, frame: str, user: str = "", mentions: tuple[str, ...] = ()
    ) -> None:
        if self.healthy:
            event: dict[str, Any] = {"kind": "message", "room": room, "seq": seq, "frame": frame}
            if user:
                event.update(user=user, mentions=list(mentions))
            await self._publish(event)
        if not self.healthy and seq > self._unpublished.get(room, (0, ""))[0]:
            self._unpublished[room] = (seq, frame)

    async def _publish_missed(self) -> None:
        """Publish the last message of each room stored here while Redis was unavailable."""
        missed, self._unpublished = self._unpublished, {}
        for room, (seq, frame) in missed.items():
            await self.publish_message(room, seq, frame)

    async def publish_room(self, room: str, frame: str, skip_user: str | None = None) -> None:
        await self._publish({"kind": "room", "room": room, "frame": frame, "skip": skip_user})

    async def _publish_presence(self, room: str, event: str, user: str, online: list[str]) -> None:
        await self._publish(
            {"kind": "presence", "room": room, "event": event, "user": user, "online": online}
        )

    async def _publish_session_end(self, session_id: str) -> None:
        await self._publish({"kind": "session_end", "session": session_id})

    async def _publish_room_leave(self, room: str, user: str) -> None:
        await self._publish({"kind": "room_leave", "room": room, "user": user})

    async def _publish_user(self, user: str, frame: str) -> None:
        await self._publish({"kind": "user", "user": user, "frame": frame})

    async def _publish_members(self, room: str) -> None:
        await self._publish({"kind": "members", "room": room})

    async def _publish(self, event: dict[str, Any]) -> None:
        if not self.healthy:
            return  # the others catch up from storage when the broker is back
        event["origin"] = self.proc
        try:
            await self.redis.publish(CHANNEL, json.dumps(event))
        except (RedisError, OSError) as exc:
            self._outage(exc)

    async def online(self, room: str) -> list[str]:
        if not self.healthy:
            return await super().online(room)
        try:
            return sorted(await self.redis.hkeys(self._online_key(room)))
        except (RedisError, OSError) as exc:
            self._outage(exc)
            return await super().online(room)

    async def _joined(self, room: str, user: str) -> bool:
        try:
            # The first process where this user is online makes a real join.
            return await self._add(room, user) == 1
        except (RedisError, OSError) as exc:
            self._outage(exc)  # from here on this process's own view, until Redis is back
            return True

    async def _left(self, room: str, user: str) -> bool:
        try:
            return await self._remove(self.proc, room, user, 1) <= 0
        except (RedisError, OSError) as exc:
            self._outage(exc)
            return True

    async def _add(self, room: str, user: str) -> int:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self._online_key(room), user, 1)
        pipe.hincrby(self._mine_key(self.proc), f"{room}|{user}", 1)
        processes, _ = await pipe.execute()
        return int(processes)

    async def _remove(self, proc: str, room: str, user: str, count: int) -> int:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(self._online_key(room), user, -count)
        pipe.hincrby(self._mine_key(proc), f"{room}|{user}", -count)
        processes, mine = await pipe.execute()
        if int(mine) <= 0:
            await self.redis.hdel(self._mine_key(proc), f"{room}|{user}")
        if int(processes) <= 0:
            await self.redis.hdel(self._online_key(room), user)
        return int(processes)

    async def _drop_subscriptions(self) -> None:
        """Close every subscription open now: a listener reading from one then stops."""
        for pubsub in list(self._pubsubs):
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _listen(self) -> None:
        """Follow the event channel, reconnecting with backoff; catch up after an outage."""
        generation = self._generation
        delay = 0.25
        first = True
        while generation == self._generation:
            try:
                async with self._subscription() as messages:
                    if not first:
                        log.info("Redis is back; catching up")
                    first = False
                    self.healthy = True
                    self._subscribed.set()
                    delay = 0.25
                    await self._resync()
                    await self.hub.catch_up()
                    await self._publish_missed()
                    async for message in messages:
                        if generation != self._generation:
                            return  # replaced: the new listener has its own subscription
                        await self._handle(message)
            except (RedisError, OSError) as exc:
                if generation != self._generation:
                    return
                self._outage(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    @contextlib.asynccontextmanager
    async def _subscription(self) -> AsyncIterator[AsyncIterator[str]]:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self._pubsubs.add(pubsub)
        try:
            await pubsub.subscribe(CHANNEL)

            async def data() -> AsyncIterator[str]:
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        yield message["data"]

            yield data()
        finally:
            self._pubsubs.discard(pubsub)
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _handle(self, raw: str) -> None:
        try:
            event = json.loads(raw)
            if event.get("origin") == self.proc:
                return
            if event["kind"] == "message":
                await self.hub.deliver(event["room"], int(event["seq"]), event["frame"])
                if event.get("user"):
                    mentions = tuple(str(m) for m in event.get("mentions", ()))
                    await self.hub.activity(
                        event["room"], int(event["seq"]), str(event["user"]), mentions
                    )
            elif event["kind"] == "user":
                self.hub.send_user(event["user"], event["frame"])
            elif event["kind"] == "members":
                self.hub.forget_members(event["room"])
            elif event["kind"] == "room":
                self.hub.broadcast(event["room"], event["frame"], skip_user=event.get("skip"))
            elif event["kind"] == "presence":
                self.announce(event["room"], event["event"], event["user"], event["online"])
            elif event["kind"] == "session_end":
                await self.hub.close_session(event["session"], CLOSE_SESSION_ENDED, "logged out")
            elif event["kind"] == "room_leave":
                self.hub.forget_members(event["room"])
                await self.hub.close_member(
                    event["room"], event["user"], CLOSE_SESSION_ENDED, "left the room"
                )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed broker event: %s", exc)

    async def _heartbeat(self) -> None:
        """Keep this process's heartbeat key alive and sweep processes whose key expired.

        A command that failed while the subscription stayed up (a timeout, say) leaves the
        broker marked unavailable, and only a new subscription marks it healthy again: when
        Redis answers here meanwhile, the listener is started afresh, to resync and catch up.
        """
        while True:
            if not self.healthy and self._subscribed.is_set() and not self._closing:
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.ping()
                    log.info("Redis answers again; subscribing afresh")
                    # The old listener stops (its generation is gone, its subscription
                    # closed); the new one catches up from storage.
                    self._generation += 1
                    self._tasks[0].cancel()
                    await self._drop_subscriptions()
                    self._tasks[0] = asyncio.create_task(self._listen())
            try:
                await self.redis.set(self._proc_key(self.proc), "1", ex=max(1, round(self.ttl)))
                await self.redis.sadd("chat:procs", self.proc)
                for proc in await self.redis.smembers("chat:procs"):
                    if proc != self.proc and not await self.redis.exists(self._proc_key(proc)):
                        await self._sweep_proc(proc)
            except (RedisError, OSError) as exc:
                self._outage(exc)
            await asyncio.sleep(self.ttl / 3)

    async def _sweep_proc(self, proc: str) -> None:
        """Take a gone process's users out of presence; only one sweeper wins each process."""
        if not await self.redis.srem("chat:procs", proc) and proc != self.proc:
            return
        entries = await self.redis.hgetall(self._mine_key(proc))
        for key, count in entries.items():
            room, _, user = key.partition("|")
            if await self._remove(proc, room, user, int(count)) <= 0:
                await self._presence_change(room, "leave", user, await self.online(room))
        await self.redis.delete(self._mine_key(proc))

    async def _resync(self) -> None:
        """After an outage, make Redis match this process's sockets again.

        Users who left meanwhile are taken out (and announced); users the others swept
        while our heartbeat could not reach Redis are put back.
        """
        mine = await self.redis.hgetall(self._mine_key(self.proc))
        for key, count in mine.items():
            room, _, user = key.partition("|")
            if not self.local.get(room, {}).get(user):
                if await self._remove(self.proc, room, user, int(count)) <= 0:
                    await self._presence_change(room, "leave", user, await self.online(room))
        for room, counts in list(self.local.items()):
            for user in list(counts):
                if f"{room}|{user}" not in mine:
                    if await self._add(room, user) == 1:
                        online = await self.online(room)
                        await self._publish_presence(room, "join", user, online)
        await self.redis.sadd("chat:procs", self.proc)

    @staticmethod
    def _online_key(room: str) -> str:
        return f"chat:online:{room}"

    @staticmethod
    def _mine_key(proc: str) -> str:
        return f"chat:proc-online:{proc}"

    @staticmethod
    def _proc_key(proc: str) -> str:
        return f"chat:proc:{proc}"


BROKER_KEY = web.AppKey("broker", LocalBroker)
