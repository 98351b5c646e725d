"""The security headers of every response."""

from __future__ import annotations

from aiohttp import web

from common import SESSION_KEY
from common.static import STATIC_KEY
from settings import SETTINGS_KEY

# No request's Host in it: CSP Level 3 lets 'self' match ws: and wss: on the page's own host.
# The one inline script allowed is the pages' import map, by its hash (common/static.py).
CSP = (
    "default-src 'none'; script-src 'self'{import_map}; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def csp(app: web.Application) -> str:
    """Return the Content-Security-Policy of the app's pages."""
    static = app.get(STATIC_KEY)
    return CSP.format(import_map=f" {static.import_map_csp}" if static else "")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set the security headers of every response but a WebSocket upgrade.

    A 101 response has no document for these headers to guard, and its headers are held for
    the socket's whole life: on a thousand idle sockets they would cost about 1.5 KiB each.
    """
    h = response.headers
    h["Server"] = "chat"
    if response.status == 101:
        return
    h.setdefault("Content-Security-Policy", csp(request.app))  # served uploads set a stricter one
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "same-origin"
    h["X-Frame-Options"] = "DENY"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    if SESSION_KEY in request and "Cache-Control" not in h:
        h["Cache-Control"] = "no-store"
    if request.app[SETTINGS_KEY].cookie_secure:
        h["Strict-Transport-Security"] = "max-age=31536000"
