"""The Host check: a foreign Host (DNS rebinding) is refused before any handler runs."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from conftest import PASSWORD, UPGRADE, Auth, origin
from middlewares import host_allowed
from settings import Settings
from storage import STORE_KEY

EVIL = "rebind.evil.example"


def evil(client: TestClient[Any, Any], **more: str) -> dict[str, str]:
    """Headers of a page on the attacker's name, which DNS rebinding points at this server."""
    host = f"{EVIL}:{client.port}"
    return {"Host": host, "Origin": f"http://{host}", **more}


async def test_foreign_host_is_refused_for_pages_forms_and_socket(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    for path in ("/", "/login", "/signup", "/healthz"):
        for accept in ("text/html", "*/*"):
            resp = await client.get(path, headers=evil(client, Accept=accept))
            assert resp.status == 400, (path, resp.status)
            assert "Set-Cookie" not in resp.headers
    form = {
        "login": "mallory",
        "email": "mallory@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "csrf_token": await auth.csrf("/signup"),  # a real token, from the real host
    }
    resp = await client.post("/signup", data=form, headers=evil(client), allow_redirects=False)
    assert resp.status == 400
    assert not await client.app[STORE_KEY].users.exist()  # nothing was created
    # A logged-in person's cookie does not open #general under the attacker's name either.
    assert (await auth.signup("alice")).status == 302
    resp = await client.get("/ws", headers=evil(client, **UPGRADE))
    assert resp.status == 400
    resp = await client.get("/rooms/general/messages", headers=evil(client))
    assert resp.status == 400


async def test_allowed_hosts_are_served(client: TestClient[Any, Any], auth: Auth) -> None:
    for host in ("127.0.0.1", "LOCALHOST", f"localhost:{client.port}", "[::1]:8080"):
        resp = await client.get("/login", headers={"Host": host})
        assert resp.status == 200, host
    assert (await auth.signup("alice")).status == 302
    ws = await auth.ws()
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()


@pytest.mark.parametrize(
    "settings_overrides", [{"allowed_hosts": ("chat.example.com", "other.example:8443")}]
)
async def test_allowed_hosts_setting_replaces_the_defaults(client: TestClient[Any, Any]) -> None:
    for host, status in [
        ("chat.example.com", 200),
        ("Chat.Example.Com:8080", 200),  # an entry without a port admits any port
        ("other.example:8443", 200),
        ("other.example", 400),  # an entry with a port admits only that port
        ("other.example:443", 400),
        (f"127.0.0.1:{client.port}", 400),  # the defaults are gone
        ("evil.chat.example.com", 400),
    ]:
        resp = await client.get("/login", headers={"Host": host})
        assert resp.status == status, host


@pytest.mark.parametrize("settings_overrides", [{"allowed_hosts": ("*",)}])
async def test_star_allows_every_host(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/login", headers={"Host": EVIL})).status == 200


@pytest.mark.parametrize(
    "settings_overrides", [{"trust_proxy": True, "allowed_hosts": ("chat.example.com",)}]
)
async def test_forwarded_host_is_checked_under_trust_proxy(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    proxy = {"Host": f"127.0.0.1:{client.port}", "X-Forwarded-Proto": "https"}
    resp = await client.get("/login", headers={**proxy, "X-Forwarded-Host": "chat.example.com"})
    assert resp.status == 200
    resp = await client.get("/login", headers={**proxy, "X-Forwarded-Host": EVIL})
    assert resp.status == 400
    # Without X-Forwarded-Host the Host itself is checked: here the proxy's, not allowed.
    assert (await client.get("/login", headers=proxy)).status == 400
    resp = await client.get(
        "/ws", headers={**proxy, **UPGRADE, "X-Forwarded-Host": EVIL, "Origin": origin(client)}
    )
    assert resp.status == 400


def test_host_matching_rules() -> None:
    allowed = ("example.com", "[::1]", "api.example:8443")
    for host in ("example.com", "EXAMPLE.com:1", "[::1]", "[::1]:8080", "api.example:8443"):
        assert host_allowed(host, allowed), host
    for host in ("example.com.evil", "evil.com", "example.com:x", "[::1]x", "::1", "api.example",
                 "api.example:8443:1", "", "example.com:"):  # fmt: skip
        assert not host_allowed(host, allowed), host


def test_default_hosts_follow_host() -> None:
    assert Settings(secret_key="k").hosts == ("127.0.0.1", "localhost", "[::1]")
    assert Settings(secret_key="k", host="::").hosts == ("[::]", "localhost", "127.0.0.1", "[::1]")
    assert Settings(secret_key="k", host="Chat.Lan").hosts[0] == "chat.lan"
