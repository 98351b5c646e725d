"""The room list, creating rooms, a room's chat page and the history endpoint."""

from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Any

from aiohttp import web

from auth import require_login
from chat.broker import BROKER_KEY
from chat.reads import READS_KEY
from common import SESSION_KEY
from common.forms import field
from common.limits import LIMITS_KEY, too_many
from common.pages import Page, render_page
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import MAX_ROOMS, RoomTaken

HISTORY_MAX = 100


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


ROOM_NAME_MAX = 40
SLUG_MAX = 40


def slugify(name: str) -> str:
    """Derive a room's URL slug from its name: lowercase ASCII letters, digits and dashes.

    A name with no such characters at all (say, only CJK or emoji) gets a random slug.
    """
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:SLUG_MAX].strip("-")
    return slug or f"room-{secrets.token_hex(3)}"


def validate_room_name(form: Any) -> tuple[str, str | None]:
    """Return the trimmed room name and its error, if any."""
    name = " ".join(field(form, "name").split())
    if not name:
        return name, "Give the room a name."
    if len(name) > ROOM_NAME_MAX:
        return name, f"Use at most {ROOM_NAME_MAX} characters."
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        return name, "Use letters, digits, spaces and punctuation only."
    return name, None


async def render_rooms(
    request: web.Request, form: dict[str, str], errors: dict[str, str], status: int = 200
) -> web.Response:
    """Render the room list with each room's last activity and the person's unread count."""
    session = require_login(request)
    store = request.app[STORE_KEY]
    reads = await request.app[READS_KEY].of_user(session.user.login)
    rooms = [
        {"activity": a, "unread": max(0, a.last_seq - reads.get(a.room.slug, 0))}
        for a in await store.rooms.activity(MAX_ROOMS)
    ]
    context = {"rooms": rooms, "form": form, "errors": errors}
    return await render_page(request, "rooms.html", context, status)


class RoomList(Page):
    """The home page: every room, most recently active first, and a form to create one."""

    async def get(self) -> web.Response:
        return await render_rooms(self.request, {}, {})


class RoomCreate(web.View):
    """`POST /rooms`: create a room named by the form and go to it."""

    async def get(self) -> web.Response:
        raise web.HTTPFound(self.request.app.router["index"].url_for())

    async def post(self) -> web.Response:
        request = self.request
        session = require_login(request)
        limit = request.app[LIMITS_KEY].room_user
        user = session.user.login
        if wait := limit.retry_after(user):
            raise too_many(wait)
        name, error = validate_room_name(await request.post())
        if error:
            return await render_rooms(request, {"name": name}, {"name": error}, status=400)
        try:
            room = await request.app[STORE_KEY].rooms.create(slugify(name), name)
        except RoomTaken:
            error = "A room with this name exists already; choose another name."
            return await render_rooms(request, {"name": name}, {"name": error}, status=409)
        limit.hit(user)
        raise web.HTTPFound(request.app.router["room"].url_for(slug=room.slug))


class ChatPage(Page):
    """A room's chat: the latest messages, a divider before the unread ones, who is online."""

    async def get(self) -> web.Response:
        request = self.request
        session = require_login(request)
        store = request.app[STORE_KEY]
        room = await store.rooms.find(request.match_info["slug"])
        if room is None:
            raise web.HTTPNotFound()
        # Read before the messages: a change made in between is replayed to the socket again.
        last_rev = await store.messages.last_rev(room.slug)
        page = request.app[SETTINGS_KEY].history_page_size
        messages = await store.messages.before(room.slug, None, page)
        last_read = (await request.app[READS_KEY].of_user(session.user.login)).get(room.slug, 0)
        context: dict[str, Any] = {
            "user": session.user,
            "room": room,
            "messages": messages,
            "last_seq": messages[-1].seq if messages else 0,
            "first_seq": messages[0].seq if messages else 0,
            "last_rev": last_rev,
            "last_read": last_read,
            "edit_window": request.app[SETTINGS_KEY].edit_window,
            "online": await request.app[BROKER_KEY].online(room.slug),
        }
        return await render_page(request, "chat.html", context)


class History(Page):
    """`GET /rooms/{slug}/messages?before=&limit=`: older messages as JSON, oldest first."""

    async def get(self) -> web.Response:
        request = self.request
        if SESSION_KEY not in request:
            return _error(401, "Log in first.")
        try:
            before = int(request.query["before"]) if "before" in request.query else None
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            return _error(400, "before and limit must be whole numbers.")
        if not 1 <= limit <= HISTORY_MAX:
            return _error(400, f"limit must be between 1 and {HISTORY_MAX}.")
        if before is not None and before < 1:
            return _error(400, "before must be at least 1.")
        store = request.app[STORE_KEY]
        slug = request.match_info["slug"]
        if await store.rooms.find(slug) is None:
            return _error(404, "No such room.")
        rows = await store.messages.before(slug, before, limit + 1)
        has_more = len(rows) > limit
        rows = rows[-limit:]
        return web.json_response({"messages": [m.to_json() for m in rows], "has_more": has_more})
