"""Keep bot keys out of log messages and tracebacks: the key is part of the bot API's URLs.

The access log names a route's pattern (`/api/bots/{key}/...`), never its path: common/logs.py.
"""

from __future__ import annotations

import logging
import re

BOT_PATH_PREFIX = "/api/bots/"
REDACTED = "<key>"
_KEY_IN_PATH = re.compile(r"(/api/bots/)[^/\s?\"']+")


def redact(text: str) -> str:
    """Replace every bot key in a path, a request line or a log message by `<key>`."""
    if BOT_PATH_PREFIX not in text:
        return text
    return _KEY_IN_PATH.sub(r"\g<1>" + REDACTED, text)


class RedactKeys(logging.Filter):
    """A handler filter that redacts bot keys from every record it writes (tracebacks too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message without keys; always let it through."""
        message = record.getMessage()
        if BOT_PATH_PREFIX in message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
