"""What both `auth/` and `chat/` use: pages, forms and CSRF, rate limits, health checks, headers.

Nothing here imports `auth` or `chat`.
"""

from __future__ import annotations

from aiohttp import web

from storage.base import Session

# The request's live login session, set by `middlewares.current_user` (absent: not logged in).
SESSION_KEY = web.RequestKey("session", Session)
