"""Files and images: `POST /rooms/<slug>/uploads` stores one and posts a message carrying it;
`/uploads/<id>/<name>` and `/thumbs/<id>` serve it to the people who can see its room.

The body is streamed to a temp file under DATA_DIR/uploads/.tmp, never held in memory, and cut
with 413 at UPLOAD_MAX_MB (or at the person's quota); the temp file goes with it. What the file
is comes from its bytes (chat/images.py), in a worker thread. Served files are sandboxed: only
png, jpeg, gif and webp images that decoded are shown inline; anything else is a download.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import time
import unicodedata
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader, web

from chat.frames import CLIENT_ID_MAX, TEXT_MAX
from chat.images import IMAGES_KEY, PIL_FORMATS, Images
from chat.posting import post_message
from chat.views import visible_room
from common import SESSION_KEY
from common.csrf import csrf_valid
from common.metrics import uploaded
from common.names import HIDDEN_CATEGORIES
from common.pages import Page, Refusal
from common.workers import Busy
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import Message, Upload, new_upload_id, now

log = logging.getLogger(__name__)

MIB = 1024 * 1024
NAME_MAX = 120  # characters of a file's name kept
FIELD_MAX = 16 * 1024  # bytes of a text field (text, client_id, csrf_token)
PARTS_MAX = 8  # parts of one upload's form
FORM_OVERHEAD = 64 * 1024  # what a form adds to its file: boundaries, headers, the other fields
READ_CHUNK = 256 * 1024  # at most what the connection has buffered is returned
WRITE_BATCH = 1024 * 1024  # bytes gathered before a thread writes them out
RATE_GRACE = 2.0  # seconds of a body before BODY_MIN_RATE applies, as for forms
PACE_BURST = 0.1  # seconds of UPLOAD_RATE_MB an idle pace lets through without a wait
PAUSE_MIN = 0.002  # seconds: a shorter wait is left to add up with the next chunks
CSRF_HEADER = "X-CSRF-Token"
TEMP_DIR = ".tmp"  # under DATA_DIR/uploads: files being received
# Served files never run as our origin's documents: a sandbox with nothing allowed.
FILE_CSP = "sandbox; default-src 'none'"
STALE_TEMP = 3600.0  # seconds after which a temp file is a crash's leftover
BAD_TOKEN = "Missing or wrong CSRF token. Reload the page and try again."
SLOW = "The upload was too slow or stalled; try again."
BUSY = "The chat is busy with other files. Please try again in a moment."


def too_large(message: str) -> Refusal:
    """Return the 413 an upload over a limit gets (aiohttp drains the rest, then closes)."""
    return Refusal(413, message)


def clean_name(name: str | None) -> str:
    """Return a file name fit to show and to send back: no path, no hidden or control characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = "".join(
        "_" if c in "/\\" else c for c in name if unicodedata.category(c) not in HIDDEN_CATEGORIES
    ).strip(" .")
    if len(name) > NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        name = name[: NAME_MAX - len(ext) - 1].rstrip() + ("." + ext if ext else "")
    return name or "file"


def content_disposition(kind: str, name: str) -> str:
    """Return a Content-Disposition with an ASCII fallback and the RFC 5987 `filename*`."""
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return (
        f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    )


