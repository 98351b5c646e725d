"""The chat's application factory and entry point."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
import warnings
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
from auth import setup_auth
from chat import setup_chat
from chat.stats import watch_chat
from chat.uploads import setup_uploads
from common import markdown
from common.avatars import avatar_colour, initials
from common.context import echo_request_id
from common.days import day_key, day_label
from common.headers import security_headers
from common.health import READY_CHECKS_KEY, setup_health
from common.limits import LIMITS_KEY, Limits
from common.logs import access_log_options, configure_logging
from common.metrics import setup_metrics
from common.processes import PortInUse, check_port, run_workers, stop_once
from common.redact import RedactKeys
from common.static import import_map, setup_static, static_url
from routes import STATIC_DIR, setup_routes
from settings import (
    MAX_WORKERS,
    SETTINGS_KEY,
    Settings,
    SettingsError,
    load_settings,
    worker_count,
)
from storage import STORE_KEY, open_store, store_ctx, store_ready
from storage.base import StorageUnavailable, iso

log = logging.getLogger("chat")

# aiohttp-session 2.12 (its latest release) keeps its state under string request keys.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

TEMPLATES_DIR = Path(__file__).parent / "templates"
SHUTDOWN_TIMEOUT = 5.0  # seconds for in-flight requests after sockets got 1001


def create_app(settings: Settings) -> web.Application:
    """Build the application; no I/O happens until it starts."""
    storage = EncryptedCookieStorage(
        settings.secret_key,
        cookie_name=settings.cookie_name,
        max_age=settings.session_max_age,  # path "/" and no Domain, as `__Host-` requires
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
    )
    # Order matters: the request id first (on aiohttp's own request, which the access log
    # gets), proxy headers next (so scheme, address and host are the client's), then the Host
    # check before anything else runs, error pages around the rest, a request's whole body
    # before any work on it (slow clients), the session before anything that reads it (user,
    # CSRF).
    chain: list[Any] = [
        middlewares.allowed_host,
        middlewares.error_pages,
        middlewares.body_deadline,
        session_middleware(storage),
        middlewares.current_user,
        middlewares.note_user,
        middlewares.csrf,
    ]
    if settings.trust_proxy:
        chain.insert(0, XForwardedRelaxed().middleware)
    chain.insert(0, middlewares.request_context)
    app = web.Application(middlewares=chain, client_max_size=64 * 1024)
    app[SETTINGS_KEY] = settings
    store = app[STORE_KEY] = open_store(settings)
    app.cleanup_ctx.append(store_ctx)  # first: what the others start may use the store
    setup_health(app)
    setup_metrics(app, settings)  # after the store and the lag probe, which it watches
    app[READY_CHECKS_KEY].append(functools.partial(store_ready, store))
    app[LIMITS_KEY] = Limits.from_settings(settings)
    setup_auth(app, settings)
    setup_chat(app, settings, store)
    if settings.metrics:
        watch_chat(app)
    setup_uploads(app)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(default=True),
        filters={
            "iso": iso,
            "markdown": markdown.render,
            "initials": initials,
            "avatar_colour": avatar_colour,
            "day_key": day_key,
            "day_label": day_label,
        },
    )
    env.globals.update(static=static_url, import_map=import_map)
    setup_static(app, STATIC_DIR)
    setup_routes(app)
    app.on_response_prepare.append(security_headers)
    app.on_response_prepare.append(echo_request_id)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line: `--workers N` is the only option."""
    parser = argparse.ArgumentParser(description="Serve the chat (settings: environment, .env).")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help=f"processes serving PORT together, 1 to {MAX_WORKERS} (default: WORKERS, or 1); "
        "more than 1 needs REDIS_URL",
    )
    return parser.parse_args(argv)


def _workers(raw: str) -> int:
    try:
        return worker_count(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{raw!r}: {exc}") from None


def setup_logging(settings: Settings) -> None:
    """Configure logging for this process (the parent's and each worker's)."""
    configure_logging(settings.log_level, settings.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactKeys())  # bot keys are in URLs; no log line shows one


def serve(settings: Settings, worker: bool = False) -> None:
    """Serve the app until SIGINT or SIGTERM (`worker`: one of several on the port)."""
    app = create_app(settings)
    if worker:
        app.on_startup.append(stop_once)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            reuse_port=True if worker else None,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            **access_log_options(settings.log_format),
            print=None,
        )
    except StorageUnavailable as exc:
        sys.exit(f"chat: cannot start: {exc}")


def serve_worker(settings: Settings) -> None:
    """Serve as one of several workers sharing the port."""
    setup_logging(settings)
    serve(settings, worker=True)


async def prepare_store(settings: Settings) -> None:
    """Open the store once, so its migrations run before any worker starts."""
    store = open_store(settings)
    try:
        await store.setup()
    finally:
        await store.close()


def serve_workers(settings: Settings, count: int) -> None:
    """Check what several workers need, then run them until SIGINT or SIGTERM."""
    if not settings.redis_url:
        sys.exit(
            f"chat: cannot start: {count} workers (--workers, WORKERS) need REDIS_URL, so the "
            "processes see each other's messages and presence (see README, Scale)"
        )
    try:
        check_port(settings.host, settings.port)
        asyncio.run(prepare_store(settings))
    except (PortInUse, StorageUnavailable) as exc:
        sys.exit(f"chat: cannot start: {exc}")
    cores = os.cpu_count() or 1
    if count > cores:
        log.warning("%d workers on %d cores: more than one a core only adds overhead", count, cores)
    sys.exit(run_workers(serve_worker, settings, count))


def main() -> None:
    """Load settings and serve until SIGINT or SIGTERM."""
    args = parse_args()
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(f"chat: configuration error: {exc}")
    setup_logging(settings)
    count = args.workers or settings.workers
    log.info(
        "starting %son http://%s:%d with %s storage",
        f"{count} workers " if count > 1 else "",
        settings.host,
        settings.port,
        settings.backend,
    )
    if settings.trust_proxy and not settings.allowed_hosts:
        hosts = ", ".join(settings.hosts)
        log.warning("TRUST_PROXY but no ALLOWED_HOSTS: only %s are served", hosts)
    if count > 1:
        serve_workers(settings, count)
        return
    serve(settings)


if __name__ == "__main__":
    main()
