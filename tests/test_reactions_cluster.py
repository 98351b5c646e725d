"""Reactions and replies across two app processes sharing one SQLite file and a real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_cluster import Person, frame, start_cluster

from harness import AppProcess, RedisServer, browser_session

pytestmark = pytest.mark.cluster


@pytest.fixture
def two(tmp_path: Path) -> Iterator[list[AppProcess]]:
    """Two processes sharing one data directory, one secret key and one Redis."""
    redis = RedisServer()
    redis.start()
    procs = start_cluster(tmp_path, redis)
    yield procs
    for app in procs:
        app.kill()
    redis.stop()


@pytest.fixture
async def sessions() -> AsyncIterator[list[aiohttp.ClientSession]]:
    """Browser-like sessions, closed after the test."""
    made: list[aiohttp.ClientSession] = []
    yield made
    for session in made:
        await session.close()


async def person(sessions: list[aiohttp.ClientSession], app: AppProcess, login: str) -> Person:
    session = browser_session()
    sessions.append(session)
    someone = Person(session)
    await someone.sign_up(app, login)
    return someone


async def send(ws: aiohttp.ClientWebSocketResponse, **data: Any) -> None:
    await ws.send_str(json.dumps(data))


async def test_a_reaction_and_a_reply_reach_the_other_process(
    two: list[AppProcess], sessions: list[aiohttp.ClientSession]
) -> None:
    p1, p2 = two
    alice = await person(sessions, p1, "alice")
    bob = await person(sessions, p2, "bob")
    a1 = await alice.connect(p1)
    b2 = await bob.connect(p2)
    await send(a1, type="message", text="ship it?", client_id="a-1")
    assert (await frame(b2, "message"))["seq"] == 1
    await send(b2, type="react", seq=1, emoji="👍", client_id="r-1")
    mine = await frame(b2, "change")
    theirs = await frame(a1, "change")
    assert theirs == mine
    assert theirs["reactions"] == [{"emoji": "👍", "users": ["bob"]}] and theirs["rev"] == 1
    await send(b2, type="message", text="yes", client_id="b-1", reply_to=1)
    reply = await frame(a1, "message")
    assert reply["reply_to"] == {"seq": 1, "user": "alice", "excerpt": "ship it?"}
    # Bob comes back on the other process after Alice reacted: the resume replays it there.
    hello = await frame(await bob.ws(p1), "hello")
    await send(a1, type="react", seq=1, emoji="👍", client_id="r-2")
    both = await frame(a1, "change")
    assert both["reactions"] == [{"emoji": "👍", "users": ["bob", "alice"]}]
    again = await bob.ws(p1, f"?after={hello['last_seq']}&rev={hello['last_rev']}")
    await frame(again, "hello")
    replayed = await frame(again, "change")
    assert (replayed["seq"], replayed["rev"], replayed["reactions"]) == (
        1,
        2,
        both["reactions"],
    )