class Received:
    """An upload's form as read: its fields, and the file streamed to a temp path."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.path: Path | None = None
        self.name = ""


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK):
        data += chunk
        if len(data) > FIELD_MAX:
            raise Refusal(400, "A form field of the upload is too long.")
    return data.decode("utf-8", errors="replace")


async def _receive(request: web.Request, tmp: Path, limit: int, over: str) -> Received:
    """Stream the multipart form: small fields kept, the file written to `tmp` up to `limit`.

    A body that stalls for BODY_TIMEOUT seconds, or falls under BODY_MIN_RATE, is cut with 408
    (as a slow form is, by middlewares.body_deadline).
    """
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as exc:
        raise Refusal(400, "Send the file as multipart/form-data.") from exc
    try:
        async with asyncio.timeout(None) as stall:
            return await _read_parts(request, reader, stall, tmp, limit, over)
    except TimeoutError:
        raise Refusal(408, SLOW, headers={"Connection": "close"}) from None


async def _read_parts(
    request: web.Request,
    reader: MultipartReader,
    stall: asyncio.Timeout,
    tmp: Path,
    limit: int,
    over: str,
) -> Received:
    settings = request.app[SETTINGS_KEY]
    loop = asyncio.get_running_loop()
    start = rearm_at = loop.time()
    stall.reschedule(start + settings.body_timeout)
    received = Received()
    for _ in range(PARTS_MAX):
        part = await reader.next()
        if part is None:
            return received
        if not isinstance(part, BodyPartReader):
            raise Refusal(400, "Nested multipart forms are not accepted.")
        if part.name != "file":
            if part.name in ("text", "client_id", "csrf_token"):
                received.fields[part.name] = await _read_field(part)
            else:
                await part.release()
            continue
        if received.path is not None:
            raise Refusal(400, "Send one file at a time.")
        received.path, received.name = tmp, clean_name(part.filename)
        size = 0
        pending = bytearray()
        with tmp.open("wb") as f:
            while chunk := await part.read_chunk(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise too_large(over)
                pending += chunk
                now = loop.time()
                if now >= rearm_at:  # at most once a second: a timer costs as much as a chunk
                    stall.reschedule(now + settings.body_timeout)
                    rearm_at = now + 1.0
                pause = request.app[PACE_KEY].reserve(len(chunk), now)
                if pause > PAUSE_MIN:
                    # The bytes wait in the connection meanwhile: it is not read, so TCP slows
                    # the sender, and the memory held stays one buffer's worth.
                    stall.reschedule(now + pause + settings.body_timeout)  # our wait, not theirs
                    await asyncio.sleep(pause)
                if len(pending) < WRITE_BATCH:
                    continue
                # Written by a thread: a megabyte's copy to the page cache is not the loop's.
                await loop.run_in_executor(None, f.write, pending)
                pending = bytearray()
                elapsed, rate = now - start, settings.body_min_rate
                if rate and elapsed > RATE_GRACE and request.content.total_bytes < rate * elapsed:
                    raise Refusal(408, SLOW, headers={"Connection": "close"})
            if pending:
                await loop.run_in_executor(None, f.write, pending)
    raise Refusal(400, "The upload's form has too many parts.")


class Pace:
    """One read rate shared by all the uploads a process receives (UPLOAD_RATE_MB).

    Receiving costs CPU in proportion to bytes (the kernel's copies, aiohttp's parser, the
    multipart reader): on a small machine a file sent at the loopback's pace takes a core's
    share the sockets' loop needs. Bytes past the rate wait in the kernel until their turn.
    """

    def __init__(self, bytes_per_s: float) -> None:
        self.rate = bytes_per_s
        self.waited = 0.0  # seconds of waits handed out, for tests and curiosity
        self._free_at = 0.0  # when the bytes reserved so far have had their time

    def reserve(self, n: int, now: float) -> float:
        """Take the share of `n` received bytes; return the seconds to wait before reading on."""
        if not self.rate:
            return 0.0
        # An idle pace lets a small file through at once (PACE_BURST seconds' worth of bytes).
        self._free_at = max(now - PACE_BURST, self._free_at) + n / self.rate
        wait = max(0.0, self._free_at - now)
        self.waited += wait
        return wait


PACE_KEY = web.AppKey("upload_pace", Pace)


def _megabytes(n: int) -> str:
    return f"{n / MIB:.0f} MB" if n >= MIB else f"{n / 1024:.0f} KB"


async def upload_limit(app: web.Application, user: str) -> tuple[int, str]:
    """Return how many bytes the person's next file may have, and the 413's message past it."""
    settings = app[SETTINGS_KEY]
    limit, over = settings.upload_max_mb * MIB, f"Files can be at most {settings.upload_max_mb} MB."
    if settings.upload_quota_mb:
        left = settings.upload_quota_mb * MIB - await app[STORE_KEY].uploads.usage(user)
        quota_full = (
            f"You have used your {settings.upload_quota_mb} MB for files "
            f"({_megabytes(max(0, left))} left): delete some of your files first."
        )
        if left <= 0:
            raise too_large(quota_full)
        if left < limit:
            limit, over = left, quota_full
    return limit, over


async def share(
    app: web.Application, room: str, user: str, received: Received, upload_id: str, thumb: Path
) -> tuple[Message, bool]:
    """Examine the received file, store it, and post the message carrying it.

    Idempotent per client_id: a re-sent upload gets the stored message, its own bytes dropped.
    """
    assert received.path is not None
    text = received.fields.get("text", "").strip()
    if len(text) > TEXT_MAX:
        raise Refusal(400, f"Messages are at most {TEXT_MAX} characters.")
    client_id = received.fields.get("client_id") or f"upload-{upload_id}"
    if len(client_id) > CLIENT_ID_MAX:
        raise Refusal(400, f"client_id must be 1 to {CLIENT_ID_MAX} characters.")
    try:
        examined = await app[IMAGES_KEY].examine(received.path, thumb)
    except Busy:
        raise Refusal(503, BUSY, headers={"Retry-After": "2"}) from None
    upload = Upload(
        id=upload_id,
        room=room,
        user=user,
        client_id=client_id,
        name=received.name,
        size=examined.size,
        content_type=examined.content_type,
        sha256=examined.sha256,
        created_at=now(),
        width=examined.width,
        height=examined.height,
        thumb_type=examined.thumb_type,
        thumb_size=examined.thumb_size,
    )
    uploads = app[STORE_KEY].uploads
    stored, new = await uploads.add(upload, received.path, thumb if examined.thumb_type else None)
    quota = app[SETTINGS_KEY].upload_quota_mb * MIB
    # Checked again once stored: uploads sent side by side each began under the quota.
    if new and quota and await uploads.usage(user) > quota:
        await uploads.delete(upload_id)
        raise too_large(
            f"You have used your {app[SETTINGS_KEY].upload_quota_mb} MB for files: "
            "delete some of your files first."
        )
    # Stored first, then posted: a retry after a failure in between finds the file and posts it.
    message, created = await post_message(
        app, room, user, text, client_id, attachment=stored.attachment
    )
    if stored.id == upload_id and (
        message.attachment is None or message.attachment.id != upload_id
    ):
        await uploads.delete(upload_id)  # the client_id named another message: nobody's file
    log.info(
        "upload %s to %s by %s: %d bytes, %s",
        stored.id,
        room,
        user,
        stored.size,
        stored.content_type,
    )
    return message, created


class RoomUploads(web.View):
    """`POST /rooms/<slug>/uploads` (multipart: `file`, optional `text`, `client_id`): share it.

    The csrf middleware checked the origin; the token is checked here (the `X-CSRF-Token`
    header, else the `csrf_token` field), since the form is streamed, not read beforehand.
    """

    async def post(self) -> web.Response:
        request = self.request
        session = request.get(SESSION_KEY)
        if session is None:
            raise Refusal(401, "Log in first.")
        room = await visible_room(request, session)
        header_token = request.headers.get(CSRF_HEADER)
        if header_token is not None and not await csrf_valid(request, header_token):
            raise Refusal(403, BAD_TOKEN)
        limit, over = await upload_limit(request.app, session.user.login)
        length = request.content_length
        if length is not None and length > limit + FORM_OVERHEAD:
            raise too_large(over)  # said before a byte is read
        # A hidden folder: `manage.py backup` leaves out partial files (names starting with ".").
        tmp_dir = request.app[SETTINGS_KEY].data_dir / "uploads" / TEMP_DIR
        tmp_dir.mkdir(parents=True, exist_ok=True)
        upload_id = new_upload_id()
        tmp, thumb = tmp_dir / upload_id, tmp_dir / f"{upload_id}.thumb"
        try:
            received = await _receive(request, tmp, limit, over)
            token = header_token or received.fields.get("csrf_token", "")
            if header_token is None and not await csrf_valid(request, token):
                raise Refusal(403, BAD_TOKEN)
            if received.path is None:
                raise Refusal(400, "Choose a file to send (form field `file`).")
            message, created = await share(
                request.app, room.slug, session.user.login, received, upload_id, thumb
            )
        finally:
            tmp.unlink(missing_ok=True)
            thumb.unlink(missing_ok=True)
        if created and message.attachment is not None:
            uploaded(request.app, message.attachment.size)
        return web.json_response({"message": message.to_json()}, status=201 if created else 200)


async def _visible_upload(request: web.Request) -> Upload:
    """Return the URL's upload when the person may see its room; else 404, as for none."""
    session = request.get(SESSION_KEY)
    if session is None:
        raise web.HTTPNotFound()
    store = request.app[STORE_KEY]
    upload = await store.uploads.find(request.match_info["id"])
    if upload is None or await store.rooms.visible(upload.room, session.user.login) is None:
        raise web.HTTPNotFound()
    return upload


