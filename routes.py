"""The route table: every URL the chat serves, by name."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from auth.views import Login, Logout, SignUp
from chat.views import ChatPage, History, RoomCreate, RoomList
from chat.ws import ChatSocket
from common.health import Healthz, Readyz

STATIC_DIR = Path(__file__).parent / "static"


def setup_routes(app: web.Application) -> None:
    """Add all routes to the app."""
    app.add_routes(
        [
            web.view("/", RoomList, name="index"),
            web.view("/rooms", RoomCreate, name="rooms"),
            web.view("/rooms/{slug}", ChatPage, name="room"),
            web.view("/signup", SignUp, name="signup"),
            web.view("/login", Login, name="login"),
            web.view("/logout", Logout, name="logout"),
            web.view("/ws", ChatSocket, name="ws"),
            web.view("/rooms/{slug}/messages", History, name="history"),
            web.view("/healthz", Healthz, name="healthz"),
            web.view("/readyz", Readyz, name="readyz"),
            web.static("/static", STATIC_DIR, name="static"),
        ]
    )
