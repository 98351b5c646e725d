"""The MongoDB server stops and starts again under a running app: 503s, then recovery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from conftest import receive
from harness import free_port

pytestmark = pytest.mark.parametrize("backend", ["secantus"])


class Restartable:
    """A SecantusDB server that can be stopped and started on the same port and files."""

    def __init__(self, path: Path) -> None:
        self.port = free_port()
        self.path = path
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self.server: Any = None

    def start(self) -> None:
        from secantus import SecantusDBServer

        self.server = SecantusDBServer(port=self.port, storage_path=str(self.path))
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def mongo_server(tmp_path: Path) -> Iterator[Restartable]:
    """This test's own SecantusDB server, started."""
    server = Restartable(tmp_path / "mongo")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mongo_uri(backend: str, mongo_server: Restartable) -> str:
    """This module's app talks to its own server, which the tests stop and start."""
    assert backend == "secantus"
    return mongo_server.uri


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Give up on the stopped server after a second."""
    return {"mongodb_timeout_ms": 1000}


async def test_stopped_mongodb_gives_503_then_recovers_without_restart(
    client: TestClient[Any, Any], ws: Any, mongo_server: Restartable
) -> None:
    mongo_server.stop()
    try:
        started = time.monotonic()
        page = await client.get("/", headers={"Accept": "text/html"})
        assert page.status == 503 and time.monotonic() - started < 5
        assert "temporarily unavailable" in await page.text()
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["database"] == "unreachable"
        await ws.send_str(json.dumps({"type": "message", "text": "hi", "client_id": "c1"}))
        error = await receive(ws, timeout=10)
        assert (error["code"], error["client_id"]) == ("unavailable", "c1")
        assert not ws.closed
    finally:
        mongo_server.start()
    for _ in range(100):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.1)
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/")).status == 200
    await ws.send_str(json.dumps({"type": "message", "text": "hi", "client_id": "c1"}))
    stored = await receive(ws)
    assert (stored["type"], stored["seq"]) == ("message", 1)