async def _serve(request: web.Request, upload: Upload, thumb: bool) -> web.StreamResponse:
    content_type = (upload.thumb_type or "") if thumb else upload.content_type
    inline = content_type in PIL_FORMATS
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(
            "inline" if inline else "attachment", upload.name
        ),
        "Content-Security-Policy": FILE_CSP,
        "X-Content-Type-Options": "nosniff",
        # Private to the browser, and checked again each time: leaving a room ends access.
        "Cache-Control": "private, no-cache",
        "Accept-Ranges": "bytes",
    }
    # Not web.FileResponse, even for files on disk: it ignores an If-Range that holds an ETag
    # (and serves the range of a changed file), and its ETag differs from one store to the other.
    return await _ranged(request, upload, thumb, headers)


def _etag(upload: Upload, thumb: bool) -> str:
    return upload.sha256[:32] + ("-thumb" if thumb else "")


async def _ranged(
    request: web.Request, upload: Upload, thumb: bool, headers: dict[str, str]
) -> web.StreamResponse:
    """Answer with the bytes from the store: ETag, If-None-Match, If-Range and one Range."""
    size = upload.thumb_size if thumb else upload.size
    etag = _etag(upload, thumb)
    headers["ETag"] = f'"{etag}"'
    if_none_match = request.if_none_match
    if if_none_match is not None and any(e.value in (etag, "*") for e in if_none_match):
        # A 304's headers replace the cached response's (RFC 9111 4.3.4): keep the file's own.
        kept = ("ETag", "Content-Security-Policy", "X-Content-Type-Options", "Cache-Control")
        return web.Response(status=304, headers={k: headers[k] for k in kept})
    start, end, status = 0, size, 200
    if "Range" in request.headers and _if_range_holds(request, etag):
        try:
            wanted = request.http_range
        except ValueError:
            wanted = None
        if wanted is None or (wanted.start is None and wanted.stop is None):
            return _unsatisfiable(size)
        if wanted.start is None:  # bytes=-N: the last N
            start = max(0, size - (wanted.stop or 0))
        elif wanted.start < 0:
            start = max(0, size + wanted.start)
        else:
            start = wanted.start
            end = min(size, wanted.stop) if wanted.stop is not None else size
        if start >= size or start >= end:
            return _unsatisfiable(size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in request.app[STORE_KEY].uploads.read(upload, thumb, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


def _if_range_holds(request: web.Request, etag: str) -> bool:
    value = request.headers.get("If-Range")
    return value is None or hmac.compare_digest(value.strip(), f'"{etag}"')


def _unsatisfiable(size: int) -> web.Response:
    return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})


