"""Slow clients: a request body that trickles in is cut, answered 408 and logged, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from conftest import PASSWORD, Auth, origin
from storage import STORE_KEY

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def trickle(auth: Auth, every: float, to_eof: bool = True) -> tuple[float, bytes, bool]:
    """POST a valid sign-up form one byte every `every` s; return (seconds, answer, all sent).

    The answer is all the server sent until it closed the connection (or its head, if not to_eof).
    """
    token = await auth.csrf("/signup")
    form = {"login": "slowpoke", "email": "slow@example.com", "password": PASSWORD}
    body = urlencode({**form, "password_confirm": PASSWORD, "csrf_token": token}).encode()
    head = (
        f"POST /signup HTTP/1.1\r\nHost: {auth.client.host}:{auth.client.port}\r\n"
        f"Origin: {origin(auth.client)}\r\nCookie: chat_session={auth.cookie()}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(auth.client.host, auth.client.port)
    writer.write(head.encode())
    start = time.monotonic()

    async def send() -> bool:
        for i in range(len(body)):
            try:
                writer.write(body[i : i + 1])
                await writer.drain()
            except ConnectionError:
                return False
            await asyncio.sleep(every)
        return True

    sender = asyncio.create_task(send())
    try:
        answer = await asyncio.wait_for(
            reader.read() if to_eof else reader.readuntil(b"\r\n\r\n"), 10
        )
    finally:
        sender.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return time.monotonic() - start, answer, sender.done() and not sender.cancelled()


def assert_cut_and_logged(caplog: pytest.LogCaptureFixture, answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    lines = [r for r in caplog.records if "client timeout" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].getMessage().startswith("client timeout reading the body of POST /signup from")
    assert lines[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert " 500 " not in caplog.text and "Traceback" not in caplog.text


@SQLITE
@pytest.mark.parametrize("settings_overrides", [{"body_timeout": 1.5, "body_min_rate": 0}])
async def test_a_trickling_body_is_cut_at_the_deadline(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    took, answer, finished = await trickle(auth, every=0.25)
    assert 1.4 < took < 3.5 and not finished
    assert_cut_and_logged(caplog, answer)
    assert await auth.client.app[STORE_KEY].users.find_by_login("slowpoke") is None


@SQLITE
@pytest.mark.parametrize("settings_overrides", [{"body_timeout": 60, "body_min_rate": 20}])
async def test_a_body_below_the_minimum_rate_is_cut_after_the_grace(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    took, answer, finished = await trickle(auth, every=0.2)  # 5 bytes a second
    assert 1.9 < took < 4.5 and not finished
    assert_cut_and_logged(caplog, answer)
    assert await auth.client.app[STORE_KEY].users.find_by_login("slowpoke") is None


@SQLITE
@pytest.mark.parametrize("settings_overrides", [{"body_timeout": 3, "body_min_rate": 20}])
async def test_a_body_at_the_minimum_rate_gets_through(auth: Auth, client: Any) -> None:
    # The same form at ~100 bytes a second arrives whole: the account is created.
    took, answer, finished = await trickle(auth, every=0.01, to_eof=False)
    assert answer.startswith(b"HTTP/1.1 302 "), answer[:200]
    assert await client.app[STORE_KEY].users.find_by_login("slowpoke") is not None


def test_the_defaults_cut_one_byte_every_10_s_within_30_s() -> None:
    from middlewares import BODY_GRACE
    from settings import Settings

    d = Settings.__dataclass_fields__
    timeout, rate = d["body_timeout"].default, d["body_min_rate"].default
    assert timeout <= 30 and BODY_GRACE <= timeout and rate * BODY_GRACE > 1


@SQLITE
async def test_a_client_leaving_mid_body_is_logged_not_a_500(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Served as `app.py` serves it: without handler cancellation (the test client cancels).
    caplog.set_level(logging.INFO)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        )
        writer.write(head.encode() + b"login=a")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        async with asyncio.timeout(5):
            while "client closed the connection" not in caplog.text:
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert "client closed the connection while sending POST /login" in caplog.text
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
