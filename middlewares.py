"""Request middlewares: the request id, the Host check, error pages, slow bodies, the user, CSRF."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import get_session

from auth.origin import same_origin
from auth.sessions import SID, session_id
from common import SESSION_KEY
from common.context import REQUEST_INFO_KEY, begin, logged_path
from common.csrf import csrf_valid
from common.forms import field
from common.pages import Refusal, render_page
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import StorageUnavailable, now

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SEEN_EVERY = dt.timedelta(minutes=5)  # how stale a session's "last seen" may get
# The bot API, for machines: a key in the URL authenticates them, never a cookie. So no session
# is looked up there (a browser's cookies give no power) and no CSRF token is asked for.
MACHINE_ROUTES = frozenset({"bot-messages", "bot-message", "bot-slack"})
# Served without a database lookup of the session.
NO_USER_ROUTES = frozenset({"static", "healthz", "readyz", "metrics"}) | MACHINE_ROUTES
BODY_GRACE = 2.0  # seconds of a body before BODY_MIN_RATE applies (a slow start, a lost packet)
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# Bodies their view streams itself (uploads: to disk, with its own limits, rate and CSRF check).
STREAMED_ROUTES = frozenset({"room-uploads"})
# Routes a page calls with fetch(): the token may come in the X-CSRF-Token header instead.
HEADER_TOKEN_ROUTES = frozenset({"room-notify"})

ERROR_TEXT = {
    400: "The request could not be understood.",
    401: "Please log in first.",
    403: "This request was refused. If you submitted a form, reload the page and try again.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "That request was too large.",
    429: "Too many attempts. Please wait a little and try again.",
    503: "The chat is temporarily unavailable. Please try again in a moment.",
}


FOREIGN_HOST = "This site is not served under that host name."


@web.middleware
def request_context(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Give the request its id (a sane X-Request-ID, else a new one) and note when it began.

    It runs first, on the request aiohttp made (the proxy middleware's copy shares its state),
    and returns the handler's awaitable as `csrf` does: no frame of it stays under a WebSocket.
    """
    begin(request)
    return handler(request)


