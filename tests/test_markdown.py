"""Message formatting on the server: the shared case table, and the history page that uses it.

The browser half of the table is checked by tests/test_browser_markdown.py.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from markupsafe import escape

from common.markdown import link_host, parse, render, to_html
from conftest import ROOT, Auth
from storage import STORE_KEY

CASES: list[dict[str, str]] = json.loads((ROOT / "tests" / "markdown_cases.json").read_text())


def test_the_case_table_is_well_formed() -> None:
    assert len(CASES) >= 60 and len({case["name"] for case in CASES}) == len(CASES)
    assert max(len(case["text"]) for case in CASES) == 2000  # the longest message allowed
    assert all(set(case) == {"name", "text", "html"} for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_server_renders_each_case(case: dict[str, str]) -> None:
    assert to_html(parse(case["text"])) == case["html"]


@pytest.mark.parametrize(
    "text",
    [
        "hello, world",
        "a * b = c, x_1 and ~ roughly",
        "line one\n\n  indented line\ttab",
        "\u05e9\u05dc\u05d5\u05dd, \u0645\u0631\u062d\u0628\u0627 and \u4f60\u597d",
        "quotes \" and ' and & and <b>",
    ],
)
def test_plain_text_renders_as_exactly_itself(text: str) -> None:
    assert render(text) == html.escape(text, quote=False)


class Tags(HTMLParser):
    """The tags and attributes an HTML parser finds in a rendering."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


ALLOWED = {"strong", "em", "s", "code", "a", "bdi", "span", "div", "pre", "button", "blockquote"}


def test_no_markup_comes_from_the_text() -> None:
    # Every tag in the output is one the grammar makes, whatever the cases feed it.
    for case in CASES:
        for tag, attrs in Tags(case["html"]).found:
            assert tag in ALLOWED | {"ul", "li"}, case["name"]
            for name, value in attrs:
                attributes = {"href", "rel", "target", "dir", "class", "type", "aria-label"}
                assert name in attributes | {"tabindex"}, case["name"]  # tabindex: a code block
                if name == "tabindex":
                    assert (tag, value) == ("pre", "0"), case["name"]
                if name == "href":
                    assert value and value.lower().startswith(("http://", "https://")), case["name"]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Example.COM/x", "example.com"),
        ("http://a.example:8080", "a.example:8080"),
        ("http://10.0.0.1/", "10.0.0.1"),
        ("https://bank.example@evil.example/", None),
        ("http://2130706433/", None),
        ("http://0x7f.0.0.1/", None),
        ("http://a.example:65536/", None),
        ("javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("https://\u0435xample.com/", None),
        ("https://example.\u017fom/", None),  # long s: not an "s" to us, whatever a regex thinks
        ("https:///x", None),
    ],
)
def test_link_hosts(url: str, host: str | None) -> None:
    assert link_host(url) == host


def test_invisible_characters_end_a_bare_link() -> None:
    for c in "\u202e\u202d\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\xad":
        nodes = parse(f"https://a.example/x{c}y")
        assert to_html(nodes).startswith('<a href="https://a.example/x" '), repr(c)


async def test_history_is_formatted_with_the_text_kept_raw(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    await auth.signup("alice")
    text = "**bold** [docs](https://docs.example/a?b=1&c=2) <script>x</script>\n```\ncode\n```"
    await client.app[STORE_KEY].messages.add("general", "alice", text, "m1")
    body = await (await client.get("/rooms/general")).text()
    assert f'<div class="text" dir="auto" data-text="{escape(text)}">' in body
    assert to_html(parse(text)) in body
    assert "<strong>bold</strong>" in body and "<script>x" not in body
    assert '<a href="https://docs.example/a?b=1&amp;c=2" rel="noopener noreferrer"' in body


async def test_every_message_body_is_a_bidi_isolate(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    await auth.signup("alice")
    for i, text in enumerate(("\u202eevil", "\u05e9\u05dc\u05d5\u05dd", "plain")):
        await client.app[STORE_KEY].messages.add("general", "alice", text, f"m{i}")
    body = await (await client.get("/rooms/general")).text()
    assert body.count('class="text" dir="auto"') == 3 + 1  # and the live messages' template
    css = (ROOT / "static" / "style.css").read_text()
    isolated = re.search(r"([^}]*)\{ unicode-bidi: isolate; \}", css)
    assert isolated is not None
    for part in (".message .author", ".message .text", ".message .edited", ".message .text bdi"):
        assert part in isolated.group(1)
