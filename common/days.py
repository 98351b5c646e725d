"""Day separators of the chat page as the server renders them, in UTC.

static/js/grouping.js draws them again in the reader's time zone; rendering them (and the groups)
on the server too means the page does not shift when the script runs, wherever the two agree.
"""

from __future__ import annotations

import datetime as dt


def day_key(t: dt.datetime) -> str:
    """Return a day's key as grouping.js writes it: year-month-day, without leading zeros."""
    d = t.astimezone(dt.UTC).date()
    return f"{d.year}-{d.month}-{d.day}"


def day_label(t: dt.datetime) -> str:
    """Return "Today", "Yesterday" or the date ("Tuesday 1 December 2026") of a UTC day."""
    d = t.astimezone(dt.UTC).date()
    today = dt.datetime.now(dt.UTC).date()
    if d == today:
        return "Today"
    if d == today - dt.timedelta(days=1):
        return "Yesterday"
    return f"{d:%A} {d.day} {d:%B} {d.year}"
