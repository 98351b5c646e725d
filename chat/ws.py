"""The `/ws` socket: hello, resume, posting with persist-then-broadcast, presence."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

from auth.origin import same_origin
from auth.sessions import drop_cookie_session
from chat.broker import BROKER_KEY
from chat.budgets import BUDGETS_KEY, MESSAGES, SIGNALS, Budget, Budgets
from chat.connection import CLOSE_SESSION_ENDED, CLOSE_TOO_SLOW, Connection, direct_socket
from chat.frames import (
    ChangeMessage,
    ClientFrame,
    FrameError,
    PostMessage,
    React,
    Read,
    Typing,
    error_frame,
    hello_frame,
    message_frame,
    parse_client_frame,
    read_frame,
    reset_frame,
    typing_frame,
    ws_pong_frame,
)
from chat.hub import HUB_KEY
from chat.masking import MaskedWebSocketResponse
from chat.posting import change_message, post_message, react_message
from chat.reads import READS_KEY
from common import SESSION_KEY
from common.limits import TokenBucket, too_many
from common.metrics import METRICS_KEY
from common.numbers import MAX_WHOLE, whole_number
from settings import SETTINGS_KEY, Settings
from storage import STORE_KEY
from storage.base import ChangeRefused, Message, StorageUnavailable

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024  # larger frames close the socket with 1009
REPLAY_MAX = 500  # more missed than this gets a `reset` instead of a replay
SOCKETS_RETRY_AFTER = 10  # seconds, in the 429 for one socket too many
ABUSE_FACTOR = 3  # frames refused in a row, in bursts, before the socket is closed with 1008
RATE_LIMITED = "Slow down: too many messages. Try again shortly."
# A client's pings and pongs spend from a small bucket of the socket's own: beyond it a ping is
# not answered, and a socket that keeps on is closed with 1008.
PING_BURST = 10
PING_PER_SECOND = 1.0
PING_ABUSE = 3 * PING_BURST
TYPING_INTERVAL = 3.0  # seconds: a person's typing is announced at most this often per room


def _whole_number(request: web.Request, name: str) -> int | None:
    """Return an optional query parameter that must be a whole number >= 0; 400 otherwise."""
    if name not in request.query:
        return None
    value = whole_number(request.query[name])
    if value is None:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number from 0 to {MAX_WHOLE}.")
    return value


class Allowance:
    """A socket's rate limits: its account's budget (shared), and its own pings and refusals."""

    __slots__ = ("budget", "shared", "pings", "refused", "pings_refused", "abuse")

    def __init__(self, settings: Settings, budget: Budget, budgets: Budgets) -> None:
        self.budget = budget  # messages and signals (typing, read), per account
        self.shared = budgets if budgets.shared is not None else None  # Redis: across processes
        self.pings = TokenBucket(PING_BURST, PING_PER_SECOND)
        self.refused = 0  # frames refused in a row
        self.pings_refused = 0  # pings and pongs refused in a row
        self.abuse = ABUSE_FACTOR * settings.message_burst  # refused in a row: the socket closes


class ChatSocket(web.View):
    """WebSocket endpoint of a room; see docs/PROTOCOL.md."""

    async def get(self) -> web.StreamResponse:
        conn, after, rev = await self._accept()
        log.info("socket open user=%s room=%s after=%s", conn.user, conn.room, after)
        joined = False
        budgets = self.request.app[BUDGETS_KEY]
        budget = budgets.acquire(conn.user)
        try:
            if await self._greet(conn, after, rev):
                joined = True
                conn.start()
                # The read loop runs in this frame rather than a helper's: every coroutine frame
                # a socket holds for its whole life costs memory on each of thousands of sockets.
                allowance = Allowance(self.request.app[SETTINGS_KEY], budget, budgets)
                async for msg in conn.ws:
                    conn.heard()
                    if not await self._receive(conn, msg, allowance):
                        break
        finally:
            budgets.release(conn.user, budget)
            self.request.app[HUB_KEY].unregister(conn)
            if joined:
                await self.request.app[BROKER_KEY].leave(conn)
            await conn.stop()
            log.info(
                "socket closed user=%s room=%s code=%s", conn.user, conn.room, conn.ws.close_code
            )
            self.request.app[METRICS_KEY].socket_closed(conn.ws.close_code)
        return conn.ws

    async def _accept(self) -> tuple[Connection, int | None, int | None]:
        """Check the handshake (login, origin, room, limits) and upgrade; errors are HTTP."""
        request = self.request
        session = request.get(SESSION_KEY)
        if session is None:
            raise web.HTTPUnauthorized(text="Log in first.")
        # Only pages of this site may open a socket (cross-site WebSocket hijacking).
        if not same_origin(request, allow_fetch_site=False):
            raise web.HTTPForbidden(text="Cross-origin WebSocket refused.")
        store = request.app[STORE_KEY]
        slug = request.query.get("room", "general")
        # A private room one is not a member of answers exactly as a room that does not exist.
        if await store.rooms.visible(slug, session.user.login) is None:
            raise web.HTTPNotFound(text="No such room.")
        after = _whole_number(request, "after")
        rev = _whole_number(request, "rev")

        settings = request.app[SETTINGS_KEY]
        # Every frame to the client goes through its Connection, so that the hub may write to
        # the socket itself while the transport holds nothing back: the hub pings (heartbeat),
        # the view answers pings, and closes once the socket has left the hub (autoclose off).
        ws = MaskedWebSocketResponse(
            heartbeat=None,
            autoping=False,
            autoclose=False,
            max_msg_size=MAX_FRAME,
            compress=False,
        )
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="Expected a WebSocket upgrade.")
        user = session.user.login
        address = request.remote or ""
        hub = request.app[HUB_KEY]
        if (
            hub.per_user[user] >= settings.sockets_per_user
            or hub.per_address[address] >= settings.sockets_per_address
        ):
            log.info("socket refused: too many open for user=%s", user)
            raise too_many(SOCKETS_RETRY_AFTER)
        transport = request.transport
        await ws.prepare(request)
        drop_cookie_session(request)  # needed for the handshake only
        conn = Connection(
            ws,
            transport,
            user,
            slug,
            session,
            settings.ws_queue_size,
            address,
            direct_socket(transport, allowed=settings.ws_direct_writes),
        )
        return conn, after, rev

    async def _greet(self, conn: Connection, after: int | None, rev: int | None) -> bool:
        """Register, send hello, then the replay or a reset; False when the database is down."""
        store = self.request.app[STORE_KEY]
        try:
            # Registered as last_seq is read: later messages reach the socket's queue, earlier
            # ones are in storage, so a resume has no gap (overlaps are skipped by seq).
            # Edits and deletes likewise: later ones are queued, earlier ones have a rev.
            last_seq, last_rev = await self.request.app[HUB_KEY].register(conn)
            online = await self.request.app[BROKER_KEY].join(conn)
        except StorageUnavailable as exc:
            log.warning("socket refused, database unavailable: %s", exc)
            await conn.ws.send_str(error_frame("unavailable", "The database is unavailable."))
            await conn.close(CLOSE_TOO_SLOW, "database unavailable, try again")
            return False
        try:
            await conn.ws.send_str(hello_frame(conn.user, conn.room, online, last_seq, last_rev))
            if after is not None and (after > last_seq or last_seq - after > REPLAY_MAX):
                await conn.ws.send_str(reset_frame(last_seq))
            elif after is not None:
                replayed = after
                for message in await store.messages.after(conn.room, after, REPLAY_MAX):
                    await conn.ws.send_str(message_frame(message))
                    replayed = message.seq
                conn.skip_through = max(conn.skip_through, replayed)
                if rev is not None and rev < last_rev:
                    await self._replay_changes(conn, rev, last_rev, last_seq)
        except StorageUnavailable as exc:
            log.warning("resume failed, database unavailable: %s", exc)
            await conn.ws.send_str(error_frame("unavailable", "The database is unavailable."))
            await conn.close(CLOSE_TOO_SLOW, "database unavailable, try again")
        except ConnectionError:
            pass  # the client went away during the greeting; the caller cleans up
        return True

    async def _replay_changes(
        self, conn: Connection, rev: int, last_rev: int, last_seq: int
    ) -> None:
        """Send the edits and deletes made after `rev`, or a reset when there are too many."""
        changes = await self.request.app[STORE_KEY].messages.changes(conn.room, rev, REPLAY_MAX)
        if len(changes) == REPLAY_MAX and changes[-1].rev < last_rev:
            await conn.ws.send_str(reset_frame(last_seq))
            return
        for message in changes:
            await conn.ws.send_str(message_frame(message, "change"))

    async def _receive(self, conn: Connection, msg: WSMessage, allowance: Allowance) -> bool:
        """Handle one client frame, spending a token; False when the socket must close."""
        if msg.type == WSMsgType.TEXT:
            frame: ClientFrame | None = None
            error: FrameError | None = None
            try:
                frame = parse_client_frame(msg.data)
            except FrameError as exc:
                error = exc
            # A reaction is a signal, as typing: cheap, and people give many.
            signal = isinstance(frame, Typing | Read | React)
            budget = allowance.budget
            bucket = budget.signals if signal else budget.messages
            wait = bucket.take()
            if not wait and allowance.shared is not None:
                kind = SIGNALS if signal else MESSAGES
                wait = await allowance.shared.shared_wait(conn.user, kind, bucket)
            if wait:
                allowance.refused += 1
                if allowance.refused >= allowance.abuse:
                    log.info("socket closed for flooding user=%s", conn.user)
                    await conn.close(CLOSE_SESSION_ENDED, "rate limit exceeded again and again")
                    return False
                client_id = getattr(frame, "client_id", None) or getattr(error, "client_id", None)
                retry = math.ceil(wait * 10) / 10
                # A refused reaction names its message too, as its other refusals do.
                seq = frame.seq if isinstance(frame, React) else None
                conn.send_text(
                    error_frame("rate_limited", RATE_LIMITED, client_id, retry_after=retry, seq=seq)
                )
                return True
            allowance.refused = 0
            if error is not None:
                conn.send_text(error.to_frame())
            elif isinstance(frame, PostMessage):
                await self._post(conn, frame)
            elif isinstance(frame, ChangeMessage):
                await self._change(conn, frame)
            elif isinstance(frame, Typing):
                await self._typing(conn)
            elif isinstance(frame, Read):
                await self._read(conn, frame.seq)
            elif isinstance(frame, React):
                await self._react(conn, frame)
        elif msg.type == WSMsgType.BINARY:
            conn.send_text(error_frame("bad_frame", "Frames must be JSON text."))
        elif msg.type in (WSMsgType.PING, WSMsgType.PONG):
            if allowance.pings.take():
                allowance.pings_refused += 1
                if allowance.pings_refused >= PING_ABUSE:
                    log.info("socket closed for flooding with pings user=%s", conn.user)
                    await conn.close(CLOSE_SESSION_ENDED, "too many pings")
                    return False
                return True  # beyond the budget a ping is not answered
            allowance.pings_refused = 0
            if msg.type == WSMsgType.PING:
                conn.push(ws_pong_frame(msg.data))
        elif msg.type == WSMsgType.ERROR:
            log.info("socket error user=%s: %s", conn.user, conn.ws.exception())
        return True

    async def _post(self, conn: Connection, post: PostMessage) -> None:
        """Store a message, then send it to the room; the sender's copy is its acknowledgement."""
        client_id = post.client_id
        try:
            message, created = await post_message(
                self.request.app, conn.room, conn.user, post.text, client_id, post.reply_to
            )
        except ChangeRefused as exc:
            conn.send_text(error_frame(exc.code, exc.message, client_id))
            return
        except StorageUnavailable as exc:
            log.warning("message not stored: %s", exc)
            conn.send_text(
                error_frame("unavailable", "Not sent: the database is unavailable.", client_id)
            )
            return
        if not created:
            conn.send_text(message_frame(message))  # a re-send: acknowledge with the stored message

    async def _change(self, conn: Connection, change: ChangeMessage) -> None:
        """Edit or delete the sender's own recent message (or, an admin, anyone's)."""
        changed = change_message(self.request.app, conn.room, change.seq, conn.user, change.text)
        await self._answer(conn, change.seq, change.client_id, changed, "message not changed")

    async def _react(self, conn: Connection, react: React) -> None:
        """Toggle the person's reaction on a message of this room; the change frame answers."""
        reacted = react_message(self.request.app, conn.room, react.seq, conn.user, react.emoji)
        await self._answer(conn, react.seq, react.client_id, reacted, "reaction not stored")

    async def _answer(
        self,
        conn: Connection,
        seq: int,
        client_id: str | None,
        change: Coroutine[Any, Any, Message],
        failed: str,
    ) -> None:
        """Await a change to message `seq`; tell the sender why, should it be refused or fail.

        Done, it needs no answer of its own: the room's `change` frame reaches the sender too.
        """
        try:
            await change
        except ChangeRefused as exc:
            conn.send_text(error_frame(exc.code, exc.message, client_id, seq=seq))
        except StorageUnavailable as exc:
            log.warning("%s: %s", failed, exc)
            conn.send_text(
                error_frame(
                    "unavailable", "Not changed: the database is unavailable.", client_id, seq=seq
                )
            )

    async def _typing(self, conn: Connection) -> None:
        """Tell the others in the room this person is typing, at most every few seconds."""
        hub = self.request.app[HUB_KEY]
        if hub.typing_due(conn.room, conn.user, time.monotonic(), TYPING_INTERVAL):
            frame = typing_frame(conn.room, conn.user)
            hub.broadcast(conn.room, frame, skip_user=conn.user)
            await self.request.app[BROKER_KEY].publish_room(conn.room, frame, skip_user=conn.user)

    async def _read(self, conn: Connection, seq: int) -> None:
        """Note how far this person has read the room (never past its last message).

        A mark that moved forward is told to the person's other sockets, on every process.
        """
        seq = min(seq, self.request.app[HUB_KEY].delivered.get(conn.room, 0))
        if self.request.app[READS_KEY].note(conn.user, conn.room, seq):
            await self.request.app[BROKER_KEY].send_user(
                conn.user, read_frame(conn.room, seq), skip=conn
            )
