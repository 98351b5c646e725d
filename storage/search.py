"""Full-text search: how text becomes search terms, how a query is read, the search interface.

Both stores index the same terms, made here: a word is a run of letters, digits and marks;
Latin, Greek and Cyrillic lose their accents and case (NFKD, combining marks dropped,
casefold), so "resume" finds "Résumé"; Chinese, Japanese and Korean, written without spaces,
become overlapping pairs of characters, so any substring of two or more characters is a phrase
of pairs. A query's words are matched as phrases of terms, made the same way.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.base import Message

QUERY_MAX = 1000  # characters in a query
TERMS_MAX = 32  # terms a query may look for (positive and excluded together)
TERM_MAX = 64  # characters kept of one term (longer ones are cut, in text and query alike)
ACCENTED_BELOW = 0x0530  # Latin, IPA, Greek, Cyrillic, Armenian: marks on these are dropped

# Ranges of the scripts written without spaces between words: Hangul jamo, CJK symbols (々〆),
# kana, CJK ideographs and their extensions, Hangul syllables, compatibility ideographs,
# half-width kana and Hangul.
CJK_RANGES = (
    (0x1100, 0x11FF),
    (0x3005, 0x3007),
    (0x3040, 0x30FF),
    (0x3130, 0x318F),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA960, 0xA97F),
    (0xAC00, 0xD7AF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFFDC),
    (0x20000, 0x3134F),
)


class QueryError(ValueError):
    """A query that cannot be searched for; the message says why, for people."""


def is_cjk(ch: str) -> bool:
    """Say whether a character belongs to a script written without spaces."""
    code = ord(ch)
    return any(low <= code <= high for low, high in CJK_RANGES)


@functools.lru_cache(maxsize=65536)
def fold(ch: str) -> str:
    """Return what one character is worth to search: without accents or case, maybe empty."""
    decomposed = unicodedata.normalize("NFKD", ch)
    if decomposed and ord(decomposed[0]) < ACCENTED_BELOW:
        decomposed = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", decomposed).casefold()


SEPARATOR, WORD, CJK, MARK = 0, 1, 2, 3
ASCII_WORD = re.compile(r"[A-Za-z0-9]+")


@functools.lru_cache(maxsize=65536)
def _kind(ch: str) -> tuple[int, str]:
    """Return what a character is to the tokenizer, and its folded form."""
    category = unicodedata.category(ch)[0]
    if category not in "LNM":
        return SEPARATOR, ""
    if category == "M":
        return MARK, fold(ch)
    return (CJK if is_cjk(ch) else WORD), fold(ch)


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """A term of a text and where it stands in it: [start, end) in code points."""

    term: str
    start: int
    end: int


def _scan(text: str) -> list[tuple[str, int, int]]:
    """Split a text into (term, start, end): words, and CJK stretches as pairs of characters.

    A word is a run of letters, digits and marks; a mark stays with the character before it.
    """
    found: list[tuple[str, int, int]] = []
    word: list[str] = []  # the folded characters of the word being read
    word_start = 0
    cjk: list[tuple[str, int, int]] = []  # the CJK stretch being read: (folded, start, end)

    def end_word(at: int) -> None:
        if word:
            term = "".join(word)
            if term:
                found.append((term[:TERM_MAX], word_start, at))
            word.clear()

    def end_cjk() -> None:
        if len(cjk) == 1:
            found.append(cjk[0])
        for (a, at, _), (b, _, bt) in zip(cjk, cjk[1:], strict=False):
            found.append((a + b, at, bt))
        cjk.clear()

    previous = SEPARATOR
    for i, ch in enumerate(text):
        kind, folded = _kind(ch)
        if kind == MARK:
            kind = previous if previous != SEPARATOR else WORD
            if kind == CJK and cjk:
                a, at, _ = cjk[-1]
                cjk[-1] = (a + folded, at, i + 1)
                continue
        if kind != CJK and cjk:
            end_cjk()
        if kind != WORD and previous == WORD:
            end_word(i)
        if kind == WORD:
            if previous != WORD:
                word_start = i
            if folded:
                word.append(folded)
        elif kind == CJK and folded:
            cjk.append((folded, i, i + 1))
        previous = kind
    end_cjk()
    if previous == WORD:
        end_word(len(text))
    return found


def tokens(text: str) -> list[Token]:
    """Split a text into its search terms, in order, with their places in the text."""
    return [Token(*t) for t in _scan(text)]


def terms(text: str) -> list[str]:
    """Return a text's search terms, in order (repeats kept: phrases need the order)."""
    if text.isascii():  # the common case, quickly: the same terms as _scan makes
        return [w.lower()[:TERM_MAX] for w in ASCII_WORD.findall(text)]
    return [t[0] for t in _scan(text)]


