"""Files and images in a real Chromium: upload by button, drop and paste, progress and cancel,
the inline preview, the full view and the download."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import test_browser
from PIL import Image
from playwright.async_api import Browser, Page, expect
from test_browser import MARKUP, Console, shot, signed_up

from conftest import AppProcess

pytestmark = pytest.mark.browser


# The real server, a headless Chromium and its console, as in tests/test_browser.py.
server = test_browser.server
browser = test_browser.browser
console = test_browser.console


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, "PNG")
    return out.getvalue()


async def loaded(page: Page, selector: str) -> int:
    """Wait until the image has loaded; return its natural width (0: it did not load)."""
    img = page.locator(selector)
    await expect(img).to_be_visible()
    return int(await img.evaluate("i => i.decode().then(() => i.naturalWidth, () => 0)"))


async def test_an_image_sent_by_button_shows_inline_and_opens_in_full(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    picture = {"name": "screenshot.png", "mimeType": "image/png", "buffer": png(1600, 900)}
    await alice.set_input_files("#file", files=[picture])
    item = bob.locator("#messages li.message").last
    await expect(item.locator(".author")).to_have_text("alice")
    await expect(item.locator(".attachment-download")).to_have_text("screenshot.png")
    assert await loaded(bob, "#messages li.message .attachment img.thumb") == 640
    await item.locator("a.attachment-open").click()
    await expect(bob.locator("#viewer")).to_be_visible()
    assert await loaded(bob, "#viewer-image") == 1600  # the original, not the thumbnail
    await shot(bob, "uploads-1-full-view")
    await bob.click("#viewer-close")
    await expect(bob.locator("#viewer")).to_be_hidden()
    live = await bob.locator("#messages li.message").evaluate_all(MARKUP)
    await bob.reload()  # the history, rendered by the server, shows it too, the same way
    assert await loaded(bob, "#messages li.message .attachment img.thumb") == 640
    assert await bob.locator("#messages li.message").evaluate_all(MARKUP) == live
    await shot(bob, "uploads-1-preview")
    assert console.problems == []


async def test_a_document_is_a_download_not_a_page(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    html = b"<script>document.title='owned'</script>"
    await alice.set_input_files(
        "#file", files=[{"name": "notes.html", "mimeType": "text/html", "buffer": html}]
    )
    link = bob.locator("#messages li.message .attachment-download").last
    await expect(link).to_have_text("notes.html")
    assert await bob.locator("#messages li.message .attachment img").count() == 0
    async with bob.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename == "notes.html"
    assert Path(await download.path()).read_bytes() == html
    assert await bob.title() != "owned"
    assert console.problems == []


async def test_drop_and_paste_send_files(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    # Synthetic events carry real File objects, as a drop from the desktop or a paste does.
    await alice.evaluate(
        """() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["dropped text"], "dropped.txt", { type: "text/plain" }));
        document.getElementById("chat").dispatchEvent(
            new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }"""
    )
    links = alice.locator("#messages li.message .attachment-download")
    await expect(links).to_have_text(["dropped.txt"])
    image = list(png(50, 40))
    await alice.evaluate(
        """(bytes) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], "image.png", { type: "image/png" }));
        document.getElementById("text").dispatchEvent(
            new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    }""",
        image,
    )
    await expect(links).to_have_text(["dropped.txt", "image.png"])
    assert await loaded(alice, "#messages li.message .attachment img.thumb") == 50
    assert console.problems == []


async def test_a_slow_upload_shows_progress_and_can_be_cancelled(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    cdp = await alice.context.new_cdp_session(alice)
    await cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 256_000},
    )
    big = {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": bytes(8 << 20)}
    await alice.set_input_files("#file", files=[big])
    bar = alice.locator("#uploads progress")
    await expect(bar).to_be_visible()
    await alice.wait_for_function("() => document.querySelector('#uploads progress').value > 0")
    value = await bar.evaluate("b => b.value")
    assert 0 < value < 8 << 20
    await shot(alice, "uploads-2-progress")
    await alice.click("#uploads .upload-cancel")
    await expect(alice.locator("#uploads li")).to_have_count(0)
    await expect(alice.locator("#notice")).to_have_text("Sending big.bin was cancelled.")
    await alice.wait_for_timeout(500)
    assert await alice.locator("#messages li.message").count() == 0
    problems = [p for p in console.problems if "ERR_" not in p]  # the aborted request's own
    assert problems == []
