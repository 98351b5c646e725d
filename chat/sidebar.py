"""The sidebar: a person's rooms and direct conversations with unread and mention counts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth import require_login
from chat.reads import READS_KEY
from common import SESSION_KEY
from common.forms import field
from common.pages import Refusal
from storage import STORE_KEY
from storage.base import DIRECT, NOTIFY_LEVELS, Room, default_notify, login_key

SIDEBAR_MAX = 200  # rooms listed, the most recently active (the room list shows them all)
BAD_LEVEL = "level must be one of: " + ", ".join(NOTIFY_LEVELS) + "."


def room_title(room: Room, me: str) -> str:
    """Name a room for a person: `#name`, or the other person of a direct conversation."""
    if room.kind != DIRECT:
        return f"#{room.name}"
    others = [p for p in room.peers if login_key(p) != login_key(me)]
    return ", ".join(others) if others else f"{me} (notes to self)"


async def sidebar_entries(
    request: web.Request, user: str, current_slug: str | None = None
) -> list[dict[str, Any]]:
    """Return the person's rooms (by name), then direct conversations (newest first).

    Each with its unread count (messages by others after the read mark), how many of those
    mention the person (both at most UNREAD_CAP), and the person's notification level.
    """
    store = request.app[STORE_KEY]
    activity = await store.rooms.activity(user, SIDEBAR_MAX)
    marks = await request.app[READS_KEY].of_user(user)
    behind = {
        a.room.slug: marks.get(a.room.slug, 0)
        for a in activity
        if a.last_seq > marks.get(a.room.slug, 0)
    }
    counts = await store.messages.unread(user, behind)
    levels = await store.rooms.notify_levels(user)
    room_url = request.app.router["room"]
    entries = []
    for a in activity:
        room = a.room
        unread, mentions = counts.get(room.slug, (0, 0))
        entries.append(
            {
                "slug": room.slug,
                "name": room_title(room, user),
                "kind": room.kind,
                "url": str(room_url.url_for(slug=room.slug)),
                "unread": unread,
                "mentions": mentions,
                "notify": levels.get(room.slug, default_notify(room.kind)),
                "last_seq": a.last_seq,
                "current": room.slug == current_slug,
            }
        )
    rooms = sorted(
        (e for e in entries if e["kind"] != DIRECT), key=lambda e: (e["name"].casefold(), e["slug"])
    )
    # Direct conversations stay in the order of their last activity, newest first.
    return rooms + [e for e in entries if e["kind"] == DIRECT]


class SidebarJson(web.View):
    """`GET /sidebar.json`: the sidebar's entries, for a page to refresh its counts."""

    async def get(self) -> web.Response:
        session = self.request.get(SESSION_KEY)
        if session is None:
            return web.json_response({"error": "Log in first."}, status=401)
        rooms = await sidebar_entries(self.request, session.user.login)
        return web.json_response({"rooms": rooms}, headers={"Cache-Control": "no-store"})


class RoomNotify(web.View):
    """`POST /rooms/<slug>/notify` (field `level`): how much of a room notifies the person."""

    async def post(self) -> web.Response:
        request = self.request
        wants_json = "application/json" in request.headers.get("Accept", "")
        if wants_json and request.get(SESSION_KEY) is None:
            return web.json_response({"error": "Log in first."}, status=401)
        session = require_login(request)
        me = session.user.login
        store = request.app[STORE_KEY]
        room = await store.rooms.visible(request.match_info["slug"], me)
        if room is None:
            raise Refusal(404, "No such room.")  # a private room of others: as for none
        level = field(await request.post(), "level").strip()
        if level not in NOTIFY_LEVELS:
            raise Refusal(400, BAD_LEVEL)
        await store.rooms.set_notify(room.slug, me, level)
        if wants_json:
            return web.json_response({"room": room.slug, "level": level})
        raise web.HTTPSeeOther(request.app.router["room"].url_for(slug=room.slug))
