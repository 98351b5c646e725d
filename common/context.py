"""What a request is while it runs: its id, when it began, who made it (for logs and metrics)."""

from __future__ import annotations

import contextvars
import dataclasses
import re
import time
import uuid

from aiohttp import web

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept when it is short and plain (no spaces or controls: it goes into logs).
_SANE_ID = re.compile(r"[!-~]{1,128}")


@dataclasses.dataclass(slots=True)
class RequestInfo:
    """One request's id, start (time.perf_counter) and, once known, the user's login."""

    id: str
    started: float
    user: str | None = None


REQUEST_INFO_KEY = web.RequestKey("request_info", RequestInfo)
# The same, for log records made while the request runs (aiohttp runs each in its own task).
CURRENT_REQUEST: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "current_request", default=None
)


def request_id(given: str | None) -> str:
    """Return the client's X-Request-ID if it is sane (1-128 visible ASCII), else a new one."""
    if given is not None and _SANE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def begin(request: web.Request) -> RequestInfo:
    """Note a request's arrival: its id, its start, and that it is the one running now."""
    info = RequestInfo(request_id(request.headers.get(REQUEST_ID_HEADER)), time.perf_counter())
    request[REQUEST_INFO_KEY] = info
    CURRENT_REQUEST.set(info)
    return info


def route_name(request: web.BaseRequest) -> str:
    """Name the request's route for labels and logs; never its path (it may hold a token)."""
    # A request aiohttp refused before routing (a malformed one) has no match_info.
    match_info = getattr(request, "_match_info", None)
    name = match_info.route.name if match_info is not None else None
    return name or "unmatched"


def logged_path(request: web.BaseRequest) -> str:
    """Return the path to log: the route's pattern (`/join/{token}`), so no secret in it is."""
    match_info = getattr(request, "_match_info", None)
    resource = match_info.route.resource if match_info is not None else None
    if resource is not None and resource.name != "static":
        return resource.canonical
    if resource is not None:
        return request.path[:200]  # a static file: the path is public
    # No route (a 404, a 405): the path is whatever the client sent, perhaps a link with a
    # token in it one character off (`/join/<token>/`), so only its first segment is kept.
    first, _, rest = request.path.lstrip("/").partition("/")
    return "/" + first[:100] + ("/…" if rest else "")


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Send the request's id back in X-Request-ID, so a client can quote it."""
    info = request.get(REQUEST_INFO_KEY)
    if info is not None:
        response.headers[REQUEST_ID_HEADER] = info.id
