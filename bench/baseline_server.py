"""The floor: a bare aiohttp broadcast loop (no auth, no storage), same frames as the product."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json

from aiohttp import WSMsgType, web

SOCKETS = web.AppKey("sockets", set)
SEQ = web.AppKey("seq", itertools.count)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    """Broadcast every text frame to every socket with `await ws.send_str`, one by one."""
    ws = web.WebSocketResponse(compress=False)  # the product's compression setting
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            seq = next(request.app[SEQ])
            now = dt.datetime.now(dt.UTC)
            frame = json.dumps(
                {
                    "type": "message",
                    "seq": seq,
                    "id": str(seq),
                    "room": "general",
                    "user": "bench",
                    "text": data["text"],
                    "created_at": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "client_id": data["client_id"],
                    "edited_at": None,  # the product's message object has these two since rooms
                    "deleted": False,
                },
                separators=(",", ":"),
            )
            for other in list(sockets):
                try:
                    await other.send_str(frame)
                except ConnectionError:
                    pass
    finally:
        sockets.discard(ws)
    return ws


def main() -> None:
    """Serve on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app[SOCKETS] = set()
    app[SEQ] = itertools.count(1)
    app.router.add_get("/ws", ws_handler)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
