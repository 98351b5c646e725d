"""How messages read and are handled in a real Chromium: groups and avatars, day separators, the
actions menu, editing and deleting, the composer's limit, offline and failed messages, the live
region, the focus and the Tab order, and a whole session by keyboard alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
import zoneinfo
from pathlib import Path

import pytest
import test_browser
from playwright.async_api import Browser, Locator, Page, expect
from test_browser import (
    Console,
    delete_message,
    menu_item,
    new_person,
    seed,
    send,
    shot,
    sign_up,
    signed_up,
    start_edit,
)

from common.avatars import avatar_colour, initials
from common.days import day_key, day_label
from conftest import AppProcess

pytestmark = pytest.mark.browser

# The real server, a headless Chromium and its console, as in tests/test_browser.py.
server = test_browser.server
browser = test_browser.browser
console = test_browser.console

ITEMS = "#messages li.message"
# Each list item: its kind (day, message, divider, event), and for a message its author, whether
# it is grouped under the one before, and its avatar's text and palette class.
LIST_SHAPE = """els => els.map(e => e.matches('li.day')
    ? ['day', e.textContent]
    : e.matches('li.message')
    ? ['message', e.dataset.user, e.classList.contains('grouped'),
       e.querySelector('.avatar').textContent,
       [...e.querySelector('.avatar').classList].find(c => /^avatar-\\d$/.test(c))]
    : [e.className, e.textContent])"""


def shape(login: str, grouped: bool) -> list[object]:
    return ["message", login, grouped, initials(login), f"avatar-{avatar_colour(login)}"]


async def list_shape(page: Page) -> list[list[object]]:
    items = page.locator("#messages > li:not(.event)")  # join/leave lines are no part of it
    shown: list[list[object]] = await items.evaluate_all(LIST_SHAPE)
    return shown


async def announced(page: Page) -> list[str]:
    lines: list[str] = await page.locator("#announcer p").all_text_contents()
    return lines


def more_button(item: Locator) -> Locator:
    return item.get_by_role("button", name="More actions")


async def focused_label(page: Page) -> str:
    label: str = await page.evaluate(
        """() => { const el = document.activeElement;
                   return el.getAttribute('aria-label') || el.id || el.textContent.trim(); }"""
    )
    return label


def test_initials_and_colour_are_stable() -> None:
    assert [initials(x) for x in ("alice", "dora.k", "a_b-c", "x..y")] == ["A", "DK", "AB", "XY"]
    assert avatar_colour("alice") == avatar_colour("alice")
    assert len({avatar_colour(f"user{i}") for i in range(40)}) == 8  # the whole palette in use


def test_server_day_labels_match_the_page() -> None:
    now = dt.datetime.now(dt.UTC)
    assert [day_label(now), day_label(now - dt.timedelta(days=1))] == ["Today", "Yesterday"]
    old = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)
    assert (day_label(old), day_key(old)) == ("Tuesday 1 December 2026", "2026-12-1")


async def test_consecutive_messages_are_grouped_under_one_name_and_avatar(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "dora.k")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "one")
    await send(alice, "two")
    await expect(bob.locator(ITEMS)).to_have_count(2)
    await send(bob, "bob breaks it")
    await expect(alice.locator(ITEMS)).to_have_count(3)
    await send(alice, "three")
    expected = [
        ["day", "Today"],
        shape("dora.k", False),
        shape("dora.k", True),
        shape("bob", False),
        shape("dora.k", False),
    ]
    for page in (alice, bob):
        await expect(page.locator(f"{ITEMS}:not(.pending)")).to_have_count(4)
        assert await list_shape(page) == expected
    # A follow-up still names its author for screen readers, only not visibly.
    second = bob.locator(ITEMS).nth(1)
    await expect(second.locator(".author")).to_have_text("dora.k")
    box = await second.locator(".author").bounding_box()
    assert box is not None and box["width"] <= 1 and box["height"] <= 1
    await expect(second.locator(".avatar")).to_be_hidden()
    await expect(bob.locator(ITEMS).first.locator(".avatar")).to_have_text("DK")
    colours = await bob.locator(f"{ITEMS}:not(.grouped) .avatar").evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert colours[0] == colours[2] != colours[1], colours  # dora.k's, bob's, dora.k's
    await shot(bob, "messages-1-grouped")
    # Edited and deleted, the items are rendered again, and keep their places in the groups.
    box = await start_edit(alice.locator(ITEMS).nth(1))
    await box.fill("two, edited")
    await box.press("Enter")
    await expect(bob.locator(ITEMS).nth(1).locator(".text")).to_have_text("two, edited")
    await delete_message(alice, alice.locator(ITEMS).first)
    await expect(bob.locator(ITEMS).first).to_have_class(re.compile(r"\bdeleted\b"))
    # The server renders the separator and the groups too (in UTC), so the page does not shift
    # when its script redoes them.
    html = await (await bob.request.get(bob.url)).text()
    assert html.count('<li class="day"') == 1 and html.count(" grouped") == 1
    for page in (alice, bob):
        assert await list_shape(page) == expected
        await page.reload()  # the server-rendered history groups the same, with the same colours
        await expect(page.locator("#status")).to_have_text("")
        assert await list_shape(page) == expected
    assert console.problems == []


async def test_history_pages_loaded_on_scroll_up_join_the_groups(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    await seed(server.url, 70)
    alice = await signed_up(
        browser, console, server.url, "alice", viewport={"width": 1280, "height": 720}
    )
    await expect(alice.locator(ITEMS)).to_have_count(50)
    await alice.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    await expect(alice.locator(ITEMS)).to_have_count(70)
    # One day, one person, within minutes: one separator, one head, every other one grouped,
    # but for the unread divider above the first message of the page she opened (seq 21).
    assert await list_shape(alice) == [
        ["day", "Today"],
        shape("seeder", False),
        *[shape("seeder", True)] * 19,
        ["divider", "New messages"],
        shape("seeder", False),
        *[shape("seeder", True)] * 49,
    ]
    assert console.problems == []


def store_path(server: AppProcess) -> Path:
    (path,) = server.cwd.rglob("chat.sqlite3")
    return path


def move_back(server: AppProcess, days_by_seq: dict[range, int]) -> None:
    """Make some stored messages older, in the stopped server's store."""
    with sqlite3.connect(store_path(server)) as conn:
        for seqs, days in days_by_seq.items():
            conn.execute(
                "UPDATE messages SET created_at = created_at - ? WHERE seq BETWEEN ? AND ?",
                (days * 86_400_000, seqs.start, seqs.stop - 1),
            )


