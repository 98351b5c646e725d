"""Same-origin checks for unsafe requests and WebSocket handshakes."""

from __future__ import annotations

from aiohttp import web


def own_origin(request: web.Request) -> str:
    """Return this site's origin as the browser sees it (scheme and host)."""
    return f"{request.scheme}://{request.host}"


def same_origin(request: web.Request, *, allow_fetch_site: bool = True) -> bool:
    """Say whether the request comes from a page of this site.

    A present Origin header must equal our own origin. Without one, a browser's
    `Sec-Fetch-Site: same-origin` is accepted where allowed; anything else is refused.
    """
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == own_origin(request)
    return allow_fetch_site and request.headers.get("Sec-Fetch-Site") == "same-origin"
