"""Login sessions: the cookie that names one, starting and ending it, and who hears of the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp_session import SESSION_KEY as COOKIE_SESSION_KEY
from aiohttp_session import get_session, new_session

from common.csrf import CSRF, new_csrf_token
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import Session, User

SID = "sid"

SessionEnded = Callable[[str], Awaitable[None]]
# Called with the id of every login session that ends (logout, ...): `chat` closes its sockets.
SESSION_ENDED_KEY = web.AppKey("session_ended", list[SessionEnded])


async def session_id(request: web.Request) -> str | None:
    """Return the server-side session id the cookie names, if any."""
    session = await get_session(request)
    sid = session.get(SID)
    return sid if isinstance(sid, str) else None


BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


def device_hint(user_agent: str) -> str:
    """Name a browser and system from a User-Agent, for people to tell their sessions apart."""
    browser = next((name for key, name in BROWSERS if key in user_agent), "")
    system = next((name for key, name in SYSTEMS if key in user_agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"


async def start_session(request: web.Request, user: User) -> Session:
    """Log the user in with a brand-new cookie session and server-side session."""
    store = request.app[STORE_KEY]
    server_session = await store.sessions.create(
        user,
        request.app[SETTINGS_KEY].session_max_age,
        device_hint(request.headers.get("User-Agent", "")),
    )
    # A new cookie session on every login: whatever session id an attacker planted is dropped.
    cookie = await new_session(request)
    cookie[SID] = server_session.id
    cookie[CSRF] = new_csrf_token()
    return server_session


async def end_session(request: web.Request) -> None:
    """Log out: delete the server-side session (so copied cookies stop working) and the cookie."""
    sid = await session_id(request)
    if sid is not None:
        await request.app[STORE_KEY].sessions.delete(sid)
        await session_ended(request.app, sid)
    cookie = await get_session(request)
    cookie.invalidate()


async def session_ended(app: web.Application, sid: str) -> None:
    """Tell whoever registered for it that a login session has ended."""
    for hook in app[SESSION_ENDED_KEY]:
        await hook(sid)


def drop_cookie_session(request: web.Request) -> None:
    """Let go of the decoded cookie session once a request became a WebSocket.

    The session middleware never saves it for an upgraded response, and the request it hangs on
    lives as long as the socket: ~0.6 KiB on every open socket.
    """
    request.pop(COOKIE_SESSION_KEY, None)
