"""Load generator: N WebSocket clients on raw asyncio sockets (cheaper than aiohttp's client).

Speaks just enough of RFC 6455: the upgrade, masked text frames out, unmasked frames in, pong.
Senders post `message` frames whose text carries the send time; every receiver measures the time
to receipt. Prints `connected` when all sockets are open, waits for a line on stdin, runs the
load, prints one JSON report, then closes its sockets on the next line (or end) of stdin: the
caller reads the server's CPU time in between, so connecting and closing are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from array import array

TEXT_MARK = b'"text":"t'


class Client(asyncio.Protocol):
    """One WebSocket client that counts message frames and records their latency."""

    def __init__(self, stats: Stats, handshake: bytes, stall: bool, wait_hello: bool) -> None:
        self.stats = stats
        self.handshake = handshake
        self.stall = stall
        # With the product a socket is in the room once `hello` arrives, not at the 101.
        self.wait_hello = wait_hello
        self.buf = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.closed_with: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.handshake)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.upgraded = True
            if not self.wait_hello:
                self.opened()
        now = time.monotonic_ns()
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if n - pos < head + length:
                break
            start = pos + head
            if opcode == 1 and not self.open.done():
                if buf.find(b'"type":"hello"', start, start + length) >= 0:
                    self.opened()
            elif opcode == 1:
                mark = buf.find(TEXT_MARK, start, start + length)
                if mark >= 0:
                    digits = mark + len(TEXT_MARK)
                    end = buf.find(b'"', digits, start + length)
                    self.stats.received += 1
                    self.stats.latency.append((now - int(buf[digits:end])) / 1e6)
            elif opcode == 9 and self.transport is not None:
                self.transport.write(masked(0xA, bytes(buf[start : start + length])))
            elif opcode == 8:
                self.closed_with = int.from_bytes(buf[start : start + 2], "big") if length else 1005
            pos = start + length
        if pos:
            del buf[:pos]

    def opened(self) -> None:
        self.open.set_result(None)
        if self.stall and self.transport is not None:
            self.transport.pause_reading()  # a client that stops reading

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(exc or ConnectionError("closed"))
        self.stats.lost += 1

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked(0x1, text.encode()))


class Stats:
    """What the receivers saw."""

    def __init__(self) -> None:
        self.received = 0
        self.lost = 0
        self.latency = array("d")


def masked(opcode: int, payload: bytes) -> bytes:
    """Encode a client frame (clients must mask)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    body = int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return head + key + (body.to_bytes(n, "big") if n else b"")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


async def connect(
    host: str, port: int, path: str, cookie: str, stats: Stats, stall: bool
) -> Client:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Origin: http://{host}:{port}",
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    handshake = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if stall:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, (host, port)), 10)
    _, client = await loop.create_connection(
        lambda: Client(stats, handshake, stall, wait_hello=bool(cookie)), sock=sock
    )
    await asyncio.wait_for(client.open, 10)
    return client


async def run(args: argparse.Namespace) -> None:
    cookies = json.loads(args.cookies) if args.cookies else [""]
    stats = Stats()
    idle = Stats()  # the stalled client's frames are not counted
    clients: list[Client] = []
    for start in range(0, args.sockets, 50):
        batch = range(start, min(start + 50, args.sockets))
        clients += await asyncio.gather(
            *(connect(args.host, args.port, args.path, cookies[i % len(cookies)], stats, False)
              for i in batch)
        )  # fmt: skip
    stalled = None
    if args.stall:
        stalled = await connect(args.host, args.port, args.path, cookies[0], idle, True)
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    senders = clients[: max(1, args.senders)]
    run_id = os.urandom(4).hex()  # client_ids are unique per sender: never re-sends of a past run
    interval = 1.0 / args.rate
    sent = 0
    started = time.monotonic()
    next_at = started
    deadline = started + args.duration
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if now < next_at:
            await asyncio.sleep(next_at - now)
            continue
        sender = senders[sent % len(senders)]
        sender.send_text(
            json.dumps(
                {
                    "type": "message",
                    "text": f"t{time.monotonic_ns()}",
                    "client_id": f"{run_id}-{sent}",
                }
            )
        )
        sent += 1
        next_at += interval
    expected = sent * len(clients)
    grace = time.monotonic() + args.grace
    while stats.received < expected and time.monotonic() < grace:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    lat = sorted(stats.latency)
    report = {
        "sockets": len(clients),
        "sent": sent,
        "expected": expected,
        "received": stats.received,
        "delivery": stats.received / expected if expected else 1.0,
        "frames_per_s": stats.received / elapsed,
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "lost": stats.lost,
        "stalled_closed_with": stalled.closed_with if stalled else None,
    }
    print(json.dumps(report), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for client in clients + ([stalled] if stalled else []):
        if client.transport is not None:
            client.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--cookies", default="", help="JSON list of Cookie header values")
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=40.0, help="messages per second, in all")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=3.0)
    parser.add_argument("--stall", action="store_true", help="add one client that stops reading")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
