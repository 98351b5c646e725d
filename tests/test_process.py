"""The real process: first start with no configuration, clear start-up errors, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType
from yarl import URL

from conftest import PASSWORD, ROOT

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus any chat settings, plus the given ones."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "MONGODB_URI", "DATA_DIR"}
    }
    env.update({"PYTHONUNBUFFERED": "1", "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64"})
    env.update(extra)
    return env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run `python app.py` from an empty directory, as the README's first command does."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        env=clean_env(PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def sign_up(session: aiohttp.ClientSession, url: str, login: str) -> None:
    async with session.get(url + "/signup") as resp:
        match = CSRF_RE.search(await resp.text())
        assert match
    data = {
        "login": login,
        "email": f"{login}@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "csrf_token": match.group(1),
    }
    async with session.post(
        url + "/signup", data=data, headers={"Origin": url}, allow_redirects=False
    ) as resp:
        assert resp.status == 302


async def test_first_start_needs_no_configuration_and_sigterm_closes_with_1001(
    server: tuple[subprocess.Popen[bytes], str], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proc, url = server
    async with session.get(url + "/healthz") as resp:
        assert resp.status == 200
    assert (tmp_path / "data" / "chat.sqlite3").exists()
    assert (tmp_path / "data" / "secret_key").exists()
    await sign_up(session, url, "alice")
    ws = await session.ws_connect(url + "/ws", headers={"Origin": url})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.send_json({"type": "message", "text": "kept", "client_id": "k1"})
    assert (await ws.receive_json(timeout=5))["seq"] == 1
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    msg = await ws.receive(timeout=10)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
    code = await asyncio.to_thread(proc.wait, 10)
    assert code == 0
    assert time.monotonic() - started < 10
    await ws.close()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "socket open user=alice" in output and "closing 1 socket(s) with 1001" in output
    assert PASSWORD not in output and "chat_session=" not in output


async def test_restart_keeps_messages_and_logins(tmp_path: Path) -> None:
    for round_ in range(2):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=tmp_path,
            env=clean_env(PORT=str(port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                for _ in range(200):
                    try:
                        async with s.get(url + "/healthz"):
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
                if round_ == 0:
                    await sign_up(s, url, "alice")
                    cookies = s.cookie_jar.filter_cookies(URL(url))
                    kept = cookies["chat_session"].value
                    ws = await s.ws_connect(url + "/ws", headers={"Origin": url})
                    await ws.receive_json(timeout=5)
                    await ws.send_json({"type": "message", "text": "persisted", "client_id": "p"})
                    await ws.receive_json(timeout=5)
                    await ws.close()
                else:
                    s.cookie_jar.update_cookies({"chat_session": kept})
                    async with s.get(url + "/", allow_redirects=False) as resp:
                        assert resp.status == 200  # still logged in after the restart
                        assert "persisted" in await resp.text()
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 10)


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
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 1
    err = result.stderr.decode().strip()
    assert expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_unreachable_mongodb_at_start_is_reported(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        env=clean_env(
            PORT=str(free_port()),
            MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/",
            MONGODB_TIMEOUT_MS="300",
            SECRET_KEY="ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
        ),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 1
    err = result.stderr.decode().strip().splitlines()
    assert err[-1].startswith("chat: cannot start: MongoDB failed")
    assert "Traceback" not in result.stderr.decode()
