"""The chat page in a real Chromium (Debian's), driven by Playwright, against the real server."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import zoneinfo
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    async_playwright,
    expect,
)

from chat.ws import REPLAY_MAX
from conftest import PASSWORD, ROOT, AppProcess

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000

expect.set_options(timeout=TIMEOUT_MS)


def chat_process(tmp_path: Path, **env: str) -> AppProcess:
    """Start the real chat process on the embedded store, in an empty directory."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's chromium (apt-get install chromium)")
    return AppProcess(tmp_path, **env).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppProcess]:
    """The real chat process, open to anyone's sign-up (the harness's default for tests)."""
    # Seeding 120 messages from one socket is faster than the default message rate limit.
    app = chat_process(tmp_path, MESSAGE_BURST="1000", MESSAGE_PER_MINUTE="60000")
    yield app
    app.kill()


@pytest.fixture
def invite_server(tmp_path: Path) -> Iterator[AppProcess]:
    """The real chat process with the default sign-up mode: by invitation only."""
    app = chat_process(tmp_path, SIGNUP_MODE="invite")
    yield app
    app.kill()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium."""
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


class Console:
    """Everything a page logged that a person's console would show as a problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        page.on("dialog", lambda dialog: self.problems.append(f"dialog: {dialog.message}"))

    def _console(self, msg: ConsoleMessage) -> None:
        text = msg.text
        if msg.type in ("error", "warning") or "Content Security Policy" in text:
            self.problems.append(f"{msg.type}: {text}")
        elif "Mixed Content" in text:
            self.problems.append(f"{msg.type}: {text}")


@pytest.fixture
def console() -> Console:
    return Console()


async def new_person(
    browser: Browser, console: Console, **context_options: Any
) -> tuple[BrowserContext, Page]:
    """A separate browser profile (its own cookies) with one page."""
    context = await browser.new_context(locale="en-GB", **context_options)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    console.watch(page)
    return context, page


async def shot(page: Page, name: str) -> None:
    """Keep a screenshot of a key step under artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def sign_up(page: Page, url: str, login: str) -> None:
    """Sign up through the form, land on the room list and open the general room."""
    await page.goto(url + "/signup")
    await page.fill("#login", login)
    await page.fill("#email", f"{login}@example.com")
    await page.fill("#password", PASSWORD)
    await page.fill("#password_confirm", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(url + "/")
    await page.click("text=#General")
    await page.wait_for_url(url + "/rooms/general")
    await expect(page.locator("#status")).to_have_text("")  # connected


async def signed_up(
    browser: Browser, console: Console, url: str, login: str, **context_options: Any
) -> Page:
    """A new person in their own browser profile, signed up and on the chat."""
    _, page = await new_person(browser, console, **context_options)
    await sign_up(page, url, login)
    return page


async def send(page: Page, text: str) -> None:
    """Type a message and press Enter."""
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def seed(url: str, count: int) -> None:
    """Post messages through the real protocol, as another person."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(url + "/signup") as resp:
            match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
            assert match
        form = {
            "login": "seeder",
            "email": "seeder@example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "csrf_token": match.group(1),
        }
        async with s.post(url + "/signup", data=form, headers={"Origin": url}) as resp:
            assert resp.status == 200
        async with s.ws_connect(url + "/ws", headers={"Origin": url}) as ws:
            await ws.receive_json(timeout=5)
            for i in range(1, count + 1):
                await ws.send_json({"type": "message", "text": f"seed {i}", "client_id": f"s{i}"})
            got = 0
            while got < count:
                if (await ws.receive_json(timeout=10))["type"] == "message":
                    got += 1


def menu_item(item: Locator, label: str) -> Locator:
    """The item of a message's open "More actions" menu that reads `label` (Edit, Delete)."""
    return item.get_by_role("menuitem").filter(has_text=re.compile(f"^{label}$"))


async def start_edit(item: Locator) -> Locator:
    """Open one's own message's "More actions" menu, choose Edit; return the edit box."""
    await item.hover()
    await item.get_by_role("button", name="More actions").click()
    await menu_item(item, "Edit").click()
    box = item.locator("textarea.edit-box")
    await expect(box).to_be_focused()
    return box


