"""What an uploaded file is, from its bytes; an image's location-free copy and its thumbnail.

Everything here is blocking and runs in `Images`' worker thread. A file is an image only when
its first bytes say png, jpeg, gif or webp AND Pillow decodes it within the pixel limits; any
other file (a corrupt or truncated image, a decompression bomb, a renamed executable) is served
as `application/octet-stream`, as an attachment. The pixel count is checked from the header,
before any decoding (`Image.open` is lazy), so a bomb costs a few kilobytes of memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from aiohttp import web
from PIL import Image, ImageOps

from common.workers import Workers

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
PNG, JPEG, GIF, WEBP = "image/png", "image/jpeg", "image/gif", "image/webp"
PIL_FORMATS = {PNG: "PNG", JPEG: "JPEG", GIF: "GIF", WEBP: "WEBP"}
THUMB_SIDE = 640  # the thumbnail's longest side
THUMB_TYPE = WEBP
# Decoded size limits, checked from the header before decoding: 4 bytes a pixel, 16.8 Mpx is
# 64 MiB. A JPEG may be larger, as it is decoded at a reduced scale (`draft`), but only as far as
# its shorter side allows (a 60000x800 one decodes in full), so the size `draft` will decode at
# is checked too (DECODED_MAX), still before decoding.
DECODED_MAX = 4096 * 4096
MAX_PIXELS = {JPEG: 50_000_000, PNG: DECODED_MAX, GIF: DECODED_MAX, WEBP: DECODED_MAX}
COPY_CHUNK = 256 * 1024
# Chunks and segments that may carry where a photo was taken (EXIF GPS, XMP, IPTC, text).
PNG_DROPPED = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt"})
WEBP_DROPPED = frozenset({b"EXIF", b"XMP "})
WEBP_EXIF_FLAG, WEBP_XMP_FLAG = 0x08, 0x04
WEBP_EXIF_XMP_FLAGS = WEBP_EXIF_FLAG | WEBP_XMP_FLAG
JPEG_DROPPED = frozenset({0xE1, 0xED})  # APP1 (EXIF, XMP), APP13 (Photoshop IPTC)
ORIENTATION = 0x0112
NICENESS = 10  # like the password threads: the event loop's thread runs first


class NotAnImage(Exception):
    """The file is not an image we show (wrong type, corrupt, truncated or too large)."""


@dataclasses.dataclass(frozen=True)
class Examined:
    """What a stored file turned out to be: its type as served, size and digest, dimensions."""

    content_type: str
    size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    thumb_type: str | None = None
    thumb_size: int = 0


def sniff(head: bytes) -> str:
    """Return the image type the first bytes announce, or application/octet-stream."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return OCTET_STREAM


