"""Accessibility in a real Chromium: axe-core on every page state, dark mode, a phone's layout.

axe-core (pinned in tests/tools, installed by the tests themselves: tests/node_tools.py) checks
WCAG 2.1 A and AA on each state of each page, in the light and the dark scheme, at a desktop and a
phone viewport. Its script is added to every page as an init script, which the page's CSP does not
govern, so the pages are audited with their real CSP.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import test_browser
from node_tools import NodeToolsMissing, axe_script
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, expect
from test_browser import Console, send, shot, sign_up

from conftest import PASSWORD, AppProcess

pytestmark = pytest.mark.browser

# The real server, a headless Chromium and its console, as in tests/test_browser.py.
server = test_browser.server
browser = test_browser.browser
console = test_browser.console

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {
    "desktop": {"viewport": DESKTOP},
    "phone": {"viewport": PHONE, "is_mobile": True, "has_touch": True},
}
CODE = (
    "Try this:\n```\nfor x in range(3):\n"
    '    print(x, "a line of code longer than a phone is wide", sep="")\n```'
)


@pytest.fixture(scope="session")
def axe() -> str:
    """axe-core's script (npm ci on first use)."""
    try:
        return str(axe_script())
    except NodeToolsMissing as exc:
        pytest.fail(str(exc))


