"""`python app.py --workers N`: N real processes on one port, one SQLite file, one redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType
from yarl import URL

from harness import AppProcess, RedisServer, browser_session, free_port, run_app, sign_up

pytestmark = pytest.mark.cluster

PID_RE = re.compile(r'^chat_process_info\{pid="(\d+)"', re.M)
PROBES = 200  # connections tried before giving up on finding a second worker


@pytest.fixture
def workers(tmp_path: Path, redis: RedisServer) -> Iterator[AppProcess]:
    """`python app.py --workers 2` from an empty directory, with a Redis."""
    app = AppProcess(tmp_path, args=("--workers", "2"), REDIS_URL=redis.url)
    app.start(log=tmp_path / "app.log")
    yield app
    app.kill()


def log_of(app: AppProcess) -> str:
    """Return what the parent and its workers have logged."""
    return (app.cwd / "app.log").read_text()


def gone(pid: int) -> bool:
    """Say whether no process has this pid (any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def worker_pid(session: aiohttp.ClientSession, url: str) -> int:
    """Ask /metrics which process answered."""
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        match = PID_RE.search(await resp.text())
        assert match, "no chat_process_info in /metrics"
    return int(match.group(1))


async def fresh_pid(url: str) -> int:
    """Return the pid of the worker that answers a brand-new connection."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        return await worker_pid(s, url)


async def both_pids(url: str) -> set[int]:
    """Open new connections until two different workers have answered (at most PROBES)."""
    pids: set[int] = set()
    for _ in range(PROBES):
        pids.add(await fresh_pid(url))
        if len(pids) == 2:
            break
        await asyncio.sleep(0.05)  # the second worker may still be starting
    return pids


class Socket:
    """A chat socket, and the pid of the worker it landed on."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 pid: int) -> None:  # fmt: skip
        self.session = session
        self.ws = ws
        self.pid = pid


async def socket_on_some_worker(url: str, cookies: aiohttp.CookieJar) -> Socket:
    """Open the chat socket on the connection /metrics just answered on, so its worker is known."""
    connections = {"created": 0, "reused": 0}

    async def created(*_: object) -> None:
        connections["created"] += 1

    async def reused(*_: object) -> None:
        connections["reused"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(created)
    trace.on_connection_reuseconn.append(reused)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        trace_configs=[trace],
    )
    session.cookie_jar.update_cookies(cookies.filter_cookies(URL(url)))
    pid = await worker_pid(session, url)
    ws = await session.ws_connect(url + "/ws", headers={"Origin": url})
    # One connection, kept alive: the upgrade went to the worker that answered /metrics.
    assert connections == {"created": 1, "reused": 1}
    return Socket(session, ws, pid)


async def frame(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10) -> dict:
    """Receive frames until one of this type."""
    async with asyncio.timeout(timeout):
        while True:
            data = await ws.receive_json()
            if data["type"] == kind:
                return data  # type: ignore[no-any-return]


@pytest.fixture
async def two_sockets(workers: AppProcess) -> AsyncIterator[tuple[Socket, Socket]]:
    """One person's two chat sockets, each on a different worker."""
    opened: list[Socket] = []
    async with browser_session() as person:
        await sign_up(person, workers.url, "alice")
        for _ in range(PROBES):
            sock = await socket_on_some_worker(workers.url, person.cookie_jar)
            await frame(sock.ws, "hello")
            if opened and sock.pid == opened[0].pid:
                await sock.ws.close()
                await sock.session.close()
                continue
            opened.append(sock)
            if len(opened) == 2:
                break
        assert len(opened) == 2, "every socket landed on the same worker"
        yield opened[0], opened[1]
    for sock in opened:
        await sock.ws.close()
        await sock.session.close()


async def test_two_workers_answer_on_one_port(workers: AppProcess) -> None:
    pids = await both_pids(workers.url)
    assert len(pids) == 2, pids
    assert workers.proc is not None and workers.proc.pid not in pids  # the parent serves nothing
    for pid in pids:
        assert f"started (pid {pid})" in log_of(workers)


async def test_a_message_crosses_from_one_worker_to_the_other(
    two_sockets: tuple[Socket, Socket],
) -> None:
    a, b = two_sockets
    assert a.pid != b.pid
    await a.ws.send_str(json.dumps({"type": "message", "text": "over there", "client_id": "a-1"}))
    sent = await frame(a.ws, "message")
    got = await frame(b.ws, "message")
    assert got == sent and got["text"] == "over there"
    await b.ws.send_str(json.dumps({"type": "message", "text": "and back", "client_id": "b-1"}))
    assert (await frame(a.ws, "message"))["text"] == "and back"


async def closed_with(sock: Socket) -> int | None:
    """Read until the socket closes; return its close code."""
    async with asyncio.timeout(15):
        msg = await sock.ws.receive()
        while msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            msg = await sock.ws.receive()
    return sock.ws.close_code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_every_worker_and_closes_sockets_with_1001(
    workers: AppProcess, two_sockets: tuple[Socket, Socket], sig: signal.Signals
) -> None:
    pids = {sock.pid for sock in two_sockets}
    assert workers.proc is not None
    workers.proc.send_signal(sig)
    assert workers.proc.wait(30) == 0
    assert [await closed_with(sock) for sock in two_sockets] == [1001, 1001]
    assert all(gone(pid) for pid in pids)
    assert f"{sig.name}: stopping 2 workers" in log_of(workers)
    assert "all workers stopped" in log_of(workers)


async def test_sigterm_to_every_process_at_once_still_stops_gracefully(
    workers: AppProcess, two_sockets: tuple[Socket, Socket]
) -> None:
    # As Heroku stops a dyno: each worker gets SIGTERM, and the parent forwards one more.
    assert workers.proc is not None
    for sock in two_sockets:
        os.kill(sock.pid, signal.SIGTERM)
    workers.proc.send_signal(signal.SIGTERM)
    assert workers.proc.wait(30) == 0, log_of(workers)[-3000:]
    assert [await closed_with(sock) for sock in two_sockets] == [1001, 1001]


async def test_sigterm_to_one_worker_stops_them_all_gracefully(
    workers: AppProcess, two_sockets: tuple[Socket, Socket]
) -> None:
    stopped, other = two_sockets
    assert workers.proc is not None
    os.kill(stopped.pid, signal.SIGTERM)
    assert workers.proc.wait(30) == 0
    assert [await closed_with(sock) for sock in two_sockets] == [1001, 1001]
    assert gone(other.pid)
    assert f"(pid {stopped.pid}) stopped; stopping the others" in log_of(workers)


async def test_a_worker_that_dies_stops_the_others(workers: AppProcess) -> None:
    victim, other = sorted(await both_pids(workers.url))
    os.kill(victim, signal.SIGKILL)
    assert workers.proc is not None
    assert workers.proc.wait(30) == 1
    assert gone(other)
    assert f"(pid {victim}) exited with code -9; stopping the others" in log_of(workers)


async def test_workers_end_with_a_killed_parent(workers: AppProcess) -> None:
    pids = await both_pids(workers.url)
    assert len(pids) == 2
    workers.kill()  # SIGKILL: the parent forwards nothing; the kernel tells the workers
    for _ in range(300):  # bounded: up to ~30 s for a graceful stop
        if all(gone(pid) for pid in pids):
            break
        await asyncio.sleep(0.1)
    assert all(gone(pid) for pid in pids)


def test_several_workers_without_redis_refuse_to_start(tmp_path: Path) -> None:
    for args, env in ((("--workers", "2"), {}), ((), {"WORKERS": "3"})):
        result = run_app(tmp_path, *args, **env)
        assert result.returncode == 1
        assert b"need REDIS_URL, so the processes see each other's messages" in result.stderr


def test_workers_refuse_a_port_in_use(tmp_path: Path, redis: RedisServer) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # SO_REUSEPORT would share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_app(tmp_path, "--workers", "2", REDIS_URL=redis.url, PORT=str(port))
    assert result.returncode == 1
    assert f"cannot start: 127.0.0.1:{port} is already in use".encode() in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "1000", ""])
def test_bad_worker_counts_are_refused(tmp_path: Path, value: str) -> None:
    result = run_app(tmp_path, f"--workers={value}", PORT=str(free_port()))
    assert result.returncode == 2
    assert b"argument --workers:" in result.stderr
    assert b"expected a whole number from 1 to 64" in result.stderr


def test_a_bad_workers_setting_is_refused(tmp_path: Path) -> None:
    result = run_app(tmp_path, WORKERS="many")
    assert result.returncode == 1
    assert b"configuration error: WORKERS='many' is not valid" in result.stderr
