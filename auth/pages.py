"""Rendering pages with what every page needs: the logged-in user and the CSRF token."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from auth import SESSION_KEY
from auth.sessions import csrf_token


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


class Page(web.View):
    """A view whose GET also answers HEAD: same status and headers, no body (RFC 9110, 9.3.2)."""

    async def get(self) -> web.StreamResponse:
        raise NotImplementedError

    async def head(self) -> web.StreamResponse:
        return await self.get()
