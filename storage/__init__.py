"""Storage: one small interface, two backends (MongoDB when MONGODB_URI is set, else SQLite)."""

from __future__ import annotations

from aiohttp import web

from settings import Settings
from storage.base import Store

STORE_KEY = web.AppKey("store", Store)


def open_store(settings: Settings) -> Store:
    """Return the store the settings select; it connects in `setup()`."""
    if settings.mongodb_uri:
        from storage.mongo import MongoStore

        return MongoStore(settings.mongodb_uri, settings.mongodb_db, settings.mongodb_timeout_ms)
    from storage.sqlite import SqliteStore

    return SqliteStore(settings.data_dir / "chat.sqlite3")
