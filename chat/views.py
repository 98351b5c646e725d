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
from chat.sidebar import room_title, sidebar_entries
from common import SESSION_KEY
from common.forms import field
from common.limits import LIMITS_KEY, too_many
from common.names import hidden_character, mixed_script, normalize, room_slug, skeleton
from common.numbers import MAX_WHOLE, whole_number
from common.pages import Page, Refusal, render_page
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import (
    DIRECT,
    MAX_PAGE,
    MAX_ROOMS,
    OPEN,
    PRIVATE,
    Room,
    RoomTaken,
    Session,
    new_room_suffix,
)

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
    """Return the room name (NFKC, white space collapsed) and its error, if any."""
    raw = unicodedata.normalize("NFKC", field(form, "name"))
    name = normalize(raw)
    if not name:
        return name, "Give the room a name."
    if len(name) > ROOM_NAME_MAX:
        return name, f"Use at most {ROOM_NAME_MAX} characters."
    if hidden_character(raw.strip()) is not None:
        return name, "Use letters, digits, spaces and punctuation only."
    if mixed_script(name):
        return name, MIXED_SCRIPT
    return name, None


MIXED_SCRIPT = (
    "Use one alphabet per word: this name mixes Latin, Cyrillic or Greek letters that look alike."
)
DIGIT_LOOKALIKES = str.maketrans("01", "ol")
ROOM_TAKEN = "A room with this name exists already; choose another name."
ROOM_LOOKALIKE = "A room whose name looks the same (#{}) exists already; choose another name."


async def render_rooms(
    request: web.Request, form: dict[str, str], errors: dict[str, str], status: int = 200
) -> web.Response:
    """Render the person's rooms and direct conversations, with activity and unread counts."""
    session = require_login(request)
    me = session.user.login
    store = request.app[STORE_KEY]
    reads = await request.app[READS_KEY].of_user(me)
    entries = [
        {
            "activity": a,
            "title": room_title(a.room, me),
            "unread": max(0, a.last_seq - reads.get(a.room.slug, 0)),
        }
        for a in await store.rooms.activity(me, MAX_ROOMS)
    ]
    context = {
        "rooms": [e for e in entries if e["activity"].room.kind != DIRECT],
        "directs": [e for e in entries if e["activity"].room.kind == DIRECT],
        "form": form,
        "errors": errors,
    }
    return await render_page(request, "rooms.html", context, status)


async def visible_room(request: web.Request, session: Session) -> Room:
    """Return the URL's room if the person may see it; else 404, exactly as for no room."""
    room = await request.app[STORE_KEY].rooms.visible(
        request.match_info["slug"], session.user.login
    )
    if room is None:
        raise web.HTTPNotFound()
    return room


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
        form = await request.post()
        name, error = validate_room_name(form)
        private = field(form, "private") == "on"
        shown = {"name": name, "private": "on" if private else ""}
        if error:
            return await render_rooms(request, shown, {"name": error}, status=400)
        # A private room's slug has a random end, so no open room's name can reveal it.
        # An open room's slug comes from the name's skeleton, so a look-alike name (another
        # script, case, width or accents) finds its slug taken: the check is the unique slug.
        slug = (
            f"{slugify(name)[: SLUG_MAX - 9]}-{new_room_suffix()}" if private else room_slug(name)
        )
        kind = PRIVATE if private else OPEN
        store = request.app[STORE_KEY]
        if not private and ("0" in name or "1" in name):
            # Digits that pass for letters (`Genera1`): an open room by the letters is refused.
            # One way only: a name made of letters is not checked against ones with digits.
            twin = await store.rooms.find(slug.translate(DIGIT_LOOKALIKES))
            if twin is not None and twin.kind == OPEN:
                error = ROOM_LOOKALIKE.format(twin.name)
                return await render_rooms(request, shown, {"name": error}, status=409)
        try:
            room = await store.rooms.create(slug, name, kind, user)
        except RoomTaken:
            error = ROOM_TAKEN
            taken = await store.rooms.find(slug)  # an open room: anyone may see its name
            if (
                taken is not None
                and taken.name.casefold() != name.casefold()
                and skeleton(taken.name) == skeleton(name)
            ):
                error = ROOM_LOOKALIKE.format(taken.name)
            return await render_rooms(request, shown, {"name": error}, status=409)
        limit.hit(user)
        raise web.HTTPFound(request.app.router["room"].url_for(slug=room.slug))


