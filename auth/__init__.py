"""Accounts and sessions: sign-up, login, logout, CSRF, and the request's current user."""

from __future__ import annotations

from aiohttp import web

from storage.base import Session

SESSION_KEY = web.RequestKey("session", Session)


def require_login(request: web.Request) -> Session:
    """Return the logged-in session, or redirect a page request to the login form."""
    session = request.get(SESSION_KEY)
    if session is None:
        login = request.app.router["login"].url_for().with_query(next=request.path_qs)
        raise web.HTTPFound(login)
    return session
