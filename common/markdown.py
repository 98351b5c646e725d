"""Message formatting: the Markdown subset of docs/PROTOCOL.md ("Formatting"), as escaped HTML.

static/js/markdown.js implements the same grammar with DOM nodes; tests/markdown_cases.json holds
the cases both must render alike. Every scan below is linear: each regular expression is anchored
or searched forward without nested quantifiers, and each scan's range is disjoint from the next.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from markupsafe import Markup

# JavaScript's \s, listed so that both sides agree on what a space is.
SPACES = "\t\n\v\f\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# Characters that show nothing or reorder text: bidi controls, zero-width and tag characters.
INVISIBLE = "\xad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\U000e0000-\U000e007f"

_SPACE_SET = frozenset(
    "\t\n\v\f\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
# No IGNORECASE anywhere: Python's would let "\u017f" match "s" and "\u212a" match "k".
_SPECIAL = re.compile(r"`|\[|\*{2,}|_+|~{2,}|[hH][tT][tT][pP][sS]?://")
_URL_RUN = re.compile(f"[^{SPACES}{INVISIBLE}\\x00-\\x1f\\x7f<>\"'`]*")
_LINK = re.compile(
    f"\\[([^\\[\\]\\n]+)\\]\\(([^{SPACES}{INVISIBLE}\\x00-\\x1f\\x7f()\\[\\]<>\"'`]+)\\)"
)
_ORIGIN = re.compile(
    r"[hH][tT][tT][pP][sS]?://([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::([0-9]{1,5}))?(?=[/?#]|$)"
)
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_DOTTED_QUAD = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
_FENCE_OPEN = re.compile(r"```[^`]*")
_FENCE_CLOSE = re.compile(r"```+[ \t]*")
_TRAILING = ".,;:!?)]}*_~"
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_EMPHASIS = {"**": "strong", "_": "em", "~~": "s"}
_LINK_ATTRS = (("rel", "noopener noreferrer"), ("target", "_blank"))


def _escape_text(s: str) -> str:
    # Chained replace is several times faster than str.translate with a dict; "&" goes first.
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\xa0", "&nbsp;")
    )


def _escape_attr(s: str) -> str:
    return _escape_text(s).replace('"', "&quot;")


@dataclass(slots=True)
class Element:
    """One element of a rendered message: a tag, its attributes in order, its children."""

    tag: str
    attrs: tuple[tuple[str, str], ...] = ()
    children: list[Node] = field(default_factory=list)


Node = str | Element


def link_host(url: str) -> str | None:
    """Return the host (and port) a link goes to, or None if it is not a link we make."""
    origin = _ORIGIN.match(url)
    if origin is None:
        return None
    host, port = origin.group(1).lower(), origin.group(2)
    # A browser reads a host whose last label is a number as an IPv4 address (http://2130706433
    # is 127.0.0.1): only the plain dotted form is shown as it is.
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]) and not _DOTTED_QUAD.fullmatch(host):
        return None
    if port is not None:
        if int(port) > 65535:
            return None
        return f"{host}:{port}"
    return host


def _bracket_link(label: str, url: str, host: str) -> Element:
    host_note = Element("span", (("class", "host"), ("dir", "ltr")), [f"({host})"])
    return Element(
        "a", (("href", url), *_LINK_ATTRS), [Element("bdi", (), [label]), " ", host_note]
    )


def _autolink(url: str) -> Element:
    return Element("a", (("href", url), *_LINK_ATTRS, ("dir", "ltr")), [url])


def parse_inline(s: str) -> list[Node]:
    """Parse code spans, links, bare links and emphasis in a run of text."""
    out: list[Node] = []
    opened: list[tuple[str, int]] = []  # (marker, index in out) of emphasis still open
    pos = 0
    n = len(s)
    while True:
        m = _SPECIAL.search(s, pos)
        if m is None:
            out.append(s[pos:])
            break
        start, tok = m.start(), m.group()
        out.append(s[pos:start])
        c = tok[0]
        if c == "`":
            end = s.find("`", start + 1)
            if end > start + 1:
                out.append(Element("code", (), [s[start + 1 : end]]))
                pos = end + 1
            elif end == start + 1:
                out.append("``")
                pos = end + 1
            else:
                out.append("`")
                pos = start + 1
        elif c == "[":
            link = _LINK.match(s, start)
            host = link_host(link.group(2)) if link else None
            if link is None or host is None:
                out.append("[")
                pos = start + 1
            else:
                out.append(_bracket_link(link.group(1), link.group(2), host))
                pos = link.end()
        elif c in "hH":
            if start > 0 and s[start - 1] in _WORD:
                out.append(tok)
                pos = m.end()
                continue
            raw = _URL_RUN.match(s, start).group().rstrip(_TRAILING)
            out.append(_autolink(raw) if link_host(raw) else raw)
            pos = start + len(raw)
        else:
            pos = m.end()
            if tok not in _EMPHASIS:
                out.append(tok)
                continue
            before = s[start - 1] if start > 0 else " "
            after = s[pos] if pos < n else " "
            can_open = after not in _SPACE_SET
            can_close = before not in _SPACE_SET
            if c == "_":
                can_open = can_open and before not in _WORD
                can_close = can_close and after not in _WORD
            at = next((i for i, (marker, _) in enumerate(opened) if marker == tok), None)
            if at is not None and can_close:
                index = opened[at][1]
                del opened[at:]
                children = out[index + 1 :]
                del out[index:]
                out.append(Element(_EMPHASIS[tok], (), children))
            elif at is None and can_open:
                opened.append((tok, len(out)))
                out.append(tok)
            else:
                out.append(tok)
    return out


def _code_block(code: str) -> Element:
    copy = Element(
        "button",
        (("type", "button"), ("class", "copy-code"), ("aria-label", "Copy code")),
        ["Copy"],
    )
    # Focusable: a line wider than the block scrolls, and a keyboard must reach it (WCAG 2.1.1).
    pre = Element("pre", (("tabindex", "0"),), [Element("code", (), [code])])
    return Element("div", (("class", "code-block"),), [pre, copy])


def parse(text: str) -> list[Node]:
    """Parse a message's text into the nodes that show it."""
    # Line breaks as the HTML parser leaves them in the history: \r\n and \r become \n.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    nodes: list[Node] = []
    paragraph: list[str] = []

    def flush(block_next: bool = True) -> None:
        while block_next and paragraph and not paragraph[-1]:
            paragraph.pop()  # blank lines next to a block are its margin, not text
        if paragraph:
            nodes.extend(parse_inline("\n".join(paragraph)))
            paragraph.clear()

    i, count = 0, len(lines)
    after_block = False
    while i < count:
        line = lines[i]
        if _FENCE_OPEN.fullmatch(line):
            flush()
            j = i + 1
            while j < count and not _FENCE_CLOSE.fullmatch(lines[j]):
                j += 1
            nodes.append(_code_block("\n".join(lines[i + 1 : j])))
            i = j + 1
        elif line.startswith(">"):
            flush()
            body = []
            while i < count and lines[i].startswith(">"):
                body.append(lines[i][2:] if lines[i].startswith("> ") else lines[i][1:])
                i += 1
            nodes.append(Element("blockquote", (), parse_inline("\n".join(body))))
        elif line.startswith(("- ", "* ")):
            flush()
            items: list[Node] = []
            while i < count and lines[i].startswith(("- ", "* ")):
                items.append(Element("li", (), parse_inline(lines[i][2:])))
                i += 1
            nodes.append(Element("ul", (), items))
        else:
            if line or not after_block:
                paragraph.append(line)
                after_block = False
            i += 1
            continue
        after_block = True
    flush(block_next=False)
    return _merge(nodes)


def _merge(nodes: list[Node]) -> list[Node]:
    """Join adjacent text and drop empty text, as an HTML parser would see it."""
    merged: list[Node] = []
    for node in nodes:
        if isinstance(node, str):
            if not node:
                continue
            if merged and isinstance(merged[-1], str):
                merged[-1] += node
                continue
        else:
            node.children = _merge(node.children)
        merged.append(node)
    return merged


def _write(nodes: list[Node], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(_escape_text(node))
            continue
        out.append("<" + node.tag)
        for name, value in node.attrs:
            out.append(f' {name}="{_escape_attr(value)}"')
        out.append(">")
        _write(node.children, out)
        out.append(f"</{node.tag}>")


def to_html(nodes: list[Node]) -> str:
    """Serialise nodes the way a browser serialises the same DOM (its innerHTML)."""
    out: list[str] = []
    _write(nodes, out)
    return "".join(out)


# A history page is the same 50 messages for everyone who opens the room: keep the latest renderings
# (at most 1,024 of at most 2,000 characters each, a few MiB).
@functools.lru_cache(maxsize=1024)
def render(text: str) -> Markup:
    """Render a message's text as safe HTML for a template."""
    return Markup(to_html(parse(text)))
