"""Files and images (both stores): upload, idempotency, limits and quota, privacy, CSRF, what is
served inline and what as a download, location data stripped, bombs and broken images kept as
plain files, ranges and ETags, deletion with the message, usage on /admin."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from chat.uploads import MIB, PACE_KEY, TEMP_DIR, Pace, clean_name, content_disposition
from conftest import Auth, origin, receive_until
from settings import SETTINGS_KEY
from storage import STORE_KEY

GPS_IFD, ORIENTATION = 0x8825, 0x0112
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(200)


def png(width: int = 800, height: int = 600, color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def gps_jpeg() -> bytes:
    """A 1200x800 JPEG taken 'turned a quarter' (orientation 6) with a GPS position."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 30.0)})
    out = io.BytesIO()
    Image.new("RGB", (1200, 800), "orange").save(out, "JPEG", exif=exif)
    assert Image.open(io.BytesIO(out.getvalue())).getexif().get_ifd(GPS_IFD)  # the fixture has it
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A PNG of a few hundred bytes whose header says 30,000 x 30,000 pixels (2.7 GB decoded)."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    rows = zlib.compress(bytes(30_000 * 3 + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def truncated_png() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((400, 400), 60).save(out, "PNG")
    data = out.getvalue()
    return data[: len(data) // 2]


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (60, 40), (i * 80, 20, 200 - i * 60)) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


async def upload(
    person: Auth,
    data: bytes,
    name: str = "file.bin",
    room: str = "general",
    *,
    text: str | None = None,
    client_id: str | None = None,
    token: str | None = "page",
    field_token: bool = False,
    headers: dict[str, str] | None = None,
) -> Any:
    """Upload a file as the page does (the token in X-CSRF-Token) or as a form (field)."""
    form = FormData(quote_fields=False)  # names as browsers send them: UTF-8, unquoted
    csrf = await person.csrf("/") if token == "page" else token
    if field_token and csrf is not None:
        form.add_field("csrf_token", csrf)
    if text is not None:
        form.add_field("text", text)
    if client_id is not None:
        form.add_field("client_id", client_id)
    # As a stream: aiohttp warns of (and the suite fails on) large bytes sent in one piece.
    form.add_field("file", io.BytesIO(data), filename=name, content_type="application/octet-stream")
    sent = {"Origin": origin(person.client), **(headers or {})}
    if csrf is not None and not field_token:
        sent["X-CSRF-Token"] = csrf
    return await person.client.post(f"/rooms/{room}/uploads", data=form, headers=sent)


async def uploaded(person: Auth, data: bytes, name: str = "file.bin", **kw: Any) -> dict[str, Any]:
    resp = await upload(person, data, name, **kw)
    assert resp.status == 201, await resp.text()
    attachment: dict[str, Any] = (await resp.json())["message"]["attachment"]
    return attachment


def temp_files(person: Auth) -> list[Path]:
    tmp = person.client.app[SETTINGS_KEY].data_dir / "uploads" / TEMP_DIR
    return list(tmp.iterdir()) if tmp.exists() else []


async def totals(person: Auth) -> tuple[int, int]:
    return await person.client.app[STORE_KEY].uploads.totals()


@pytest.fixture
async def alice(auth: Auth) -> Auth:
    resp = await auth.signup("alice")
    assert resp.status == 302, await resp.text()
    return auth


async def test_an_image_upload_posts_a_message_that_reaches_the_room(
    alice: Auth, connect: Any, make_user: Any
) -> None:
    bob = await make_user("bob")
    ws = await connect(bob)
    resp = await upload(alice, png(), "shot.png", text="  look  ", client_id="c-1")
    assert resp.status == 201, await resp.text()
    message = (await resp.json())["message"]
    a = message["attachment"]
    assert (message["text"], message["client_id"], message["user"]) == ("look", "c-1", "alice")
    assert a["name"] == "shot.png" and a["content_type"] == "image/png"
    assert (a["width"], a["height"]) == (800, 600)
    assert a["url"] == f"/uploads/{a['id']}/shot.png" and a["thumb_url"] == f"/thumbs/{a['id']}"
    frame = await receive_until(ws, "message")
    assert frame["seq"] == message["seq"] and frame["attachment"] == a
    history = await (await bob.client.get("/rooms/general/messages")).json()
    assert history["messages"][-1]["attachment"] == a
    # A plain message says it carries nothing.
    assert set(frame) >= {"attachment"}
    full = await bob.client.get(a["url"])
    assert full.status == 200 and await full.read() == png()
    assert full.headers["Content-Type"] == "image/png"
    assert full.headers["Content-Disposition"].startswith("inline;")
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    assert full.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert int(full.headers["Content-Length"]) == a["size"] == len(png())
    thumb = await bob.client.get(a["thumb_url"])
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(await thumb.read())).size == (640, 480)
    page = await (await bob.client.get("/rooms/general")).text()
    assert a["thumb_url"] in page and a["url"] in page  # history rendered by the server too