def examine(path: Path, thumb: Path) -> Examined:
    """Make an image's thumbnail at `thumb` and strip its location; describe the stored file.

    A file that is no image we show is left as it is, described as application/octet-stream.
    """
    with path.open("rb") as f:
        kind = sniff(f.read(16))
    if kind != OCTET_STREAM:
        try:
            width, height = _thumbnail(path, kind, thumb)
            _strip_location(path, kind)
        except NotAnImage as exc:
            log.info("stored as a plain file: %s", exc)
            thumb.unlink(missing_ok=True)
            kind = OCTET_STREAM
        else:
            size, digest = _digest(path)
            return Examined(kind, size, digest, width, height, THUMB_TYPE, thumb.stat().st_size)
    size, digest = _digest(path)
    return Examined(kind, size, digest)


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(COPY_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _thumbnail(path: Path, kind: str, thumb: Path) -> tuple[int, int]:
    """Write the thumbnail; return the image's width and height as shown (EXIF orientation)."""
    try:
        with Image.open(path, formats=[PIL_FORMATS[kind]]) as im:
            width, height = im.size
            if width * height > MAX_PIXELS[kind]:
                raise NotAnImage(f"{width}x{height} pixels is over the limit for {kind}")
            orientation = im.getexif().get(ORIENTATION, 1)
            if kind == JPEG:
                im.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # decode at 1/2..1/8 scale
                if im.size[0] * im.size[1] > DECODED_MAX:
                    raise NotAnImage(f"{width}x{height} pixels decode too large for {kind}")
            im.load()
            shown = ImageOps.exif_transpose(im)
            shown.thumbnail((THUMB_SIDE, THUMB_SIDE))
            if shown.mode not in ("RGB", "RGBA"):
                shown = shown.convert("RGBA" if _has_alpha(shown) else "RGB")
            shown.save(thumb, "WEBP", quality=80)
    except NotAnImage:
        raise
    # Pillow reports bad data in many ways; a bomb past its own limit too (Image.open).
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        raise NotAnImage(f"{kind} that does not decode: {exc}") from exc
    if orientation in (5, 6, 7, 8):  # turned a quarter: the sides swap
        width, height = height, width
    return width, height


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("LA", "PA") or "transparency" in im.info


def _strip_location(path: Path, kind: str) -> None:
    """Rewrite the file without metadata that may hold a location, its pixels untouched."""
    strip: Callable[[BinaryIO, BinaryIO], None] | None = {
        JPEG: _strip_jpeg,
        PNG: _strip_png,
        WEBP: _strip_webp,
    }.get(kind)
    if strip is None:  # GIF has no EXIF: it is kept as sent, every frame
        return
    clean = path.with_name(path.name + ".clean")
    try:
        with path.open("rb") as src, clean.open("wb") as dst:
            strip(src, dst)
        os.replace(clean, path)
    except (OSError, ValueError, struct.error) as exc:
        raise NotAnImage(f"{kind} whose metadata cannot be read: {exc}") from exc
    finally:
        clean.unlink(missing_ok=True)


def _read_exactly(src: BinaryIO, n: int) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise ValueError("the file ends early")
    return data


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = _read_exactly(src, min(COPY_CHUNK, n))
        dst.write(chunk)
        n -= len(chunk)


def _strip_jpeg(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy a JPEG without its APP1 and APP13 segments; keep only its EXIF orientation."""
    if _read_exactly(src, 2) != b"\xff\xd8":
        raise ValueError("no JPEG start")
    dst.write(b"\xff\xd8")
    orientation = 1
    exif_written = False
    while True:
        if _read_exactly(src, 1) != b"\xff":
            raise ValueError("a JPEG segment without its marker")
        marker = src.read(1)
        while marker == b"\xff":  # fill bytes
            marker = src.read(1)
        if not marker:
            raise ValueError("the file ends early")
        code = marker[0]
        if code == 0xD9 or 0xD0 <= code <= 0xD7 or code == 0x01:  # no length follows
            dst.write(b"\xff" + marker)
            if code == 0xD9:
                return
            continue
        (length,) = struct.unpack(">H", _read_exactly(src, 2))
        if length < 2:
            raise ValueError("a JPEG segment of a bad length")
        if code in JPEG_DROPPED:
            payload = _read_exactly(src, length - 2)
            if code == 0xE1 and payload.startswith(b"Exif\x00\x00"):
                orientation = _orientation(payload) or orientation
            continue
        if code != 0xE0 and not exif_written:
            # After the JFIF header (APP0), if any: the orientation alone, so it shows upright.
            if orientation != 1:
                exif = Image.Exif()
                exif[ORIENTATION] = orientation
                data = exif.tobytes()
                dst.write(b"\xff\xe1" + struct.pack(">H", len(data) + 2) + data)
            exif_written = True
        dst.write(b"\xff" + marker + struct.pack(">H", length))
        _copy(src, dst, length - 2)
        if code == 0xDA:  # the scan: the rest is image data, copied as it is
            shutil.copyfileobj(src, dst, COPY_CHUNK)
            return


def _orientation(payload: bytes) -> int | None:
    exif = Image.Exif()
    try:
        exif.load(payload)
    except (OSError, ValueError, SyntaxError, struct.error, KeyError):
        return None
    value = exif.get(ORIENTATION)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _strip_png(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy a PNG without its eXIf and text chunks, up to IEND (anything after it goes)."""
    dst.write(_read_exactly(src, 8))
    while True:
        head = _read_exactly(src, 8)
        (length,) = struct.unpack(">I", head[:4])
        kind = head[4:]
        if kind in PNG_DROPPED:
            src.seek(length + 4, os.SEEK_CUR)
            continue
        dst.write(head)
        _copy(src, dst, length + 4)  # the data and its CRC
        if kind == b"IEND":
            return


def _webp_chunks(src: BinaryIO) -> list[tuple[bytes, int, int]]:
    """Return a WebP's chunks as (fourcc, data offset, data size), checking they fit its RIFF."""
    header = _read_exactly(src, 12)
    (riff_size,) = struct.unpack("<I", header[4:8])
    end = 8 + riff_size
    chunks = []
    while src.tell() < end:
        head = _read_exactly(src, 8)
        (size,) = struct.unpack("<I", head[4:])
        chunks.append((head[:4], src.tell(), size))
        src.seek(size + (size & 1), os.SEEK_CUR)
    if src.tell() > end or src.tell() > os.fstat(src.fileno()).st_size:
        raise ValueError("a WebP chunk runs past the end")
    return chunks


def _strip_webp(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy a WebP without its EXIF and XMP chunks, keeping only the EXIF orientation."""
    chunks = _webp_chunks(src)
    orientation = 1
    for kind, offset, size in chunks:
        if kind == b"EXIF":
            src.seek(offset)
            orientation = _orientation(b"Exif\x00\x00" + _read_exactly(src, size)) or 1
    exif = b""
    if orientation != 1 and any(kind == b"VP8X" for kind, _, _ in chunks):
        kept = Image.Exif()
        kept[ORIENTATION] = orientation
        exif = kept.tobytes()[6:]  # WebP's EXIF chunk holds the TIFF data without "Exif\0\0"
    dst.write(b"RIFF\0\0\0\0WEBP")
    for kind, offset, size in chunks:
        if kind in WEBP_DROPPED:
            continue
        src.seek(offset)
        padded = size + (size & 1)
        dst.write(kind + struct.pack("<I", size))
        if kind == b"VP8X":
            data = bytearray(_read_exactly(src, padded))
            data[0] &= ~WEBP_EXIF_XMP_FLAGS & 0xFF
            if exif:
                data[0] |= WEBP_EXIF_FLAG
            dst.write(data)
        else:
            _copy(src, dst, padded)
    if exif:
        dst.write(b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\0" * (len(exif) & 1))
    riff_size = dst.tell() - 8
    dst.seek(4)
    dst.write(struct.pack("<I", riff_size))


class Images:
    """Examine uploads in a worker thread, a bounded number at a time, off the event loop."""

    def __init__(self, concurrency: int = 1, queue: int = 8) -> None:
        self._workers = Workers(concurrency, queue, "images", NICENESS)

    async def examine(self, path: Path, thumb: Path) -> Examined:
        """Examine a stored upload (see `examine`); Busy when the workers are saturated."""
        return await self._workers.run(examine, path, thumb)

    def close(self) -> None:
        """Let the worker end once its work is done."""
        self._workers.close()


IMAGES_KEY = web.AppKey("images", Images)
