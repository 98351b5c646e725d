"""Search (#21) in a real Chromium: the page, its highlights, `/`, opening a room at a message
(`?at=`) and paging both ways from there into the live room, and "Copy link"."""

from __future__ import annotations

import re

import pytest
import test_browser
from playwright.async_api import Browser, Page, expect
from test_browser import Console, new_person, seed, send, seqs_of, shot, sign_up, signed_up

from conftest import AppProcess

# The browser tests' fixtures: the real process, Chromium, and the console watched.
server, browser, console = test_browser.server, test_browser.browser, test_browser.console

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1280, "height": 720}


async def shown_seqs(page: Page) -> list[int]:
    items = page.locator("#messages li.message:not(.pending)")
    return seqs_of(await items.evaluate_all("els => els.map(e => e.dataset.seq)"))


async def test_search_page_highlights_matches_and_opens_the_message_in_context(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    await seed(server.url, 120)
    alice = await signed_up(browser, console, server.url, "alice", viewport=VIEWPORT)
    bob = await signed_up(browser, console, server.url, "bob")
    await send(bob, "<img src=x onerror=alert(1)> Zébra crossing")
    await expect(alice.locator("#messages li.message .text").last).to_contain_text("crossing")
    # "/" from the chat (not typing): the search page, its box focused.
    await alice.locator("#messages").focus()
    await alice.keyboard.press("/")
    await alice.wait_for_url(server.url + "/search")
    await expect(alice.locator("#search-q")).to_be_focused()
    await alice.keyboard.type("zebra")
    await alice.keyboard.press("Enter")
    result = alice.locator("#search-results li.search-result")
    await expect(result).to_have_count(1)
    await expect(result.locator(".text")).to_have_text(
        "<img src=x onerror=alert(1)> Zébra crossing"
    )
    await expect(result.locator("mark")).to_have_text(["Zébra"])
    await expect(result.locator(".result-room")).to_have_text("#General")
    await expect(result.locator(".author")).to_have_text("bob")
    assert await alice.locator("#search-results img").count() == 0
    assert "q=zebra" in alice.url
    # A phrase, and a query the server refuses, said so on the page.
    await alice.fill("#search-q", '"seed 30"')
    await alice.press("#search-q", "Enter")
    await expect(result).to_have_count(1)
    await expect(result.locator("mark")).to_have_text(["seed", "30"])
    await shot(alice, "search-1-results")
    await alice.fill("#search-q", "-seed")
    await alice.press("#search-q", "Enter")
    await expect(alice.locator("#search-status")).to_have_text(
        "Give at least one word to look for."
    )
    await expect(result).to_have_count(0)
    await alice.fill("#search-q", '"seed 30"')
    await alice.press("#search-q", "Enter")
    await result.locator("a").click()
    await alice.wait_for_url(re.compile(r"/rooms/general\?at=30$"))
    target = alice.locator('#messages li.message[data-seq="30"]')
    await expect(target).to_have_class(re.compile(r"\btarget\b"))
    await expect(target).to_be_in_viewport()
    await shot(alice, "search-2-at-30")
    shown = await shown_seqs(alice)
    assert shown[0] < 30 < shown[-1] < 121 and shown == list(range(shown[0], shown[-1] + 1))
    # Written while the page is in the past: it comes once, from the newer pages or the resume.
    await send(bob, "while alice reads old ones")
    messages = alice.locator("#messages")
    for _ in range(10):  # older pages, up to the first message
        if (await shown_seqs(alice))[0] == 1:
            break
        await messages.evaluate("el => { el.scrollTop = 0; }")
        await alice.wait_for_timeout(200)
    for _ in range(20):  # newer pages, up to the newest: then the page is live
        if (await shown_seqs(alice))[-1] >= 122:
            break
        await messages.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        await alice.wait_for_timeout(200)
    await expect(alice.locator("#status")).to_have_text("")
    await send(bob, "once alice is live")
    last = alice.locator("#messages li.message .text").last
    await expect(last).to_have_text("once alice is live")
    await alice.wait_for_timeout(300)
    assert await shown_seqs(alice) == list(range(1, 124))  # in order, no gap, no duplicate
    await shot(alice, "search-3-caught-up")
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert console.problems == [f"error: {refused}"]  # Chromium's line for the 400 of "-seed"


async def test_writing_while_reading_old_messages_goes_back_to_the_newest(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    await seed(server.url, 120)
    alice = await signed_up(browser, console, server.url, "alice", viewport=VIEWPORT)
    await alice.goto(server.url + "/rooms/general?at=10")
    await expect(alice.locator('#messages li.message[data-seq="10"]')).to_be_in_viewport()
    await expect(alice.locator("#status")).to_have_text("")
    await send(alice, "back to now")
    await expect(alice.locator("#messages li.message:not(.pending) .text").last).to_have_text(
        "back to now"
    )
    await expect(alice.locator("#status")).to_have_text("")
    shown = await shown_seqs(alice)
    assert shown[-1] == 121 and shown == list(range(shown[0], 122))
    assert console.problems == []


async def test_slash_types_a_slash_in_a_field(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    await alice.locator("#text").click()
    await alice.keyboard.type("a/b")
    await expect(alice.locator("#text")).to_have_value("a/b")
    assert alice.url == server.url + "/rooms/general"
    await alice.goto(server.url + "/")
    await alice.keyboard.press("/")
    await alice.wait_for_url(server.url + "/search")
    assert console.problems == []


async def test_copy_link_puts_the_message_url_on_the_clipboard_or_shows_it(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    await send(alice, "link to me")
    item = alice.locator("#messages li.message:not(.pending)").last
    await expect(item.locator(".text")).to_have_text("link to me")
    seq = await item.get_attribute("data-seq")
    url = f"{server.url}/rooms/general?at={seq}"
    await alice.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await item.locator("button.copy-link").click()
    await expect(alice.locator("#notice")).to_have_text("Link copied: " + url)
    assert await alice.evaluate("() => navigator.clipboard.readText()") == url
    # A browser that refuses the clipboard: the link is shown, selected, to copy by hand.
    ctx, bob = await new_person(browser, console)
    await ctx.add_init_script(
        "Object.defineProperty(navigator, 'clipboard', {value: {writeText: () =>"
        " Promise.reject(new Error('refused'))}});"
    )
    await sign_up(bob, server.url, "bob")
    await bob.locator(f'#messages li.message[data-seq="{seq}"] button.copy-link').click()
    box = bob.locator("#notice input.copy-box")
    await expect(box).to_have_value(url)
    await expect(box).to_be_focused()
    await bob.goto(url)
    await expect(bob.locator(f'#messages li.message[data-seq="{seq}"]')).to_have_class(
        re.compile(r"\btarget\b")
    )
    assert console.problems == []