def index_text(text: str) -> str:
    """Return the terms as one string of space-separated words, as SQLite's index keeps them."""
    return " ".join(terms(text))


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: phrases that must all match (a word is a phrase of its terms)."""

    phrases: tuple[tuple[str, ...], ...] = ()
    prefix: str | None = None  # `deplo*`: some term starts with this
    excluded: tuple[tuple[str, ...], ...] = ()
    author: str | None = None  # from:login
    room: str | None = None  # in:slug

    def words(self) -> set[str]:
        """Return the terms a result is highlighted by."""
        return {t for p in self.phrases for t in p}


def parse(q: str) -> Query:
    """Read a query: words, "quoted phrases", -excluded, from:login, in:room, prefix*.

    Lenient where it can be (an unbalanced quote runs to the end); raise QueryError otherwise.
    """
    if len(q) > QUERY_MAX:
        raise QueryError(f"Use at most {QUERY_MAX} characters.")
    phrases: list[tuple[str, ...]] = []
    excluded: list[tuple[str, ...]] = []
    prefix: str | None = None
    author = room = None
    for negative, quoted, raw in _pieces(q):
        if not quoted and not negative:
            key, sep, value = raw.partition(":")
            if sep and key.lower() in ("from", "in") and value:
                if key.lower() == "from":
                    author = value.lstrip("@")
                else:
                    room = value.lstrip("#")
                continue
        star = not quoted and raw.endswith("*")
        found = tuple(terms(raw))
        if not found:
            continue
        if star and not negative and prefix is None:
            *rest, last = found
            prefix = last
            if rest:
                phrases.append(tuple(rest))
            continue
        (excluded if negative else phrases).append(found)
    count = sum(len(p) for p in phrases + excluded) + (prefix is not None)
    if count > TERMS_MAX:
        raise QueryError(f"Use at most {TERMS_MAX} words.")
    if not phrases and prefix is None:
        raise QueryError("Give at least one word to look for.")
    return Query(tuple(phrases), prefix, tuple(excluded), author, room)


def _pieces(q: str) -> list[tuple[bool, bool, str]]:
    """Split a query into (excluded, quoted, text) pieces."""
    pieces: list[tuple[bool, bool, str]] = []
    i, n = 0, len(q)
    while i < n:
        if q[i].isspace():
            i += 1
            continue
        negative = q[i] == "-" and i + 1 < n and not q[i + 1].isspace()
        if negative:
            i += 1
        if q[i] == '"':
            close = q.find('"', i + 1)
            end = n if close < 0 else close
            pieces.append((negative, True, q[i + 1 : end]))
            i = end + 1
            continue
        j = i
        while j < n and not q[j].isspace() and q[j] != '"':
            j += 1
        pieces.append((negative, False, q[i:j]))
        i = j
    return pieces


def contains(haystack: list[str], phrase: tuple[str, ...]) -> bool:
    """Say whether the phrase's terms stand in the haystack side by side, in order."""
    size = len(phrase)
    first = phrase[0]
    return any(
        haystack[i] == first and tuple(haystack[i : i + size]) == phrase
        for i in range(len(haystack) - size + 1)
    )


def matches(query: Query, text: str) -> bool:
    """Say whether a text matches the query's words, phrases, prefix and exclusions."""
    found = terms(text)
    if query.prefix is not None and not any(t.startswith(query.prefix) for t in found):
        return False
    return all(contains(found, p) for p in query.phrases) and not any(
        contains(found, p) for p in query.excluded
    )


def highlights(query: Query, text: str) -> list[tuple[int, int]]:
    """Return the [start, end) spans of the text to highlight, in UTF-16 code units, merged."""
    words = query.words()
    spans = sorted(
        (t.start, t.end)
        for t in tokens(text)
        if t.term in words or (query.prefix is not None and t.term.startswith(query.prefix))
    )
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(_utf16(text, s), _utf16(text, e)) for s, e in merged]


def _utf16(text: str, index: int) -> int:
    """Return where code point `index` of the text falls in UTF-16 (what JavaScript counts)."""
    return index + sum(1 for ch in text[:index] if ord(ch) > 0xFFFF)


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A page of search results, newest first; `before` asks for the next page."""

    messages: list[Message]
    has_more: bool
    before: str | None


class Search(abc.ABC):
    """Search over the messages of the rooms a person may see."""

    @abc.abstractmethod
    async def messages(
        self, user: str, query: Query, room: str | None, before: str | None, limit: int
    ) -> Found:
        """Return up to `limit` matching messages visible to `user` (in `room` only if given).

        `user` is the searcher's login: open rooms and the private and direct rooms they are
        a member of are searched. `before` is a cursor from an earlier page; raise QueryError
        when it is not one. `query.author` is an exact stored login.
        """