async def test_a_plain_message_has_a_null_attachment(alice: Auth, connect: Any) -> None:
    ws = await connect(alice)
    await ws.send_str(json.dumps({"type": "message", "text": "hi", "client_id": "p1"}))
    assert (await receive_until(ws, "message"))["attachment"] is None


async def test_stored_upload_bytes_are_counted_once_in_the_metrics(alice: Auth) -> None:
    first = await upload(alice, png(), "a.png", client_id="m1")
    again = await upload(alice, png(), "a.png", client_id="m1")  # a re-send stores nothing
    assert (first.status, again.status) == (201, 200)
    size = (await first.json())["message"]["attachment"]["size"]
    resp = await alice.client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    (sample,) = [s for s in families["chat_upload_bytes"].samples if s.name.endswith("_total")]
    assert sample.value == size


async def test_uploads_are_idempotent_per_client_id(alice: Auth, connect: Any) -> None:
    ws = await connect(alice)
    first = await upload(alice, png(), "a.png", client_id="same")
    again = await upload(alice, png(color="red"), "b.png", client_id="same")
    assert (first.status, again.status) == (201, 200)
    one, two = (await first.json())["message"], (await again.json())["message"]
    assert one == two
    assert await totals(alice) == (1, one["attachment"]["size"] + await thumb_size(alice, one))
    await receive_until(ws, "message")
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert [m["seq"] for m in history["messages"]] == [one["seq"]]
    assert temp_files(alice) == []


async def thumb_size(person: Auth, message: dict[str, Any]) -> int:
    found = await person.client.app[STORE_KEY].uploads.find(message["attachment"]["id"])
    assert found is not None
    return found.thumb_size


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize("settings_overrides", [{"upload_max_mb": 1}], indirect=True)
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_file_over_the_limit_is_413_and_nothing_is_kept(alice: Auth, chunked: bool) -> None:
    big = bytes(1024 * 1024 + 1)
    if chunked:
        # No Content-Length: the limit is found while streaming.
        resp = await upload_chunked(alice, big)
    else:
        resp = await upload(alice, big, "big.bin")
    assert resp.status == 413
    assert "at most 1 MB" in (await resp.json())["error"]
    assert temp_files(alice) == [] and await totals(alice) == (0, 0)
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert history["messages"] == []
    ok = await upload(alice, bytes(1024 * 1024), "fits.bin")  # exactly the limit fits
    assert ok.status == 201, await ok.text()