class UploadFile(Page):
    """`GET /uploads/<id>/<name>`: the file (the name is cosmetic), to those who see its room."""

    async def get(self) -> web.StreamResponse:
        upload = await _visible_upload(self.request)
        return await _serve(self.request, upload, thumb=False)


class UploadThumb(Page):
    """`GET /thumbs/<id>`: an image's thumbnail (640 px at most), to those who see its room."""

    async def get(self) -> web.StreamResponse:
        upload = await _visible_upload(self.request)
        if upload.thumb_type is None:
            raise web.HTTPNotFound()
        return await _serve(self.request, upload, thumb=True)


def sweep_temp_files(tmp_dir: Path) -> None:
    """Remove temp files a crash left behind (old ones: another process may be receiving)."""
    cutoff = time.time() - STALE_TEMP
    with contextlib.suppress(FileNotFoundError):
        for left in itertools.islice(tmp_dir.iterdir(), 10_000):
            with contextlib.suppress(FileNotFoundError):
                if left.stat().st_mtime < cutoff:
                    left.unlink()


async def images_ctx(app: web.Application) -> AsyncIterator[None]:
    """Stop the image worker when the app stops; sweep stale temp files when it starts."""
    sweep_temp_files(app[SETTINGS_KEY].data_dir / "uploads" / TEMP_DIR)
    yield
    app[IMAGES_KEY].close()


def setup_uploads(app: web.Application) -> None:
    """Add the image worker (its thread starts with the first upload) and the shared pace."""
    app[IMAGES_KEY] = Images()
    app[PACE_KEY] = Pace(app[SETTINGS_KEY].upload_rate_mb * MIB)
    app.cleanup_ctx.append(images_ctx)
