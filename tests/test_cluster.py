"""Two app processes, one SQLite file and a real redis-server: live traffic across processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet

from conftest import UPGRADE
from harness import CSRF_RE, AppProcess, RedisServer, browser_session, open_socket, sign_up

pytestmark = pytest.mark.cluster

TTL = "3"  # seconds of heartbeat; a dead process is swept within TTL + TTL/3


def start_cluster(tmp_path: Path, redis: RedisServer, **extra: str) -> list[AppProcess]:
    """Start two processes sharing one data directory, one secret key and one Redis."""
    env = {
        "DATA_DIR": str(tmp_path / "shared-data"),
        "SECRET_KEY": Fernet.generate_key().decode(),
        "REDIS_URL": redis.url,
        "PRESENCE_TTL": TTL,
        **extra,
    }
    procs = []
    for i in (1, 2):
        cwd = tmp_path / f"p{i}"
        cwd.mkdir()
        procs.append(AppProcess(cwd, **env).start(log=cwd / "app.log"))
    return procs


@pytest.fixture
def cluster(tmp_path: Path, redis: RedisServer) -> Iterator[list[AppProcess]]:
    """Two processes sharing one data directory, one secret key and one Redis."""
    # The ordering test sends bursts on purpose.
    procs = start_cluster(tmp_path, redis, MESSAGE_BURST="1000")
    yield procs
    for app in procs:
        app.kill()


@pytest.fixture
def strict_cluster(tmp_path: Path, redis: RedisServer) -> Iterator[list[AppProcess]]:
    """The two processes with the default burst (10) and next to no refill."""
    procs = start_cluster(tmp_path, redis, MESSAGE_BURST="10", MESSAGE_PER_MINUTE="1")
    yield procs
    for app in procs:
        app.kill()


def log_of(app: AppProcess) -> str:
    """Return what the process has logged."""
    return (app.cwd / "app.log").read_text()


class Person:
    """Someone with a browser-like session, who can open sockets on any process."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def sign_up(self, app: AppProcess, login: str) -> None:
        """Sign up on this process, and so log in on every process."""
        await sign_up(self.session, app.url, login)

    async def ws(self, app: AppProcess, query: str = "") -> aiohttp.ClientWebSocketResponse:
        """Open the chat socket on this process."""
        return await open_socket(self.session, app.url, query)

    async def connect(self, app: AppProcess, query: str = "") -> aiohttp.ClientWebSocketResponse:
        """Open the chat socket on this process and read its hello."""
        ws = await self.ws(app, query)
        await frame(ws, "hello")
        return ws


