"""Logging: plain text lines (the default) or, with LOG_FORMAT=json, one JSON object per line.

A JSON line has `time`, `level`, `logger` and `event` (the message), and, while a request runs,
its `request_id` and the `user` (login) who made it. The access log adds `route` (the route's
name, never the path: a path may hold an invitation token), `method`, `status`, `duration_ms`
and `bytes`. No header, cookie, query or form field is ever logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from common.context import CURRENT_REQUEST, REQUEST_INFO_KEY, logged_path, route_name

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Record attributes a JSON line carries when present (set by `extra=` or RequestContext).
FIELDS = ("request_id", "user", "route", "method", "status", "duration_ms", "bytes")


class RequestContext(logging.Filter):
    """Give each record the running request's id and user (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = CURRENT_REQUEST.get()
        if not hasattr(record, "request_id"):
            record.request_id = info.id if info is not None else None
        if not hasattr(record, "user"):
            record.user = info.user if info is not None else None
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class _AccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        """Say whether a line would be written (not below INFO), so aiohttp skips the work."""
        return self.logger.isEnabledFor(logging.INFO)


class TextAccessLogger(_AccessLogger):
    """Log each answered request as a line of text: the route's pattern stands for its path.

    aiohttp's own `%r` would log the path and query, and with them an invitation's token
    (`/join/<token>`) or a private room's slug.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the line for one request (its time in seconds, arrival to last byte)."""
        info = request.get(REQUEST_INFO_KEY)
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.6fs %s',
            request.remote,
            request.method,
            logged_path(request),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            info.id if info is not None else "-",
        )


class JsonAccessLogger(_AccessLogger):
    """Log each answered request as `event: "request"` with its route, status and duration."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Write the line for one request (its time in seconds, arrival to last byte)."""
        info = request.get(REQUEST_INFO_KEY)
        self.logger.info(
            "request",
            extra={
                "request_id": info.id if info is not None else None,
                "user": info.user if info is not None else None,
                "route": route_name(request),
                "method": request.method,
                "status": response.status,
                "duration_ms": round(time * 1000, 2),
                "bytes": response.body_length,
            },
        )


def configure_logging(level: str, log_format: str) -> None:
    """Send the app's log records to stderr, as text or JSON lines, with the request's context."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestContext())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)


def access_log_options(log_format: str) -> dict[str, Any]:
    """Return `web.run_app`'s access log arguments for the log format."""
    return {"access_log_class": JsonAccessLogger if log_format == "json" else TextAccessLogger}