@web.middleware
def note_user(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Note who makes the request (its login), for the log lines written while it runs."""
    session = request.get(SESSION_KEY)
    info = request.get(REQUEST_INFO_KEY)
    if session is not None and info is not None:
        info.user = session.user.login
    return handler(request)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Say whether a Host is allowed: `*`, an entry with its port, or a port-less entry's name.

    An entry without a port admits its name on any port: DNS rebinding brings the attacker's
    name, and behind a proxy the port is the proxy's, not the one the app binds.
    """
    host = host.strip().lower()
    if "*" in allowed or host in allowed:
        return True
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit() or (":" in name and not name[:1] + name[-1:] == "[]"):
        return False  # no port, or a name with a colon that is no bracketed IPv6 address
    return name in allowed


@web.middleware
def allowed_host(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Refuse a request whose Host (X-Forwarded-Host under TRUST_PROXY) is not ALLOWED_HOSTS.

    It runs right after the proxy middleware (so request.host is the forwarded one) and before
    every other: a foreign Host reads no cookie, renders no page and touches no store. Like
    `csrf`, it returns the handler's awaitable so no frame of it stays under a WebSocket.
    """
    if host_allowed(request.host, request.app[SETTINGS_KEY].hosts):
        return handler(request)
    log.info("refused %s %s for host %r", request.method, logged_path(request), request.host)
    return _refuse_host()


async def _refuse_host() -> web.StreamResponse:
    return web.json_response({"error": FOREIGN_HOST}, status=400)


def _api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "") and not _api(request)


async def _error_response(
    request: web.Request, status: int, message: str | None = None
) -> web.Response:
    if message is None:
        message = ERROR_TEXT.get(status, "Something went wrong on our side. Please try again.")
    if not _wants_html(request):
        return web.json_response({"error": message}, status=status)
    context = {"status": status, "message": message}
    return await render_page(request, "error.html", context, status=status)


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn errors into friendly pages (JSON for non-browser clients); log unexpected ones."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not (_wants_html(request) or _api(request)):
            raise  # the API answers every error in JSON: {"error": ...}
        response = await _error_response(request, exc.status)
        for name in ("Retry-After", "Allow"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Refusal as exc:
        response = await _error_response(request, exc.status, exc.message)
        response.headers.update(exc.headers)
        return response
    except StorageUnavailable as exc:
        log.warning(
            "database unavailable during %s %s: %s", request.method, logged_path(request), exc
        )
        response = await _error_response(request, 503)
        response.headers["Retry-After"] = "5"
        return response
    except Exception:
        log.exception("unhandled error during %s %s", request.method, logged_path(request))
        return await _error_response(request, 500)


@web.middleware
def body_deadline(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Read a request's body first, within BODY_TIMEOUT and at BODY_MIN_RATE; else 408 and close.

    aiohttp waits for a body as long as its client likes: a client sending one byte every few
    seconds would hold a connection, and a handler, forever. The body is read (and cached: the
    views' request.post() gets it again) before the session or any handler sees the request.
    A request without a body goes straight on, as in `csrf` (no frame kept by a WebSocket).
    """
    if not request.body_exists or _route_name(request) in STREAMED_ROUTES:
        return handler(request)
    return _body_first(request, handler)


def _route_name(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.name if resource is not None else None


async def _body_first(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS_KEY]
    try:
        if await _read_body(request, settings.body_timeout, settings.body_min_rate):
            return await handler(request)
    except ConnectionResetError:  # the client went away mid-body: nobody to answer
        log.info(
            "client closed the connection while sending %s %s", request.method, logged_path(request)
        )
        request.protocol.force_close()
        return web.Response(status=400)
    log.info(
        "client timeout reading the body of %s %s from %s (%d of %s bytes)",
        request.method,
        logged_path(request),
        request.remote,
        request.content.total_bytes,
        request.content_length if request.content_length is not None else "?",
    )
    response = web.Response(status=408, text="Request body too slow.\n")
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # no lingering read of the rest of the body either
    return response


async def _read_body(request: web.Request, timeout: float, min_rate: int) -> bool:
    """Read (and cache) the body; False when it is too slow (BODY_TIMEOUT, BODY_MIN_RATE)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    reading = asyncio.ensure_future(
        request.post() if request.content_type in FORM_TYPES else request.read()
    )
    try:
        while True:
            # Wake when the deadline passes or the average rate would fall below the minimum.
            cut = start + timeout
            if min_rate:
                cut = min(cut, start + max(BODY_GRACE, request.content.total_bytes / min_rate))
            done, _ = await asyncio.wait({reading}, timeout=max(0.0, cut - loop.time()))
            if done:
                reading.result()  # 413 for a body over client_max_size, as before
                return True
            elapsed = loop.time() - start
            too_slow = min_rate > 0 and request.content.total_bytes < min_rate * elapsed
            if elapsed >= timeout or (elapsed >= BODY_GRACE and too_slow):
                return False
    finally:
        if not reading.done():
            reading.cancel()
        elif not reading.cancelled():
            reading.exception()  # retrieved, also when this task itself was cancelled


@web.middleware
async def current_user(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the live server-side session (and so the user) named by the session cookie."""
    route = request.match_info.route.resource
    if route is None or route.name not in NO_USER_ROUTES:
        sid = await session_id(request)
        if sid is not None:
            sessions = request.app[STORE_KEY].sessions
            session = await sessions.find(sid)
            if session is not None:
                request[SESSION_KEY] = session
                # "Last seen" on /account and /admin, at most every SEEN_EVERY.
                t, seen = now(), (session.last_seen_at, session.user.last_seen_at)
                if any(s is None or t - s > SEEN_EVERY for s in seen):
                    await sessions.seen(session, t)
            else:
                (await get_session(request)).pop(SID, None)  # ended or expired elsewhere
    return await handler(request)


@web.middleware
def csrf(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Refuse unsafe requests without a same-origin source and the session's CSRF token.

    A safe request goes straight on: returning the handler's awaitable instead of awaiting it
    keeps this middleware's frame out of the chain a WebSocket holds for its whole life.
    """
    if request.method in UNSAFE_METHODS and _route_name(request) not in MACHINE_ROUTES:
        return _checked(request, handler)
    return handler(request)


def _route_name(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.name if resource is not None else None


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not same_origin(request):
        log.info("refused cross-origin %s %s", request.method, logged_path(request))
        raise web.HTTPForbidden(reason="Cross-origin request refused")
    if _route_name(request) in STREAMED_ROUTES:
        return await handler(request)  # its view checks the token before keeping anything
    form = await request.post()
    submitted = field(form, "csrf_token")
    if not submitted and _route_name(request) in HEADER_TOKEN_ROUTES:
        submitted = request.headers.get("X-CSRF-Token", "")
    if not await csrf_valid(request, submitted):
        log.info("refused %s %s without a valid CSRF token", request.method, logged_path(request))
        raise web.HTTPForbidden(reason="Missing or wrong CSRF token")
    return await handler(request)
