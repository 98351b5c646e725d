"""Rendering pages with what every page needs (the logged-in user, the CSRF token); redirects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from common import SESSION_KEY
from common.csrf import csrf_token


async def render_page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render a template inside the site's layout."""
    session = request.get(SESSION_KEY)
    full = {
        "current_user": session.user if session else None,
        "csrf_token": await csrf_token(request),
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, full, status=status)


async def render_form(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render a form page, empty unless the context gives values and errors."""
    return await render_page(request, template, {"errors": {}, "form": {}, **context}, status)


def redirect(request: web.Request, name: str, **query: str) -> web.HTTPFound:
    """Return a redirect to a named route."""
    url = request.app.router[name].url_for()
    return web.HTTPFound(url.with_query(query) if query else url)


class Refusal(Exception):
    """A request refused with a message for people: answered as the error page (or JSON)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})  # e.g. Retry-After, sent with the page


class Page(web.View):
    """A view whose GET also answers HEAD: same status and headers, no body (RFC 9110, 9.3.2)."""

    async def get(self) -> web.StreamResponse:
        raise NotImplementedError

    async def head(self) -> web.StreamResponse:
        return await self.get()
