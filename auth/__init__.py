"""Accounts and sessions: sign-up, login, logout, passwords, origin checks."""

from __future__ import annotations

from aiohttp import web

from auth.passwords import PASSWORDS_KEY, Passwords
from auth.sessions import SESSION_ENDED_KEY
from common import SESSION_KEY
from settings import Settings
from storage.base import Session


def require_login(request: web.Request) -> Session:
    """Return the logged-in session, or redirect a page request to the login form."""
    session = request.get(SESSION_KEY)
    if session is None:
        login = request.app.router["login"].url_for().with_query(next=request.path_qs)
        raise web.HTTPFound(login)
    return session


def setup_auth(app: web.Application, settings: Settings) -> None:
    """Add password hashing, and the list of those told when a login session ends."""
    passwords = app[PASSWORDS_KEY] = Passwords(
        settings.argon2_time_cost,
        settings.argon2_memory_kib,
        settings.hash_concurrency,
        settings.hash_queue,
    )
    app[SESSION_ENDED_KEY] = []

    async def close_passwords(app: web.Application) -> None:
        passwords.close()

    app.on_cleanup.append(close_passwords)