async def upload_chunked(person: Auth, data: bytes) -> Any:
    boundary = "xyzBOUNDARYxyz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]
        yield tail

    headers = {
        "Origin": origin(person.client),
        "X-CSRF-Token": await person.csrf("/"),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    return await person.client.post("/rooms/general/uploads", data=body(), headers=headers)


@pytest.mark.parametrize("settings_overrides", [{"upload_quota_mb": 1}], indirect=True)
async def test_a_person_over_their_quota_gets_413(alice: Auth, make_user: Any) -> None:
    await uploaded(alice, bytes(600 * 1024), "one.bin")
    resp = await upload(alice, bytes(600 * 1024), "two.bin")
    assert resp.status == 413
    assert "used your 1 MB for files" in (await resp.json())["error"]
    assert temp_files(alice) == [] and (await totals(alice))[0] == 1
    bob = await make_user("bob")  # a quota is each person's own
    await uploaded(bob, bytes(600 * 1024), "bobs.bin")


@pytest.mark.parametrize("settings_overrides", [{"upload_quota_mb": 1}], indirect=True)
async def test_uploads_sent_side_by_side_cannot_pass_the_quota_together(alice: Auth) -> None:
    # Each of the four starts with the whole 1 MB left; together they are 2.4 MB.
    answers = await asyncio.gather(
        *(upload(alice, bytes(600 * 1024), f"f{i}.bin") for i in range(4))
    )
    statuses = sorted(r.status for r in answers)
    assert set(statuses) <= {201, 413} and statuses.count(201) <= 1
    count, used = await totals(alice)
    assert count == statuses.count(201) and used <= 1024 * 1024
    assert temp_files(alice) == []


async def test_a_room_one_cannot_see_is_404_for_uploads_and_files(
    alice: Auth, make_user: Any
) -> None:
    resp = await alice.post("/rooms", {"name": "Secret", "private": "on"}, csrf_path="/")
    slug = resp.headers["Location"].rsplit("/", 1)[1]
    a = await uploaded(alice, png(), "plan.png", room=slug)
    bob = await make_user("bob")
    assert (await upload(bob, png(), "x.png", room=slug)).status == 404
    assert (await upload(bob, png(), "x.png", room="no-such-room")).status == 404
    for url in (a["url"], a["thumb_url"], f"/uploads/{a['id']}/other-name.png"):
        assert (await bob.client.get(url)).status == 404
    assert (await bob.client.get("/uploads/0123456789abcdef0123456789abcdef/x")).status == 404
    await alice.logout()
    assert (await alice.client.get(a["url"])).status == 404
    assert temp_files(alice) == []


async def test_uploads_need_the_csrf_token_and_the_same_origin(alice: Auth) -> None:
    assert (await upload(alice, png(), token=None)).status == 403
    assert (await upload(alice, png(), token="wrong")).status == 403
    assert (await upload(alice, png(), token="wrong", field_token=True)).status == 403
    foreign = await upload(alice, png(), headers={"Origin": "http://evil.example"})
    assert foreign.status == 403
    assert await totals(alice) == (0, 0) and temp_files(alice) == []
    # The token as a form field, as a plain HTML form sends it, works too.
    assert (await upload(alice, png(), "f.png", field_token=True)).status == 201


async def test_bad_upload_forms_are_refused_clearly(alice: Auth) -> None:
    headers = {"Origin": origin(alice.client), "X-CSRF-Token": await alice.csrf("/")}
    no_file = FormData(default_to_multipart=True)
    no_file.add_field("text", "where is it")
    resp = await alice.client.post("/rooms/general/uploads", data=no_file, headers=headers)
    assert resp.status == 400 and "Choose a file" in (await resp.json())["error"]
    resp = await alice.client.post(
        "/rooms/general/uploads",
        data=b"not a form",
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert resp.status == 400
    resp = await upload(alice, png(), text="x" * 2001)
    assert resp.status == 400 and "2000" in (await resp.json())["error"]
    assert await totals(alice) == (0, 0) and temp_files(alice) == []


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (SVG, "drawing.svg"),
        (HTML, "page.html"),
        (ELF, "cute-cat.png"),  # an executable that says it is an image
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "doc.pdf"),
        (b"alert(1)", "script.js"),
    ],
)
async def test_anything_but_a_real_image_is_a_sandboxed_download(
    alice: Auth, data: bytes, name: str
) -> None:
    a = await uploaded(alice, data, name)
    assert a["content_type"] == "application/octet-stream"
    assert "thumb_url" not in a and "width" not in a
    resp = await alice.client.get(a["url"])
    assert resp.status == 200 and await resp.read() == data
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert (await alice.client.get(f"/thumbs/{a['id']}")).status == 404


async def test_the_client_s_content_type_and_name_decide_nothing(alice: Auth) -> None:
    form = FormData()
    form.add_field("file", HTML, filename="photo.jpg", content_type="image/jpeg")
    headers = {"Origin": origin(alice.client), "X-CSRF-Token": await alice.csrf("/")}
    resp = await alice.client.post("/rooms/general/uploads", data=form, headers=headers)
    a = (await resp.json())["message"]["attachment"]
    assert a["content_type"] == "application/octet-stream"
    served = await alice.client.get(a["url"])
    assert served.headers["Content-Disposition"].startswith("attachment;")


