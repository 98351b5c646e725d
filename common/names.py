"""Names that do not lie: NFKC, no hidden characters, one alphabet per word, look-alike keys.

Room names may be in any script; logins are ASCII (`auth.forms.LOGIN_RE`). Both are NFKC
normalised first (fullwidth `ｄｅｖ` is `dev`). A name is refused when it holds characters
that show nothing or reorder text (bidi controls, zero-width and filler characters, variation
selectors, tags), or when one word mixes Latin, Cyrillic, Greek, Armenian or Cherokee letters
(`Dеv` with a Cyrillic `е`). Look-alikes across whole names are caught by their skeletons.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Characters that draw nothing (or nothing one can tell apart from a space) though not Cf.
INVISIBLE = frozenset(
    "\u115f\u1160\u17b4\u17b5\u180e\u034f\u2800\u3164\uffa0"
    "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"
)
VARIATION_SELECTORS = frozenset(chr(c) for c in range(0xFE00, 0xFE10)) | frozenset(
    chr(c) for c in range(0xE0100, 0xE01F0)
)
EMOJI_PRESENTATION = frozenset("\ufe0e\ufe0f")  # allowed right after a symbol (❤️)
HIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"))
# Scripts whose letters pass for one another; a word may use only one of them.
CONFUSABLE_SCRIPTS = frozenset(("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE"))

# Cyrillic and Greek letters (lower case: skeletons are case-folded first) that look like Latin
# ones, each mapped to the Latin letter it passes for (upper-case look-alikes included: `Н` H).
LOOKALIKES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j",
        "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
        "ү": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ԍ": "g",
        "α": "a", "β": "b", "ε": "e", "ζ": "z", "η": "h", "ι": "i", "κ": "k", "μ": "m",
        "ν": "n", "ο": "o", "ρ": "p", "τ": "t", "υ": "y", "χ": "x", "ϲ": "c", "ϳ": "j",
        "ı": "i", "ɡ": "g",
    }
)  # fmt: skip
SLUG_MAX = 40


def normalize(name: str) -> str:
    """Return the name in NFKC, white space collapsed to single spaces and trimmed."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


def hidden_character(name: str) -> str | None:
    """Return the first character that hides or reorders text, if any."""
    previous = ""
    for c in name:
        if c in EMOJI_PRESENTATION and previous and unicodedata.category(previous) == "So":
            previous = c
            continue
        if (
            c in INVISIBLE
            or c in VARIATION_SELECTORS
            or unicodedata.category(c) in HIDDEN_CATEGORIES
        ):
            return c
        if 0xE0000 <= ord(c) <= 0xE007F:  # tags
            return c
        previous = c
    return None


def script(c: str) -> str:
    """Return the script of a letter, as the first word of its Unicode name ('' for others)."""
    if not unicodedata.category(c).startswith("L"):
        return ""
    return unicodedata.name(c, "").partition(" ")[0]


def mixed_script(name: str) -> bool:
    """Say whether a word of the name mixes letters of scripts that pass for one another."""
    for word in name.split():
        scripts = {script(c) for c in word} & CONFUSABLE_SCRIPTS
        if len(scripts) > 1:
            return True
    return False


def skeleton(name: str) -> str:
    """Return what the name looks like: NFKC, case-folded, Cyrillic and Greek look-alikes Latin."""
    return unicodedata.normalize("NFKC", name).casefold().translate(LOOKALIKES)


def _ascii(word: str) -> str | None:
    """Return the word without accents when it is then ASCII, else None."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return plain if plain.isascii() else None


def room_slug(name: str) -> str:
    """Derive an open room's slug from the name's skeleton: look-alike names get the same one.

    The words that are Latin once look-alikes are mapped and accents dropped make the slug
    (`Gеnеrаl` in part Cyrillic and `General` both give `general`); a name with no such word
    (`Привет`, `会議`) gets `room-` and a hash of its skeleton, so it too is taken only once.
    """
    skel = " ".join(skeleton(name).split())
    words = [plain for word in skel.split() if (plain := _ascii(word)) is not None]
    slug = re.sub(r"[^a-z0-9]+", "-", " ".join(words)).strip("-")[:SLUG_MAX].strip("-")
    return slug or "room-" + hashlib.blake2b(skel.encode(), digest_size=5).hexdigest()
