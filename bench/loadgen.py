"""Load generator: N WebSocket clients on raw sockets and one epoll loop (no asyncio, no aiohttp).

Speaks just enough of RFC 6455: the upgrade, masked text frames out, unmasked frames in, pong.
Senders post `message` frames whose text carries the send time; every receiver measures the time
to receipt. Prints `connected` when all sockets are open, waits for a line on stdin, runs the
load, prints one JSON report, then closes its sockets on the next line (or end) of stdin: the
caller reads the server's CPU time in between, so connecting and closing are not counted.

Receiving is most of its work (one read per socket per frame burst), so it runs a bare epoll
loop: asyncio's transports cost about twice the CPU per read, and with 1000 sockets the
generator, not the server, ran out of CPU first.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import struct
import sys
import time
from array import array
from collections.abc import Callable

TEXT_MARK = b'"text":"t'
CONNECT_BATCH = 50  # sockets opened at once: within the server's listen backlog
OPEN_TIMEOUT = 10.0  # seconds for a batch to be upgraded (and greeted)
# Reads go into one buffer made once: a fresh 256 KiB bytes object per read (what asyncio's
# transports do) is a fresh mmap, page faults and munmap each time, most of the CPU per frame.
READ_SIZE = 262144


class Stats:
    """What the receivers saw."""

    def __init__(self) -> None:
        self.received = 0
        self.lost = 0
        self.latency = array("d")


class Client:
    """One WebSocket client that counts message frames and records their latency."""

    __slots__ = ("sock", "stats", "wait_hello", "buf", "upgraded", "opened", "closed_with")

    def __init__(self, sock: socket.socket, stats: Stats, wait_hello: bool) -> None:
        self.sock = sock
        self.stats = stats
        # With the product a socket is in the room once `hello` arrives, not at the 101.
        self.wait_hello = wait_hello
        self.buf = bytearray()
        self.upgraded = False
        self.opened = False
        self.closed_with: int | None = None

    def feed(self, data: bytes | memoryview) -> None:
        """Take bytes from the server: the upgrade response, then frames."""
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(status.decode(errors="replace"))
            self.upgraded = True
            self.opened = not self.wait_hello
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
            if opcode == 1 and not self.opened:
                if buf.find(b'"type":"hello"', start, start + length) >= 0:
                    self.opened = True
            elif opcode == 1:
                mark = buf.find(TEXT_MARK, start, start + length)
                if mark >= 0:
                    digits = mark + len(TEXT_MARK)
                    end = buf.find(b'"', digits, start + length)
                    self.stats.received += 1
                    self.stats.latency.append((now - int(buf[digits:end])) / 1e6)
            elif opcode == 9:
                self.sock.sendall(masked(0xA, bytes(buf[start : start + length])))
            elif opcode == 8:
                self.closed_with = int.from_bytes(buf[start : start + 2], "big") if length else 1005
            pos = start + length
        if pos:
            del buf[:pos]

    def send_text(self, text: str) -> None:
        self.sock.sendall(masked(0x1, text.encode()))


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


class Loop:
    """The epoll loop every client's reads go through, and stdin's lines."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.clients: dict[int, Client] = {}
        self.stdin = sys.stdin.fileno()  # watched only while waiting for a line
        self.line: str | None = None  # the last line read from stdin ("" at its end)
        self.read_buffer = memoryview(bytearray(READ_SIZE))

    def connect(
        self, host: str, port: int, path: str, cookie: str, stats: Stats, rcvbuf: int = 0
    ) -> Client:
        """Open a socket and send the upgrade request; `poll` takes the answer."""
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
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before the handshake
        sock.settimeout(10)
        sock.connect((host, port))
        sock.settimeout(None)  # blocking sends (small frames); reads never block (MSG_DONTWAIT)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        client = Client(sock, stats, wait_hello=bool(cookie))
        self.clients[sock.fileno()] = client
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        return client

    def stop_reading(self, client: Client) -> None:
        """Leave a client's frames unread: a client that stops reading."""
        self.epoll.unregister(client.sock.fileno())

    def poll(self, timeout: float) -> None:
        """Read whatever is ready within timeout seconds."""
        for fd, _ in self.epoll.poll(max(0.0, timeout)):
            client = self.clients.get(fd)
            if client is None:
                self.line = sys.stdin.readline()
                self.epoll.unregister(self.stdin)
                continue
            try:
                n = client.sock.recv_into(self.read_buffer, READ_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n:
                client.feed(self.read_buffer[:n])
            else:
                self.epoll.unregister(fd)
                del self.clients[fd]
                client.stats.lost += 1
                if not client.opened:
                    raise ConnectionError("closed before it was open")

    def until(self, done: Callable[[], bool], timeout: float) -> None:
        """Poll until done() is true or timeout seconds pass."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.poll(min(0.05, deadline - time.monotonic()))

    def wait_line(self) -> None:
        """Serve the sockets (pings, stray frames) until a line or the end of stdin."""
        self.line = None
        self.epoll.register(self.stdin, select.EPOLLIN)
        while self.line is None:
            self.poll(1.0)


def run(args: argparse.Namespace) -> None:
    cookies = json.loads(args.cookies) if args.cookies else [""]
    stats = Stats()
    idle = Stats()  # the stalled client's frames are not counted
    loop = Loop()
    clients: list[Client] = []
    for start in range(0, args.sockets, CONNECT_BATCH):
        batch = [
            loop.connect(args.host, args.port, args.path, cookies[i % len(cookies)], stats)
            for i in range(start, min(start + CONNECT_BATCH, args.sockets))
        ]
        loop.until(lambda batch=batch: all(c.opened for c in batch), OPEN_TIMEOUT)
        if not all(c.opened for c in batch):
            raise TimeoutError("sockets did not open in time")
        clients += batch
    stalled = None
    if args.stall:
        stalled = loop.connect(args.host, args.port, args.path, cookies[0], idle, rcvbuf=4096)
        loop.until(lambda: stalled is not None and stalled.opened, OPEN_TIMEOUT)
        loop.stop_reading(stalled)
    print("connected", flush=True)
    loop.wait_line()
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
            loop.poll(min(next_at, deadline) - now)
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
    loop.until(lambda: stats.received >= expected, args.grace)
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
    loop.wait_line()
    for client in clients + ([stalled] if stalled else []):
        client.sock.close()


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
    run(args)


if __name__ == "__main__":
    main()
