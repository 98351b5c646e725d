"""The CSRF token every form carries, kept in the cookie session."""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from aiohttp_session import get_session

CSRF = "csrf"


def new_csrf_token() -> str:
    """Return a fresh, unguessable CSRF token."""
    return secrets.token_urlsafe(32)


async def csrf_token(request: web.Request) -> str:
    """Return the session's CSRF token, creating one on first use."""
    session = await get_session(request)
    token = session.get(CSRF)
    if not isinstance(token, str):
        token = new_csrf_token()
        session[CSRF] = token
    return token


async def csrf_valid(request: web.Request, submitted: str) -> bool:
    """Say whether a submitted token is the session's."""
    session = await get_session(request)
    token = session.get(CSRF)
    return isinstance(token, str) and hmac.compare_digest(token.encode(), submitted.encode())
