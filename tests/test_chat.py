"""The chat page, the history endpoint, health checks and error pages."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import create_app
from conftest import ROOT, Auth
from settings import Settings
from storage import STORE_KEY

XSS = '<img src=x onerror=alert(1)><script>alert("x")</script>'


async def seed(client: TestClient[Any, Any], count: int, room: str = "general") -> None:
    messages = client.app[STORE_KEY].messages
    for i in range(1, count + 1):
        await messages.add(room, "alice", f"message {i}", f"seed-{i}")


async def test_page_renders_latest_50_in_order(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    await seed(client, 60)
    body = await (await client.get("/rooms/general")).text()
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', body)]
    assert seqs == list(range(11, 61))
    assert 'data-last-seq="60"' in body and 'data-first-seq="11"' in body
    assert 'aria-live="polite"' in body
    assert 'id="text"' in body and 'id="online"' in body


async def test_page_escapes_message_text(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    await client.app[STORE_KEY].messages.add("general", "alice", XSS, "x1")
    body = await (await client.get("/rooms/general")).text()
    assert XSS not in body
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in body


async def test_page_has_no_inline_script_or_style(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    resp = await client.get("/rooms/general")
    body = await resp.text()
    assert "<script>" not in body and "style=" not in body and "<style" not in body
    module = r'<script type="module" src="/static/js/chat-page\.[0-9a-f]{12}\.js"></script>'
    assert re.search(module, body)
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert "aiohttp" not in resp.headers.get("Server", "")


async def test_room_list_loads_its_module(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    body = await (await client.get("/")).text()
    assert "<script>" not in body and "style=" not in body and "<style" not in body
    module = r'<script type="module" src="/static/js/rooms-page\.[0-9a-f]{12}\.js"></script>'
    assert re.search(module, body)


JS_FILES = sorted((ROOT / "static" / "js").glob("*.js"))


def test_client_script_renders_text_only_and_loads_nothing_remote() -> None:
    assert {p.name for p in JS_FILES} >= {"chat-page.js", "rooms-page.js"}
    js = "\n".join(p.read_text() for p in JS_FILES)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js
    assert "textContent" in js
    assert "http://" not in js and "https://" not in js and "jquery" not in js.lower()
    assert 'location.protocol === "https:" ? "wss:" : "ws:"' in js
    assert "after" in js and "before=" in js  # resumes, and loads older history
    for path in JS_FILES:
        source = path.read_text()
        assert source.startswith("// "), f"{path.name} starts with what it is for"
        for name in re.findall(r'^import .* from "([^"]+)";$', source, re.M):
            assert name.startswith("./") and (path.parent / name).is_file(), (path.name, name)


async def test_static_files_served(client: TestClient[Any, Any]) -> None:
    for path in ("/static/style.css", *(f"/static/js/{p.name}" for p in JS_FILES)):
        resp = await client.get(path)
        assert resp.status == 200, path
        if path.endswith(".js"):  # browsers refuse a module script served as any other type
            assert resp.content_type in ("text/javascript", "application/javascript"), path


async def test_history_pages_back_to_the_first(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    await seed(client, 120)
    resp = await client.get("/rooms/general/messages")
    page = await resp.json()
    assert [m["seq"] for m in page["messages"]] == list(range(71, 121))
    assert page["has_more"] is True
    seen = [m["seq"] for m in page["messages"]]
    before = seen[0]
    while True:
        page = await (await client.get(f"/rooms/general/messages?before={before}&limit=50")).json()
        seen = [m["seq"] for m in page["messages"]] + seen
        if not page["has_more"]:
            break
        before = page["messages"][0]["seq"]
    assert seen == list(range(1, 121))
    first = page["messages"][0]
    assert set(first) >= {"seq", "id", "room", "user", "text", "created_at", "client_id"}


async def test_history_page_ending_at_the_first_has_no_more(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    await auth.signup("alice")
    await seed(client, 5)
    page = await (await client.get("/rooms/general/messages?before=4&limit=3")).json()
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3]
    assert page["has_more"] is False


async def test_history_limit_beyond_the_messages_gives_them_all(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    await auth.signup("alice")
    await seed(client, 5)
    page = await (await client.get("/rooms/general/messages?limit=100")).json()
    assert len(page["messages"]) == 5 and page["has_more"] is False


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=x", "before=abc", "before=0", "before=-5"]
)
async def test_history_bad_parameters(auth: Auth, query: str) -> None:
    await auth.signup("alice")
    resp = await auth.client.get(f"/rooms/general/messages?{query}")
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_history_needs_login(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/rooms/general/messages")).status == 401


async def test_history_of_an_unknown_room_is_404(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    assert (await client.get("/rooms/nope/messages")).status == 404


async def test_healthz_reports_ok_and_the_loop_lag(client: TestClient[Any, Any]) -> None:
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert set(health["loop_lag_ms"]) == {"p50", "p99", "max"}


async def test_readyz_reports_the_database_ok(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["database"] == "ok"


async def test_healthz_reports_a_stalled_event_loop(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("common.health.LAG_PROBE", 0.01)
    client = await aiohttp_client(create_app(settings))
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # blocks the loop: the probe that was sleeping wakes ~0.3 s late
    await asyncio.sleep(0.05)
    lag = (await (await client.get("/healthz")).json())["loop_lag_ms"]
    assert lag["max"] >= 250


async def test_friendly_404_page(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/no/such/page", headers={"Accept": "text/html"})
    body = await resp.text()
    assert resp.status == 404
    assert "There is nothing here." in body and '<a class="brand"' in body


async def test_friendly_500_page_hides_details(
    client: TestClient[Any, Any], auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    await auth.signup("alice")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(client.app[STORE_KEY].messages, "before", broken)
    resp = await client.get("/rooms/general", headers={"Accept": "text/html"})
    body = await resp.text()
    assert resp.status == 500
    assert "Something went wrong" in body and "secret detail" not in body
