"""The chat page's sidebar, mentions and notifications, in a real Chromium (#20 points 1 and 3)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import test_browser
from playwright.async_api import Browser, Locator, Page, expect
from test_browser import (
    DEAF_SOCKETS,
    HIDDEN_TAB_AND_NOTIFICATIONS,
    Console,
    new_person,
    send,
    set_hidden,
    shot,
    sign_up,
    signed_up,
)

from conftest import AppProcess

pytestmark = pytest.mark.browser

# The real server, a headless Chromium and its console, as in tests/test_browser.py.
server = test_browser.server
browser = test_browser.browser
console = test_browser.console

# As tests/test_browser.py's, with notifications allowed already (each page load runs it again).
NOTIFICATIONS_ALLOWED = HIDDEN_TAB_AND_NOTIFICATIONS.replace(
    'RecordedNotification.permission = "default";', 'RecordedNotification.permission = "granted";'
)
assert NOTIFICATIONS_ALLOWED != HIDDEN_TAB_AND_NOTIFICATIONS

# The page's layout shifts (CLS), from its first paint on.
LAYOUT_SHIFTS = """
window.__shift = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__shift += e.value;
}).observe({ type: "layout-shift", buffered: true });
"""


class Rooms:
    """Alice's and bob's three rooms: #General (open), #Plans (private) and their conversation."""

    def __init__(self, url: str, plans: str, direct: str) -> None:
        self.general = url + "/rooms/general"
        self.plans = plans
        self.direct = direct


async def three_rooms(url: str, alice: Page) -> Rooms:
    """Alice makes #Plans with bob in it and opens their conversation; she ends up in #General."""
    await alice.goto(url + "/")
    await alice.fill("#name", "Plans")
    await alice.check("input[name=private]")
    await alice.click("text=Create room")
    await alice.wait_for_url(re.compile(re.escape(url) + r"/rooms/plans-\w+"))
    plans = alice.url
    await alice.fill("#member-login", "bob")
    await alice.click("form.add-member button")
    await alice.wait_for_url(plans)
    await expect(alice.locator("#members li")).to_have_text(["alice", "bob"])
    await alice.goto(url + "/dm/bob")
    await expect(alice).to_have_title("bob · Chat")
    direct = alice.url
    await alice.goto(url + "/rooms/general")
    await expect(alice.locator("#status")).to_have_text("")
    return Rooms(url, plans, direct)


async def alice_and_bob(
    browser: Browser,
    console: Console,
    url: str,
    script: str,
    **context_options: Any,
) -> tuple[Page, Page, Rooms]:
    """Alice makes the three rooms; Bob's page runs `script` and is reloaded to list them all."""
    alice = await signed_up(browser, console, url, "alice")
    bob_ctx, bob = await new_person(browser, console, **context_options)
    await bob_ctx.add_init_script(script)
    await sign_up(bob, url, "bob")
    rooms = await three_rooms(url, alice)
    await bob.reload()
    await expect(bob.locator("#status")).to_have_text("")
    return alice, bob, rooms


def named(name: str) -> re.Pattern[str]:
    """A sidebar link's name, "Plans, 2 unread, 1 mention": each count's words are hidden text
    (visually-hidden spans, blocks to the name's computation, which puts a space before the ",")."""
    return re.compile("^" + re.escape(name).replace(",", r"\s*,") + "$")


async def has_name(page: Page, room: str, name: str) -> None:
    """Wait until a room's sidebar link has that name."""
    await expect(entry(page, room)).to_have_accessible_name(named(name))


def plans_path(rooms: Rooms) -> str:
    """The path of #Plans's page."""
    return "/rooms/" + rooms.plans.rsplit("/", 1)[-1]


def entry(page: Page, slug_or_url: str) -> Locator:
    """The sidebar link of a room, by its slug or URL."""
    slug = slug_or_url.rsplit("/", 1)[-1]
    return page.locator(f'#sidebar li[data-slug="{slug}"] a')


async def go(page: Page, url: str) -> None:
    """Open a room's page and wait for its socket."""
    await page.goto(url)
    await expect(page.locator("#status")).to_have_text("")


async def choose_level(page: Page, label: str) -> None:
    """Pick a notify level in the room header's menu and wait until it is stored."""
    await page.locator("#notify-level summary").click()
    async with page.expect_response(re.compile(r"/notify$")) as answer:
        await page.get_by_role("radio", name=label).check()
    assert (await answer.value).ok
    await expect(page.locator("#notify-level .notify-level-now")).to_have_text(label)
    await page.locator("#notify-level summary").click()


