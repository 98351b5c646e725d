"""Keep bot keys out of logs: the key is part of the bot API's URLs, and logs print paths."""

from __future__ import annotations

import logging
import re
from typing import Any, cast

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

BOT_PATH_PREFIX = "/api/bots/"
REDACTED = "<key>"
_KEY_IN_PATH = re.compile(r"(/api/bots/)[^/\s?\"']+")


def redact(text: str) -> str:
    """Replace every bot key in a path, a request line or a log message by `<key>`."""
    if BOT_PATH_PREFIX not in text:
        return text
    return _KEY_IN_PATH.sub(r"\g<1>" + REDACTED, text)


class _RedactedRequest:
    """A finished request as the access log sees it, its path without the key."""

    def __init__(self, request: BaseRequest) -> None:
        self._request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    @property
    def path_qs(self) -> str:
        # The decoded path: an escaped one (`/api/%62ots/...`) routes to the same view.
        query = self._request.query_string
        return redact(self._request.path) + (f"?{query}" if query else "")

    @property
    def path(self) -> str:
        return redact(self._request.path)

    @property
    def raw_path(self) -> str:
        return redact(self._request.raw_path)


class RedactingAccessLogger(AbstractAccessLogger):
    """The access log (aiohttp's format) with bot keys left out of the request line."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._plain = AccessLogger(logger, log_format)

    @property
    def enabled(self) -> bool:
        """Say whether the log line would be written at all."""
        return self._plain.enabled

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Write the access log line of a request, its path redacted."""
        if BOT_PATH_PREFIX in request.path or BOT_PATH_PREFIX in request.raw_path:
            # A proxy, not request.clone(): a request whose body was read cannot be cloned.
            request = cast(BaseRequest, _RedactedRequest(request))
        self._plain.log(request, response, time)


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
