"""The chat: rooms, the `/ws` socket, its hub and broker, read marks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from auth.sessions import SESSION_ENDED_KEY
from chat.bots import setup_bots
from chat.broker import BROKER_KEY, LocalBroker, RedisBroker
from chat.budgets import BUDGETS_KEY, Budgets, SharedBudgets
from chat.hub import HUB_KEY, Hub
from chat.reads import READS_KEY, ReadMarks, reads_ctx
from chat.webhooks import setup_webhooks
from common.health import READY_CHECKS_KEY
from common.tasks import running
from settings import SETTINGS_KEY, Settings
from storage import STORE_KEY
from storage.base import StorageUnavailable, Store

log = logging.getLogger(__name__)

EXPIRY_SWEEP = 30.0  # seconds between checks for sockets whose session expired


def setup_chat(app: web.Application, settings: Settings, store: Store) -> None:
    """Add the socket hub, the broker and read marks, with their background tasks."""
    hub = app[HUB_KEY] = Hub(store.messages, rooms=store.rooms)
    app[READS_KEY] = ReadMarks(store.reads)
    broker = app[BROKER_KEY] = (
        RedisBroker(hub, settings.redis_url, settings.presence_ttl)
        if settings.redis_url
        else LocalBroker(hub)
    )

    async def broker_ready() -> dict[str, str]:
        return broker.status()

    budgets = app[BUDGETS_KEY] = Budgets(settings.message_burst, settings.message_per_minute / 60)
    if isinstance(broker, RedisBroker):
        budgets.shared = SharedBudgets(broker.redis, lambda: broker.healthy)

    app[SESSION_ENDED_KEY].append(broker.end_session)  # its sockets close, on every process
    app[READY_CHECKS_KEY].append(broker_ready)
    app.cleanup_ctx.append(broker_ctx)
    app.cleanup_ctx.append(reads_ctx)  # after the store's: the last flush runs before it closes
    app.cleanup_ctx.append(expiry_ctx)
    app.cleanup_ctx.append(heartbeat_ctx)
    app.on_shutdown.append(close_sockets)
    setup_bots(app)
    setup_webhooks(app)


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to the broker (Redis, when configured) for the app's lifetime."""
    await app[BROKER_KEY].start()
    yield
    await app[BROKER_KEY].close()


async def expiry_ctx(app: web.Application) -> AsyncIterator[None]:
    """Close, in the background, the sockets whose session expired or was ended elsewhere, and
    those in private rooms their people no longer belong to."""

    async def sweep() -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP)
            try:
                await app[HUB_KEY].close_expired()
                await app[HUB_KEY].close_ended(app[STORE_KEY].sessions)
                await app[HUB_KEY].close_strangers(app[STORE_KEY].rooms)
            except StorageUnavailable as exc:
                log.warning("cannot check the sockets' sessions: %s", exc)

    async with running(sweep()):
        yield


async def heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    """Ping quiet sockets every WS_HEARTBEAT seconds and drop those that stopped answering."""
    interval = app[SETTINGS_KEY].ws_heartbeat

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval / 4)
            app[HUB_KEY].ping_or_drop(interval)

    async with running(beat()):
        yield


async def close_sockets(app: web.Application) -> None:
    """Tell every socket the server is going away (1001) before the process stops."""
    await app[HUB_KEY].close_all()
