"""The Redis broker under a reconnect storm and after a failed command: in-process, real Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.broker import POOL_SIZE, RedisBroker
from chat.hub import Hub
from harness import RedisServer

pytestmark = pytest.mark.cluster

TTL = 1.5  # seconds: the heartbeat, which notices Redis answering again, runs every TTL / 3


class FakeHub:
    """The part of the hub the broker calls: records what reaches it."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, int, str]] = []
        self.arrived = asyncio.Event()

    async def deliver(self, room: str, seq: int, frame: str) -> None:
        self.delivered.append((room, seq, frame))
        self.arrived.set()

    async def catch_up(self) -> None:
        """Nothing was stored here."""

    def broadcast(self, room: str, frame: str, seq: int = 0, skip_user: str | None = None) -> None:
        """Presence frames: not looked at here."""


@pytest.fixture
async def brokers(redis: RedisServer) -> AsyncIterator[list[tuple[RedisBroker, FakeHub]]]:
    """Two brokers on one Redis, as two processes would have, each with a hub of its own."""
    made = []
    for _ in range(2):
        hub = FakeHub()
        broker = RedisBroker(cast(Hub, hub), redis.url, TTL)
        await broker.start()
        made.append((broker, hub))
    yield made
    for broker, _ in made:
        await broker.close()


async def test_a_storm_of_joins_beyond_the_pool_waits_for_connections(
    brokers: list[tuple[RedisBroker, FakeHub]], caplog: pytest.LogCaptureFixture
) -> None:
    (broker, _), _ = brokers
    conns: list[Any] = [
        SimpleNamespace(room=f"room-{i % 5}", user=f"user{i}") for i in range(3 * POOL_SIZE)
    ]
    with caplog.at_level(logging.WARNING, logger="chat.broker"):
        online = await asyncio.gather(*(broker.join(conn) for conn in conns))
    assert broker.healthy, caplog.text
    assert "Redis unavailable" not in caplog.text
    assert max(len(logins) for logins in online) == 3 * POOL_SIZE // 5  # all counted in Redis
    assert sorted(await broker.online("room-0")) == sorted(
        f"user{i}" for i in range(0, 3 * POOL_SIZE, 5)
    )


async def test_a_failed_publish_recovers_and_sends_what_it_stored_meanwhile(
    brokers: list[tuple[RedisBroker, FakeHub]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (sender, _), (_, other) = brokers
    await sender.publish_message("general", 1, '{"seq":1}')
    await asyncio.wait_for(other.arrived.wait(), 10)
    assert other.delivered == [("general", 1, '{"seq":1}')]
    other.arrived.clear()

    real_publish = sender.redis.publish
    calls = 0

    async def fail_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RedisConnectionError("Timeout reading from 127.0.0.1")  # Redis itself is up
        return await real_publish(*args)

    monkeypatch.setattr(sender.redis, "publish", fail_once)
    await sender.publish_message("general", 2, '{"seq":2}')  # fails: marked unavailable
    assert not sender.healthy
    await sender.publish_message("general", 3, '{"seq":3}')  # not even tried
    assert calls == 1 and other.delivered == [("general", 1, '{"seq":1}')]

    # Redis answered all along: the broker finds that out and sends the last message it stored
    # meanwhile; the other process's hub fills the gap before it (seq 2) from storage.
    await asyncio.wait_for(other.arrived.wait(), 10)
    assert sender.healthy
    assert other.delivered == [("general", 1, '{"seq":1}'), ("general", 3, '{"seq":3}')]
    await sender.publish_message("general", 4, '{"seq":4}')  # live again
    for _ in range(100):
        if len(other.delivered) == 3:
            break
        await asyncio.sleep(0.05)
    assert other.delivered[-1] == ("general", 4, '{"seq":4}')