async def first_of_each_day(page: Page) -> list[str]:
    """Return the text of the first message under each day separator."""
    texts: list[str] = await page.locator("#messages > li.day").evaluate_all(
        """els => els.map(e => {
            let m = e.nextElementSibling;
            while (m && !m.matches('li.message')) m = m.nextElementSibling;
            return m.querySelector('.text').textContent;
        })"""
    )
    return texts


def long_date(day: dt.date) -> re.Pattern[str]:
    return re.compile(rf"{day:%A},? {day.day} {day:%B} {day.year}")


async def test_day_separators_in_local_time(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: its days differ from UTC's for most of the day
    await seed(server.url, 60)
    await asyncio.to_thread(server.terminate)
    move_back(server, {range(1, 6): 3, range(6, 16): 1})  # the first page: 11 to 60
    await asyncio.to_thread(server.start)
    alice = await signed_up(
        browser,
        console,
        server.url,
        "alice",
        timezone_id=zone,
        viewport={"width": 1280, "height": 720},
    )
    today = dt.datetime.now(zoneinfo.ZoneInfo(zone)).date()
    days = alice.locator("#messages > li.day")
    await expect(days).to_have_text(["Yesterday", "Today"])
    assert await first_of_each_day(alice) == ["seed 11", "seed 16"]
    await alice.locator("#messages").evaluate("el => { el.scrollTop = 0; }")  # the older page
    await expect(alice.locator(ITEMS)).to_have_count(60)
    await expect(days).to_have_text([long_date(today - dt.timedelta(days=3)), "Yesterday", "Today"])
    assert await first_of_each_day(alice) == ["seed 1", "seed 6", "seed 16"]
    # A live message of today joins today's.
    bob = await signed_up(browser, console, server.url, "bob")
    await send(bob, "live today")
    await expect(alice.locator(ITEMS).last.locator(".text")).to_have_text("live today")
    await expect(days).to_have_count(3)
    await shot(alice, "messages-2-days")
    assert console.problems == []


async def test_actions_menu_by_mouse_hover_and_keyboard(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "first words")
    await send(alice, "second words")
    await expect(alice.locator(f"{ITEMS}:not(.pending)")).to_have_count(2)
    await expect(bob.locator(ITEMS)).to_have_count(2)
    item = alice.locator(ITEMS).first
    bar = item.locator(".respond")
    await expect(bar).to_have_css("opacity", "0")
    await item.hover()
    await expect(bar).to_have_css("opacity", "1")
    more = more_button(item)
    await expect(more).to_have_attribute("aria-haspopup", "menu")
    await expect(more).to_have_attribute("aria-expanded", "false")
    await more.click()
    menu = item.get_by_role("menu")
    await expect(menu).to_be_visible()
    await expect(more).to_have_attribute("aria-expanded", "true")
    time = await item.locator("time").text_content()
    await expect(menu.get_by_role("menuitem")).to_have_text(["Edit", "Delete"])
    edit = menu.get_by_role("menuitem", name=f'Edit your message from {time}, "first words"')
    await expect(edit).to_be_focused()
    await shot(alice, "messages-3-menu")
    await alice.keyboard.press("ArrowDown")
    await expect(menu_item(menu, "Delete")).to_be_focused()
    await alice.keyboard.press("ArrowDown")
    await expect(edit).to_be_focused()  # round again
    await alice.keyboard.press("Escape")
    await expect(menu).to_have_count(0)
    await expect(more).to_be_focused()
    await expect(more).to_have_attribute("aria-expanded", "false")
    # By keyboard: the button shows on focus; Enter opens, ArrowUp goes to the last item.
    await alice.mouse.move(0, 0)
    await expect(bar).to_have_css("opacity", "1")  # focused within
    await alice.keyboard.press("Enter")
    await expect(edit).to_be_focused()
    await alice.keyboard.press("ArrowUp")
    await expect(menu_item(menu, "Delete")).to_be_focused()
    await alice.keyboard.press("Tab")  # leaving the menu closes it
    await expect(menu).to_have_count(0)
    # A click elsewhere closes it too.
    await more.click()
    await expect(menu).to_be_visible()
    await alice.locator("h1").click()
    await expect(menu).to_have_count(0)
    # Only one's own messages have the menu; every action's name is its own.
    await expect(bob.get_by_role("button", name="More actions")).to_have_count(0)
    for page in (alice, bob):
        names = await page.locator("#messages button").evaluate_all(
            "els => els.map(b => b.getAttribute('aria-label') || b.textContent)"
        )
        assert len(names) == len(set(names)), names
        assert any(n.startswith("Reply to ") and "first words" in n for n in names), names
    assert console.problems == []


async def test_edit_in_place_with_save_cancel_enter_and_escape(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "draft one")
    await expect(alice.locator(f"{ITEMS}:not(.pending)")).to_have_count(1)
    item = alice.locator(ITEMS).first
    seen = bob.locator(ITEMS).first.locator(".text")
    # Escape cancels, and the focus goes back to the menu's button.
    box = await start_edit(item)
    await expect(item.locator(".edit-hint")).to_have_text("Enter to save · Esc to cancel")
    await expect(item.get_by_role("button", name="Save")).to_be_visible()
    await expect(item.get_by_role("button", name="Cancel")).to_be_visible()
    await shot(alice, "messages-4-editing")
    await box.fill("not kept")
    await box.press("Escape")
    await expect(item.locator("textarea")).to_have_count(0)
    await expect(item.locator(".text")).to_have_text("draft one")
    await expect(more_button(item)).to_be_focused()
    # Cancel does the same.
    box = await start_edit(item)
    await box.fill("not kept either")
    await item.get_by_role("button", name="Cancel").click()
    await expect(item.locator(".text")).to_have_text("draft one")
    # Save saves.
    box = await start_edit(item)
    await box.fill("saved with the button")
    await item.get_by_role("button", name="Save").click()
    await expect(seen).to_have_text("saved with the button")
    await expect(item.locator(".edited")).to_have_text("(edited)")
    # Enter saves; an empty text is refused in words, the box stays open.
    box = await start_edit(item)
    await box.fill("  ")
    await box.press("Enter")
    await expect(item.locator(".edit-hint")).to_contain_text("cannot be empty")
    await expect(box).to_be_visible()
    await box.fill("saved with Enter")
    await box.press("Enter")
    await expect(seen).to_have_text("saved with Enter")
    await expect(item.locator(".text")).to_have_text("saved with Enter")
    await expect(item.locator(".change-state")).to_have_count(0)
    assert console.problems == []


async def test_delete_asks_in_the_page_with_the_focus_kept_and_returned(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "maybe delete me")
    await expect(alice.locator(f"{ITEMS}:not(.pending)")).to_have_count(1)
    item = alice.locator(ITEMS).first
    dialog = alice.locator("#delete-dialog")
    cancel = dialog.get_by_role("button", name="Cancel")
    confirm = dialog.get_by_role("button", name="Delete")
    for how in ("Escape", "Cancel"):
        await item.hover()
        await more_button(item).click()
        await menu_item(item, "Delete").click()
        await expect(dialog).to_be_visible()
        await expect(dialog.locator(".dialog-text")).to_have_text("maybe delete me")
        await expect(cancel).to_be_focused()
        for key, focused in (("Tab", confirm), ("Tab", cancel), ("Shift+Tab", confirm)):
            await alice.keyboard.press(key)
            await expect(focused).to_be_focused()  # round its two buttons, never out
        if how == "Escape":
            await shot(alice, "messages-5-delete-dialog")
            await alice.keyboard.press("Escape")
        else:
            await cancel.click()
        await expect(dialog).to_be_hidden()
        await expect(more_button(item)).to_be_focused()
        await expect(item.locator(".text")).to_have_text("maybe delete me")
    await delete_message(alice, item)
    for page in (alice, bob):
        await expect(page.locator(ITEMS).first).to_have_class(re.compile(r"\bdeleted\b"))
    await expect(item).to_be_focused()  # the menu's button went with the text: its message
    assert console.problems == []  # no window.confirm


async def test_counter_near_the_limit_and_nothing_cut_over_it(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    text = alice.locator("#text")
    counter = alice.locator("#counter")
    await text.fill("a" * 1799)
    await expect(counter).to_be_hidden()
    await text.fill("é" * 1800)  # counted as the server does: characters, not bytes
    await expect(counter).to_be_visible()
    await expect(counter).to_have_text("1,800 / 2,000 characters")
    await text.fill("b" * 2100)  # a paste over the limit is kept whole
    await expect(text).to_have_value("b" * 2100)
    await expect(counter).to_have_text("2,100 / 2,000 characters: 100 too many")
    await expect(counter).to_have_class(re.compile(r"\bover\b"))
    await text.press("Enter")
    await expect(alice.locator("#notice")).to_contain_text("Not sent")
    await expect(alice.locator("#notice")).to_contain_text("Shorten it by 100")
    await expect(text).to_have_value("b" * 2100)
    await expect(alice.locator(ITEMS)).to_have_count(0)
    await shot(alice, "messages-6-over-the-limit")
    await text.fill("c" * 2000)
    await text.press("Enter")
    await expect(bob.locator(f"{ITEMS} .text")).to_have_text(["c" * 2000])
    await expect(text).to_have_value("")
    await expect(counter).to_be_hidden()
    assert console.problems == []


async def test_composer_grows_to_six_lines_then_scrolls(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    text = alice.locator("#text")

    async def height(lines: int) -> float:
        await text.fill("\n".join(f"line {i}" for i in range(lines)))
        box = await text.bounding_box()
        assert box is not None
        return box["height"]

    one, three, six, seven, twenty = [await height(n) for n in (1, 3, 6, 7, 20)]
    assert one < three < six, (one, three, six)
    assert abs(twenty - six) < 1 and seven == twenty, (six, seven, twenty)  # six lines at most
    assert await text.evaluate("el => getComputedStyle(el).overflowY") == "auto"
    await send(alice, "short")
    assert (await text.bounding_box() or {}).get("height") == one  # back to one line
    assert console.problems == []


async def test_offline_banner_and_changes_kept_while_offline(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    for words in ("first", "to go", "last"):
        await send(alice, words)
    await expect(bob.locator(ITEMS)).to_have_count(3)
    await expect(alice.locator(f"{ITEMS}:not(.pending)")).to_have_count(3)
    banner = alice.locator("#offline")
    await expect(banner).to_be_hidden()
    assert await banner.get_attribute("role") == "status"
    await asyncio.to_thread(server.terminate)
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("You are offline")
    items = alice.locator(ITEMS)
    box = await start_edit(items.first)
    await box.fill("first, edited offline")
    await box.press("Enter")
    await expect(items.first.locator(".change-state")).to_contain_text("Edit kept here")
    await delete_message(alice, items.nth(1))
    await expect(items.nth(1).locator(".change-state")).to_contain_text("Delete kept here")
    await send(alice, "sent offline")
    await send(alice, "discard me")
    pending = alice.locator(f"{ITEMS}.pending")
    await expect(pending.locator(".send-state-text")).to_have_text(
        ["Not sent yet: offline. It is sent when the connection is back."] * 2
    )
    await expect(pending.first).to_have_class(re.compile(r"\bgrouped\b"))  # under alice's name
    await shot(alice, "messages-7-offline")
    await pending.last.get_by_role("button", name=re.compile(r"^Discard")).click()
    await expect(pending).to_have_count(1)
    await expect(alice.locator("#text")).to_be_focused()
    await asyncio.to_thread(server.start)
    await expect(banner).to_be_hidden(timeout=30_000)
    for page in (alice, bob):
        shown = page.locator(ITEMS)
        await expect(shown.locator(".text")).to_have_text(
            ["first, edited offline", "message deleted", "last", "sent offline"], timeout=30_000
        )
        await expect(shown.nth(1)).to_have_class(re.compile(r"\bdeleted\b"))
    await expect(alice.locator(f"{ITEMS} .change-state")).to_have_count(0)
    await expect(pending).to_have_count(0)
    # While the server was down Chromium itself logs the refused socket connections.
    unexpected = [
        p for p in console.problems if not re.search(r"WebSocket connection to .* failed", p)
    ]
    assert unexpected == []


SPOILED_SENDS = """
// While window.__spoil is set, a message frame the page sends is made too long for the server.
window.__spoil = false;
const realSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  const frame = JSON.parse(data);
  if (window.__spoil && frame.type === "message") {
    frame.text = "x".repeat(2001);
    data = JSON.stringify(frame);
  }
  return realSend.call(this, data);
};
"""


async def test_a_refused_message_says_not_sent_and_can_be_retried(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    ctx, alice = await new_person(browser, console)
    await ctx.add_init_script(SPOILED_SENDS)
    await sign_up(alice, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await alice.evaluate("() => { window.__spoil = true; }")
    await send(alice, "hello bob")
    failed = alice.locator(f"{ITEMS}.failed")
    await expect(failed.locator(".send-state-text")).to_have_text(
        "Not sent: Messages are at most 2000 characters."
    )
    await expect(failed.locator(".text")).to_have_text("hello bob")
    await shot(alice, "messages-8-not-sent")
    await alice.evaluate("() => { window.__spoil = false; }")
    await failed.get_by_role("button", name=re.compile(r"^Retry")).click()
    await expect(bob.locator(f"{ITEMS} .text")).to_have_text(["hello bob"])
    await expect(alice.locator(f"{ITEMS}:not(.pending) .text")).to_have_text(["hello bob"])
    await expect(alice.locator(f"{ITEMS}.pending")).to_have_count(0)
    await ctx.close()
    assert console.problems == []


async def test_leaving_with_a_message_unsent_asks_first(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    ctx, alice = await new_person(browser, console)
    await ctx.add_init_script(SPOILED_SENDS)
    await sign_up(alice, server.url, "alice")
    await alice.evaluate("() => { window.__spoil = true; }")
    await send(alice, "keep me")
    failed = alice.locator(f"{ITEMS}.failed")
    await expect(failed.locator(".text")).to_have_text("keep me")
    async with alice.expect_event("dialog") as asked:
        await alice.close(run_before_unload=True)
    dialog = await asked.value
    assert dialog.type == "beforeunload"
    await dialog.dismiss()  # stay: the message is still there, with its Retry
    await expect(failed.get_by_role("button", name=re.compile(r"^Retry"))).to_be_visible()
    assert not alice.is_closed()
    await failed.get_by_role("button", name=re.compile(r"^Discard")).click()
    await expect(alice.locator(f"{ITEMS}.pending")).to_have_count(0)
    async with alice.expect_event("close"):  # nothing unsent: it closes without asking
        await alice.close(run_before_unload=True)
    await ctx.close()
    assert console.problems == ["dialog: "]  # the one beforeunload question, and nothing else


async def test_live_region_announces_each_message_from_others_once(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    await seed(server.url, 60)
    alice = await signed_up(
        browser, console, server.url, "alice", viewport={"width": 1280, "height": 720}
    )
    assert await alice.locator("#announcer").get_attribute("aria-live") == "polite"
    await alice.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    await expect(alice.locator(ITEMS)).to_have_count(60)  # an older page loaded, not announced
    bob = await signed_up(browser, console, server.url, "bob")  # a presence event for alice
    await expect(alice.locator("#messages li.event")).to_have_text(["bob joined"])
    await send(bob, "hello alice")
    await expect(alice.locator(ITEMS).last.locator(".text")).to_have_text("hello alice")
    await send(alice, "hi bob")  # her own: not announced
    await expect(alice.locator(f"{ITEMS}:not(.pending)").last).to_have_text(re.compile("hi bob"))
    box = await start_edit(bob.locator(f"{ITEMS}.mine").last)
    await box.fill("hello alice, edited")
    await box.press("Enter")
    await expect(alice.locator(f"{ITEMS} .text").last).to_have_text("hi bob")
    await expect(alice.locator(ITEMS).nth(-2).locator(".text")).to_have_text("hello alice, edited")
    await send(bob, "and again")
    await expect(alice.locator(ITEMS).last.locator(".text")).to_have_text("and again")
    assert await announced(alice) == ["bob: hello alice", "bob: and again"]
    assert await announced(bob) == ["alice: hi bob"]
    assert console.problems == []


async def test_composer_is_focused_on_load_and_first_after_the_skip_link(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    for words in ("see https://example.com", "more", "and more"):
        await send(alice, words)
    await expect(alice.locator(f"{ITEMS}:not(.pending)")).to_have_count(3)
    await alice.reload()
    await expect(alice.locator("#text")).to_be_focused()
    await alice.evaluate("() => { document.body.tabIndex = -1; document.body.focus(); }")
    await alice.keyboard.press("Tab")
    skip = alice.get_by_role("link", name="Skip to composer")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()
    await alice.keyboard.press("Enter")
    await expect(alice.locator("#text")).to_be_focused()
    # The list is one stop between the page's links and the composer, both ways.
    await alice.keyboard.press("Shift+Tab")
    await expect(alice.locator("#messages")).to_be_focused()
    await alice.keyboard.press("Tab")
    await expect(alice.locator("#text")).to_be_focused()
    await alice.keyboard.press("Shift+Tab")
    await alice.keyboard.press("Shift+Tab")
    await expect(alice.get_by_role("link", name="Rooms", exact=True)).to_be_focused()
    assert console.problems == []


async def test_keyboard_only_session(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(bob, "hi, anyone?")
    await expect(alice.locator(ITEMS)).to_have_count(1)
    await alice.reload()
    await expect(alice.locator("#status")).to_have_text("")
    keys = alice.keyboard
    # Send: the composer has the focus already.
    await keys.type("hello by keyboard")
    await keys.press("Enter")
    await expect(bob.locator(f"{ITEMS} .text").last).to_have_text("hello by keyboard")
    await expect(alice.locator(f"{ITEMS}:not(.pending)")).to_have_count(2)
    # Into the list, to the newest message, through its actions to its menu.
    await keys.press("Shift+Tab")
    await expect(alice.locator("#messages")).to_be_focused()
    await keys.press("ArrowUp")
    mine = alice.locator(ITEMS).last
    await expect(mine).to_be_focused()
    await keys.press("ArrowUp")
    await expect(alice.locator(ITEMS).first).to_be_focused()
    await keys.press("ArrowDown")
    await expect(mine).to_be_focused()
    for _ in range(6):
        await keys.press("Tab")
        if (await focused_label(alice)).startswith("More actions"):
            break
    await expect(more_button(mine)).to_be_focused()
    # Edit.
    await keys.press("Enter")
    await expect(menu_item(mine, "Edit")).to_be_focused()
    await keys.press("Enter")
    await expect(mine.locator("textarea.edit-box")).to_be_focused()
    await keys.type(", edited")
    await keys.press("Enter")
    await expect(bob.locator(f"{ITEMS} .text").last).to_have_text("hello by keyboard, edited")
    await expect(mine.locator(".edited")).to_have_text("(edited)")  # her own acknowledgement
    await expect(more_button(mine)).to_be_focused()
    # Delete, through the dialog.
    await keys.press("Enter")
    await keys.press("ArrowDown")
    await expect(menu_item(mine, "Delete")).to_be_focused()
    await keys.press("Enter")
    dialog = alice.locator("#delete-dialog")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await keys.press("Tab")
    await expect(dialog.get_by_role("button", name="Delete")).to_be_focused()
    await keys.press("Enter")
    await expect(bob.locator(ITEMS).last).to_have_class(re.compile(r"\bdeleted\b"))
    await expect(mine).to_have_class(re.compile(r"\bdeleted\b"))
    await expect(mine).to_be_focused()
    # On to the composer: the tombstone has no actions but its link.
    for _ in range(3):
        await keys.press("Tab")
        if await alice.evaluate("document.activeElement.id") == "text":
            break
    await expect(alice.locator("#text")).to_be_focused()
    await shot(alice, "messages-9-keyboard")
    assert console.problems == []
