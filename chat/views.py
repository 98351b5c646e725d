"""The chat page, the history endpoint and the health checks."""

from __future__ import annotations

import collections
from typing import Any

from aiohttp import web

from auth import SESSION_KEY, require_login
from auth.pages import render_page
from chat.broker import BROKER_KEY
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import StorageUnavailable

HISTORY_MAX = 100
LOOP_LAG_KEY = web.AppKey("loop_lag", collections.deque)  # seconds late, last minute


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ChatPage(web.View):
    """The chat: the latest messages, who is online, and the message box."""

    async def get(self) -> web.Response:
        request = self.request
        session = require_login(request)
        store = request.app[STORE_KEY]
        room = await store.rooms.find("general")
        if room is None:
            raise web.HTTPNotFound()
        page = request.app[SETTINGS_KEY].history_page_size
        messages = await store.messages.before(room.slug, None, page)
        context: dict[str, Any] = {
            "user": session.user,
            "room": room,
            "messages": messages,
            "last_seq": messages[-1].seq if messages else 0,
            "first_seq": messages[0].seq if messages else 0,
            "online": await request.app[BROKER_KEY].online(room.slug),
        }
        return await render_page(request, "chat.html", context)


class History(web.View):
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


class Healthz(web.View):
    """Liveness: the process answers; the database is not consulted. Reports event-loop lag."""

    async def get(self) -> web.Response:
        lags = sorted(self.request.app[LOOP_LAG_KEY])
        lag = {
            "p50": round(lags[len(lags) // 2] * 1000, 2) if lags else 0.0,
            "p99": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 2)
            if lags
            else 0.0,
            "max": round(lags[-1] * 1000, 2) if lags else 0.0,
        }
        return web.json_response({"status": "ok", "loop_lag_ms": lag})


class Readyz(web.View):
    """Readiness: the database answers a ping (and Redis is connected, when used), else 503."""

    async def get(self) -> web.Response:
        report = {"status": "ready", "database": "ok"}
        try:
            await self.request.app[STORE_KEY].ping()
        except StorageUnavailable:
            report.update(status="unavailable", database="unreachable")
        report.update(self.request.app[BROKER_KEY].status())
        if report.get("redis", "ok") != "ok":
            report["status"] = "unavailable"
        return web.json_response(report, status=200 if report["status"] == "ready" else 503)
