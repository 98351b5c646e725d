"""Whole numbers from clients: ASCII digits only, bounded so every store can hold them."""

from __future__ import annotations

# JavaScript's Number.MAX_SAFE_INTEGER: the page does arithmetic on seqs and revs, and both
# stores (SQLite INTEGER, MongoDB int64, < 2**63) hold it with room to spare.
MAX_WHOLE = 2**53 - 1
_DIGITS = frozenset("0123456789")


def whole_number(raw: str) -> int | None:
    """Return raw as an int in 0..MAX_WHOLE, or None unless it is 1 to 16 ASCII digits."""
    # int() would also take " 7", "+7", "1_000" and "١٢٣" (Arabic-Indic digits): refused here.
    if not raw or len(raw) > 16 or not _DIGITS.issuperset(raw):
        return None
    value = int(raw)
    return value if value <= MAX_WHOLE else None