async def audit(page: Page, state: str) -> list[str]:
    """Run axe-core's WCAG 2.1 AA rules on the page; return its violations, one line per node."""
    violations = await page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, {
                runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "), html: n.html,
                                          summary: n.failureSummary}))}));
        }""",
        AXE_TAGS,
    )
    lines = []
    for v in violations:
        for n in v["nodes"]:
            summary = " ".join(n["summary"].split())
            lines.append(
                f"[{state}] {v['id']} ({v['impact']}): {v['help']}\n"
                f"    at {n['target']}: {n['html'][:160]}\n    {summary}"
            )
    return lines


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), "teal").save(out, "PNG")
    return out.getvalue()


async def seed_room(url: str, alice_seq: int) -> None:
    """As bob: a code block, a reply to alice's message, a reaction to it and an image."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, headers={"Origin": url}) as s:
        async with s.get(url + "/signup") as resp:
            match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
            assert match
        form = {
            "login": "bob",
            "email": "bob@example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "csrf_token": match.group(1),
        }
        async with s.post(url + "/signup", data=form) as resp:
            assert resp.status == 200
        async with s.get(url + "/rooms/general") as resp:
            match = re.search(r'data-csrf-token="([^"]+)"', await resp.text())
            assert match
            token = match.group(1)
        async with s.ws_connect(url + "/ws?room=general") as ws:
            await ws.receive_json(timeout=5)
            frames: list[dict[str, Any]] = [
                {"type": "message", "text": CODE, "client_id": "b1"},
                {
                    "type": "message",
                    "text": "yes, see you",
                    "client_id": "b2",
                    "reply_to": alice_seq,
                },
                {"type": "react", "seq": alice_seq, "emoji": "👍", "client_id": "b3"},
            ]
            for frame in frames:
                await ws.send_json(frame)
            data = aiohttp.FormData()
            data.add_field("file", png(), filename="dot.png", content_type="image/png")
            data.add_field("text", "the picture")
            data.add_field("client_id", "b4")
            async with s.post(
                url + "/rooms/general/uploads", data=data, headers={"X-CSRF-Token": token}
            ) as resp:
                assert resp.status == 201, await resp.text()
            messages = 0
            while messages < 3:
                if (await ws.receive_json(timeout=10))["type"] == "message":
                    messages += 1


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    """Browser contexts a test opens, closed after it."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


async def open_page(
    browser: Browser, console: Console, contexts: list[BrowserContext], axe: str, **options: Any
) -> Page:
    context = await browser.new_context(locale="en-GB", **options)
    context.set_default_timeout(test_browser.TIMEOUT_MS)
    await context.add_init_script(path=axe)
    contexts.append(context)
    page = await context.new_page()
    console.watch(page)
    return page


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_axe_finds_no_wcag_violation_on_any_page(
    server: AppProcess,
    browser: Browser,
    console: Console,
    contexts: list[BrowserContext],
    axe: str,
    scheme: str,
    viewport: str,
) -> None:
    options = {"color_scheme": scheme, **VIEWPORTS[viewport]}
    url = server.url
    found: list[str] = []
    tag = f"{scheme}-{viewport}"

    async def check(page: Page, state: str) -> None:
        await page.wait_for_load_state("load")
        found.extend(await audit(page, state))
        await shot(page, f"a11y-{tag}-{state}")

    visitor = await open_page(browser, console, contexts, axe, **options)
    for path, state in (("/login", "login"), ("/signup", "signup")):
        await visitor.goto(url + path)
        await check(visitor, state)
    await visitor.goto(url + "/login")
    await visitor.fill("#login", "nobody")
    await visitor.fill("#password", "wrong password")
    await visitor.click("button[type=submit]")
    await expect(visitor.locator(".form-error")).to_be_visible()
    await check(visitor, "login-refused")

    alice = await open_page(browser, console, contexts, axe, **options)
    await sign_up(alice, url, "alice")  # the first account: the admin
    await check(alice, "room-just-joined")
    await send(alice, "hello, meeting on Friday?")
    mine = alice.locator("#messages li.message:not(.pending)")
    await expect(mine).to_have_count(1)
    alice_seq = int(await mine.first.get_attribute("data-seq") or 0)
    await alice.goto(url + "/")
    await seed_room(url, alice_seq)
    await alice.reload()
    await expect(alice.locator("#rooms .unread")).to_have_count(1)
    await check(alice, "rooms-with-unread")
    await alice.click("text=#General")
    await expect(alice.locator("#status")).to_have_text("")
    await expect(alice.locator("#unread-divider")).to_be_visible()
    await expect(alice.locator("#messages .code-block")).to_have_count(1)
    await expect(alice.locator("#messages a.quote")).to_have_count(1)
    await expect(alice.locator("#messages .chip")).to_have_count(1)
    await expect(alice.locator("#messages .attachment img.thumb")).to_have_count(1)
    await check(alice, "room-with-messages")
    await alice.locator("#messages li.message").first.hover()
    await check(alice, "room-message-hovered")
    await alice.goto(url + "/search?q=hello")
    await expect(alice.locator("#search-results li").first).to_be_visible()
    await check(alice, "search-results")
    await alice.goto(url + "/search?q=zzzznothing")
    await expect(alice.locator("#search-status")).not_to_be_empty()
    await check(alice, "search-no-results")
    for path, state in (("/account", "account"), ("/admin", "admin"), ("/no-such-page", "404")):
        await alice.goto(url + path)
        await check(alice, state)
    await alice.goto(url + "/")
    await alice.fill("#name", "Quiet")
    await alice.click("text=Create room")
    await alice.wait_for_url(url + "/rooms/quiet")
    await expect(alice.locator("#status")).to_have_text("")
    await check(alice, "room-empty")
    await alice.goto(url + "/")
    await alice.fill("#name", "Secret")
    await alice.check("input[name=private]")
    await alice.click("text=Create room")
    await alice.wait_for_url(re.compile(re.escape(url) + r"/rooms/secret-\w+"))
    await expect(alice.locator("#status")).to_have_text("")
    await check(alice, "room-private")
    if found:
        pytest.fail(f"{len(found)} axe-core violations ({tag}):\n" + "\n".join(found))
    # The refused login (401) and the missing page (404) are the only failed loads.
    assert [p for p in console.problems if not re.search("status of 40[14]", p)] == []


def luminance(css_rgb: str) -> float:
    """Return the relative luminance of a computed `rgb(r, g, b)` colour."""
    parts = re.findall(r"[\d.]+", css_rgb)[:3]
    assert len(parts) == 3, css_rgb

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(p) / 255) for p in parts)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


COLOURS = """(selector) => {
    const style = getComputedStyle(document.querySelector(selector));
    return {color: style.color, background: style.backgroundColor};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_page_follows_the_colour_scheme(
    server: AppProcess, browser: Browser, console: Console, scheme: str
) -> None:
    page = await test_browser.signed_up(browser, console, server.url, "alice", color_scheme=scheme)
    await send(page, "a message")
    await expect(page.locator("#messages li.message:not(.pending)")).to_have_count(1)
    for selector in ("body", "#messages", "#text"):
        colours = await page.evaluate(COLOURS, selector)
        text, background = luminance(colours["color"]), luminance(colours["background"])
        if scheme == "dark":
            assert background < 0.05 and text > 0.6, (selector, colours)  # light on dark
        else:
            assert background > 0.85 and text < 0.05, (selector, colours)  # dark on light
    # The browser's own parts (scroll bars, pickers) follow the scheme too.
    assert await page.evaluate("getComputedStyle(document.body).colorScheme") == "light dark"
    await shot(page, f"scheme-{scheme}")
    assert console.problems == []


async def box(page: Page, selector: str) -> dict[str, float]:
    found = await page.locator(selector).first.bounding_box()
    assert found is not None, selector
    return found


TARGETS = """() => [...document.querySelectorAll(
        "#send button, #attach, #text, header.top a, header.top button, #messages button")]
    .filter(el => el.offsetParent !== null)
    .map(el => {
        const r = el.getBoundingClientRect();
        return {name: el.id || el.textContent.trim(), w: r.width, h: r.height};
    })"""


@pytest.mark.parametrize("width", [390, 360])
async def test_phone_layout_title_first_composer_grows_targets_are_big(
    server: AppProcess, browser: Browser, console: Console, width: int
) -> None:
    options = {"viewport": {"width": width, "height": 844}, "is_mobile": True, "has_touch": True}
    page = await test_browser.signed_up(browser, console, server.url, "alice", **options)
    await send(page, "first message")
    await send(page, CODE)
    await expect(page.locator("#messages li.message:not(.pending)")).to_have_count(2)
    # A wide code block scrolls inside its message, which stays inside the list.
    code, item = await box(page, "#messages pre"), await box(page, "#messages li.message >> nth=1")
    assert code["x"] + code["width"] <= item["x"] + item["width"] + 0.5
    assert item["x"] + item["width"] <= (await box(page, "#messages"))["x"] + width
    title, messages, people = (
        await box(page, "h1.room-name"),
        await box(page, "#messages"),
        await box(page, ".people"),
    )
    assert title["y"] + title["height"] <= messages["y"]  # the title above the messages
    assert people["y"] >= messages["y"] + messages["height"]  # who is online after them
    await expect(page.locator("#text")).to_be_in_viewport()
    await expect(page.locator("#send button[type=submit]")).to_be_in_viewport()
    # The composer grows with its text, up to about six lines, then scrolls.
    await page.fill("#text", "line")
    one_line = (await box(page, "#text"))["height"]
    await page.fill("#text", "line\n" * 3 + "line")
    four_lines = (await box(page, "#text"))["height"]
    await page.fill("#text", "line\n" * 20 + "line")
    many_lines = (await box(page, "#text"))["height"]
    line_height = float(await page.evaluate("parseFloat(getComputedStyle(text).lineHeight)"))
    assert four_lines > one_line + 2 * line_height
    assert 5 * line_height < many_lines <= 6 * line_height + 20
    await shot(page, f"phone-{width}-composer")
    # Touch targets: the composer's buttons and field, and the header's links and button.
    # A touch screen: a message's own buttons too.
    assert await page.evaluate("matchMedia('(pointer: coarse)').matches")
    targets = await page.evaluate(TARGETS)
    assert len(targets) >= 9, targets
    small = [t for t in targets if t["h"] < 44 or t["w"] < 44]
    assert small == []
    # Nothing scrolls sideways, on any page.
    await page.fill("#text", "")
    for path in ("/rooms/general", "/", "/search?q=first", "/account", "/admin", "/nope"):
        await page.goto(server.url + path)
        await page.wait_for_load_state("load")
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, overflow)
    assert [p for p in console.problems if "status of 404" not in p] == []  # /nope
