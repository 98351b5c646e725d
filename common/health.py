"""Health checks: `/healthz` (the process answers, with event-loop lag) and `/readyz`."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from common.pages import Page
from common.tasks import running

# Seconds between event-loop lag probes; the last minute of them is kept. Each probe wakes an
# otherwise idle loop, and on a VM such a wake-up runs cold: ~0.3 ms of CPU here, so ten a second
# were 2.5% of the server's CPU at 200 sockets and 40 messages/s (bench/ws_fanout.py).
LAG_PROBE = 1.0

LOOP_LAG_KEY = web.AppKey("loop_lag", collections.deque)  # seconds late, last minute
# What /readyz asks: each check returns its part of the report ({"database": "ok"}, ...), and
# the chat is ready when every part says "ok".
ReadyCheck = Callable[[], Awaitable[dict[str, str]]]
READY_CHECKS_KEY = web.AppKey("ready_checks", list[ReadyCheck])


def setup_health(app: web.Application) -> None:
    """Keep the lag probe running and start with no readiness checks (others add theirs)."""
    app[LOOP_LAG_KEY] = collections.deque(maxlen=round(60 / LAG_PROBE))
    app[READY_CHECKS_KEY] = []
    app.cleanup_ctx.append(loop_lag_ctx)


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    """Measure how late the event loop wakes up, for /healthz (a stalled loop stalls everyone)."""
    lags = app[LOOP_LAG_KEY]

    async def measure() -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE)
            lags.append(max(0.0, loop.time() - started - LAG_PROBE))

    async with running(measure()):
        yield


class Healthz(Page):
    """Liveness: the process answers; the database is not consulted. Reports event-loop lag."""

    async def get(self) -> web.Response:
        lags = sorted(self.request.app[LOOP_LAG_KEY])
        lag = {
            "p50": round(lags[len(lags) // 2] * 1000, 2) if lags else 0.0,
            "p99": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 2)
            if lags
            else 0.0,
            "max": round(lags[-1] * 1000, 2) if lags else 0.0,
        }
        return web.json_response({"status": "ok", "loop_lag_ms": lag})


class Readyz(Page):
    """Readiness: every registered check (the database, Redis when used) says ok, else 503."""

    async def get(self) -> web.Response:
        report = {"status": "ready"}
        for check in self.request.app[READY_CHECKS_KEY]:
            report.update(await check())
        if any(value != "ok" for key, value in report.items() if key != "status"):
            report["status"] = "unavailable"
        return web.json_response(report, status=200 if report["status"] == "ready" else 503)
