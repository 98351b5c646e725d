"""The real process: first start with no configuration, clear start-up errors, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType
from yarl import URL

from harness import PASSWORD, AppProcess, browser_session, free_port, open_socket, run_app, sign_up


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppProcess]:
    """Run `python app.py` from an empty directory, as the README's first command does."""
    app = AppProcess(tmp_path).start(output=subprocess.PIPE)
    yield app
    app.kill()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A browser-like client session."""
    async with browser_session() as s:
        yield s


async def test_first_start_needs_no_configuration(
    server: AppProcess, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with session.get(server.url + "/healthz") as resp:
        assert resp.status == 200
    assert (tmp_path / "data" / "chat.sqlite3").exists()
    assert (tmp_path / "data" / "secret_key").exists()


async def test_sigterm_closes_sockets_with_1001_and_exits_cleanly(
    server: AppProcess, session: aiohttp.ClientSession
) -> None:
    url = server.url
    await sign_up(session, url, "alice")
    ws = await open_socket(session, url)
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.send_json({"type": "message", "text": "kept", "client_id": "k1"})
    assert (await ws.receive_json(timeout=5))["seq"] == 1
    # Both waits are bounded (10 s): a shutdown that hangs fails the test by raising.
    code_task = asyncio.create_task(asyncio.to_thread(server.terminate, 10))
    msg = await ws.receive(timeout=10)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
    assert await code_task == 0
    await ws.close()
    assert server.proc is not None and server.proc.stdout is not None
    output = server.proc.stdout.read().decode()
    assert "socket open user=alice" in output and "closing 1 socket(s) with 1001" in output
    assert PASSWORD not in output and "chat_session=" not in output


async def test_restart_keeps_messages_and_logins(tmp_path: Path) -> None:
    first = AppProcess(tmp_path).start()
    try:
        async with browser_session() as s:
            await sign_up(s, first.url, "alice")
            kept = s.cookie_jar.filter_cookies(URL(first.url))["chat_session"].value
            ws = await open_socket(s, first.url)
            await ws.receive_json(timeout=5)
            await ws.send_json({"type": "message", "text": "persisted", "client_id": "p"})
            await ws.receive_json(timeout=5)
            await ws.close()
    finally:
        await asyncio.to_thread(first.terminate)
    second = AppProcess(tmp_path).start()
    try:
        async with browser_session() as s:
            s.cookie_jar.update_cookies({"chat_session": kept}, URL(second.url))
            async with s.get(second.url + "/rooms/general", allow_redirects=False) as resp:
                assert resp.status == 200  # still logged in after the restart
                assert "persisted" in await resp.text()
    finally:
        await asyncio.to_thread(second.terminate)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": "eighty"}, "chat: configuration error: PORT='eighty' is not valid"),
        ({"MONGODB_URI": "mongodb://127.0.0.1:9/"}, "SECRET_KEY is required"),
    ],
)
def test_bad_configuration_stops_with_one_line(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = run_app(tmp_path, **env)
    assert result.returncode == 1
    err = result.stderr.decode().strip()
    assert expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_unreachable_mongodb_at_start_is_reported(tmp_path: Path) -> None:
    result = run_app(
        tmp_path,
        PORT=str(free_port()),
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/",
        MONGODB_TIMEOUT_MS="300",
        SECRET_KEY="ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    )
    assert result.returncode == 1
    err = result.stderr.decode().strip().splitlines()
    assert err[-1].startswith("chat: cannot start: MongoDB failed")
    assert "Traceback" not in result.stderr.decode()


async def test_sigterm_under_load_closes_all_with_1001_and_keeps_every_ack(
    tmp_path: Path,
) -> None:
    app = AppProcess(
        tmp_path,
        SOCKETS_PER_ADDRESS="1000",
        SIGNUP_LIMIT_ADDRESS="100",
        MESSAGE_BURST="1000",
        LOG_LEVEL="WARNING",
    ).start()
    users, per_user = 20, 10
    sessions = [browser_session() for _ in range(users)]
    acked: set[str] = set()
    codes: list[object] = []
    try:
        await asyncio.gather(*(sign_up(s, app.url, f"load{i}") for i, s in enumerate(sessions)))
        sockets = [await open_socket(s, app.url) for s in sessions for _ in range(per_user)]
        assert len(sockets) == 200

        async def client(n: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            mine: set[str] = set()

            async def reader() -> None:
                while True:
                    msg = await ws.receive()
                    if msg.type == WSMsgType.TEXT:
                        frame = json.loads(msg.data)
                        if frame["type"] == "message" and frame["client_id"] in mine:
                            acked.add(frame["client_id"])
                        continue
                    # The code the server sent, as a browser's CloseEvent reports it.
                    codes.append(msg.data if msg.type == WSMsgType.CLOSE else msg.type)
                    return

            task = asyncio.create_task(reader())
            i = 0
            while not ws.closed:
                client_id = f"s{n}-{i}"
                mine.add(client_id)
                try:
                    await ws.send_str(
                        json.dumps({"type": "message", "text": "load", "client_id": client_id})
                    )
                except ConnectionError:
                    break
                i += 1
                await asyncio.sleep(0.05)
            await task

        load = [asyncio.create_task(client(n, ws)) for n, ws in enumerate(sockets)]
        # At least 1.5 s of load and more than 200 acknowledged (a busy machine is slower), then
        # the SIGTERM; at most 30 s.
        for tick in range(1, 301):
            await asyncio.sleep(0.1)
            if tick >= 15 and len(acked) > 200:
                break
        # Bounded by the wait itself: past 10 s it raises (a shutdown that hangs fails the test).
        exit_code = await asyncio.to_thread(app.terminate, 10)
        async with asyncio.timeout(10):
            await asyncio.gather(*load)
    finally:
        for s in sessions:
            await s.close()
        app.kill()
    assert exit_code == 0
    assert codes == [1001] * 200
    assert len(acked) > 200  # the load really ran
    db = sqlite3.connect(tmp_path / "data" / "chat.sqlite3")
    stored = {row[0] for row in db.execute("SELECT client_id FROM messages")}
    db.close()
    assert acked <= stored  # every acknowledged message survived the shutdown