async def test_a_photo_keeps_no_location_and_shows_upright(alice: Auth) -> None:
    a = await uploaded(alice, gps_jpeg(), "holiday.jpg")
    assert a["content_type"] == "image/jpeg"
    assert (a["width"], a["height"]) == (800, 1200)  # orientation 6: a quarter turn
    stored = await (await alice.client.get(a["url"])).read()
    exif = Image.open(io.BytesIO(stored)).getexif()
    assert GPS_IFD not in exif and exif.get_ifd(GPS_IFD) == {}
    assert exif.get(ORIENTATION) == 6  # kept, so browsers show it upright
    assert b"GPS" not in stored and struct.pack(">H", GPS_IFD) not in stored
    thumb = Image.open(io.BytesIO(await (await alice.client.get(a["thumb_url"])).read()))
    assert thumb.size == (427, 640)  # turned by the thumbnail itself
    assert thumb.getexif().get_ifd(GPS_IFD) == {}


def thin_jpeg() -> bytes:
    """A JPEG under the header limit whose short side keeps it from decoding at a small scale."""
    buf = io.BytesIO()
    Image.new("L", (30_000, 800)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "name"),
    [(bomb_png(), "bomb.png"), (truncated_png(), "half.png"), (thin_jpeg(), "strip.jpg")],
)
async def test_a_bomb_or_a_broken_image_is_a_plain_attachment(
    alice: Auth, data: bytes, name: str
) -> None:
    a = await uploaded(alice, data, name)
    assert a["content_type"] == "application/octet-stream" and "thumb_url" not in a
    assert a["size"] == len(data)
    resp = await alice.client.get(a["url"])
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert await resp.read() == data
    # The server still serves: the next image is an image.
    assert (await uploaded(alice, png(), "fine.png"))["content_type"] == "image/png"


async def test_an_animated_gif_keeps_every_frame(alice: Auth) -> None:
    gif = animated_gif()
    a = await uploaded(alice, gif, "party.gif")
    assert a["content_type"] == "image/gif" and (a["width"], a["height"]) == (60, 40)
    stored = await (await alice.client.get(a["url"])).read()
    assert stored == gif and Image.open(io.BytesIO(stored)).n_frames == 3


