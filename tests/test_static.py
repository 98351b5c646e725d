"""Static files: versioned names, caching headers, gzip, ETags and the pages' import map."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from common.static import PLAIN_CACHE, VERSIONED_CACHE, StaticFiles
from conftest import ROOT, Auth, base_settings
from settings import Settings

STATIC = ROOT / "static"
MODULES = sorted(p.relative_to(STATIC).as_posix() for p in (STATIC / "js").glob("*.js"))
IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded store only: nothing here touches the database's backend."""
    return base_settings(tmp_path)


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_hash_in_the_name_changes_with_the_content(tmp_path: Path) -> None:
    write(tmp_path, "js/a.js", "// one\n")
    write(tmp_path, "style.css", "body { color: red; }\n")
    before = StaticFiles.load(tmp_path)
    write(tmp_path, "js/a.js", "// two\n")
    after = StaticFiles.load(tmp_path)
    assert re.fullmatch(r"/static/js/a\.[0-9a-f]{12}\.js", before.url("js/a.js"))
    assert before.url("js/a.js") != after.url("js/a.js")
    assert before.url("style.css") == after.url("style.css")  # untouched: same name
    assert before.import_map != after.import_map
    assert before.import_map_csp != after.import_map_csp


def test_dot_files_are_not_served(tmp_path: Path) -> None:
    write(tmp_path, ".secret", "x")
    write(tmp_path, ".git/config", "x")
    write(tmp_path, "ok.txt", "x")
    assert set(StaticFiles.load(tmp_path).assets) == {"ok.txt"}


async def test_versioned_url_is_immutable_and_plain_url_revalidated(
    client: TestClient[Any, Any],
) -> None:
    static = StaticFiles.load(STATIC)
    for name in ("style.css", "favicon.svg", *MODULES):
        body = (STATIC / name).read_bytes()
        resp = await client.get(static.url(name), headers={"Accept-Encoding": "identity"})
        assert resp.status == 200, name
        assert resp.headers["Cache-Control"] == VERSIONED_CACHE
        assert await resp.read() == body
        digest = hashlib.sha256(body).hexdigest()[:12]
        assert digest in static.url(name)
        plain = await client.get(f"/static/{name}", headers={"Accept-Encoding": "identity"})
        assert plain.status == 200
        assert plain.headers["Cache-Control"] == PLAIN_CACHE
        assert await plain.read() == body
        assert plain.headers["ETag"] == resp.headers["ETag"]


async def test_content_types_of_modules_and_styles(client: TestClient[Any, Any]) -> None:
    # Browsers refuse a module script served as any other type.
    resp = await client.get("/static/js/chat-page.js")
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    resp = await client.get("/static/style.css")
    assert resp.headers["Content-Type"] == "text/css; charset=utf-8"
    resp = await client.get("/static/favicon.svg")
    assert resp.headers["Content-Type"].startswith("image/svg+xml")


async def test_gzip_body_decodes_to_the_file(client: TestClient[Any, Any]) -> None:
    static = StaticFiles.load(STATIC)
    for name in ("style.css", "js/chat-page.js", "js/markdown.js"):
        resp = await client.get(
            static.url(name), headers={"Accept-Encoding": "gzip, deflate"}, auto_decompress=False
        )
        assert resp.headers["Content-Encoding"] == "gzip", name
        assert resp.headers["Vary"] == "Accept-Encoding"
        raw = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(raw)
        file = (STATIC / name).read_bytes()
        assert gzip.decompress(raw) == file
        assert len(raw) < len(file) / 2  # text compresses well
        assert resp.headers["ETag"].endswith('-gz"')  # other bytes, another tag


@pytest.mark.parametrize("accept", ["", "identity", "gzip;q=0", "br"])
async def test_no_gzip_unless_accepted(client: TestClient[Any, Any], accept: str) -> None:
    resp = await client.get(
        "/static/style.css", headers={"Accept-Encoding": accept}, auto_decompress=False
    )
    assert "Content-Encoding" not in resp.headers
    assert await resp.read() == (STATIC / "style.css").read_bytes()


async def test_etag_revalidation_answers_304(client: TestClient[Any, Any]) -> None:
    first = await client.get("/static/style.css", headers={"Accept-Encoding": "gzip"})
    tag = first.headers["ETag"]
    again = await client.get(
        "/static/style.css", headers={"If-None-Match": tag, "Accept-Encoding": "gzip"}
    )
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == tag
    assert again.headers["Cache-Control"] == PLAIN_CACHE
    for stale in ('"000000000000"', 'W/"0"'):
        resp = await client.get("/static/style.css", headers={"If-None-Match": stale})
        assert resp.status == 200


async def test_a_stale_versioned_name_gets_todays_file_uncached(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get("/static/style.0123456789ab.css")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == PLAIN_CACHE
    assert await resp.read() == (STATIC / "style.css").read_bytes()


@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/../app.py", "/static/%2e%2e/app.py", "/static/js/"]
)
async def test_unknown_files_are_404(client: TestClient[Any, Any], path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404


async def test_head_answers_without_a_body(client: TestClient[Any, Any]) -> None:
    resp = await client.head("/static/style.css", headers={"Accept-Encoding": "identity"})
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) == (STATIC / "style.css").stat().st_size


@pytest.mark.parametrize("path", ["/login", "/"])
async def test_pages_link_versioned_files_and_map_every_module(
    client: TestClient[Any, Any], auth: Auth, path: str
) -> None:
    await auth.signup("alice")
    resp = await client.get(path)
    body = await resp.text()
    static = StaticFiles.load(STATIC)
    assert f'href="{static.url("style.css")}"' in body
    match = IMPORT_MAP.search(body)
    assert match is not None
    assert body.index('type="importmap"') < body.index('type="module"')  # before any module
    imports = json.loads(match.group(1))["imports"]
    assert imports == {f"/static/{name}": static.url(name) for name in MODULES}
    for versioned in imports.values():  # every mapped URL is served, immutable
        got = await client.get(versioned)
        assert got.status == 200 and got.headers["Cache-Control"] == VERSIONED_CACHE
    # The CSP allows exactly this inline script, by its hash, and no other.
    digest = base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()
    script_src = re.search(r"script-src ([^;]+);", resp.headers["Content-Security-Policy"])
    assert script_src is not None
    assert script_src.group(1) == f"'self' 'sha256-{digest}'"


async def test_logged_in_static_files_are_cacheable(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    # A session makes pages no-store; a static file is the same for everyone.
    await auth.signup("alice")
    resp = await client.get(StaticFiles.load(STATIC).url("js/socket.js"))
    assert resp.headers["Cache-Control"] == VERSIONED_CACHE
