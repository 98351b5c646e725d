"""Reactions and replies on the chat page, in a real Chromium (#23 points 1-2)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import test_browser
from playwright.async_api import Browser, Page, expect
from test_browser import (
    MARKUP,
    Console,
    seed,
    send,
    shot,
    signed_up,
)

from conftest import AppProcess

pytestmark = pytest.mark.browser


# The real server, a headless Chromium and its console, as in tests/test_browser.py.
server = test_browser.server
browser = test_browser.browser
console = test_browser.console


async def markup(page: Page) -> list[Any]:
    """The message list's markup, white space aside."""
    return await page.locator("#messages li.message").evaluate_all(MARKUP)


async def test_reaction_chips_and_picker_by_mouse_and_keyboard(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "lunch?")
    line = {p: p.locator("#messages li.message").last for p in (alice, bob)}
    await expect(line[bob].locator(".text")).to_have_text("lunch?")

    # Bob opens the picker and picks the second emoji with the keyboard.
    opener = line[bob].get_by_role("button", name="React to")
    await opener.click()
    await expect(opener).to_have_attribute("aria-expanded", "true")
    picker = line[bob].get_by_role("group", name="Pick a reaction")
    await expect(picker.locator("button.pick").first).to_be_focused()
    await bob.keyboard.press("ArrowRight")
    await expect(picker.get_by_role("button", name="React with ❤️")).to_be_focused()
    await bob.keyboard.press("Enter")
    await expect(picker).to_have_count(0)
    await expect(opener).to_be_focused()  # the focus goes back where it was
    for page in (alice, bob):
        chip = line[page].get_by_role("button", name="❤️ 1: bob")
        await expect(chip).to_have_text(re.compile(r"❤️\s*1"))
        await expect(chip).to_have_attribute("aria-pressed", "true" if page is bob else "false")

    # Alice adds hers with a click, then Bob takes his back.
    await line[alice].get_by_role("button", name="❤️ 1: bob").click()
    both = "❤️ 2: bob, alice"
    for page in (alice, bob):
        await expect(line[page].get_by_role("button", name=both)).to_be_visible()
    await expect(line[alice].get_by_role("button", name=both)).to_have_attribute(
        "aria-pressed", "true"
    )
    await line[bob].get_by_role("button", name=both).click()
    for page in (alice, bob):
        await expect(line[page].get_by_role("button", name="❤️ 1: alice")).to_be_visible()
    await shot(bob, "reactions-1-chips")

    # A short text of Bob's own, typed in the picker; it is then the first recent one.
    await opener.click()
    await picker.get_by_role("textbox", name=re.compile("Your own reaction")).fill("nice")
    await bob.keyboard.press("Enter")
    for page in (alice, bob):
        await expect(line[page].locator("button.chip")).to_have_count(2)
        await expect(line[page].get_by_role("button", name="nice 1: bob")).to_be_visible()
    await opener.click()
    await expect(picker.locator("button.pick").first).to_have_text("nice")
    await bob.keyboard.press("Escape")
    await expect(picker).to_have_count(0)
    await expect(opener).to_be_focused()

    # Space on a focused chip toggles it too: Alice's ❤️ goes, and with it the chip.
    chip = line[alice].get_by_role("button", name="❤️ 1: alice")
    await chip.focus()
    await alice.keyboard.press("Space")
    for page in (alice, bob):
        await expect(line[page].locator("button.chip")).to_have_count(1)

    # What the server renders after a reload is what the live page built.
    for page in (alice, bob):
        live = await markup(page)
        await page.reload()
        await expect(page.locator("#status")).to_have_text("")
        assert await markup(page) == live
    # And the server-rendered chips toggle as well.
    await line[alice].get_by_role("button", name="nice 1: bob").click()
    await expect(line[bob].get_by_role("button", name="nice 2: bob, alice")).to_be_visible()

    # A reaction while Alice edits her message leaves her edit alone.
    await test_browser.start_edit(line[alice])
    box = line[alice].locator("textarea.edit-box")
    await box.fill("lunch at one?")
    await line[bob].get_by_role("button", name="nice 2: bob, alice").click()
    await expect(line[alice].get_by_role("button", name="nice 1: alice")).to_be_visible()
    await expect(box).to_have_value("lunch at one?")
    await box.press("Enter")
    await expect(line[bob].locator(".text")).to_have_text("lunch at one?")
    await expect(line[alice].get_by_role("button", name="nice 1: alice")).to_be_visible()
    assert console.problems == []


