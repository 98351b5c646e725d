"""Crowd generator: many idle WebSocket clients in many rooms, from several loopback addresses.

Built on `bench/loadgen.py`'s raw-socket client and epoll loop. Reads a plan (a JSON file: the
session cookies, and one `[cookie index, room]` per socket), opens every socket in batches from
source addresses 127.0.0.2, 127.0.0.3, ... (bound before connecting, so each address has its
own ephemeral ports), and answers the server's pings. Then, on stdin:

    connected {...}      printed once every socket is open (the hello arrived)
    <line>               idle: it answers pings until the next line
    send N RATE          N messages at RATE/s from the big room's senders; one JSON report
    <line or end>        close every socket and exit

Only the big room's sockets count message frames (all of them must get every message); any
message frame reaching another room's socket is counted as a leak.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import OPEN_TIMEOUT, Client, Loop, Stats, percentile  # noqa: E402

CONNECT_BATCH = 100  # sockets connecting at once: within aiohttp's listen backlog (128)
PONG_OPCODE = 0x8A


class CountingSocket(socket.socket):
    """A socket that counts the pongs written through it (one per ping answered)."""

    pongs = 0  # class-wide: the count over every socket

    def sendall(self, data: bytes, flags: int = 0) -> None:  # type: ignore[override]
        """Send all of data, counting it when it is a pong."""
        if data[:1] == bytes((PONG_OPCODE,)):
            CountingSocket.pongs += 1
        super().sendall(data, flags)


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise this process's descriptor limit to the hard limit; fail when that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"the hard limit of open files is {hard}, below the {needed} needed: "
            "raise it (ulimit -Hn, or LimitNOFILE= in the service's unit) and run again"
        )
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class CrowdLoop(Loop):
    """The epoll loop, with sockets opened from given source addresses without blocking."""

    def open(
        self, source: str, host: str, port: int, path: str, cookie: str, stats: Stats
    ) -> Client:
        """Bind to source, connect (non-blocking) and send the upgrade when connected."""
        sock = CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
        # The port is chosen at connect(), by the 4-tuple, not at bind(): each source address
        # then has the whole ephemeral range to itself for this server's address and port.
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.settimeout(OPEN_TIMEOUT)
        sock.connect((host, port))
        sock.settimeout(None)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://{host}:{port}\r\nCookie: {cookie}\r\n\r\n"
        )
        sock.sendall(request.encode())
        client = Client(sock, stats, wait_hello=True)
        self.clients[sock.fileno()] = client
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        return client


def run(args: argparse.Namespace) -> None:
    plan = json.loads(Path(args.plan).read_text())
    cookies: list[str] = plan["cookies"]
    sockets: list[tuple[int, str]] = [(int(c), str(r)) for c, r in plan["sockets"]]
    big_room: str = plan["big_room"]
    limits = raise_nofile(len(sockets) + 64)
    sources = [f"127.0.0.{2 + i}" for i in range(args.sources)]
    big, rest = Stats(), Stats()
    loop = CrowdLoop()
    clients: list[Client] = []
    in_big: list[Client] = []
    open_ms: list[float] = []
    started = time.monotonic()
    for start in range(0, len(sockets), CONNECT_BATCH):
        t0 = time.monotonic()
        batch = []
        for i in range(start, min(start + CONNECT_BATCH, len(sockets))):
            user, room = sockets[i]
            stats = big if room == big_room else rest
            client = loop.open(
                sources[i % len(sources)], args.host, args.port,
                f"{args.path}?room={room}", cookies[user], stats,
            )  # fmt: skip
            batch.append(client)
            if room == big_room:
                in_big.append(client)
        loop.until(lambda batch=batch: all(c.opened for c in batch), OPEN_TIMEOUT)
        if not all(c.opened for c in batch):
            raise TimeoutError(f"sockets {start}..{start + len(batch)} did not open in time")
        open_ms.append((time.monotonic() - t0) * 1000)
        clients += batch
    opening = {
        "sockets": len(clients),
        "sources": len(sources),
        "open_s": time.monotonic() - started,
        "batch": CONNECT_BATCH,
        "batch_p50_ms": percentile(sorted(open_ms), 50),
        "batch_max_ms": max(open_ms),
        "nofile": limits[0],
        "lost": big.lost + rest.lost,
    }
    print("connected " + json.dumps(opening), flush=True)
    pongs = CountingSocket.pongs
    loop.wait_line()  # idle: pings are answered meanwhile
    idle = {"pongs": CountingSocket.pongs - pongs, "lost": big.lost + rest.lost}
    print(json.dumps(idle), flush=True)
    loop.wait_line()
    assert loop.line is not None
    _, count, rate = loop.line.split()
    n, interval = int(count), 1.0 / float(rate)
    senders = in_big[: args.senders]
    run_id = os.urandom(4).hex()
    next_at = time.monotonic()
    for sent in range(n):
        while (now := time.monotonic()) < next_at:
            loop.poll(next_at - now)
        senders[sent % len(senders)].send_text(
            json.dumps(
                {
                    "type": "message",
                    "text": f"t{time.monotonic_ns()}",
                    "client_id": f"{run_id}-{sent}",
                }
            )
        )
        next_at += interval
    expected = n * len(in_big)
    loop.until(lambda: big.received >= expected, args.grace)
    lat = sorted(big.latency)
    report = {
        "receivers": len(in_big),
        "sent": n,
        "expected": expected,
        "received": big.received,
        "delivery": big.received / expected if expected else 1.0,
        "leaked": rest.received,
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else float("nan"),
        "lost": big.lost + rest.lost,
        "pongs": CountingSocket.pongs,
    }
    print(json.dumps(report), flush=True)
    loop.wait_line()
    for client in clients:
        client.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--plan", required=True, help="JSON file: cookies, sockets, big_room")
    parser.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.2...")
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--grace", type=float, default=5.0)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