@pytest.fixture
async def people() -> AsyncIterator[Any]:
    """Make a person signed up on a process: `await people(p1, "alice")`."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(app: AppProcess, login: str) -> Person:
        session = browser_session()
        sessions.append(session)
        person = Person(session)
        await person.sign_up(app, login)
        return person

    yield make
    for session in sessions:
        await session.close()


async def frame(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10) -> Any:
    """Receive frames until one of this type."""
    async with asyncio.timeout(timeout):
        while True:
            data = await ws.receive_json()
            if data["type"] == kind:
                return data


async def messages(
    ws: aiohttp.ClientWebSocketResponse, count: int, timeout: float = 20
) -> list[Any]:
    """Receive this many message frames, skipping others."""
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            data = await ws.receive_json()
            if data["type"] == "message":
                got.append(data)
    return got


async def no_more_messages(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.7) -> None:
    """Check that no message frame comes within `wait` seconds."""
    with pytest.raises(TimeoutError):
        await frame(ws, "message", timeout=wait)


async def send(ws: aiohttp.ClientWebSocketResponse, text: str, client_id: str) -> None:
    """Send a message frame."""
    await ws.send_str(json.dumps({"type": "message", "text": text, "client_id": client_id}))


async def test_delivery_and_presence_across_processes(
    cluster: list[AppProcess], people: Any
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    bob = await people(p2, "bob")
    a1 = await alice.ws(p1)
    assert (await frame(a1, "hello"))["online"] == ["alice"]
    b2 = await bob.ws(p2)
    assert (await frame(b2, "hello"))["online"] == ["alice", "bob"]
    join = await frame(a1, "presence")
    assert join == {"type": "presence", "event": "join", "user": "bob", "online": ["alice", "bob"]}
    await send(a1, "hello bob", "a-1")
    ack = await frame(a1, "message")
    got = await frame(b2, "message")
    assert got == ack and got["seq"] == 1
    await send(b2, "hello alice", "b-1")
    assert (await frame(a1, "message"))["seq"] == 2
    assert (await frame(b2, "message"))["seq"] == 2
    await no_more_messages(b2)  # exactly once
    # A second socket of bob's on the other process is no second join.
    b1 = await bob.ws(p1)
    assert (await frame(b1, "hello"))["online"] == ["alice", "bob"]
    await b2.close()
    await send(a1, "still here?", "a-2")
    assert (await frame(a1, "message"))["seq"] == 3  # no presence frame came before it
    await b1.close()
    leave = await frame(a1, "presence")
    assert leave == {"type": "presence", "event": "leave", "user": "bob", "online": ["alice"]}


async def test_order_with_concurrent_senders_on_both_processes(
    cluster: list[AppProcess], people: Any
) -> None:
    sockets = []
    for i in range(4):
        app = cluster[i % 2]
        person = await people(app, f"user{i}")
        ws = await person.connect(app)
        sockets.append(ws)
    per_sender = 25

    async def blast(ws: aiohttp.ClientWebSocketResponse, n: int) -> None:
        for i in range(per_sender):
            await send(ws, f"{n}-{i}", f"{n}-{i}")

    await asyncio.gather(*(blast(ws, n) for n, ws in enumerate(sockets)))
    total = per_sender * len(sockets)
    for ws in sockets:
        seqs = [m["seq"] for m in await messages(ws, total)]
        assert seqs == list(range(1, total + 1))
        await no_more_messages(ws, 0.3)


async def test_edits_deletes_and_typing_cross_processes(
    cluster: list[AppProcess], people: Any
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    bob = await people(p2, "bob")
    a1 = await alice.connect(p1)
    b2 = await bob.connect(p2)
    await send(a1, "helo", "a-1")
    await frame(b2, "message")
    await a1.send_str(json.dumps({"type": "typing"}))
    assert await frame(b2, "typing") == {"type": "typing", "room": "general", "user": "alice"}
    await a1.send_str(json.dumps({"type": "edit", "seq": 1, "text": "hello"}))
    change = await frame(b2, "change")
    assert (change["seq"], change["text"], change["rev"]) == (1, "hello", 1)
    await a1.send_str(json.dumps({"type": "delete", "seq": 1}))
    assert (await frame(b2, "change"))["deleted"] is True
    # Bob, refused on his own process, changes nothing anywhere.
    await b2.send_str(json.dumps({"type": "edit", "seq": 1, "text": "bob's"}))
    assert (await frame(b2, "error"))["code"] == "forbidden"
    await send(a1, "after", "a-2")
    nxt = await b2.receive_json(timeout=10)
    assert (nxt["type"], nxt["seq"]) == ("message", 2)  # no stray change or typing frame first


async def test_resume_on_another_process(cluster: list[AppProcess], people: Any) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    a1 = await alice.connect(p1)
    for i in range(1, 6):
        await send(a1, f"m{i}", f"a{i}")
    await messages(a1, 5)
    await a1.close()
    a2 = await alice.ws(p2, "?after=2")
    assert (await frame(a2, "hello"))["last_seq"] == 5
    assert [m["seq"] for m in await messages(a2, 3)] == [3, 4, 5]
    await no_more_messages(a2, 0.3)


async def test_killed_process_drops_out_of_presence(cluster: list[AppProcess], people: Any) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    bob = await people(p2, "bob")
    a1 = await alice.connect(p1)
    b2 = await bob.connect(p2)
    assert (await frame(a1, "presence"))["event"] == "join"
    assert p2.proc is not None
    p2.proc.send_signal(signal.SIGKILL)  # no goodbye
    started = time.monotonic()
    leave = await frame(a1, "presence", timeout=60)
    assert leave == {"type": "presence", "event": "leave", "user": "bob", "online": ["alice"]}
    took = time.monotonic() - started
    assert took < float(TTL) * 2 + 2, took
    b2_closed = b2.closed or (await b2.receive(timeout=5)).type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    )
    assert b2_closed


async def test_redis_outage_keeps_local_delivery_and_catches_up(
    cluster: list[AppProcess], redis: RedisServer, people: Any
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    carol = await people(p1, "carol")
    bob = await people(p2, "bob")
    a1 = await alice.connect(p1)
    c1 = await carol.connect(p1)
    b2 = await bob.connect(p2)
    await send(a1, "before", "a-0")
    for ws in (a1, c1, b2):
        assert (await frame(ws, "message"))["text"] == "before"

    redis.stop()
    await send(a1, "during the outage", "a-1")
    during = await frame(a1, "message")
    assert during["seq"] == 2  # stored and acknowledged
    assert (await frame(c1, "message")) == during  # same process: delivered live
    await no_more_messages(b2, 1.0)  # the other process cannot hear of it now
    async with aiohttp.ClientSession() as s:
        for _ in range(50):
            async with s.get(p1.url + "/readyz") as resp:
                report = await resp.json()
            if report.get("redis") == "unavailable":
                break
            await asyncio.sleep(0.1)
        assert resp.status == 503 and report["redis"] == "unavailable"
        assert report["database"] == "ok"

    redis.start()  # same port; both processes reconnect by themselves
    caught_up = await frame(b2, "message", timeout=30)
    assert caught_up == during  # delivered once the broker is back, without a reconnect
    await send(b2, "after", "b-1")
    for ws in (a1, c1, b2):
        assert (await frame(ws, "message", timeout=15))["seq"] == 3
    await no_more_messages(b2, 0.3)
    async with aiohttp.ClientSession() as s:
        for app in (p1, p2):
            async with s.get(app.url + "/readyz") as resp:
                assert resp.status == 200 and (await resp.json())["redis"] == "ok"
    # Resuming on the other process gives exactly what a client missed.
    b_again = await bob.connect(p2, "?after=1")
    assert [m["seq"] for m in await messages(b_again, 2)] == [2, 3]
    await no_more_messages(b_again, 0.3)
    assert log_of(p1).count("Redis unavailable") == 1  # logged once, not per event


async def test_logout_on_one_process_closes_that_sessions_sockets_on_the_other(
    cluster: list[AppProcess], people: Any
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    a2 = await alice.connect(p2)
    assert await post_form(alice, p1, "/logout", {}) == 302
    msg = await a2.receive(timeout=10)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1008)


async def post_form(person: Person, app: AppProcess, path: str, data: dict[str, str]) -> int:
    """Post a form on a process as its page would; return the status."""
    async with person.session.post(
        app.url + path,
        data={**data, "csrf_token": await csrf(person, app)},
        headers={"Origin": app.url},
        allow_redirects=False,
    ) as resp:
        return resp.status


async def test_deactivation_on_one_process_closes_sockets_on_the_other(
    cluster: list[AppProcess], people: Any
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")  # the first account: the admin
    bob = await people(p1, "bob")
    b2 = await bob.connect(p2)
    assert await post_form(alice, p1, "/admin/users/bob/deactivate", {}) == 302
    msg = await b2.receive(timeout=10)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1008)
    async with bob.session.get(p2.url + "/", allow_redirects=False) as resp:
        assert resp.status == 302  # logged out on the other process too


async def test_leaving_a_private_room_closes_its_sockets_on_the_other_process(
    cluster: list[AppProcess], people: Any
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    bob = await people(p1, "bob")
    async with alice.session.post(
        p1.url + "/rooms",
        data={"name": "Plans", "private": "on", "csrf_token": await csrf(alice, p1)},
        headers={"Origin": p1.url},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302
        slug = resp.headers["Location"].removeprefix("/rooms/")
    # Resuming into it on the other process is refused before the upgrade, like no room.
    upgrade = {"Origin": p2.url, **UPGRADE}
    async with bob.session.get(f"{p2.url}/ws?room={slug}&after=0", headers=upgrade) as resp:
        assert resp.status == 404
    assert await post_form(alice, p1, f"/rooms/{slug}/members", {"login": "bob"}) == 302
    b2 = await bob.connect(p2, f"?room={slug}")
    a1 = await alice.connect(p1, f"?room={slug}")
    await send(a1, "for members", "c1")
    assert [m["text"] for m in await messages(b2, 1)] == ["for members"]
    assert await post_form(bob, p1, f"/rooms/{slug}/leave", {}) == 302
    msg = await b2.receive(timeout=10)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1008)
    async with bob.session.get(f"{p2.url}/rooms/{slug}/messages") as resp:
        assert resp.status == 404


async def test_a_direct_room_opened_on_both_processes_at_once_is_one_room(
    cluster: list[AppProcess], people: Any
) -> None:
    p1, p2 = cluster
    alice = await people(p1, "alice")
    bob = await people(p1, "bob")

    async def open_dm(person: Person, app: AppProcess, other: str) -> str:
        async with person.session.get(f"{app.url}/dm/{other}", allow_redirects=False) as resp:
            assert resp.status == 302
            return resp.headers["Location"]

    rooms = await asyncio.gather(
        *(
            open_dm(person, app, other)
            for _ in range(3)
            for person, app, other in ((alice, p1, "bob"), (bob, p2, "alice"))
        )
    )
    assert len(set(rooms)) == 1
    slug = rooms[0].removeprefix("/rooms/")
    a1 = await alice.connect(p1, f"?room={slug}")
    b2 = await bob.connect(p2, f"?room={slug}")
    await send(a1, "just us", "c1")
    assert [m["text"] for m in await messages(b2, 1)] == ["just us"]


async def csrf(person: Person, app: AppProcess) -> str:
    """Return the CSRF token of the person's session, from a page of that process."""
    async with person.session.get(app.url + "/") as resp:
        token = CSRF_RE.search(await resp.text())
        assert token
        return token.group(1)


async def test_one_account_has_one_budget_across_processes(
    strict_cluster: list[AppProcess], people: Any
) -> None:
    p1, p2 = strict_cluster
    alice = await people(p1, "alice")
    sockets = [await alice.connect(app) for app in (p1, p2) for _ in range(10)]

    async def burst(ws: aiohttp.ClientWebSocketResponse, n: int) -> None:
        for i in range(10):
            await send(ws, "x", f"{n}-{i}")

    await asyncio.gather(*(burst(ws, n) for n, ws in enumerate(sockets)))
    refused = 0
    for n, ws in enumerate(sockets):  # every frame is answered: its message, or `rate_limited`
        answered = 0
        async with asyncio.timeout(20):
            while answered < 10:
                data = await ws.receive_json()
                if data["type"] == "error":
                    assert data["code"] == "rate_limited"
                    refused += 1
                answered += data["type"] == "error" or data.get("client_id", "").startswith(f"{n}-")
    assert refused == 200 - 10
    async with alice.session.get(p2.url + "/rooms/general/messages?limit=100") as resp:
        assert len((await resp.json())["messages"]) == 10  # 20 sockets, 2 processes, one burst