async def test_reply_quotes_follow_the_original_and_jump_to_it(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "shall we ship on Friday?")
    await send(alice, "something else")
    items = {p: p.locator("#messages li.message") for p in (alice, bob)}
    await expect(items[bob]).to_have_count(2)
    original = items[bob].first
    bar = bob.locator("#replying")
    await expect(bar).to_be_hidden()

    # Reply, cancel, reply again: the composer says to whom.
    await original.get_by_role("button", name="Reply to alice").click()
    await expect(bar).to_be_visible()
    await expect(bar).to_contain_text("Replying to alice")
    await expect(bob.locator("#text")).to_be_focused()
    await bar.get_by_role("button", name="Cancel the reply").click()
    await expect(bar).to_be_hidden()
    await original.get_by_role("button", name="Reply to alice").click()
    await send(bob, "yes, Friday")
    await expect(bar).to_be_hidden()
    for page in (alice, bob):
        reply = items[page].nth(2)
        await expect(reply.locator(".text")).to_have_text("yes, Friday")
        quote = reply.locator("a.quote")
        await expect(quote.locator(".quote-author")).to_have_text("alice")
        await expect(quote.locator(".quote-text")).to_have_text("shall we ship on Friday?")
        await expect(quote).to_have_attribute("href", "/rooms/general?at=1")
    await expect(bob.locator("#messages li.message.pending")).to_have_count(0)

    # Alice edits the original: the quote follows, live.
    await test_browser.start_edit(items[alice].first)
    await items[alice].first.locator("textarea.edit-box").fill("ship on Monday?")
    await items[alice].first.locator("textarea.edit-box").press("Enter")
    for page in (alice, bob):
        quote = items[page].nth(2).locator("a.quote .quote-text")
        await expect(quote).to_have_text("ship on Monday?")
    await shot(bob, "replies-1-quote")

    # The same markup after a reload, from the server.
    for page in (alice, bob):
        live = await markup(page)
        await page.reload()
        await expect(page.locator("#status")).to_have_text("")
        assert await markup(page) == live

    # A click on the quote jumps to the original on the page (no navigation) and marks it.
    await items[bob].nth(2).locator("a.quote").click()
    await expect(items[bob].first).to_have_class(re.compile(r"\bhighlight\b"))
    await expect(items[bob].first).to_be_focused()
    assert bob.url == server.url + "/rooms/general"
    # By keyboard too: Enter on the focused quote.
    await expect(items[bob].first).not_to_have_class(re.compile(r"\bhighlight\b"))
    await items[bob].nth(2).locator("a.quote").focus()
    await bob.keyboard.press("Enter")
    await expect(items[bob].first).to_have_class(re.compile(r"\bhighlight\b"))

    # Deleted, the original is quoted as such.
    await test_browser.delete_message(alice, items[alice].first)
    for page in (alice, bob):
        quote = items[page].nth(2).locator("a.quote .quote-text")
        await expect(quote).to_have_text("message deleted")
    assert console.problems == []


# A reply sent over the page's own origin by another socket of the person (the composer can only
# answer messages on the page).
REPLY_TO_FIRST = """() => new Promise((resolve, reject) => {
  const ws = new WebSocket(`ws://${location.host}/ws?room=general`);
  ws.onerror = reject;
  ws.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "hello") {
      const reply = { type: "message", text: "about the first", client_id: "r1", reply_to: 1 };
      ws.send(JSON.stringify(reply));
    } else if (frame.type === "message" && frame.client_id === "r1") {
      ws.close();
      resolve(frame.seq);
    }
  };
})"""


async def test_a_quote_of_a_message_not_on_the_page_opens_the_room_around_it(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    await seed(server.url, 60)  # the page shows the latest 50: seq 1 is not on it
    alice = await signed_up(browser, console, server.url, "alice")
    items = alice.locator("#messages li.message")
    await expect(items.last).to_contain_text("seed 60")
    assert await alice.locator('#messages li.message[data-seq="1"]').count() == 0
    reply_seq = await alice.evaluate(REPLY_TO_FIRST)
    quote = alice.locator(f'#messages li.message[data-seq="{reply_seq}"] a.quote')
    await expect(quote.locator(".quote-text")).to_have_text("seed 1")
    await quote.click()
    await alice.wait_for_url(server.url + "/rooms/general?at=1")
    first = alice.locator('#messages li.message[data-seq="1"]')
    await expect(first).to_have_class(re.compile(r"\btarget\b"))
    await expect(first).to_be_in_viewport()
    await shot(alice, "replies-2-jump-to-context")
    assert console.problems == []
