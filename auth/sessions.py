"""Cookie session helpers: the login session id and the CSRF token it carries."""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from aiohttp_session import SESSION_KEY as COOKIE_SESSION_KEY
from aiohttp_session import get_session, new_session

from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import Session, User

SID = "sid"
CSRF = "csrf"


async def csrf_token(request: web.Request) -> str:
    """Return the session's CSRF token, creating one on first use."""
    session = await get_session(request)
    token = session.get(CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF] = token
    return token


async def csrf_valid(request: web.Request, submitted: str) -> bool:
    """Say whether a submitted token is the session's."""
    session = await get_session(request)
    token = session.get(CSRF)
    return isinstance(token, str) and hmac.compare_digest(token.encode(), submitted.encode())


async def session_id(request: web.Request) -> str | None:
    """Return the server-side session id the cookie names, if any."""
    session = await get_session(request)
    sid = session.get(SID)
    return sid if isinstance(sid, str) else None


async def start_session(request: web.Request, user: User) -> Session:
    """Log the user in with a brand-new cookie session and server-side session."""
    store = request.app[STORE_KEY]
    server_session = await store.sessions.create(user, request.app[SETTINGS_KEY].session_max_age)
    # A new cookie session on every login: whatever session id an attacker planted is dropped.
    cookie = await new_session(request)
    cookie[SID] = server_session.id
    cookie[CSRF] = secrets.token_urlsafe(32)
    return server_session


async def end_session(request: web.Request) -> str | None:
    """Log out: delete the server-side session (so copied cookies stop working) and the cookie."""
    sid = await session_id(request)
    if sid is not None:
        await request.app[STORE_KEY].sessions.delete(sid)
    cookie = await get_session(request)
    cookie.invalidate()
    return sid


def drop_cookie_session(request: web.Request) -> None:
    """Let go of the decoded cookie session once a request became a WebSocket.

    The session middleware never saves it for an upgraded response, and the request it hangs on
    lives as long as the socket: ~0.6 KiB on every open socket.
    """
    request.pop(COOKIE_SESSION_KEY, None)
