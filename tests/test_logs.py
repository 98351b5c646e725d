"""Logs: the request id, JSON lines (LOG_FORMAT=json), and no secret in any line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.context import request_id
from common.logs import JsonAccessLogger, JsonFormatter, RequestContext, TextAccessLogger
from conftest import Auth, hello, receive_until
from harness import PASSWORD, AppProcess, browser_session, open_socket, sign_up

HEX_ID = re.compile(r"[0-9a-f]{32}")


# The request id


async def test_request_id_is_generated_and_echoed(client: TestClient[Any, Any]) -> None:
    first = (await client.get("/healthz")).headers["X-Request-ID"]
    second = (await client.get("/healthz")).headers["X-Request-ID"]
    assert HEX_ID.fullmatch(first) and HEX_ID.fullmatch(second) and first != second
    for path in ("/no-such-page", "/account"):  # an error, a redirect to the login page
        resp = await client.get(path, allow_redirects=False)
        assert HEX_ID.fullmatch(resp.headers["X-Request-ID"]), path


async def test_a_sane_client_request_id_is_kept(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42/xyz"})
    assert resp.headers["X-Request-ID"] == "lb-7f3a:42/xyz"
    for bad in ("x" * 129, "has space", "", "ünï"):
        resp = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert HEX_ID.fullmatch(resp.headers["X-Request-ID"]), bad


def test_request_id_sanity() -> None:
    assert request_id("a" * 128) == "a" * 128
    for bad in (None, "a" * 129, "tab\there", "new\nline", "nul\x00", "\x7f", "é"):
        assert HEX_ID.fullmatch(request_id(bad)), bad


# The JSON format


def test_json_formatter_writes_one_object_per_line() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "chat.ws", logging.WARNING, __file__, 1, "two\nlines %s", ("x",), None
    )
    record.route, record.status = "ws", 101
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["event"] == "two\nlines x"
    assert (entry["level"], entry["logger"], entry["route"], entry["status"]) == (
        "warning",
        "chat.ws",
        "ws",
        101,
    )
    assert entry["time"].endswith("+00:00")
    assert "request_id" not in entry  # outside a request: absent, not null
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("chat", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(formatter.format(record))
    assert "ValueError: boom" in entry["exception"] and "\n" not in formatter.format(record)


@pytest.fixture
def json_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything logged at INFO and above, as LOG_FORMAT=json writes it."""
    caplog.set_level(logging.INFO)  # restored after the test
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestContext())
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    yield out
    logging.getLogger().removeHandler(handler)


@pytest.fixture
async def json_client(app: web.Application, json_log: io.StringIO) -> AsyncIterator[Auth]:
    """A client of the app served with the JSON access log (as `main()` serves it)."""
    server = TestServer(app)
    await server.start_server(access_log_class=JsonAccessLogger)
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    yield Auth(client)
    await client.close()


def entries(out: io.StringIO) -> list[dict[str, Any]]:
    """Parse every line written so far; each must be one JSON object."""
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_json_access_log_has_route_status_duration_user_and_id(
    json_client: Auth, json_log: io.StringIO
) -> None:
    person = json_client
    assert (await person.signup("alice")).status == 302
    resp = await person.client.get("/account", headers={"X-Request-ID": "trace-123"})
    assert resp.status == 200
    ws = await person.ws()
    await hello(ws)
    await ws.send_json({"type": "message", "text": "hi", "client_id": "c1"})
    await receive_until(ws, "message")
    await ws.close()
    await person.client.get("/healthz")

    lines = entries(json_log)
    requests = [e for e in lines if e["event"] == "request"]
    account = next(e for e in requests if e["route"] == "account")
    assert account["request_id"] == "trace-123"
    assert (account["method"], account["status"], account["user"]) == ("GET", 200, "alice")
    assert isinstance(account["duration_ms"], float) and account["duration_ms"] >= 0
    signup = [e for e in requests if e["route"] == "signup" and e["method"] == "POST"]
    assert signup and "user" not in signup[0]  # not logged in when the request came
    assert any(e["route"] == "ws" and e["status"] == 101 and e["user"] == "alice" for e in requests)
    # A line logged inside a request carries that request's id and user.
    opened = next(e for e in lines if e["event"].startswith("socket open"))
    socket_request = next(e for e in requests if e["route"] == "ws")
    assert opened["request_id"] == socket_request["request_id"]
    assert opened["user"] == "alice"
    assert all(HEX_ID.fullmatch(e["request_id"]) for e in requests if e["route"] != "account")


