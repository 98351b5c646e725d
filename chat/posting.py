"""Posting and changing messages: persist, then send to the room here and on every process.

The socket, and any HTTP way in (bots, uploads), post through here, so a message reaches the
room's sockets in seq order whichever way it came.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from aiohttp import web

from chat.broker import BROKER_KEY
from chat.frames import message_frame
from chat.hub import HUB_KEY
from chat.mentions import find_mentions
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import Attachment, ChangeRefused, Message, StorageUnavailable, Store, now

log = logging.getLogger(__name__)

# Told of every message this process stored (bots' outgoing webhooks): each must return at once.
POSTED_KEY = web.AppKey("posted", list[Callable[[Message], None]])


async def post_message(
    app: web.Application,
    room: str,
    user: str,
    text: str,
    client_id: str,
    reply_to: int | None = None,
    attachment: Attachment | None = None,
) -> tuple[Message, bool]:
    """Store a message and send it to the room; on a re-sent client_id return the stored one.

    The flag is True when this call stored it (and sent it), False for a re-send, which goes
    to nobody: the caller acknowledges it. `reply_to` must be the seq of a message of the room
    (messages are never removed, so it stays one), else ChangeRefused `reply_not_found`.
    Raise StorageUnavailable when it was not stored.
    An uploaded file comes as `attachment` (chat/uploads.py stored it first).
    """
    hub = app[HUB_KEY]
    store = app[STORE_KEY]
    messages = store.messages
    if reply_to is not None and not await messages.find_many(room, [reply_to]):
        raise ChangeRefused("reply_not_found", "The message you reply to is not in this room.")
    mentions = await _mentions(store, room, text)
    async with hub.room_lock(room):
        message, created = await messages.add(
            room, user, text, client_id, reply_to=reply_to, attachment=attachment,
            mentions=mentions,
        )  # fmt: skip
        if created:
            frame = message_frame(message)
            await hub.deliver(room, message.seq, frame)
    if created:
        await app[BROKER_KEY].publish_message(
            room, message.seq, frame, message.user, message.mentions
        )
        await hub.activity(room, message.seq, message.user, message.mentions)
        for posted in app.get(POSTED_KEY, ()):
            posted(message)
    return message, created


async def _mentions(store: Store, room: str, text: str | None) -> tuple[str, ...]:
    """Return whom a text mentions in the room (nobody without an `@`: no lookups)."""
    if text is None or "@" not in text:
        return ()
    return await find_mentions(store, await store.rooms.find(room), text)


async def change_message(
    app: web.Application, room: str, seq: int, user: str, text: str | None
) -> Message:
    """Edit (new text) or delete (None) a message, then send the change to the room.

    One's own message, within EDIT_WINDOW of its sending. An admin may delete anyone's message,
    however old: asked of the store only when the change was refused as someone else's or too
    late, so the role is never stale. Raise ChangeRefused or StorageUnavailable.
    """
    store = app[STORE_KEY]
    hub = app[HUB_KEY]
    since = now() - dt.timedelta(seconds=app[SETTINGS_KEY].edit_window)
    # Under the room's lock, so here a change never overtakes the message it changes.
    mentions = await _mentions(store, room, text)
    async with hub.room_lock(room):
        try:
            message = await store.messages.change(room, seq, user, text, since, mentions=mentions)
        except ChangeRefused as exc:
            if text is not None or exc.code not in ("forbidden", "too_late"):
                raise
            account = await store.users.find_by_login(user)
            if account is None or not account.is_admin:
                raise
            message = await store.messages.change(room, seq, user, None, since, moderator=True)
        frame = message_frame(message, "change")
        hub.broadcast(room, frame)
    await app[BROKER_KEY].publish_room(room, frame)
    if message.deleted and message.attachment is not None:
        await _delete_file(app, message.attachment)
    return message


async def react_message(
    app: web.Application, room: str, seq: int, user: str, emoji: str
) -> Message:
    """Toggle the person's reaction on a message, then send the change to the room.

    Anyone who may see the room may react, to any message but a deleted one, however old.
    Raise ChangeRefused or StorageUnavailable.
    """
    hub = app[HUB_KEY]
    # Under the room's lock, as an edit: the change never overtakes the message it changes.
    async with hub.room_lock(room):
        message = await app[STORE_KEY].messages.react(room, seq, user, emoji)
        frame = message_frame(message, "change")
        hub.broadcast(room, frame)
    await app[BROKER_KEY].publish_room(room, frame)
    return message


async def _delete_file(app: web.Application, attachment: Attachment) -> None:
    """Delete a deleted message's file; the delete itself stands if this fails (logged)."""
    try:
        await app[STORE_KEY].uploads.delete(attachment.id)
    except (StorageUnavailable, OSError) as exc:
        log.warning("message deleted but not its file %s: %s", attachment.id, exc)
