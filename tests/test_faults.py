"""A failing database is reported clearly, loses nothing, and the server keeps serving."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pymongo import MongoClient

from conftest import Auth, receive
from settings import Settings
from storage import STORE_KEY
from storage.mongo import APP_NAME


@contextlib.contextmanager
def mongo_failing(uri: str, commands: list[str]) -> Iterator[None]:
    """Make the app's own MongoDB connections fail these commands until the block ends."""
    with MongoClient(uri) as admin:
        admin.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": "alwaysOn",
                "data": {"failCommands": commands, "errorCode": 8, "appName": APP_NAME},
            }
        )
        try:
            yield
        finally:
            admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


@contextlib.asynccontextmanager
async def writes_failing(client: TestClient[Any, Any], settings: Settings) -> AsyncIterator[None]:
    """Make the database refuse writes, for real, then allow them again."""
    if settings.mongodb_uri:
        with mongo_failing(settings.mongodb_uri, ["insert", "update", "find"]):
            yield
        return
    # Both writing connections: the event loop's (single statements) and the transactions'.
    db = client.app[STORE_KEY].db  # type: ignore[attr-defined]
    db._inline.execute("PRAGMA query_only = ON")
    await db._writer.execute("PRAGMA query_only = ON")
    try:
        yield
    finally:
        db._inline.execute("PRAGMA query_only = OFF")
        await db._writer.execute("PRAGMA query_only = OFF")


async def test_message_not_stored_gets_unavailable_and_socket_recovers(
    client: TestClient[Any, Any], settings: Settings, ws: Any, make_user: Any, connect: Any
) -> None:
    bob = await make_user("bob")
    other = await connect(bob)
    await receive(ws)  # bob joined
    async with writes_failing(client, settings):
        await ws.send_str(json.dumps({"type": "message", "text": "lost?", "client_id": "c1"}))
        error = await receive(ws, timeout=15)
    assert error["type"] == "error" and error["code"] == "unavailable"
    assert error["client_id"] == "c1"
    assert not ws.closed
    # Nothing was broadcast; once the database is back the same client_id goes through.
    await ws.send_str(json.dumps({"type": "message", "text": "lost?", "client_id": "c1"}))
    stored = await receive(ws)
    assert stored["type"] == "message" and stored["seq"] == 1
    assert (await receive(other)) == stored


# MongoDB only: an open SQLite file cannot be made to fail reads; the SQLite
# equivalent (a closed database) is the test below.
@pytest.mark.parametrize("backend", ["secantus"])
async def test_readyz_and_pages_report_a_down_database(
    client: TestClient[Any, Any], auth: Auth, settings: Settings
) -> None:
    await auth.signup("alice")
    with mongo_failing(settings.mongodb_uri, ["ping", "find"]):
        ready = await client.get("/readyz")
        page = await client.get("/", headers={"Accept": "text/html"})
        health = await client.get("/healthz")
        history = await client.get("/rooms/general/messages")
    assert ready.status == 503 and (await ready.json())["status"] == "unavailable"
    assert page.status == 503 and "temporarily unavailable" in await page.text()
    assert page.headers["Retry-After"] == "5"
    assert history.status == 503 and "error" in await history.json()
    assert health.status == 200
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/")).status == 200


async def test_readyz_reports_a_closed_database(client: TestClient[Any, Any]) -> None:
    await client.app[STORE_KEY].close()
    resp = await client.get("/readyz")
    assert resp.status == 503


@contextlib.contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """Make files unwritable even for root (ext4's immutable flag), then writable again."""
    existing = [p for p in paths if p.exists()]
    subprocess.run(["chattr", "+i", *map(str, existing)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, existing)], check=True)


# Only root can set ext4's immutable flag, which (unlike chmod) also stops the app's open file
# descriptors from writing. CI runs as root; elsewhere this test says why it did not run.
@pytest.mark.skipif(os.geteuid() != 0, reason="making a file immutable (chattr +i) needs root")
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_unwritable_sqlite_file_refuses_writes_clearly_and_recovers(
    client: TestClient[Any, Any], settings: Settings, ws: Any
) -> None:
    db = settings.data_dir / "chat.sqlite3"
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    with immutable(files):
        await ws.send_str(json.dumps({"type": "message", "text": "kept?", "client_id": "c1"}))
        error = await receive(ws, timeout=15)
        assert (error["code"], error["client_id"]) == ("unavailable", "c1")
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["database"] == "unreachable"
        page = await client.get("/")
        assert page.status == 200  # reading still works: the chat stays readable
        assert not ws.closed
    await ws.send_str(json.dumps({"type": "message", "text": "kept?", "client_id": "c1"}))
    stored = await receive(ws)
    assert (stored["type"], stored["seq"], stored["client_id"]) == ("message", 1, "c1")
    assert (await client.get("/readyz")).status == 200
