"""The chat's metrics read at scrape time: open sockets, frames delivered, Redis."""

from __future__ import annotations

from aiohttp import web

from chat.broker import BROKER_KEY
from chat.hub import HUB_KEY
from common.metrics import METRICS_KEY


def watch_chat(app: web.Application) -> None:
    """Report the hub's sockets and frames, and the broker's Redis connection, on each scrape."""
    metrics, hub, broker = app[METRICS_KEY], app[HUB_KEY], app[BROKER_KEY]
    metrics.sample(
        "chat_open_sockets",
        "WebSockets open on this process (in their room, past the greeting's registration).",
        lambda: sum(len(members) for members in hub.rooms.values()),
        labels={"process": metrics.process},
    )
    metrics.sample(
        "chat_frames_delivered",
        "Frames handed to sockets: one per frame and socket, written or queued.",
        lambda: hub.frames_delivered,
        counter=True,
    )

    def redis_connected() -> float | None:
        status = broker.status().get("redis")
        return None if status is None else float(status == "ok")

    metrics.sample(
        "chat_redis_connected",
        "1 while this process is connected to Redis, 0 in an outage (only with REDIS_URL).",
        redis_connected,
    )