async def test_no_password_token_or_cookie_is_logged(
    json_client: Auth, json_log: io.StringIO
) -> None:
    person = json_client
    assert (await person.signup("alice")).status == 302
    await person.logout()
    csrf = await person.csrf()
    resp = await person.post("/login", {"login": "alice", "password": PASSWORD, "csrf_token": csrf})
    assert resp.status == 302
    await person.post("/login", {"login": "alice", "password": "not-the-password-1"})
    cookie = person.cookie()
    ws = await person.ws()  # the session cookie goes with the upgrade
    await hello(ws)
    await ws.close()
    await person.client.get(
        "/join/invitation-token-that-is-secret", headers={"Authorization": "Bearer hdr-secret"}
    )
    await person.client.get("/healthz")

    text = json_log.getvalue()
    assert entries(json_log)  # something was logged, every line of it JSON
    for secret in (PASSWORD, "not-the-password-1", csrf, cookie, "hdr-secret"):
        assert secret not in text
    assert "invitation-token-that-is-secret" not in text
    assert any(e.get("route") == "join" for e in entries(json_log))


async def test_refusals_log_the_route_pattern_not_the_secret_path(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = "invitation-token-that-is-secret"
    resp = await client.post(f"/join/{secret}", data={}, headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    await client.get("/nowhere/at-all", headers={"Host": "evil.example"})
    # The test server logs access with aiohttp's own logger: only the app's lines count here.
    lines = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    refused = [line for line in lines if "refused" in line]
    assert refused == [
        "refused cross-origin POST /join/{token}",
        "refused GET /nowhere/… for host 'evil.example'",  # no route: its first segment only
    ]
    assert not any(secret in line for line in lines)


async def test_text_access_log_names_the_route_not_the_path(
    app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = TestServer(app)
    await server.start_server(access_log_class=TextAccessLogger)
    async with TestClient(server) as client:
        await client.get(
            "/join/invitation-token-that-is-secret?x=1", headers={"X-Request-ID": "t-9"}
        )
        await client.get("/static/style.css")
        # Routed nowhere (404): only the first segment is logged; a refused method, the pattern.
        await client.get("/join/invitation-token-that-is-secret/")
        await client.put("/join/invitation-token-that-is-secret")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 4
    assert re.fullmatch(
        r'127\.0\.0\.1 "GET /join/\{token\} HTTP/1\.1" 404 \d+ [0-9.]+s t-9', lines[0]
    )
    assert '"GET /static/style.css HTTP/1.1" 200' in lines[1]  # public files keep their path
    assert '"GET /join/… HTTP/1.1" 404' in lines[2]
    assert '"PUT /join/{token} HTTP/1.1" 403' in lines[3]
    assert "secret" not in caplog.text


def test_context_filter_leaves_text_lines_alone() -> None:
    record = logging.LogRecord("chat", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    assert RequestContext().filter(record) and record.request_id is None
    assert logging.Formatter("%(message)s").format(record) == "hello you"


# The real process


async def test_process_logs_json_lines(tmp_path: Path) -> None:
    app = AppProcess(tmp_path, LOG_FORMAT="json", LOG_LEVEL="INFO").start(log=tmp_path / "app.log")
    try:
        async with browser_session() as session:
            await sign_up(session, app.url, "alice")
            ws = await open_socket(session, app.url)
            await ws.receive_json(timeout=5)
            await ws.close()
            async with session.get(app.url + "/healthz", headers={"X-Request-ID": "p-1"}) as resp:
                assert resp.headers["X-Request-ID"] == "p-1"
            cookies = [c.value for c in session.cookie_jar]
        for _ in range(50):  # the access line follows the response
            if '"p-1"' in (tmp_path / "app.log").read_text():
                break
            await asyncio.sleep(0.1)
    finally:
        assert app.terminate() == 0
        app.kill()
    text = (tmp_path / "app.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["event"].startswith("starting on http://127.0.0.1:")
    health = next(e for e in lines if e.get("request_id") == "p-1")
    assert (health["event"], health["route"], health["status"]) == ("request", "healthz", 200)
    assert any(e.get("route") == "ws" and e.get("user") == "alice" for e in lines)
    assert PASSWORD not in text and cookies and not any(c in text for c in cookies)
