"""Security headers on every response, and client address and scheme behind a trusted proxy."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from common.static import StaticFiles
from conftest import PASSWORD, ROOT, UPGRADE, Auth, origin

# connect-src 'self' covers the page's own ws: and wss: (CSP Level 3); no request's Host in it.
# The one inline script is the pages' import map, allowed by its hash (tests/test_static.py).
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self' 'sha256-{}'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.mark.parametrize(
    "path", ["/login", "/signup", "/static/js/chat-page.js", "/healthz", "/readyz", "/no-such-page"]
)
async def test_every_response_has_security_headers(client: TestClient[Any, Any], path: str) -> None:
    resp = await client.get(path, headers={"Accept": "text/html"})
    h = resp.headers
    import_map = StaticFiles.load(ROOT / "static").import_map.encode()
    digest = base64.b64encode(hashlib.sha256(import_map).digest()).decode()
    assert h["Content-Security-Policy"] == EXPECTED_CSP.format(digest)
    assert str(client.port) not in h["Content-Security-Policy"]  # the Host is not reflected
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "same-origin"
    assert h["X-Frame-Options"] == "DENY"
    assert "camera=()" in h["Permissions-Policy"]
    assert h["Server"] == "chat"  # no version
    assert "Strict-Transport-Security" not in h  # only with COOKIE_SECURE


async def test_logged_in_pages_are_not_stored(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    for path in ("/", "/rooms/general/messages"):
        assert (await client.get(path)).headers["Cache-Control"] == "no-store"


async def test_websocket_upgrade_carries_only_the_server_header(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    # Page headers guard documents; a 101 has none, and its headers live as long as the socket.
    await auth.signup("alice")
    resp = await client.get("/ws", headers={**UPGRADE, "Origin": origin(client)})
    assert resp.status == 101
    assert resp.headers["Server"] == "chat"
    for name in ("Content-Security-Policy", "X-Frame-Options", "Cache-Control"):
        assert name not in resp.headers
    resp.close()


async def test_forwarded_headers_ignored_without_trusted_proxy(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    await auth.signup("alice")
    token = await auth.csrf("/")
    # A client claiming to have come through a proxy over https cannot change our origin.
    resp = await client.post(
        "/logout",
        data={"csrf_token": token},
        headers={"Origin": f"https://{client.host}:{client.port}", "X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert resp.status == 403


@pytest.mark.parametrize("settings_overrides", [{"trust_proxy": True, "login_limit_address": 2}])
async def test_trusted_proxy_gives_client_scheme_and_address(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    host = f"{client.host}:{client.port}"
    token = await auth.csrf("/signup")
    form = {
        "login": "alice",
        "email": "alice@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "csrf_token": token,
    }
    behind_proxy = {"Origin": f"https://{host}", "X-Forwarded-Proto": "https"}
    resp = await client.post("/signup", data=form, headers=behind_proxy, allow_redirects=False)
    assert resp.status == 302  # the https page's Origin matches the forwarded scheme
    # Failed logins count against the forwarded client address, not the proxy's.
    for address in ("203.0.113.7", "203.0.113.7"):
        resp = await auth.post(
            "/login",
            {"login": "nobody", "password": "x" * 12},
            headers={**behind_proxy, "X-Forwarded-For": address},
        )
        assert resp.status == 401
    blocked = await auth.post(
        "/login",
        {"login": "nobody", "password": "x" * 12},
        headers={**behind_proxy, "X-Forwarded-For": "203.0.113.7"},
    )
    assert blocked.status == 429
    other = await auth.post(
        "/login",
        {"login": "nobody", "password": "x" * 12},
        headers={**behind_proxy, "X-Forwarded-For": "198.51.100.9"},
    )
    assert other.status == 401


async def test_head_answers_like_get_without_a_body(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    for path in ("/login", "/signup", "/healthz", "/readyz"):
        get = await client.get(path)
        head = await client.head(path)
        assert head.status == get.status == 200, path
        assert head.content_type == get.content_type, path
        assert await head.read() == b"", path
        assert head.headers["Content-Security-Policy"], path
    resp = await client.head("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    await auth.signup("alice")
    for path in ("/", "/rooms/general", "/rooms/general/messages"):
        resp = await client.head(path)
        assert resp.status == 200 and await resp.read() == b"", path
    # A form-only endpoint has no GET, so no HEAD either.
    resp = await client.head("/logout")
    assert resp.status == 405 and "HEAD" not in resp.headers["Allow"]