async def test_ranges_etags_and_head(alice: Auth) -> None:
    data = bytes(range(256)) * 4000  # 1,024,000 bytes: several GridFS chunks
    a = await uploaded(alice, data, "data.bin")
    c = alice.client
    whole = await c.get(a["url"])
    etag = whole.headers["ETag"]
    assert whole.headers["Accept-Ranges"] == "bytes"
    same = await c.get(a["url"], headers={"If-None-Match": etag})
    assert same.status == 304 and same.headers["ETag"] == etag
    for header in ("Content-Security-Policy", "X-Content-Type-Options", "Cache-Control"):
        assert same.headers[header] == whole.headers[header], header  # they replace the cached
    part = await c.get(a["url"], headers={"Range": "bytes=300000-600009"})
    assert part.status == 206 and await part.read() == data[300000:600010]
    assert part.headers["Content-Range"] == f"bytes 300000-600009/{len(data)}"
    assert part.headers["Content-Length"] == "300010"
    tail = await c.get(a["url"], headers={"Range": "bytes=-10"})
    assert tail.status == 206 and await tail.read() == data[-10:]
    rest = await c.get(a["url"], headers={"Range": f"bytes={len(data) - 5}-"})
    assert rest.status == 206 and await rest.read() == data[-5:]
    beyond = await c.get(a["url"], headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}"
    stale = await c.get(a["url"], headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status == 200 and await stale.read() == data  # changed: the whole file
    head = await c.head(a["url"])
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    assert await head.read() == b""


async def test_deleting_the_message_deletes_its_file(alice: Auth, connect: Any) -> None:
    ws = await connect(alice)
    resp = await upload(alice, png(), "gone.png", client_id="del-1")
    message = (await resp.json())["message"]
    await receive_until(ws, "message")
    await ws.send_str(json.dumps({"type": "delete", "seq": message["seq"]}))
    change = await receive_until(ws, "change")
    assert change["deleted"] is True and change["attachment"] is None
    a = message["attachment"]
    for url in (a["url"], a["thumb_url"]):
        assert (await alice.client.get(url)).status == 404
    assert await totals(alice) == (0, 0)
    store = alice.client.app[STORE_KEY]
    assert await store.uploads.find(a["id"]) is None
    (stored,) = await store.messages.before("general", None, 10)
    assert stored.attachment is None  # not even its name is kept
    data_dir = alice.client.app[SETTINGS_KEY].data_dir / "uploads"
    assert not list(data_dir.glob(f"{a['id']}*"))


async def test_an_admin_sees_the_total_usage(alice: Auth, make_user: Any) -> None:
    page = await (await alice.client.get("/admin")).text()
    assert "0 files, 0 Bytes in all" in page
    await uploaded(alice, bytes(300 * 1024), "a.bin")
    await uploaded(alice, bytes(300 * 1024), "b.bin")
    page = await (await alice.client.get("/admin")).text()
    assert "2 files, 600.0 KiB in all (each person may keep 1024 MB)" in page


def test_names_are_cleaned_and_sent_back_safely() -> None:
    assert clean_name("../../etc/passwd") == "_.._etc_passwd"
    assert clean_name("C:\\Users\\me\\x.txt") == "C:_Users_me_x.txt"
    assert clean_name("invoice\u202egnp.exe") == "invoicegnp.exe"  # no bidi override
    assert clean_name("a\x00b\r\n.txt") == "ab.txt"
    assert clean_name("") == clean_name(None) == clean_name("...") == "file"
    long = clean_name("x" * 300 + ".jpeg")
    assert len(long) == 120 and long.endswith(".jpeg")
    header = content_disposition("attachment", 'Ünïcode "quoted".txt')
    assert header == (
        'attachment; filename="_n_code _quoted_.txt"; '
        "filename*=UTF-8''%C3%9Cn%C3%AFcode%20%22quoted%22.txt"
    )


async def test_a_name_with_a_path_and_unicode_is_served_under_its_clean_name(
    alice: Auth,
) -> None:
    a = await uploaded(alice, HTML, "../évil\u202e.html")
    assert a["name"] == "_évil.html"
    resp = await alice.client.get(a["url"])
    assert "filename*=UTF-8''_%C3%A9vil.html" in resp.headers["Content-Disposition"]


async def test_the_store_keeps_one_upload_per_client_id(store: Any, tmp_path: Path) -> None:
    from storage.base import Upload, new_upload_id, now

    def made(client_id: str, size: int) -> tuple[Upload, Path]:
        path = tmp_path / new_upload_id()
        path.write_bytes(b"x" * size)
        upload = Upload(
            new_upload_id(), "general", "alice", client_id, "x.bin", size,
            "application/octet-stream", "0" * 64, now(),
        )  # fmt: skip
        return upload, path

    first, path = made("c1", 10)
    stored, created = await store.uploads.add(first, path, None)
    assert created and stored == first and not path.exists()
    second, path = made("c1", 20)
    stored, created = await store.uploads.add(second, path, None)
    assert not created and stored == first and not path.exists()
    assert await store.uploads.find(second.id) is None
    chunks = [c async for c in store.uploads.read(first, False, 2, 7)]
    assert b"".join(chunks) == b"xxxxx"
    other, path = made("c2", 5)
    await store.uploads.add(dataclass_with(other, user="bob"), path, None)
    assert await store.uploads.usage("alice") == 10 and await store.uploads.usage("bob") == 5
    assert await store.uploads.totals() == (2, 15)
    assert await store.uploads.delete(first.id) and not await store.uploads.delete(first.id)
    assert await store.uploads.totals() == (1, 5)


def dataclass_with(value: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(value, **changes)


async def test_an_upload_cut_off_midway_keeps_nothing(alice: Auth) -> None:
    import asyncio

    client = alice.client
    boundary = "cutBOUNDARY"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + bytes(300_000)
    cookie = f'{client.app[SETTINGS_KEY].cookie_name}="{alice.cookie()}"'
    request = (
        f"POST /rooms/general/uploads HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
        f"Origin: {origin(client)}\r\nX-CSRF-Token: {await alice.csrf('/')}\r\n"
        f"Cookie: {cookie}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + 500_000}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request + head)
    await writer.drain()
    for _ in range(50):  # until the server is writing the file
        if temp_files(alice):
            break
        await asyncio.sleep(0.1)
    assert temp_files(alice), "the upload never started"
    writer.close()  # the rest never comes
    await writer.wait_closed()
    for _ in range(50):  # the server notices the close, then cleans up
        if not temp_files(alice):
            break
        await asyncio.sleep(0.1)
    assert temp_files(alice) == [] and await totals(alice) == (0, 0)
    history = await (await client.get("/rooms/general/messages")).json()
    assert history["messages"] == []


@pytest.mark.parametrize("settings_overrides", [{"body_timeout": 1.0}], indirect=True)
async def test_a_stalled_upload_is_cut_with_408(alice: Auth) -> None:
    import asyncio

    client = alice.client
    boundary = "stallBOUNDARY"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + bytes(1000)
    cookie = f'{client.app[SETTINGS_KEY].cookie_name}="{alice.cookie()}"'
    request = (
        f"POST /rooms/general/uploads HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
        f"Origin: {origin(client)}\r\nX-CSRF-Token: {await alice.csrf('/')}\r\n"
        f"Cookie: {cookie}\r\nAccept: application/json\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + 100_000}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request + head)  # and then nothing more: the body stalls
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"too slow or stalled" in answer
    assert temp_files(alice) == [] and await totals(alice) == (0, 0)


def test_the_pace_shares_one_rate_among_uploads() -> None:
    pace = Pace(MIB)  # a megabyte a second
    assert pace.reserve(50 * 1024, 100.0) == 0.0  # an idle pace lets a small file through
    assert pace.reserve(MIB, 100.0) == pytest.approx(0.949, abs=0.001)
    # A second upload at the same moment queues behind the first one's bytes.
    assert pace.reserve(MIB, 100.0) == pytest.approx(1.949, abs=0.001)
    # Later, once idle again, the wait starts afresh (one burst's worth, no credit beyond).
    assert pace.reserve(MIB, 1000.0) == pytest.approx(0.9, abs=0.001)
    unlimited = Pace(0)
    assert unlimited.reserve(100 * MIB, 0.0) == 0.0 and unlimited.waited == 0.0


@pytest.mark.parametrize("settings_overrides", [{"upload_rate_mb": 2}], indirect=True)
async def test_an_upload_over_the_rate_waits_and_arrives_whole(alice: Auth) -> None:
    data = bytes(range(256)) * (6 * 1024)  # 1.5 MiB at 2 MiB a second: waits ~0.7 s
    a = await uploaded(alice, data, "paced.bin")
    assert alice.client.app[PACE_KEY].waited > 0.3
    resp = await alice.client.get(a["url"])
    assert resp.status == 200 and await resp.read() == data


@pytest.mark.parametrize("settings_overrides", [{"upload_rate_mb": 0}], indirect=True)
async def test_no_rate_means_no_wait(alice: Auth) -> None:
    data = bytes(range(256)) * (6 * 1024)
    await uploaded(alice, data, "fast.bin")
    assert alice.client.app[PACE_KEY].waited == 0.0


@pytest.mark.parametrize(
    "settings_overrides", [{"upload_rate_mb": 2, "body_timeout": 0.5}], indirect=True
)
async def test_waiting_for_the_pace_is_not_a_stall(alice: Auth) -> None:
    import asyncio

    pace = alice.client.app[PACE_KEY]
    # Others' bytes are ahead: this upload waits ~1.6 s, less the time it takes to start (over a
    # second's margin on a loaded machine), which is longer than BODY_TIMEOUT.
    ahead = pace.reserve(3 * MIB + 300 * 1024, asyncio.get_running_loop().time())
    data = bytes(range(256)) * 2048  # 512 KiB
    a = await uploaded(alice, data, "queued.bin")
    assert pace.waited - ahead > 0.5
    assert await (await alice.client.get(a["url"])).read() == data
