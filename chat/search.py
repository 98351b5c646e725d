"""Search: the `/search` page and `/search/messages`, over every room the person may see."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from auth import require_login
from common import SESSION_KEY
from common.numbers import whole_number
from common.pages import Page, render_page
from storage import STORE_KEY
from storage.base import DIRECT, Message, Room, login_key
from storage.search import QueryError, highlights, parse

SEARCH_MAX = 100  # results per page
SEARCH_PAGE = 20  # ... when the client does not say


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def room_label(room: Room, me: str) -> str:
    """Name a room in results: its name, or the other person of a direct conversation."""
    if room.kind != DIRECT:
        return room.name
    others = [p for p in room.peers if login_key(p) != login_key(me)]
    return ", ".join(others) if others else me


class SearchPage(Page):
    """`GET /search?q=`: the search form; static/js/search-page.js fetches the results."""

    async def get(self) -> web.Response:
        request = self.request
        require_login(request)
        context = {"q": request.query.get("q", ""), "room": request.query.get("room", "")}
        return await render_page(request, "search.html", context)


class SearchMessages(Page):
    """`GET /search/messages?q=&room=&before=&limit=`: matching messages as JSON, newest first."""

    async def get(self) -> web.Response:
        request = self.request
        session = request.get(SESSION_KEY)
        if session is None:
            return _error(401, "Log in first.")
        me = session.user.login
        limit = whole_number(request.query.get("limit", str(SEARCH_PAGE)))
        if limit is None or not 1 <= limit <= SEARCH_MAX:
            return _error(400, f"limit must be a whole number from 1 to {SEARCH_MAX}.")
        store = request.app[STORE_KEY]
        slug = request.query.get("room") or None
        if slug is not None and await store.rooms.visible(slug, me) is None:
            return _error(404, "No such room.")
        try:
            query = parse(request.query.get("q", ""))
        except QueryError as exc:
            return _error(400, str(exc))
        empty = web.json_response({"results": [], "has_more": False, "before": None})
        if query.room is not None:  # in:room narrows; a room one cannot see has no results
            if (slug is not None and query.room != slug) or await store.rooms.visible(
                query.room, me
            ) is None:
                return empty
            slug = query.room
        if query.author is not None:
            author = await store.users.find_by_login(query.author)
            if author is None:
                return empty
            query = dataclasses.replace(query, author=author.login)
        try:
            found = await store.search.messages(me, query, slug, request.query.get("before"), limit)
        except QueryError as exc:
            return _error(400, str(exc))
        # Results as complete as the history's: reactions and reply quotes, read a room at a time.
        complete: dict[tuple[str, int], Message] = {}
        for slug_found in dict.fromkeys(m.room for m in found.messages):
            group = [m for m in found.messages if m.room == slug_found]
            for m in await store.messages.complete(slug_found, group):
                complete[m.room, m.seq] = m
        rooms: dict[str, Room | None] = {}
        results: list[dict[str, Any]] = []
        for m in (complete[m.room, m.seq] for m in found.messages):
            if m.room not in rooms:
                rooms[m.room] = await store.rooms.find(m.room)
            room = rooms[m.room]
            if room is None:
                continue
            url = request.app.router["room"].url_for(slug=m.room).with_query(at=m.seq)
            results.append(
                {
                    **m.to_json(),
                    "room_name": room_label(room, me),
                    "room_kind": room.kind,
                    "url": str(url),
                    "highlights": highlights(query, m.text),
                }
            )
        return web.json_response(
            {"results": results, "has_more": found.has_more, "before": found.before}
        )
