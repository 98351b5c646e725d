"""Message formatting and bidi isolation in a real Chromium, against the real server.

The page's renderer (static/js/markdown.js) is checked against the same case table as the server's
(tests/test_markdown.py), and live messages must look exactly like the server-rendered history.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import test_browser
from playwright.async_api import Browser, Locator, Page, expect
from test_browser import MARKUP, Console, new_person, send, shot, sign_up, signed_up

from conftest import ROOT, AppProcess

# The real server, a headless Chromium and its console, as in tests/test_browser.py.
server = test_browser.server
browser = test_browser.browser
console = test_browser.console

pytestmark = pytest.mark.browser

CASES: list[dict[str, str]] = json.loads((ROOT / "tests" / "markdown_cases.json").read_text())

RENDER_CASES = """async (cases) => {
  const markdown = await import("/static/js/markdown.js");
  return cases.map((c) => {
    const el = document.createElement("div");
    markdown.fillFormatted(el, c.text);
    return el.innerHTML;
  });
}"""

FORMATTED = (
    "**bold** _italic_ ~~gone~~ `code` [docs](https://docs.example/guide) https://example.com/x\n"
    "> a quote\n"
    "- first\n"
    "- second\n"
    "```\n"
    "def f():\n"
    "    return '" + "x" * 300 + "'\n"
    "```\n"
    "<script>alert(1)</script> the end"
)


# Where the first and the last letter of an element's text are drawn.
FIRST_AND_LAST_LETTER = """el => {
  const text = el.firstChild;
  const range = document.createRange();
  const x = (i) => {
    range.setStart(text, i);
    range.setEnd(text, i + 1);
    return range.getBoundingClientRect().x;
  };
  return [x(0), x(text.length - 1)];
}"""


async def box(locator: Locator) -> dict[str, float]:
    """Where an element is drawn."""
    found = await locator.bounding_box()
    assert found is not None
    return found


async def test_the_page_renders_each_case_like_the_server(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    page = await signed_up(browser, console, server.url, "alice")
    rendered = await page.evaluate(RENDER_CASES, CASES)
    wrong = [
        case["name"] for case, html in zip(CASES, rendered, strict=True) if html != case["html"]
    ]
    assert wrong == []
    assert console.problems == []


async def test_formatting_live_and_after_reload(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, FORMATTED)
    live: dict[Page, Any] = {}
    for page in (alice, bob):
        text = page.locator("#messages li.message:not(.pending) .text").last
        await expect(text.locator("strong")).to_have_text("bold")
        await expect(text.locator("em")).to_have_text("italic")
        await expect(text.locator("s")).to_have_text("gone")
        await expect(text.locator(":scope > code")).to_have_text("code")
        await expect(text.locator("blockquote")).to_have_text("a quote")
        await expect(text.locator("ul > li")).to_have_text(["first", "second"])
        await expect(text.get_by_role("link", name="docs (docs.example)")).to_have_attribute(
            "href", "https://docs.example/guide"
        )
        await expect(text.get_by_role("link", name="https://example.com/x")).to_have_count(1)
        assert await page.locator("#messages script, #messages img").count() == 0
        live[page] = await page.locator("#messages li.message").evaluate_all(MARKUP)
    await shot(bob, "md-1-formatted-live")
    for page in (alice, bob):
        await page.reload()
        await expect(page.locator("#status")).to_have_text("")
        assert await page.locator("#messages li.message").evaluate_all(MARKUP) == live[page]
        assert await page.locator("#messages [data-text]").count() == 0
    # Editing starts from the raw text, also for a message the server rendered.
    mine = alice.locator("#messages li.message").last
    await test_browser.start_edit(mine)
    await expect(mine.locator("textarea.edit-box")).to_have_value(FORMATTED)
    await mine.locator("textarea.edit-box").press("Escape")
    await expect(mine.locator(".text strong")).to_have_text("bold")
    assert console.problems == []


async def test_code_blocks_scroll_and_copy(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    context, alice = await new_person(browser, console)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    await sign_up(alice, server.url, "alice")
    await send(alice, FORMATTED)
    block = alice.locator("#messages li.message:not(.pending) .code-block").last
    pre = block.locator("pre")
    await expect(pre).to_have_css("white-space", "pre")
    await expect(pre).to_have_css("overflow-x", "auto")
    assert "monospace" in await pre.evaluate("el => getComputedStyle(el).fontFamily")
    assert await pre.evaluate("el => el.scrollWidth > el.clientWidth")  # scrolls, not wraps
    code = "def f():\n    return '" + "x" * 300 + "'"
    assert await pre.locator("code").text_content() == code  # whitespace kept
    button = block.get_by_role("button", name="Copy code")
    await button.click()
    await expect(button).to_have_text("Copied")
    assert await alice.evaluate("navigator.clipboard.readText()") == code
    await expect(button).to_have_text("Copy")  # back after 2 s
    await shot(alice, "md-2-code-block")
    assert console.problems == []


async def test_copy_falls_back_without_the_clipboard_api(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    context, bob = await new_person(browser, console)
    await context.add_init_script(
        'Object.defineProperty(Navigator.prototype, "clipboard", { get: () => undefined });'
    )
    await sign_up(bob, server.url, "bob")
    await send(bob, "```\nline one\n  line two\n```")
    await bob.reload()  # a server-rendered block works too
    button = bob.locator("#messages .code-block").last.get_by_role("button", name="Copy code")
    await button.click()
    await expect(button).to_have_text(re.compile(r"^(Copied|Press Ctrl\+C)$"))
    # What the fallback copies (or leaves for Ctrl+C) is the selection: exactly the code.
    assert await bob.evaluate("String(window.getSelection())") == "line one\n  line two"
    assert console.problems == []


async def test_bidi_controls_cannot_reorder_the_rest_of_a_message(
    server: AppProcess, browser: Browser, console: Console
) -> None:
    alice = await signed_up(browser, console, server.url, "alice")
    bob = await signed_up(browser, console, server.url, "bob")
    await send(alice, "first")
    mine = alice.locator("#messages li.message:not(.pending)").last
    await test_browser.start_edit(mine)
    await mine.locator("textarea.edit-box").fill("\u202eevil text")
    await mine.locator("textarea.edit-box").press("Enter")
    await send(alice, "[\u202emoc.knab](https://evil.example/login) \u202ehttps://a.example/path")
    await send(alice, "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd")
    await send(alice, "hello \u05e9\u05dc\u05d5\u05dd")
    for attempt in ("live", "reloaded"):
        items = bob.locator("#messages li.message")
        await expect(items).to_have_count(4)
        edited = items.nth(0)
        await expect(edited.locator(".edited")).to_have_text("(edited)")
        author, text, note = (
            await box(edited.locator(".author")),
            await box(edited.locator(".text")),
            await box(edited.locator(".edited")),
        )
        # The override reverses the message's own text only: the author stays before it and
        # "(edited)" after it, in a left-to-right page.
        assert author["x"] + author["width"] <= text["x"], attempt
        assert text["x"] + text["width"] <= note["x"], attempt
        link = items.nth(1).get_by_role("link", name=re.compile(r"\(evil\.example\)$"))
        await expect(link).to_have_attribute("href", "https://evil.example/login")
        label, host = await box(link.locator("bdi")), await box(link.locator(".host"))
        assert label["x"] + label["width"] <= host["x"], attempt  # the real host, after it
        bare = items.nth(1).get_by_role("link", name="https://a.example/path")
        await expect(bare).to_have_text("https://a.example/path")
        assert await bare.evaluate("a => getComputedStyle(a).direction") == "ltr"
        first, last = await bare.evaluate(FIRST_AND_LAST_LETTER)
        assert first < last, attempt  # drawn left to right despite the override before it
        directions = await items.locator(".text").evaluate_all(
            "els => els.map(el => getComputedStyle(el).direction)"
        )
        # Each from its first letter; controls are no letters, and links and labels are skipped.
        assert directions == ["ltr", "ltr", "rtl", "ltr"], attempt
        for part in (".author", ".text", ".edited"):
            isolation = await edited.locator(part).evaluate(
                "el => getComputedStyle(el).unicodeBidi"
            )
            assert isolation == "isolate", (attempt, part)
        await shot(bob, f"md-3-bidi-{attempt}")
        await bob.reload()
        await expect(bob.locator("#status")).to_have_text("")
    assert console.problems == []