async def delete_message(page: Page, item: Locator) -> None:
    """Delete one's own message through its menu and the page's confirmation dialog."""
    await item.hover()
    await item.get_by_role("button", name="More actions").click()
    await menu_item(item, "Delete").click()
    dialog = page.locator("#delete-dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(dialog).to_be_hidden()


def seqs_of(items: list[str]) -> list[int]:
    return [int(s) for s in items]


async def test_sign_up_send_with_enter_and_seen_live_with_local_time(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob", timezone_id="Asia/Tokyo")
    await send(alice, "hello from alice")
    line = bob.locator("#messages li.message").last
    await expect(line.locator(".text")).to_have_text("hello from alice")
    await expect(line.locator(".author")).to_have_text("alice")
    stamp = await line.locator("time").get_attribute("datetime")
    assert stamp is not None
    tokyo = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(
        zoneinfo.ZoneInfo("Asia/Tokyo")
    )
    await expect(line.locator("time")).to_have_text(tokyo.strftime("%H:%M"))
    await expect(alice.locator("#text")).to_have_value("")
    await expect(alice.locator("#messages li.message.pending")).to_have_count(0)
    await shot(alice, "1-alice-sent")
    await shot(bob, "1-bob-received")
    assert console.problems == []


async def test_join_leave_notices_and_online_list(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    await expect(alice.locator("#online li")).to_have_text(["alice"])
    bob_ctx, bob = await new_person(browser, console)
    await sign_up(bob, server.url, "bob")
    await expect(alice.locator("#online li")).to_have_text(["alice", "bob"])
    await expect(bob.locator("#online li")).to_have_text(["alice", "bob"])
    await expect(alice.locator("#messages li.event").last).to_have_text("bob joined")
    await shot(alice, "2-bob-joined")
    await bob.close()
    await expect(alice.locator("#online li")).to_have_text(["alice"])
    await expect(alice.locator("#messages li.event").last).to_have_text("bob left")
    await shot(alice, "2-bob-left")
    await bob_ctx.close()
    assert console.problems == []


async def test_markup_in_messages_is_shown_as_text(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    payloads = ["<img src=x onerror=alert(1)>", "<script>alert('x')</script> hi"]
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    for text in payloads:
        await send(alice, text)
    texts = bob.locator("#messages li.message .text")
    await expect(texts).to_have_text(payloads)
    assert await bob.locator("#messages img, #messages script").count() == 0
    await bob.reload()  # server-rendered history escapes them too
    await expect(bob.locator("#messages li.message .text")).to_have_text(payloads)
    assert await bob.locator("#messages img, #messages script").count() == 0
    await shot(bob, "3-markup-as-text")
    assert console.problems == []  # includes: no dialog opened


async def test_reload_and_scroll_back_through_all_history(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    await seed(server.url, 120)
    alice = await signed_up(
        browser, console, server.url, "alice", viewport={"width": 1280, "height": 720}
    )
    items = alice.locator("#messages li.message")
    await expect(items).to_have_count(50)
    await alice.reload()
    await expect(items).to_have_count(50)
    shown = seqs_of(await items.evaluate_all("els => els.map(e => e.dataset.seq)"))
    assert shown == list(range(71, 121))
    for expected in (100, 120):
        await alice.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
        await expect(items).to_have_count(expected)
    shown = seqs_of(await items.evaluate_all("els => els.map(e => e.dataset.seq)"))
    assert shown == list(range(1, 121))  # in order, no duplicate, no gap
    await alice.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    await alice.wait_for_timeout(300)
    await expect(items).to_have_count(120)  # nothing more to load
    await shot(alice, "4-history-top")
    assert console.problems == []


async def test_pages_reconnect_after_restart_and_resume_once(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "before the restart")
    await expect(bob.locator("#messages li.message .text")).to_have_text(["before the restart"])
    await asyncio.to_thread(server.terminate)
    await expect(alice.locator("#status")).not_to_have_text("")
    await expect(bob.locator("#status")).not_to_have_text("")
    await send(alice, "sent while away")  # kept in the page's outbox
    await shot(alice, "5-offline")
    await asyncio.to_thread(server.start)
    for page in (alice, bob):
        await expect(page.locator("#status")).to_have_text("", timeout=30_000)
        await expect(page.locator("#messages li.message .text")).to_have_text(
            ["before the restart", "sent while away"], timeout=30_000
        )
        await expect(page.locator("#messages li.message.pending")).to_have_count(0)
    await bob.wait_for_timeout(500)
    await expect(bob.locator("#messages li.message")).to_have_count(2)  # once, not twice
    await shot(bob, "5-resumed")
    # While the server was down Chromium itself logs the refused socket connections.
    unexpected = [
        p for p in console.problems if not re.search(r"WebSocket connection to .* failed", p)
    ]
    assert unexpected == []


DEAF_SOCKETS = """
// The test can make the page's sockets drop what they receive, and close them.
window.__deaf = false;
window.__sockets = [];
window.WebSocket = class extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    window.__sockets.push(this);
  }
  addEventListener(type, listener, options) {
    if (type !== "message") return super.addEventListener(type, listener, options);
    return super.addEventListener(type, (e) => window.__deaf || listener(e), options);
  }
};
"""


async def test_reset_after_missing_too_much_reloads_the_latest_page(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    ctx, alice = await new_person(browser, console, viewport={"width": 1280, "height": 720})
    await ctx.add_init_script(DEAF_SOCKETS)
    await sign_up(alice, server.url, "alice")
    await send(alice, "before")
    items = alice.locator("#messages li.message:not(.pending)")
    await expect(items).to_have_count(1)
    # More is missed than the server replays, so the reconnect gets a reset, not a replay.
    missed = REPLAY_MAX + 10
    await alice.evaluate("() => { window.__deaf = true; }")
    await seed(server.url, missed)
    await alice.evaluate("() => { window.__deaf = false; window.__sockets.at(-1).close(); }")
    last = missed + 1
    await expect(items.last.locator(".text")).to_have_text(f"seed {missed}")
    await expect(alice.locator("#status")).to_have_text("")
    shown = seqs_of(await items.evaluate_all("els => els.map(e => e.dataset.seq)"))
    assert shown == list(range(last - 49, last + 1))
    await send(alice, "after")  # the next seq follows on, with no gap to resume from
    await expect(items.last.locator(".text")).to_have_text("after")
    await alice.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    await expect(items).to_have_count(101)  # and the history pages back from the new page
    shown = seqs_of(await items.evaluate_all("els => els.map(e => e.dataset.seq)"))
    assert shown == list(range(last - 99, last + 2))
    await ctx.close()
    assert console.problems == []


async def test_login_errors_and_logout_with_back_button(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    ctx, alice = await new_person(browser, console)
    await sign_up(alice, server.url, "alice")
    await alice.click("text=Log out")
    await alice.wait_for_url(re.compile(r"/login"))
    await alice.go_back()
    await expect(alice).to_have_url(re.compile(r"/login"))
    await expect(alice.locator("#messages")).to_have_count(0)
    await shot(alice, "6-back-after-logout")
    await alice.fill("#login", "alice")
    await alice.fill("#password", "not the password")
    await alice.click("button[type=submit]")
    await expect(alice.locator(".form-error")).to_have_text("Wrong login or password.")
    await expect(alice.locator("#login")).to_have_value("alice")
    await expect(alice.locator("#password")).to_have_value("")
    await shot(alice, "6-wrong-password")
    _, other = await new_person(browser, console)
    await other.goto(server.url + "/signup")
    await other.fill("#login", "ALICE")
    await other.fill("#email", "x@example.com")
    await other.fill("#password", PASSWORD)
    await other.fill("#password_confirm", PASSWORD)
    await other.click("button[type=submit]")
    await expect(other.locator("#login-error")).to_have_text("This login is taken; choose another.")
    await shot(other, "6-login-taken")
    await ctx.close()
    # The failed login and sign-up answer 401 and 409, which Chromium reports in the console.
    unexpected = [p for p in console.problems if "status of 40" not in p]
    assert unexpected == []


@pytest.mark.parametrize("width", [375, 1280])
async def test_layout_and_keyboard(
    server: AppProcess, browser: Browser, console: Console, width: int
) -> None:
    alice = await signed_up(
        browser, console, server.url, "alice", viewport={"width": width, "height": 740}
    )
    await send(alice, "w" * 300)  # one long word
    await send(alice, "short one")
    await expect(alice.locator("#messages li.message")).to_have_count(2)
    overflow = await alice.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    long_line = alice.locator("#messages li.message").first
    assert await long_line.evaluate("el => el.scrollWidth <= el.clientWidth")
    await expect(alice.locator("#text")).to_be_in_viewport()
    await expect(alice.locator("#send button")).to_be_in_viewport()
    # The list is no live region (#announcer is: see test_browser_messages.py).
    assert await alice.locator("#messages").get_attribute("aria-live") is None
    # Keyboard only: Tab from the top reaches every control, with a visible focus ring.
    await alice.reload()  # start keyboard navigation from the top of a fresh page
    await expect(alice.locator("#status")).to_have_text("")
    await expect(alice.locator("#text")).to_be_focused()  # the composer, on load
    await alice.evaluate("() => { document.body.tabIndex = -1; document.body.focus(); }")
    # Server-rendered lines look like live ones: a short message stays on one line.
    box = await alice.locator("#messages li.message").last.bounding_box()
    assert box is not None and box["height"] < 40, box
    reached: list[str] = []
    for _ in range(24):  # the room header's "Your rooms" (phones) and "Notifications" too
        await alice.keyboard.press("Tab")
        info = await alice.evaluate(
            """() => {
                const el = document.activeElement;
                if (!el || el === document.body) return null;
                const style = getComputedStyle(el);
                return {key: el.id || el.textContent.trim() || el.tagName,
                        outline: style.outlineStyle, width: style.outlineWidth};
            }"""
        )
        if info is None:
            break  # past the last control
        reached.append(info["key"])
        assert info["outline"] != "none" and info["width"] != "0px", info
    for control in ("skip-to-composer", "Chat", "Log out", "Rooms", "messages", "text", "Send"):
        assert control in reached, reached
    # The list is one stop: its messages' links and actions are not in the page's Tab order.
    assert reached.index("text") == reached.index("messages") + 1, reached
    assert reached[0] == "skip-to-composer", reached
    await alice.keyboard.press("Shift+Tab")
    await shot(alice, f"7-layout-{width}")
    assert console.problems == []


async def log_in(page: Page, url: str, login: str) -> None:
    """Log in through the form and land on the room list."""
    await page.goto(url + "/login")
    await page.fill("#login", login)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(url + "/")


async def unread_badges(page: Page, listing: str = "#rooms") -> dict[str, str]:
    """Return each room's unread badge text on the room list ('' when it has none)."""
    result: dict[str, str] = await page.locator(f"{listing} li").evaluate_all(
        """els => Object.fromEntries(els.map(e => {
            const badge = e.querySelector('.unread');
            return [e.dataset.slug, badge ? badge.firstChild.textContent : ''];
        }))"""
    )
    return result


async def test_rooms_are_created_listed_and_unread_survives_devices(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await alice.click("text=Rooms")
    await alice.fill("#name", "Dev Talk")
    await alice.click("text=Create room")
    await alice.wait_for_url(server.url + "/rooms/dev-talk")
    await expect(alice.locator("h1")).to_contain_text("#Dev Talk")
    await expect(alice.locator("#status")).to_have_text("")
    for text in ("first in dev", "second in dev"):
        await send(alice, text)
    await expect(alice.locator("#messages li.message:not(.pending)")).to_have_count(2)
    # Bob, on two devices, sees the same unread count; the newest room comes first.
    await bob.goto(server.url + "/")
    _, bob_phone = await new_person(browser, console)
    await log_in(bob_phone, server.url, "bob")
    for page in (bob, bob_phone):
        await expect(page.locator("#rooms li a")).to_have_text(["#Dev Talk", "#General"])
        assert await unread_badges(page) == {"dev-talk": "2", "general": ""}
    await expect(bob.locator("#rooms li").first.locator("time")).not_to_be_empty()
    await shot(bob, "8-room-list-unread")
    # Opening the room shows the divider above the first unread message, and marks it read.
    await bob.click("text=#Dev Talk")
    divider = bob.locator("#unread-divider")
    await expect(divider).to_have_text("New messages")
    following = divider.locator("xpath=following-sibling::li[1]")
    await expect(following.locator(".text")).to_have_text("first in dev")
    await shot(bob, "8-divider")
    for _ in range(50):  # the phone sees the read mark once the page has sent it
        await bob_phone.reload()
        if (await unread_badges(bob_phone))["dev-talk"] == "":
            break
        await bob_phone.wait_for_timeout(100)
    assert await unread_badges(bob_phone) == {"dev-talk": "", "general": ""}
    # A taken name is refused on the form, which keeps what was typed.
    await bob_phone.fill("#name", "dev talk")
    await bob_phone.click("text=Create room")
    await expect(bob_phone.locator("#name-error")).to_have_text(
        "A room with this name exists already; choose another name."
    )
    await expect(bob_phone.locator("#name")).to_have_value("dev talk")
    await shot(bob_phone, "8-room-taken")
    unexpected = [p for p in console.problems if "status of 409" not in p]
    assert unexpected == []


async def test_typing_indicator_comes_and_goes(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    typing = alice.locator("#typing")
    await bob.locator("#text").press_sequentially("hel")
    await expect(typing).to_have_text("bob is typing…")
    await shot(alice, "9-typing")
    await expect(typing).to_have_text("", timeout=8_000)  # gone after 5 s of quiet
    await bob.locator("#text").press_sequentially("lo")
    await expect(typing).to_have_text("bob is typing…")
    await bob.press("#text", "Enter")
    await expect(alice.locator("#messages li.message .text")).to_have_text(["hello"])
    await expect(typing).to_have_text("", timeout=1_000)  # gone when the message arrives
    await expect(bob.locator("#typing")).to_have_text("")  # never one's own
    assert console.problems == []


async def test_edit_and_delete_own_messages_live_and_after_reload(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "helo wrld")
    await send(alice, "to be deleted")
    await send(bob, "bob's own")
    for page in (alice, bob):
        await expect(page.locator("#messages li.message:not(.pending)")).to_have_count(3)
    # Only one's own messages have the controls.
    await expect(bob.locator("#messages li.message").first.locator(".actions")).to_have_count(0)
    await expect(alice.locator("#messages li.message").nth(2).locator(".actions")).to_have_count(0)
    first = alice.locator("#messages li.message").first
    box = await start_edit(first)
    await box.fill("hello world")
    await box.press("Enter")
    second = alice.locator("#messages li.message").nth(1)
    await delete_message(alice, second)
    for page in (alice, bob):
        items = page.locator("#messages li.message")
        await expect(items.first.locator(".text")).to_have_text("hello world")
        await expect(items.first.locator(".edited")).to_have_text("(edited)")
        await expect(items.nth(1).locator(".text")).to_have_text("message deleted")
        await expect(items.nth(1)).to_have_class(re.compile(r"\bdeleted\b"))
    await shot(bob, "10-edited-and-deleted")
    await bob.reload()
    items = bob.locator("#messages li.message")
    await expect(items.first.locator(".edited")).to_have_text("(edited)")
    await expect(items.nth(1).locator(".text")).to_have_text("message deleted")
    assert "to be deleted" not in await bob.content()
    assert console.problems == []  # the delete was confirmed in the page, not window.confirm


async def test_an_edit_from_another_tab_shows_once_the_edit_box_closes(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    here = await signed_up(browser, console, server.url, "alice")
    there = await here.context.new_page()
    await there.goto(here.url)
    await send(here, "first words")
    for page in (here, there):
        await expect(page.locator("#messages li.message:not(.pending)")).to_have_count(1)
    item = here.locator("#messages li.message").first
    box = await start_edit(item)
    await box.fill("my draft")
    other = there.locator("#messages li.message").first
    await start_edit(other)
    await other.locator("textarea.edit-box").fill("edited in the other tab")
    await other.locator("textarea.edit-box").press("Enter")
    await expect(other.locator(".text")).to_have_text("edited in the other tab")
    await expect(box).to_have_value("my draft")  # the open edit is kept meanwhile
    await box.press("Escape")
    # Not the stale text from before the edit began, but the other tab's.
    await expect(item.locator(".text")).to_have_text("edited in the other tab")
    await expect(item.locator(".edited")).to_have_text("(edited)")
    await start_edit(item)
    await expect(item.locator("textarea.edit-box")).to_have_value("edited in the other tab")
    assert console.problems == []


# Each message item as a tree of tag, sorted attributes and children, whitespace-only text left out.
MARKUP = """els => els.map(function tree(node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return node.textContent.replace(/\\s+/g, " ").trim();
    const attrs = [...node.attributes].map(a => a.name === "class"
        ? "class=" + [...node.classList].sort().join(" ")
        : a.name + "=" + a.value);
    const children = [...node.childNodes].map(tree).filter(c => c !== "");
    return [node.tagName.toLowerCase(), attrs.sort(), children];
})"""


async def test_live_messages_have_the_markup_of_the_history(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    # Live items are cloned from the page's <template>, the history is rendered by the server:
    # both come from templates/_message.html and must end up the same, whoever looks at them.
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    for text in ("see https://example.com/a, then", "to be edited", "to be deleted"):
        await send(alice, text)
    await send(bob, "bob's own")
    for page in (alice, bob):
        await expect(page.locator("#messages li.message:not(.pending)")).to_have_count(4)
    second = alice.locator("#messages li.message").nth(1)
    await start_edit(second)
    await second.locator("textarea.edit-box").fill("edited")
    await second.locator("textarea.edit-box").press("Enter")
    third = alice.locator("#messages li.message").nth(2)
    await delete_message(alice, third)
    live: dict[Page, list[Any]] = {}
    for page in (alice, bob):
        items = page.locator("#messages li.message")
        await expect(items.nth(1).locator(".edited")).to_have_text("(edited)")
        await expect(items.nth(2)).to_have_class(re.compile(r"\bdeleted\b"))
        live[page] = await items.evaluate_all(MARKUP)
    for page in (alice, bob):
        await page.reload()
        await expect(page.locator("#status")).to_have_text("")
        history = await page.locator("#messages li.message").evaluate_all(MARKUP)
        assert history == live[page]
    mine = await alice.locator("#messages li.message.mine").count()
    assert mine == 3 and await bob.locator("#messages li.message.mine").count() == 1
    assert await alice.locator("#messages .actions").count() == 2  # not on the deleted one
    assert await bob.locator("#messages .actions").count() == 1
    assert console.problems == []


async def test_links_are_clickable_and_nothing_else_is(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    text = (
        "docs at https://example.com/a?b=1&c=2, see (http://example.org/x). "
        'not javascript:alert(1) nor <a href="https://evil.example">x</a> or ftp://f.example'
    )
    await send(alice, text)
    for attempt in ("live", "reloaded"):
        line = bob.locator("#messages li.message .text").last
        await expect(line).to_have_text(text)
        links = line.locator("a")
        await expect(links).to_have_count(3)
        hrefs = await links.evaluate_all("els => els.map(a => a.href)")
        assert hrefs == [
            "https://example.com/a?b=1&c=2",
            "http://example.org/x",
            "https://evil.example/",  # the quote ends the link
        ], attempt
        for i in range(3):
            assert await links.nth(i).get_attribute("rel") == "noopener noreferrer"
        assert await bob.locator("#messages script, #messages img").count() == 0
        await shot(bob, f"11-links-{attempt}")
        await bob.reload()
    assert console.problems == []


HIDDEN_TAB_AND_NOTIFICATIONS = """
// The test decides whether the tab is hidden, and records what the page asks of notifications.
window.__hidden = false;
Object.defineProperty(Document.prototype, "hidden", { get: () => window.__hidden });
Object.defineProperty(Document.prototype, "visibilityState", {
  get: () => (window.__hidden ? "hidden" : "visible"),
});
window.__asked = 0;
window.__shown = [];
class RecordedNotification {
  constructor(title, options) { window.__shown.push({ title: title, body: options.body }); }
  addEventListener() {}
  close() {}
}
RecordedNotification.permission = "default";
RecordedNotification.requestPermission = async () => {
  window.__asked += 1;
  RecordedNotification.permission = "granted";
  return "granted";
};
window.Notification = RecordedNotification;
"""


async def set_hidden(page: Page, hidden: bool) -> None:
    await page.evaluate(
        "h => { window.__hidden = h; document.dispatchEvent(new Event('visibilitychange')); }",
        hidden,
    )


async def test_title_badge_and_notifications_while_hidden(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob_ctx, bob = await new_person(browser, console)
    await bob_ctx.add_init_script(HIDDEN_TAB_AND_NOTIFICATIONS)
    await sign_up(bob, server.url, "bob")
    await expect(bob).to_have_title("#General · Chat")
    button = bob.get_by_role("button", name="Notify me of new messages")
    await expect(button).to_be_visible()
    assert await bob.evaluate("window.__asked") == 0  # never asked on load
    await button.click()
    await expect(button).to_be_hidden()
    assert await bob.evaluate("window.__asked") == 1
    # In an open room only mentions notify unless one chooses all messages.
    await bob.locator("#notify-level summary").click()
    await bob.get_by_role("radio", name="All messages").check()
    await send(alice, "while bob looks")
    await expect(bob.locator("#messages li.message")).to_have_count(1)
    await set_hidden(bob, True)
    await send(alice, "one")
    await send(alice, "two")
    await expect(bob).to_have_title("(2) #General · Chat")
    assert await bob.evaluate("window.__shown") == [
        {"title": "alice in #General", "body": "one"},
        {"title": "alice in #General", "body": "two"},
    ]
    divider = bob.locator("#unread-divider")
    await expect(divider.locator("xpath=following-sibling::li[1]").locator(".text")).to_have_text(
        "one"
    )
    await set_hidden(bob, False)
    await expect(bob).to_have_title("#General · Chat")
    await send(alice, "seen at once")
    await expect(bob.locator("#messages li.message")).to_have_count(4)
    await expect(bob).to_have_title("#General · Chat")
    assert len(await bob.evaluate("window.__shown")) == 2  # no notification while visible
    await shot(bob, "12-badge-cleared")
    assert console.problems == []


def unexpected(problems: list[str], *statuses: int) -> list[str]:
    """Return the console problems but the failed loads of the given statuses, expected ones."""
    expected = tuple(f"status of {status}" for status in statuses)
    return [p for p in problems if not any(e in p for e in expected)]


async def test_invitation_link_signs_someone_up(
    invite_server: AppProcess, browser: Browser, console: Console
) -> None:
    url = invite_server.url
    admin = await signed_up(browser, console, url, "alice")  # the first account: the admin
    await admin.click("text=Admin")
    await admin.wait_for_url(url + "/admin")
    await expect(admin.locator("#invites tr.invite")).to_have_count(0)
    await admin.click("#new-invite")
    await admin.wait_for_url(url + "/admin")
    invite = admin.locator("#invites tr.invite")
    await expect(invite).to_have_count(1)
    await expect(invite.locator("td").nth(1)).to_have_text("alice")
    await expect(invite.locator("td").nth(3)).to_have_text("0")
    link = await invite.locator("input.invite-link").input_value()
    assert re.fullmatch(re.escape(url) + r"/join/[\w-]+", link), link
    await shot(admin, "13-invite-made")
    # Without the link, the sign-up page says how to get in, and has no form.
    _, carol = await new_person(browser, console)
    await carol.goto(url + "/signup")
    await expect(carol.locator("#signup-refused")).to_contain_text("by invitation only")
    await expect(carol.locator("main form")).to_have_count(0)
    await shot(carol, "13-signup-refused")
    await carol.goto(link)
    await expect(carol.locator(".invited")).to_have_text("You were invited by alice.")
    await carol.fill("#login", "carol")
    await carol.fill("#email", "carol@example.com")
    await carol.fill("#password", PASSWORD)
    await carol.fill("#password_confirm", PASSWORD)
    await shot(carol, "13-signup-invited")
    await carol.click("button[type=submit]")
    await carol.wait_for_url(url + "/")
    await expect(carol.locator("header .me")).to_have_text("carol")
    await expect(carol.locator("#rooms li a")).to_have_text(["#General"])
    await expect(carol.locator("header").get_by_role("link", name="Admin")).to_have_count(0)
    await shot(carol, "13-invited-in")
    await admin.reload()
    await expect(invite.locator("td").nth(3)).to_have_text("1")
    await expect(admin.locator("#people tr.person")).to_have_count(2)
    carol_row = admin.locator("#people tr.person[data-login=carol]")
    await expect(carol_row.locator(".role")).to_have_text("member")
    await expect(carol_row.locator(".state")).to_have_text("active")
    await shot(admin, "13-invite-used")
    assert console.problems == []


async def test_private_room_members_only(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await alice.click("text=Rooms")
    await alice.fill("#name", "Secret Plans")
    await alice.check("input[name=private]")
    await alice.click("text=Create room")
    await alice.wait_for_url(re.compile(re.escape(server.url) + r"/rooms/secret-plans-\w+"))
    room_url = alice.url
    await expect(alice.locator("h1")).to_contain_text("#Secret Plans")
    await expect(alice.locator("h1 .badge")).to_have_text("private")
    await expect(alice.locator("#members li")).to_have_text(["alice"])
    await expect(alice.locator("#status")).to_have_text("")
    await shot(alice, "14-private-created")
    # Bob can neither open it nor see it listed.
    response = await bob.goto(room_url)
    assert response is not None and response.status == 404
    await expect(bob.locator("main h1")).to_have_text("404")
    assert "Secret Plans" not in await bob.content()
    await shot(bob, "14-private-not-found")
    await bob.goto(server.url + "/")
    await expect(bob.locator("#rooms li a")).to_have_text(["#General"])
    # Once alice adds him, he has it in his list and gets its messages live.
    await alice.fill("#member-login", "bob")
    await alice.click("form.add-member button")
    await alice.wait_for_url(room_url)
    await expect(alice.locator("#members li")).to_have_text(["alice", "bob"])
    await expect(alice.locator("#status")).to_have_text("")
    await bob.reload()
    entry = bob.locator("#rooms li", has_text="#Secret Plans")
    await expect(entry.locator(".badge")).to_have_text("private")
    await entry.locator("a").click()
    await bob.wait_for_url(room_url)
    await expect(bob.locator("#members li")).to_have_text(["alice", "bob"])
    await expect(bob.locator("#status")).to_have_text("")
    await send(alice, "just between us")
    line = bob.locator("#messages li.message").last
    await expect(line.locator(".text")).to_have_text("just between us")
    await expect(line.locator(".author")).to_have_text("alice")
    await shot(bob, "14-private-message")
    # Leaving sends him, and his other tab in the room, to the room list, without it.
    other_tab = await bob.context.new_page()
    console.watch(other_tab)
    await other_tab.goto(room_url)
    await expect(other_tab.locator("#status")).to_have_text("")
    await bob.click("#leave-room")
    for page in (bob, other_tab):
        await page.wait_for_url(server.url + "/")
        await expect(page.locator("#rooms li a")).to_have_text(["#General"])
    await shot(bob, "14-private-left")
    response = await bob.goto(room_url)
    assert response is not None and response.status == 404
    assert unexpected(console.problems, 404) == []


async def test_direct_message_reaches_the_other_person(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await bob.goto(server.url + "/")
    await expect(bob.locator("#directs li")).to_have_text(["No direct messages yet."])
    await alice.click("text=Rooms")
    await alice.fill("#dm-login", "bob")
    await alice.click("text=Open conversation")
    await alice.wait_for_url(re.compile(re.escape(server.url) + r"/rooms/[^/]+$"))
    await expect(alice).to_have_title("bob · Chat")
    await expect(alice.locator("h1")).to_contain_text("bob")
    await expect(alice.locator("#status")).to_have_text("")
    await send(alice, "hi bob, just you")
    await expect(alice.locator("#messages li.message:not(.pending)")).to_have_count(1)
    await shot(alice, "15-dm-sent")
    await bob.reload()
    await expect(bob.locator("#directs li a")).to_have_text(["alice"])
    assert list((await unread_badges(bob, "#directs")).values()) == ["1"]
    await expect(bob.locator("#rooms li a")).to_have_text(["#General"])  # not a room
    await shot(bob, "15-dm-listed")
    await bob.click("#directs li a")
    await expect(bob).to_have_title("alice · Chat")
    line = bob.locator("#messages li.message").last
    await expect(line.locator(".text")).to_have_text("hi bob, just you")
    await expect(line.locator(".author")).to_have_text("alice")
    await expect(bob.locator("#status")).to_have_text("")
    await shot(bob, "15-dm-read")
    assert console.problems == []


async def test_deactivation_ends_the_session_and_marks_the_name(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    url = server.url
    alice = await signed_up(browser, console, url, "alice")  # the first account: the admin
    bob = await signed_up(browser, console, url, "bob")
    await send(bob, "bob was here")
    await expect(alice.locator("#messages li.message .text")).to_have_text(["bob was here"])
    admin = await alice.context.new_page()
    console.watch(admin)
    await admin.goto(url + "/admin")
    bob_row = admin.locator("#people tr.person[data-login=bob]")
    await bob_row.get_by_role("button", name="Deactivate").click()
    await admin.wait_for_url(url + "/admin")
    await expect(bob_row.locator(".state")).to_have_text("deactivated")
    await shot(admin, "16-deactivated")
    # Bob's open chat page loses its socket (1008) and goes to the login page.
    await bob.wait_for_url(url + "/login?next=%2Frooms%2Fgeneral")
    await bob.fill("#login", "bob")
    await bob.fill("#password", PASSWORD)
    await bob.click("button[type=submit]")
    await expect(bob.locator(".form-error")).to_have_text("Wrong login or password.")
    await shot(bob, "16-login-refused")
    await alice.reload()
    line = alice.locator("#messages li.message").last
    await expect(line.locator(".author")).to_have_text("bob")
    await expect(line.locator(".gone")).to_have_text("(deactivated)")
    await shot(alice, "16-name-marked")
    # Reactivated, he logs in again and is back where he was.
    await bob_row.get_by_role("button", name="Reactivate").click()
    await admin.wait_for_url(url + "/admin")
    await expect(bob_row.locator(".state")).to_have_text("active")
    await bob.fill("#password", PASSWORD)
    await bob.click("button[type=submit]")
    await bob.wait_for_url(url + "/rooms/general")
    await expect(bob.locator("#status")).to_have_text("")
    await expect(bob.locator("#messages li.message .text")).to_have_text(["bob was here"])
    await alice.reload()
    await expect(alice.locator("#messages li.message .gone")).to_have_count(0)
    await shot(bob, "16-back-in")
    assert unexpected(console.problems, 401) == []
