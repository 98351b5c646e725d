"""What a reaction may be: one emoji (a whole sequence), or a short text, and nothing hidden.

Reactions are NFC text of 1 to REACTION_MAX characters (code points; every emoji sequence fits).
Characters that show nothing or reorder text are refused as in room names (`common.names`),
except those that emoji sequences are made of, where they stand in one: a zero-width joiner
between two pictographs (👩‍💻), VS16 after a symbol (❤️) or a keycap's digit (1️⃣), and the
tags of a subdivision flag (🏴󠁧󠁢󠁳󠁣󠁴󠁿).
"""

from __future__ import annotations

import unicodedata

from common.names import hidden_character

REACTION_MAX = 16
ZWJ = "\u200d"
VS16 = "\ufe0f"
KEYCAP = "\u20e3"
BLACK_FLAG = "\U0001f3f4"
CANCEL_TAG = "\U000e007f"
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))


def _pictograph(c: str) -> bool:
    return unicodedata.category(c) == "So"


def _emoji_part(text: str, i: int) -> bool:
    """Say whether the joiner, selector or tag at text[i] stands inside an emoji sequence."""
    c = text[i]
    before = text[i - 1] if i > 0 else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    if c == ZWJ:
        return (
            bool(before and after)
            and (_pictograph(before) or before == VS16 or before in SKIN_TONES)
            and _pictograph(after)
        )
    if c == VS16:
        if not before:
            return False
        if before in "0123456789#*":
            return after == KEYCAP
        return unicodedata.category(before)[0] in "SP"
    if 0xE0020 <= ord(c) <= 0xE007F:  # tags: only a subdivision flag's, after its black flag
        tags = text[1:]
        return (
            text.startswith(BLACK_FLAG)
            and len(tags) >= 2
            and tags.endswith(CANCEL_TAG)
            and all(0xE0020 <= ord(t) <= 0xE007E for t in tags[:-1])
        )
    return False


def reaction_problem(text: str) -> str | None:
    """Return why `text` (already NFC and trimmed) cannot be a reaction, or None when it can."""
    if not text:
        return "A reaction is an emoji or a short text; this one is empty."
    if len(text) > REACTION_MAX:
        return f"A reaction is one emoji or at most {REACTION_MAX} characters."
    if any(c.isspace() and c != " " for c in text) or "  " in text:
        return "A reaction may hold single spaces only."
    for i, c in enumerate(text):
        if c in (ZWJ, VS16) or 0xE0000 <= ord(c) <= 0xE007F:
            if _emoji_part(text, i):
                continue
            return "A reaction may not hold characters that hide or reorder text."
        if hidden_character(c) is not None:
            return "A reaction may not hold characters that hide or reorder text."
    return None


def normalize_reaction(text: str) -> str:
    """Return the reaction as it is stored and compared: NFC, trimmed."""
    return unicodedata.normalize("NFC", text).strip()