class ChatPage(Page):
    """A room's chat: the latest messages, a divider before the unread ones, who is online."""

    async def get(self) -> web.Response:
        request = self.request
        session = require_login(request)
        store = request.app[STORE_KEY]
        room = await visible_room(request, session)
        # Read before the messages: a change made in between is replayed to the socket again.
        last_rev = await store.messages.last_rev(room.slug)
        page = request.app[SETTINGS_KEY].history_page_size
        at = whole_number(request.query["at"]) if "at" in request.query else None
        if "at" in request.query and at is None:
            raise Refusal(400, f"at must be a whole number up to {MAX_WHOLE}.")
        # ?at=<seq> (a search result, a copied link): the messages around it, newer ones too.
        half = max(1, page // 2)
        if at is None:
            messages, at_end = await store.messages.before(room.slug, None, page), True
        else:
            newer = await store.messages.after(room.slug, at, half + 1)
            at_end = len(newer) <= half  # else the page loads the rest before going live
            messages = await store.messages.before(room.slug, at + 1, page - half) + newer[:half]
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
            "at": at if any(m.seq == at for m in messages) else 0,
            "at_end": at_end,
            "upload_max_mb": request.app[SETTINGS_KEY].upload_max_mb,
            "online": await request.app[BROKER_KEY].online(room.slug),
            "title": room_title(room, session.user.login),
            "members": await store.rooms.members(room.slug, MAX_PAGE) if room.private else [],
            "deactivated": await store.users.deactivated(sorted({m.user for m in messages})),
            "sidebar": await sidebar_entries(request, session.user.login, room.slug),
        }
        return await render_page(request, "chat.html", context)


class History(Page):
    """`GET /rooms/{slug}/messages?before=&limit=`: older messages as JSON, oldest first.

    `after=` instead of `before=` pages forward: messages with seq > after, oldest first.
    """

    async def get(self) -> web.Response:
        request = self.request
        session = request.get(SESSION_KEY)
        if session is None:
            return _error(401, "Log in first.")
        before = whole_number(request.query["before"]) if "before" in request.query else None
        limit = whole_number(request.query.get("limit", "50"))
        if limit is None or ("before" in request.query and before is None):
            return _error(400, f"before and limit must be whole numbers up to {MAX_WHOLE}.")
        if not 1 <= limit <= HISTORY_MAX:
            return _error(400, f"limit must be between 1 and {HISTORY_MAX}.")
        if before is not None and before < 1:
            return _error(400, "before must be at least 1.")
        after = whole_number(request.query["after"]) if "after" in request.query else None
        if "after" in request.query and (after is None or before is not None):
            return _error(400, f"after must be a whole number up to {MAX_WHOLE}, without before.")
        store = request.app[STORE_KEY]
        slug = request.match_info["slug"]
        if await store.rooms.visible(slug, session.user.login) is None:
            return _error(404, "No such room.")
        if after is not None:
            rows = await store.messages.after(slug, after, limit + 1)
            has_more = len(rows) > limit
            rows = rows[:limit]
        else:
            rows = await store.messages.before(slug, before, limit + 1)
            has_more = len(rows) > limit
            rows = rows[-limit:]
        deactivated = await store.users.deactivated(sorted({m.user for m in rows}))
        return web.json_response(
            {
                "messages": [m.to_json() for m in rows],
                "has_more": has_more,
                "deactivated": sorted(deactivated),
            }
        )


async def private_room(request: web.Request, refusal: str) -> Room:
    """Return the URL's private room for one of its members; 400 for an open or direct one."""
    room = await visible_room(request, require_login(request))
    if room.kind != PRIVATE:
        raise Refusal(400, refusal)
    return room


class RoomMembers(web.View):
    """`POST /rooms/<slug>/members` (field `login`): a member adds someone to a private room."""

    async def post(self) -> web.Response:
        request = self.request
        room = await private_room(request, "Only private rooms have members to add.")
        store = request.app[STORE_KEY]
        user = await store.users.find_by_login(field(await request.post(), "login").strip())
        if user is None or not user.active:
            raise Refusal(404, "There is no active account with this login.")
        if await store.rooms.add_member(room.slug, user.login):
            await request.app[BROKER_KEY].members_changed(room.slug)
        raise web.HTTPFound(request.app.router["room"].url_for(slug=room.slug))


class RoomLeave(web.View):
    """`POST /rooms/<slug>/leave`: leave a private room; one's sockets in it close."""

    async def post(self) -> web.Response:
        request = self.request
        room = await private_room(request, "Only private rooms can be left.")
        me = require_login(request).user.login
        await request.app[STORE_KEY].rooms.remove_member(room.slug, me)
        await request.app[BROKER_KEY].leave_room(room.slug, me)
        raise web.HTTPFound(request.app.router["index"].url_for())


class DirectMessage(Page):
    """`GET /dm/<login>`: open (creating once) the direct conversation with that person."""

    async def get(self) -> web.Response:
        request = self.request
        session = require_login(request)
        store = request.app[STORE_KEY]
        other = await store.users.find_by_login(request.match_info["login"])
        if other is None:
            raise Refusal(404, "There is no account with this login.")
        room = await store.rooms.direct(session.user.login, other.login)
        raise web.HTTPFound(request.app.router["room"].url_for(slug=room.slug))


class DirectMessageForm(Page):
    """`GET /dm?login=`: the room list's form, sent on to `/dm/<login>`."""

    async def get(self) -> web.Response:
        login = self.request.query.get("login", "").strip()
        if not login:
            raise web.HTTPFound(self.request.app.router["index"].url_for())
        raise web.HTTPFound(self.request.app.router["dm"].url_for(login=login))
