"""Static files under content-hashed names, cached for a year, gzipped once at start-up.

`static/js/socket.js` is also served as `/static/js/socket.<hash>.js`, where the hash is of its
content: a page links the versioned name (the `static()` template helper), which a browser may
keep forever (`immutable`), because new content is a new name. The plain name stays served with
`no-cache` (revalidated through its ETag). The modules' own relative imports (`./socket.js`)
resolve to plain names, so every page carries an import map from each plain module URL to its
versioned one; its hash is allowed by the page's Content-Security-Policy.

The files are read once, when the app starts (restart to serve edited files); text types are
held gzipped too, compressed at the highest level, so no request compresses anything.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import mimetypes
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
from aiohttp import web
from markupsafe import Markup

URL_PREFIX = "/static"
HASH_LENGTH = 12  # hex digits of the SHA-256 of a file's content
VERSIONED_CACHE = "public, max-age=31536000, immutable"
PLAIN_CACHE = "no-cache"  # may be kept, but revalidated (ETag) before each use
MAX_FILE_BYTES = 1024 * 1024  # the chat's own files are small; a bigger one is a mistake
# Types worth compressing; images other than SVG already are.
TEXT_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".html": "text/html",
}
MIN_GZIP_BYTES = 256  # smaller files gain nothing from it
VERSIONED_NAME = re.compile(
    rf"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{{{HASH_LENGTH}}})(?P<ext>\.[^./]+)$"
)


@dataclass(frozen=True)
class Asset:
    """One static file as it is served."""

    name: str  # relative to the static directory, with "/": "js/socket.js"
    digest: str
    content_type: str
    body: bytes
    gzipped: bytes | None

    @property
    def versioned_name(self) -> str:
        """Return the name with the content hash before the extension: js/socket.<hash>.js."""
        stem, dot, ext = self.name.rpartition(".")
        if not dot or "/" in ext:  # no extension: the hash goes at the end
            return f"{self.name}.{self.digest}"
        return f"{stem}.{self.digest}.{ext}"

    def etag(self, gzipped: bool) -> str:
        """Return the ETag of one representation (the gzipped one is other bytes)."""
        return f'"{self.digest}-gz"' if gzipped else f'"{self.digest}"'


class StaticFiles:
    """The static directory's files, read once, under plain and versioned names."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.assets = assets
        self._by_versioned = {a.versioned_name: a for a in assets.values()}
        imports = {
            f"{URL_PREFIX}/{a.name}": self.url(a.name)
            for a in sorted(assets.values(), key=lambda a: a.name)
            if a.name.endswith((".js", ".mjs"))
        }
        # "</" would end the <script> element early; no file name has one, but be sure.
        self.import_map = json.dumps({"imports": imports}, separators=(",", ":")).replace(
            "</", "<\\/"
        )
        digest = hashlib.sha256(self.import_map.encode()).digest()
        self.import_map_csp = f"'sha256-{base64.b64encode(digest).decode()}'"

    @classmethod
    def load(cls, root: Path) -> StaticFiles:
        """Read every file under `root` (dot files left out) and hash and compress it."""
        assets = {}
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or any(part.startswith(".") for part in rel.parts):
                continue
            body = path.read_bytes()
            if len(body) > MAX_FILE_BYTES:
                raise ValueError(f"{path}: {len(body)} bytes, more than a static file may have")
            name = rel.as_posix()
            text_type = TEXT_TYPES.get(path.suffix)
            if text_type:
                content_type = f"{text_type}; charset=utf-8"
            else:
                content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            gzipped = None
            if text_type and len(body) >= MIN_GZIP_BYTES:
                gzipped = gzip.compress(body, compresslevel=9, mtime=0)
                if len(gzipped) >= len(body):
                    gzipped = None
            assets[name] = Asset(
                name=name,
                digest=hashlib.sha256(body).hexdigest()[:HASH_LENGTH],
                content_type=content_type,
                body=body,
                gzipped=gzipped,
            )
        return cls(assets)

    def url(self, name: str) -> str:
        """Return the versioned URL of a file (KeyError for a file that is not there)."""
        return f"{URL_PREFIX}/{self.assets[name.lstrip('/')].versioned_name}"

    def find(self, name: str) -> tuple[Asset, bool] | None:
        """Return the file a request names and whether the name is the current versioned one.

        A versioned name with another hash (a page from before a deploy) gets today's file, as
        the plain name would: better than a broken page, and it is not cached as immutable.
        """
        asset = self.assets.get(name)
        if asset is not None:
            return asset, False
        asset = self._by_versioned.get(name)
        if asset is not None:
            return asset, True
        match = VERSIONED_NAME.match(name)
        if match:
            asset = self.assets.get(match["stem"] + match["ext"])
            if asset is not None:
                return asset, False
        return None


STATIC_KEY = web.AppKey("static_files", StaticFiles)


def setup_static(app: web.Application, root: Path) -> None:
    """Read `root` when the app starts and give the templates `static()` and `import_map()`."""

    async def static_ctx(app: web.Application) -> AsyncIterator[None]:
        app[STATIC_KEY] = await asyncio.to_thread(StaticFiles.load, root)
        yield

    app.cleanup_ctx.append(static_ctx)


@jinja2.pass_context
def static_url(context: jinja2.runtime.Context, name: str) -> str:
    """Return a static file's versioned URL (the template helper `static()`)."""
    return context["app"][STATIC_KEY].url(name)


@jinja2.pass_context
def import_map(context: jinja2.runtime.Context) -> Markup:
    """Return the import map's JSON, for a `<script type="importmap">` (its hash is in the CSP)."""
    return Markup(context["app"][STATIC_KEY].import_map)


def accepts_gzip(request: web.Request) -> bool:
    """Tell whether the request's Accept-Encoding takes gzip (and does not refuse it, q=0)."""
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().lower()
            return not re.fullmatch(r"q\s*=\s*0(\.0*)?", q)
    return False


def _etag_matches(header: str, tags: tuple[str, ...]) -> bool:
    if header.strip() == "*":
        return True
    # Weak comparison (RFC 9110 13.1.2): a W/ prefix does not matter for If-None-Match.
    sent = {t.strip().removeprefix("W/") for t in header.split(",")}
    return any(tag in sent for tag in tags)


class StaticFile(web.View):
    """Serve one static file, compressed when the client takes it, cached by its name."""

    async def get(self) -> web.StreamResponse:
        found = self.request.app[STATIC_KEY].find(self.request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound()
        asset, versioned = found
        gzipped = asset.gzipped is not None and accepts_gzip(self.request)
        headers = {
            "Cache-Control": VERSIONED_CACHE if versioned else PLAIN_CACHE,
            "ETag": asset.etag(gzipped),
        }
        if asset.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        if_none_match = self.request.headers.get("If-None-Match")
        if if_none_match and _etag_matches(if_none_match, (asset.etag(False), asset.etag(True))):
            return web.Response(status=304, headers=headers)
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = asset.content_type
        return web.Response(body=asset.gzipped if gzipped else asset.body, headers=headers)

    async def head(self) -> web.StreamResponse:
        return await self.get()
