"""The palette in static/style.css passes WCAG 2.1 AA contrast, in the light and the dark scheme.

The palette is read from the stylesheet itself (`:root`, and `:root` under
`@media (prefers-color-scheme: dark)`), so a colour changed there is checked here. PAIRS lists
every foreground the CSS puts on every background, with the ratio it needs: 4.5 for text,
3 for large text, control borders and focus indicators (WCAG 1.4.3 and 1.4.11).
"""

from __future__ import annotations

import re

import pytest

from conftest import ROOT

CSS = (ROOT / "static" / "style.css").read_text()
TEXT, NON_TEXT = 4.5, 3.0

# (foreground, background, minimum ratio, where the CSS uses it)
PAIRS = [
    ("fg", "bg", TEXT, "body text on the page"),
    ("fg", "card", TEXT, "text in cards, messages, tables, form fields"),
    ("fg", "surface-2", TEXT, "inline code, code blocks"),
    ("fg", "mention", TEXT, "a mention, a search hit, a linked message"),
    ("fg", "highlight", TEXT, "a message flashed after a jump"),
    ("fg", "accent-soft", TEXT, "a notice box"),
    ("muted", "bg", TEXT, "the room's status, search help on the page"),
    ("muted", "card", TEXT, "times, events, typing, quotes, badges"),
    ("muted", "surface-2", TEXT, "muted text in code blocks"),
    ("muted", "mention", TEXT, "a time in a linked message"),
    ("muted", "highlight", TEXT, "a time in a flashed message"),
    ("accent", "bg", TEXT, "links and text buttons on the page"),
    ("accent", "card", TEXT, "links, link buttons, the copy button in cards and messages"),
    ("accent", "surface-2", TEXT, "a link in a code span"),
    ("accent", "mention", TEXT, "a link in a linked message"),
    ("accent", "highlight", TEXT, "a link in a flashed message"),
    ("accent", "accent-soft", TEXT, "a link in a notice box"),
    ("on-accent", "accent", TEXT, "button labels, unread counts"),
    ("danger", "bg", TEXT, "a notice under the composer"),
    ("danger", "card", TEXT, "form errors, the unread divider, a failed message"),
    ("border-strong", "card", NON_TEXT, "form field borders inside cards"),
    ("border-strong", "bg", NON_TEXT, "form field borders on the page"),
    ("muted", "card", NON_TEXT, "reaction chip borders"),
    ("accent", "card", NON_TEXT, "the focus ring, a pressed chip, button edges in cards"),
    ("accent", "bg", NON_TEXT, "the focus ring and button edges on the page"),
    ("accent", "mention", NON_TEXT, "the focus ring in a linked message"),
    ("danger", "card", NON_TEXT, "an invalid field's border"),
    ("avatar-fg", "avatar-0", TEXT, "initials on avatar colour 0"),
    ("avatar-fg", "avatar-1", TEXT, "initials on avatar colour 1"),
    ("avatar-fg", "avatar-2", TEXT, "initials on avatar colour 2"),
    ("avatar-fg", "avatar-3", TEXT, "initials on avatar colour 3"),
    ("avatar-fg", "avatar-4", TEXT, "initials on avatar colour 4"),
    ("avatar-fg", "avatar-5", TEXT, "initials on avatar colour 5"),
    ("avatar-fg", "avatar-6", TEXT, "initials on avatar colour 6"),
    ("avatar-fg", "avatar-7", TEXT, "initials on avatar colour 7"),
]


def declarations(block: str) -> dict[str, str]:
    """Return the custom properties declared in a block of CSS."""
    return dict(re.findall(r"--([\w-]+)\s*:\s*([^;]+);", block))


def palettes(css: str) -> dict[str, dict[str, str]]:
    """Return the light palette (the first `:root`) and the dark one (under the media query)."""
    light = re.search(r"^:root\s*\{([^}]*)\}", css, re.M)
    dark = re.search(r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{\s*:root\s*\{([^}]*)\}", css)
    assert light and dark, "style.css has a :root palette and a dark one"
    return {"light": declarations(light.group(1)), "dark": declarations(dark.group(1))}


def rgb(value: str) -> tuple[float, float, float]:
    """Return the sRGB channels (0..1) of an opaque #rgb or #rrggbb colour."""
    hex_digits = value.strip().removeprefix("#")
    assert re.fullmatch(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}", hex_digits), f"not #rgb/#rrggbb: {value}"
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)
    r, g, b = (int(hex_digits[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return r, g, b


def luminance(value: str) -> float:
    """Return the relative luminance (WCAG 2.1) of a colour."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb(value))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(a: str, b: str) -> float:
    """Return the contrast ratio of two colours, 1 to 21."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


PALETTES = palettes(CSS)


def test_the_formula_matches_wcag_examples() -> None:
    assert ratio("#000", "#fff") == pytest.approx(21)
    assert ratio("#fff", "#fff") == pytest.approx(1)
    assert ratio("#767676", "#fff") == pytest.approx(4.54, abs=0.01)  # the lightest AA grey
    assert ratio("#777", "#fff") < TEXT


def test_both_schemes_define_the_same_colours() -> None:
    assert set(PALETTES["light"]) == set(PALETTES["dark"])
    assert {fg for fg, *_ in PAIRS} | {bg for _, bg, *_ in PAIRS} <= set(PALETTES["light"])
    assert re.search(r":root\s*\{[^}]*color-scheme:\s*light dark", CSS)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(("fg", "bg", "minimum", "where"), PAIRS)
def test_contrast(scheme: str, fg: str, bg: str, minimum: float, where: str) -> None:
    palette = PALETTES[scheme]
    got = ratio(palette[fg], palette[bg])
    assert got >= minimum, f"{scheme}: --{fg} on --{bg} ({where}) is {got:.2f}:1, needs {minimum}"


def test_no_raw_colour_outside_the_palette() -> None:
    # Every colour comes from a variable, so that both schemes (and this test) cover it.
    outside = re.sub(r"^:root\s*\{[^}]*\}", "", CSS, count=1, flags=re.M)
    outside = re.sub(
        r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{\s*:root\s*\{[^}]*\}\s*\}", "", outside
    )
    outside = re.sub(r"/\*.*?\*/", "", outside, flags=re.S)
    # A fallback, var(--name, #hex), is allowed: the variable is always defined.
    outside = re.sub(r"var\(\s*--[\w-]+\s*,[^)]*\)", "var()", outside)
    raw = re.findall(
        r"#[0-9a-fA-F]{3,8}\b|\b(?:rgb|rgba|hsl|hsla|hwb|lab|lch|oklab|oklch)\(|"
        r":\s*(?:white|black|red|green|blue|gray|grey|silver|yellow)\b",
        outside,
    )
    assert raw == []
