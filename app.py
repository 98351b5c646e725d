"""The chat's application factory and entry point."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_remotes import XForwardedRelaxed
from aiohttp_session import session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

import middlewares
from auth import SESSION_KEY
from auth.limits import LIMITS_KEY, Limits
from auth.passwords import PASSWORDS_KEY, Passwords
from chat.broker import BROKER_KEY, LocalBroker, RedisBroker
from chat.hub import HUB_KEY, Hub
from chat.reads import READS_KEY, ReadMarks, reads_ctx
from chat.views import LOOP_LAG_KEY
from routes import setup_routes
from settings import SETTINGS_KEY, Settings, SettingsError, load_settings
from storage import STORE_KEY, open_store
from storage.base import StorageUnavailable, iso

log = logging.getLogger("chat")

# aiohttp-session 2.12 (its latest release) keeps its state under string request keys.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

TEMPLATES_DIR = Path(__file__).parent / "templates"
SHUTDOWN_TIMEOUT = 5.0  # seconds for in-flight requests after sockets got 1001
EXPIRY_SWEEP = 30.0  # seconds between checks for sockets whose session expired
# Seconds between event-loop lag probes; the last minute of them is kept. Each probe wakes an
# otherwise idle loop, and on a VM such a wake-up runs cold: ~0.3 ms of CPU here, so ten a second
# were 2.5% of the server's CPU at 200 sockets and 40 messages/s (bench/ws_fanout.py).
LAG_PROBE = 1.0


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the database (creating indexes) for the app's lifetime."""
    store = app[STORE_KEY]
    try:
        await store.setup()
    except StorageUnavailable:
        await store.close()
        raise
    yield
    await store.close()


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to the broker (Redis, when configured) for the app's lifetime."""
    await app[BROKER_KEY].start()
    yield
    await app[BROKER_KEY].close()


async def expiry_ctx(app: web.Application) -> AsyncIterator[None]:
    """Close sockets whose login session expired, in the background."""

    async def sweep() -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP)
            await app[HUB_KEY].close_expired()

    task = asyncio.create_task(sweep())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    """Ping quiet sockets every WS_HEARTBEAT seconds and drop those that stopped answering."""
    interval = app[SETTINGS_KEY].ws_heartbeat

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval / 4)
            app[HUB_KEY].ping_or_drop(interval)

    task = asyncio.create_task(beat())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    """Measure how late the event loop wakes up, for /healthz (a stalled loop stalls everyone)."""
    lags = app[LOOP_LAG_KEY]

    async def measure() -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE)
            lags.append(max(0.0, loop.time() - started - LAG_PROBE))

    task = asyncio.create_task(measure())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def close_sockets(app: web.Application) -> None:
    """Tell every socket the server is going away (1001) before the process stops."""
    await app[HUB_KEY].close_all()


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set the security headers of every response but a WebSocket upgrade.

    A 101 response has no document for these headers to guard, and its headers are held for
    the socket's whole life: on a thousand idle sockets they would cost about 1.5 KiB each.
    """
    h = response.headers
    h["Server"] = "chat"
    if response.status == 101:
        return
    host = request.host
    h["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' ws://{host} wss://{host}; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "same-origin"
    h["X-Frame-Options"] = "DENY"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    if SESSION_KEY in request and "Cache-Control" not in h:
        h["Cache-Control"] = "no-store"
    if request.app[SETTINGS_KEY].cookie_secure:
        h["Strict-Transport-Security"] = "max-age=31536000"


def create_app(settings: Settings) -> web.Application:
    """Build the application; no I/O happens until it starts."""
    storage = EncryptedCookieStorage(
        settings.secret_key,
        cookie_name="chat_session",
        max_age=settings.session_max_age,
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
    )
    # Order matters: proxy headers first (so scheme and address are the client's), error
    # pages around everything, the session before anything that reads it (user, CSRF).
    chain: list[Any] = [
        middlewares.error_pages,
        session_middleware(storage),
        middlewares.current_user,
        middlewares.csrf,
    ]
    if settings.trust_proxy:
        chain.insert(0, XForwardedRelaxed().middleware)
    app = web.Application(middlewares=chain, client_max_size=64 * 1024)
    app[SETTINGS_KEY] = settings
    app[STORE_KEY] = open_store(settings)
    app[LOOP_LAG_KEY] = collections.deque(maxlen=round(60 / LAG_PROBE))
    app[HUB_KEY] = Hub(app[STORE_KEY].messages)
    app[READS_KEY] = ReadMarks(app[STORE_KEY].reads)
    app[BROKER_KEY] = (
        RedisBroker(app[HUB_KEY], settings.redis_url, settings.presence_ttl)
        if settings.redis_url
        else LocalBroker(app[HUB_KEY])
    )
    app[PASSWORDS_KEY] = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
    app[LIMITS_KEY] = Limits(
        settings.login_limit_account,
        settings.login_limit_address,
        settings.login_window,
        settings.signup_limit_address,
        settings.signup_window,
        settings.room_limit_user,
        settings.room_window,
    )
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(default=True),
        filters={"iso": iso},
    )
    app[aiohttp_jinja2.static_root_key] = "/static"
    setup_routes(app)
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(broker_ctx)
    app.cleanup_ctx.append(reads_ctx)  # after the store's: the last flush runs before it closes
    app.cleanup_ctx.append(expiry_ctx)
    app.cleanup_ctx.append(heartbeat_ctx)
    app.cleanup_ctx.append(loop_lag_ctx)
    app.on_shutdown.append(close_sockets)
    app.on_response_prepare.append(security_headers)
    return app


def main() -> None:
    """Load settings and serve until SIGINT or SIGTERM."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(f"chat: configuration error: {exc}")
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.info(
        "starting on http://%s:%d with %s storage", settings.host, settings.port, settings.backend
    )
    try:
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log_format='%a "%r" %s %b %Tfs',
            print=None,
        )
    except StorageUnavailable as exc:
        sys.exit(f"chat: cannot start: {exc}")


if __name__ == "__main__":
    main()
