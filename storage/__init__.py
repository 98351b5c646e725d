"""Storage: one small interface, two backends (MongoDB when MONGODB_URI is set, else SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from settings import Settings
from storage.base import StorageUnavailable, Store

STORE_KEY = web.AppKey("store", Store)


def open_store(settings: Settings) -> Store:
    """Return the store the settings select; it connects in `setup()`."""
    if settings.mongodb_uri:
        from storage.mongo import MongoStore

        return MongoStore(settings.mongodb_uri, settings.mongodb_db, settings.mongodb_timeout_ms)
    from storage.sqlite import SqliteStore

    return SqliteStore(settings.data_dir / "chat.sqlite3")


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


async def store_ready(store: Store) -> dict[str, str]:
    """Report for /readyz whether the database answers."""
    try:
        await store.ping()
    except StorageUnavailable:
        return {"database": "unreachable"}
    return {"database": "ok"}
