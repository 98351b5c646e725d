"""Avatars drawn from a login: its initials on one of a few colours, the same on every page.

static/js/grouping.js computes the same two things for live messages; both must agree.
"""

from __future__ import annotations

import re

PALETTE_SIZE = 8  # the .avatar-0 ... .avatar-7 colours of static/style.css


def initials(login: str) -> str:
    """Return the first letters of a login's first two parts (split at . _ -), upper-cased."""
    parts = [p for p in re.split(r"[._-]+", login) if p]
    return "".join(p[0] for p in parts[:2]).upper()


def avatar_colour(login: str) -> int:
    """Return the palette index of a login's avatar: a small hash, stable across pages."""
    h = 0
    for c in login:
        h = (h * 31 + ord(c)) % 2**32
    return h % PALETTE_SIZE