async def choose_next_level_by_keyboard(page: Page, label: str) -> None:
    """Open the menu with Enter, move to the next level with ArrowDown, close it with Escape."""
    summary = page.locator("#notify-level summary")
    await summary.focus()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")  # to the level chosen now
    async with page.expect_response(re.compile(r"/notify$")) as answer:
        await page.keyboard.press("ArrowDown")
    assert (await answer.value).ok
    await expect(page.get_by_role("radio", name=label)).to_be_checked()
    await page.keyboard.press("Escape")
    await expect(summary).to_be_focused()
    await expect(page.locator("#notify-level")).not_to_have_attribute("open", "")
    await expect(page.locator("#notify-level .notify-level-now")).to_have_text(label)


async def test_counts_change_live_and_reading_elsewhere_clears_them(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    url = server.url
    alice = await signed_up(browser, console, url, "alice")
    bob = await signed_up(browser, console, url, "bob")
    rooms = await three_rooms(url, alice)
    # Bob's page was rendered before he was in #Plans or the conversation: their first
    # messages bring them into his sidebar.
    await go(alice, rooms.plans)
    await send(alice, "plans first")
    await has_name(bob, rooms.plans, "Plans, 1 unread")
    await send(alice, "what do you think, @bob?")
    await has_name(bob, rooms.plans, "Plans, 2 unread, 1 mention")
    plans = entry(bob, rooms.plans)
    await expect(plans.locator(".sb-unread .sb-count")).to_have_text("2")
    await expect(plans.locator(".sb-mentions")).to_have_text(re.compile(r"@1\b"))
    await go(alice, rooms.direct)
    await send(alice, "psst")
    await has_name(bob, rooms.direct, "alice, 1 unread")
    # Two groups, the current room marked and without badges.
    names = bob.locator("#sidebar-rooms li a .sb-name")
    await expect(names).to_have_count(2)
    assert sorted(await names.all_text_contents()) == ["General", "Plans"]
    await expect(bob.locator("#sidebar-directs li a .sb-name")).to_have_text(["alice"])
    current = entry(bob, "general")
    await expect(current).to_have_attribute("aria-current", "page")
    await expect(bob.locator('#sidebar a[aria-current="page"]')).to_have_count(1)
    await expect(current).to_have_accessible_name(named("General"))
    # The mention in #Plans (mentions only) and the direct message (all) notify: the title.
    await expect(bob).to_have_title("(2) #General · Chat")
    await shot(bob, "sidebar-1-counts")
    # Reading #Plans in another tab clears its badges here.
    other_tab = await bob.context.new_page()
    console.watch(other_tab)
    await go(other_tab, rooms.plans)
    await expect(other_tab.locator("#messages li.message")).to_have_count(2)
    await has_name(bob, rooms.plans, "Plans")
    await expect(entry(bob, rooms.plans).locator(".sb-unread")).to_be_hidden()
    await expect(bob).to_have_title("(1) #General · Chat")
    # ... and the counts the server gives after a reload agree.
    await bob.reload()
    await expect(bob.locator("#status")).to_have_text("")
    await has_name(bob, rooms.plans, "Plans")
    await has_name(bob, rooms.direct, "alice, 1 unread")
    await shot(bob, "sidebar-1-read-elsewhere")
    assert console.problems == []


async def test_counts_missed_while_offline_come_after_the_reconnect(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    url = server.url
    alice, bob, rooms = await alice_and_bob(browser, console, url, DEAF_SOCKETS)
    await bob.evaluate("() => { window.__deaf = true; }")  # the frames are lost on the way
    await go(alice, rooms.plans)
    await send(alice, "@bob, while you are away")
    await send(alice, "and again")
    await expect(alice.locator("#messages li.message:not(.pending)")).to_have_count(2)
    await has_name(bob, rooms.plans, "Plans")
    await bob.evaluate("() => { window.__deaf = false; window.__sockets.at(-1).close(); }")
    await has_name(bob, rooms.plans, "Plans, 2 unread, 1 mention")
    await expect(bob.locator("#status")).to_have_text("")
    await expect(bob).to_have_title("(1) #General · Chat")
    # Counted once: the next message adds one.
    await send(alice, "and a third")
    await has_name(bob, rooms.plans, "Plans, 3 unread, 1 mention")
    assert console.problems == []


async def test_switching_rooms_keeps_url_history_and_messages(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    url = server.url
    alice = await signed_up(browser, console, url, "alice")
    bob = await signed_up(browser, console, url, "bob")
    rooms = await three_rooms(url, alice)
    await send(alice, "one in general")
    await expect(bob.locator("#messages li.message .text")).to_have_text(["one in general"])
    await bob.reload()  # his sidebar now lists all three
    await expect(bob.locator("#status")).to_have_text("")
    await entry(bob, rooms.plans).click()
    await bob.wait_for_url(rooms.plans)
    await expect(bob).to_have_title("#Plans · Chat")
    await expect(entry(bob, rooms.plans)).to_have_attribute("aria-current", "page")
    await expect(bob.locator("#status")).to_have_text("")
    # Meanwhile #General goes on, counted in his sidebar.
    await send(alice, "two in general")
    await has_name(bob, "general", "General, 1 unread")
    await bob.go_back()
    await bob.wait_for_url(rooms.general)
    await expect(bob.locator("#status")).to_have_text("")
    await send(alice, "three in general")
    texts = bob.locator("#messages li.message .text")
    await expect(texts).to_have_text(["one in general", "two in general", "three in general"])
    await expect(entry(bob, "general")).to_have_attribute("aria-current", "page")
    await bob.go_forward()
    await bob.wait_for_url(rooms.plans)
    await expect(entry(bob, rooms.plans)).to_have_attribute("aria-current", "page")
    await entry(bob, rooms.direct).click()
    await bob.wait_for_url(rooms.direct)
    await expect(bob).to_have_title("alice · Chat")
    await bob.go_back()
    await bob.wait_for_url(rooms.plans)
    await bob.locator("#sidebar").get_by_role("link", name="All rooms").click()
    await bob.wait_for_url(url + "/")
    await expect(bob.locator("#rooms li a")).to_have_count(2)
    assert console.problems == []


async def test_mention_autocomplete_by_keyboard_and_mouse_and_highlight(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    url = server.url
    alice = await signed_up(browser, console, url, "alice")
    carol = await signed_up(browser, console, url, "carol")
    bob = await signed_up(browser, console, url, "bob")
    await expect(bob.locator("#online li")).to_have_text(["alice", "bob", "carol"])
    text = bob.locator("#text")
    popup = bob.get_by_role("listbox", name="People to mention")
    await expect(popup).to_be_hidden()
    await text.press_sequentially("hi @")
    await expect(text).to_have_attribute("aria-expanded", "true")
    options = popup.get_by_role("option")
    await expect(options).to_have_text(["alice", "carol"])  # never himself
    await expect(options.first).to_have_attribute("aria-selected", "true")
    await bob.keyboard.press("ArrowDown")
    await expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    active = await text.get_attribute("aria-activedescendant")
    assert active and active == await options.nth(1).get_attribute("id")
    await bob.keyboard.press("ArrowDown")  # round to the first
    await expect(options.first).to_have_attribute("aria-selected", "true")
    await bob.keyboard.press("ArrowUp")
    await bob.keyboard.press("Enter")  # picks, does not send
    await expect(text).to_have_value("hi @carol ")
    await expect(popup).to_be_hidden()
    await expect(text).to_have_attribute("aria-expanded", "false")
    await text.press_sequentially("and @a")
    await expect(options).to_have_text(["alice"])
    await shot(bob, "sidebar-3-autocomplete")
    await options.first.click()
    await expect(text).to_have_value("hi @carol and @alice ")
    await expect(text).to_be_focused()
    await text.press_sequentially("@c")
    await bob.keyboard.press("Tab")
    await expect(text).to_have_value("hi @carol and @alice @carol ")
    await text.press_sequentially("see @")
    await expect(popup).to_be_visible()
    await bob.keyboard.press("Escape")
    await expect(popup).to_be_hidden()
    await expect(text).to_have_value("hi @carol and @alice @carol see @")
    await text.fill("hi @carol and @alice, and not @dave")
    await text.press("Enter")
    # Both are highlighted on their own pages, live and after a reload; not on bob's.
    for page, login in ((alice, "alice"), (carol, "carol")):
        line = page.locator("#messages li.message").last
        await expect(line.locator(".text")).to_have_text("hi @carol and @alice, and not @dave")
        for attempt in ("live", "reloaded"):
            await expect(line).to_have_class(re.compile(r"\bmentions-me\b"))
            await expect(line.locator("mark.mention-me")).to_have_text([f"@{login}"])
            if attempt == "live":
                await shot(page, f"sidebar-3-highlight-{login}")
                await page.reload()
                await expect(page.locator("#status")).to_have_text("")
    mine = bob.locator("#messages li.message").last
    await expect(mine).not_to_have_class(re.compile(r"\bpending\b"))
    await expect(mine).not_to_have_class(re.compile(r"\bmentions-me\b"))
    assert await bob.locator("mark.mention-me").count() == 0
    assert console.problems == []


async def test_mention_elsewhere_notifies_and_the_level_is_stored_and_obeyed(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    url = server.url
    alice, bob, rooms = await alice_and_bob(browser, console, url, NOTIFICATIONS_ALLOWED)
    await expect(bob).to_have_title("#General · Chat")
    # A message in #Plans (mentions only by default) does not notify; a mention does.
    await go(alice, rooms.plans)
    await set_hidden(bob, True)
    await send(alice, "just talk")
    await has_name(bob, rooms.plans, "Plans, 1 unread")
    await expect(bob).to_have_title("#General · Chat")
    await send(alice, "@bob come and see")
    await has_name(bob, rooms.plans, "Plans, 2 unread, 1 mention")
    await expect(bob).to_have_title("(1) #General · Chat")
    assert await bob.evaluate("window.__shown") == [
        {"title": "alice in #Plans", "body": "mentioned you"}
    ]
    await set_hidden(bob, False)
    await expect(bob).to_have_title("(1) #General · Chat")  # until #Plans is read
    await shot(bob, "sidebar-4-title-badge")
    # Bob chooses "Nothing" for #Plans: stored, shown after a reload, and obeyed.
    await entry(bob, rooms.plans).click()
    await bob.wait_for_url(rooms.plans)
    await expect(bob.locator("#notify-level .notify-level-now")).to_have_text("Mentions only")
    await choose_next_level_by_keyboard(bob, "Nothing")
    await bob.reload()
    await expect(bob.locator('#notify-level input[value="nothing"]')).to_be_checked()
    await expect(bob.locator("#notify-level .notify-level-now")).to_have_text("Nothing")
    await entry(bob, "general").click()
    await bob.wait_for_url(rooms.general)
    await expect(bob.locator("#status")).to_have_text("")
    await expect(bob).to_have_title("#General · Chat")
    await set_hidden(bob, True)
    await send(alice, "@bob are you there?")
    await has_name(bob, rooms.plans, "Plans, 1 unread, 1 mention")
    await expect(bob).to_have_title("#General · Chat")
    # The direct conversation notifies every message by default.
    await go(alice, rooms.direct)
    await send(alice, "hello you")
    await has_name(bob, rooms.direct, "alice, 1 unread")
    await expect(bob).to_have_title("(1) #General · Chat")
    # (Each page has its own record of notifications: this one's began with it.)
    assert await bob.evaluate("window.__shown") == [
        {"title": "alice", "body": "sent you a message"}
    ]
    # In the room itself: "All messages" counts every message while hidden, "Nothing" none.
    await set_hidden(bob, False)
    await choose_level(bob, "All messages")
    await go(alice, rooms.general)
    await set_hidden(bob, True)
    await send(alice, "general news")
    await expect(bob.locator("#messages li.message .text").last).to_have_text("general news")
    await expect(bob).to_have_title("(2) #General · Chat")
    await set_hidden(bob, False)
    await choose_level(bob, "Nothing")
    await set_hidden(bob, True)
    await send(alice, "@bob in general")
    await expect(bob.locator("#messages li.message .text").last).to_have_text("@bob in general")
    await expect(bob).to_have_title("(1) #General · Chat")  # the conversation's, still unread
    assert await bob.evaluate("window.__shown") == [
        {"title": "alice", "body": "sent you a message"},
        {"title": "alice in #General", "body": "general news"},
    ]
    assert console.problems == []


async def test_phone_drawer_by_keyboard_and_no_layout_shift(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    url = server.url
    alice, bob, rooms = await alice_and_bob(
        browser, console, url, LAYOUT_SHIFTS, viewport={"width": 390, "height": 844}
    )
    assert await bob.evaluate("window.__shift") < 0.05
    nav = bob.get_by_role("navigation", name="Your rooms and direct messages")
    toggle = bob.get_by_role("button", name="Your rooms")
    await expect(nav).to_be_hidden()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await toggle.focus()
    await bob.keyboard.press("Enter")
    await expect(nav).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(entry(bob, "general")).to_be_focused()  # the current room
    await shot(bob, "sidebar-5-drawer-open")
    await bob.keyboard.press("Tab")
    await expect(nav.locator(":focus")).to_have_count(1)  # the focus stays in the drawer
    await bob.keyboard.press("Escape")
    await expect(nav).to_be_hidden()
    await expect(toggle).to_be_focused()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await bob.keyboard.press("Space")
    await expect(nav).to_be_visible()
    plans = entry(bob, rooms.plans)
    links = await nav.locator("a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
    steps = links.index(plans_path(rooms)) - links.index("/rooms/general")
    for _ in range(abs(steps)):  # from the current room's link to #Plans's
        await bob.keyboard.press("Tab" if steps > 0 else "Shift+Tab")
    await expect(plans).to_be_focused()
    await bob.keyboard.press("Enter")
    await bob.wait_for_url(rooms.plans)
    await expect(bob.locator("#status")).to_have_text("")
    await expect(nav).to_be_hidden()  # a new page, the drawer closed
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    # Nothing moved after the first paint (the "Notify me" offer has its space from the start).
    assert await bob.evaluate("window.__shift") < 0.05
    assert console.problems == []
