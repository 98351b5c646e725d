"""Reconnect-storm clients: N WebSocket clients on raw sockets and one epoll loop, as the page.

Driven by `bench/reconnect.py`, which passes a JSON plan on the command line (a file's path):
ports, source addresses, one entry per socket (cookie, room, home port) and which sockets send.
Each client behaves as the chat page does (static/js/socket.js, static/js/outbox.js):

- it connects with `after=<last seq>&rev=<last rev>`, and on any close but 1008 reconnects after
  `min(30000, 500 * 2 ** min(attempt, 6)) * (0.5 + random() / 2)` ms, `attempt` counting the
  failed connections since the last `hello` (1 for the first retry: 0.5-1 s, then 1-2, 2-4, ...,
  15-30 s); a `seq` past the next one is a gap, and the page reconnects at once;
- a sender keeps each message it sent until its own copy comes back (the acknowledgement), sends
  every pending one again after each `hello` with the same `client_id`, and again after
  `retry_after` (or 3 s) when refused with `unavailable` or `rate_limited`; a message written
  while the socket is not open waits for the next `hello`.

Unlike the page, nothing is deduplicated before counting: every `message` frame is counted as
it arrives. Per socket, a `seq` at or below the last one is a duplicate (a re-send's
acknowledgement, which the protocol sends to its sender alone, is counted apart), a `seq` past the
next one a gap (reconnect, as the page does); at the end, every `seq` of the room after the one
the socket first saw must have arrived, else it is lost.

Prints `connected` when every socket has its `hello`, starts sending on the next stdin line,
prints `resumed <n> <t>` whenever every socket that closed is resumed again (`hello` and the
replay up to its `last_seq`), stops sending on the next line, waits for the acknowledgements and
for every socket to reach its room's last seq, prints one JSON report, and closes on stdin's end.
"""

from __future__ import annotations

import base64
import errno
import heapq
import json
import os
import random
import select
import socket
import sys
import time
from pathlib import Path

from loadgen import masked

READ_SIZE = 262144
CONNECT_BATCH = 50  # sockets opened at once at the start: within the server's listen backlog
OPEN_TIMEOUT = 30.0  # seconds for each batch's first connections
# The page sets no time limit: once the upgrade is answered (101) it waits for hello as long
# as it takes, and so does this client (a client that gave up would waste the work the server
# did for it, and make the storm longer). Before the 101 (connecting, or the request waiting in
# the server's queue), a connection is given up after HANDSHAKE_TIMEOUT, as a failed attempt.
HANDSHAKE_TIMEOUT = 60.0
RETRY_DEFAULT = 3.0  # seconds, the page's wait after an `unavailable` without retry_after
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the port at connect(), per destination
CLOSE_SESSION_ENDED = 1008


def backoff(attempt: int) -> float:
    """The page's reconnect delay in seconds (static/js/socket.js, scheduleReconnect)."""
    return min(30000, 500 * 2 ** min(attempt, 6)) * (0.5 + random.random() / 2) / 1000


class Outbox:
    """A sender's messages not yet acknowledged, as static/js/outbox.js keeps them."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.made = 0
        self.pending: dict[str, str] = {}  # client_id -> text
        self.acked: dict[str, int] = {}  # client_id -> seq
        self.sent: set[str] = set()  # client_ids written at least once
        self.resent: set[str] = set()  # client_ids written more than once
        self.retries: list[tuple[float, str]] = []  # (when, client_id) after a refusal


class Client:
    """One socket of the page: its connection, its place in the room, its counts."""

    __slots__ = (
        "index", "cookie", "room", "home", "port", "user", "sock", "fd", "state", "buf", "last",
        "rev", "baseline", "target", "resumed", "attempt", "due", "closed_at", "resumed_at",
        "opened_at", "connections", "failures", "duplicates", "ack_duplicates", "gaps", "resets",
        "ended", "outbox", "close_code",
    )  # fmt: skip

    def __init__(self, index: int, entry: dict[str, object]) -> None:
        self.index = index
        self.cookie = str(entry["cookie"])
        self.room = str(entry["room"])
        self.home = int(entry["port"])  # type: ignore[call-overload]
        self.port = self.home
        self.user = str(entry["user"])
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = "idle"  # idle, connecting, upgrading, open (101 seen), live (hello seen)
        self.buf = bytearray()
        self.last = 0  # highest seq received with none missing below it (the page's lastSeq)
        self.rev = 0
        self.baseline: int | None = None  # the room's last seq in the first hello
        self.target = 0  # the last hello's last_seq: resumed once `last` reaches it
        self.resumed = False
        self.attempt = 0  # failed connections since the last hello
        self.due = 0.0
        self.closed_at = 0.0
        self.resumed_at = 0.0
        self.opened_at = 0.0
        self.connections = 0
        self.failures: dict[str, int] = {}
        self.duplicates = 0
        self.ack_duplicates = 0
        self.gaps = 0
        self.resets = 0
        self.ended = False  # closed with 1008: the page would go to the login page
        self.outbox: Outbox | None = None
        self.close_code: int | None = None


class Storm:
    """Every client, one epoll loop, the senders' schedule."""

    def __init__(self, plan: dict[str, object]) -> None:
        self.ports: list[int] = list(plan["ports"])  # type: ignore[call-overload]
        self.addresses: list[str] = list(plan["addresses"])  # type: ignore[call-overload]
        self.spread = bool(plan.get("spread"))  # each attempt to a port at random (a balancer)
        self.rate = float(plan["rate"])  # type: ignore[arg-type]
        self.clients = [Client(i, e) for i, e in enumerate(plan["sockets"])]  # type: ignore[arg-type]
        run = os.urandom(3).hex()
        self.senders = [self.clients[i] for i in plan["senders"]]  # type: ignore[attr-defined]
        for n, c in enumerate(self.senders):
            c.outbox = Outbox(f"{run}-{n}")
        self.epoll = select.epoll()
        self.by_fd: dict[int, Client] = {}
        self.timers: list[tuple[float, int]] = []  # (due, client index)
        self.read_buffer = memoryview(bytearray(READ_SIZE))
        self.stdin = sys.stdin.fileno()
        self.line: str | None = None
        self.storm = False  # some socket closed since the last `resumed`
        self.unresumed: set[int] = set()
        self.room_seqs: dict[str, dict[int, str]] = {}  # room -> seq -> client_id, first seen
        self.mismatches = 0  # a seq seen with two different client_ids
        self.double_stored = 0  # one client_id acknowledged with two seqs
        self.reconnects_by_port: dict[int, int] = {}
        self.next_sweep = 0.0  # when handshakes are next checked for their timeout
        self.next_progress = 0.0  # when the storm's progress is next written to stderr

    # -- connecting ------------------------------------------------------------------------

    def connect(self, c: Client) -> None:
        """Open a non-blocking connection for the client; the loop sends the upgrade."""
        c.port = random.choice(self.ports) if self.spread and c.connections else c.home
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((self.addresses[c.index % len(self.addresses)], 0))
        sock.setblocking(False)
        c.sock, c.fd, c.state, c.buf = sock, sock.fileno(), "connecting", bytearray()
        c.opened_at = time.monotonic()
        c.close_code = None
        self.by_fd[c.fd] = c
        err = sock.connect_ex(("127.0.0.1", c.port))
        if err not in (0, errno.EINPROGRESS):
            self.fail(c, "refused")
            return
        self.epoll.register(c.fd, select.EPOLLOUT)

    def send_upgrade(self, c: Client) -> None:
        assert c.sock is not None
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.fail(c, "refused" if err == errno.ECONNREFUSED else errno.errorcode[err])
            return
        query = f"room={c.room}"
        if c.baseline is not None:  # the page's timeline is live: resume from it
            query += f"&after={c.last}&rev={c.rev}"
        host = f"127.0.0.1:{c.port}"
        request = (
            f"GET /ws?{query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"
            f"\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\nCookie: {c.cookie}\r\n\r\n"
        )
        c.sock.setblocking(True)  # small writes; reads never block (MSG_DONTWAIT)
        c.sock.settimeout(5)
        try:
            c.sock.sendall(request.encode())
        except OSError:
            self.fail(c, "reset")
            return
        c.state = "upgrading"
        self.epoll.modify(c.fd, select.EPOLLIN)

    def drop(self, c: Client) -> None:
        """Forget the client's connection."""
        if c.sock is not None:
            self.by_fd.pop(c.fd, None)
            try:
                self.epoll.unregister(c.fd)
            except (OSError, ValueError):
                pass
            c.sock.close()
        c.sock, c.fd, c.state = None, -1, "idle"

    def fail(self, c: Client, why: str) -> None:
        """A connection that never reached hello: back off as the page does."""
        c.failures[why] = c.failures.get(why, 0) + 1
        self.closed(c)

    def closed(self, c: Client) -> None:
        """The socket closed (or never opened): schedule the page's reconnect."""
        was_live = c.state == "live"
        self.drop(c)
        if c.close_code == CLOSE_SESSION_ENDED:
            c.ended = True  # the page goes to the login page: never resumed
            self.unresumed.add(c.index)
            return
        if was_live or c.resumed:
            c.closed_at = time.monotonic()
        if c.resumed:
            c.resumed = False
            self.unresumed.add(c.index)
            self.storm = True
        c.attempt += 1
        c.due = time.monotonic() + backoff(c.attempt)
        heapq.heappush(self.timers, (c.due, c.index))

    def reconnect_now(self, c: Client) -> None:
        """A gap: the page closes and reconnects at once (reconnectNow), from its lastSeq."""
        c.gaps += 1
        if c.resumed:
            c.resumed = False
            self.unresumed.add(c.index)
            self.storm = True
            c.closed_at = time.monotonic()
        if c.sock is not None:
            try:
                c.sock.sendall(masked(0x8, (1000).to_bytes(2, "big")))
            except OSError:
                pass
        self.drop(c)
        self.connect(c)

    # -- frames ----------------------------------------------------------------------------

    def feed(self, c: Client, data: memoryview) -> None:
        buf, sock = c.buf, c.sock
        buf += data
        if c.state == "upgrading":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[9:12])
            del buf[: end + 4]
            if status != b"101":
                self.fail(c, f"http {status.decode(errors='replace')}")
                return
            c.state = "open"  # the page's send() works from here; the outbox waits for hello
        pos, n = 0, len(buf)
        # A failure or a gap replaces the connection: the rest of this data is the old one's.
        while n - pos >= 2 and c.sock is sock:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < head + length:
                break
            start = pos + head
            pos = start + length
            if opcode == 1:
                # Presence frames carry the room's whole list: not parsed, only skipped.
                if buf.find(b'"type":"presence"', start, start + 40) < 0:
                    self.frame(c, json.loads(bytes(buf[start:pos])))
            elif opcode == 9:
                self.write(c, masked(0xA, bytes(buf[start:pos])))
            elif opcode == 8:
                c.close_code = int.from_bytes(buf[start : start + 2], "big") if length else 1005
                self.write(c, masked(0x8, bytes(buf[start : start + 2])))
        if c.sock is sock and pos:
            del buf[:pos]

    def write(self, c: Client, data: bytes) -> None:
        if c.sock is None:
            return
        try:
            c.sock.sendall(data)
        except OSError:
            pass  # the read side sees the end

    def frame(self, c: Client, f: dict[str, object]) -> None:
        kind = f.get("type")
        if kind == "message":
            self.message(c, f)
        elif kind == "hello":
            c.state = "live"
            c.attempt = 0
            c.connections += 1
            self.reconnects_by_port[c.port] = self.reconnects_by_port.get(c.port, 0) + 1
            c.target = int(f["last_seq"])  # type: ignore[call-overload]
            if c.baseline is None:
                c.baseline = c.last = c.target
                c.rev = int(f.get("last_rev") or 0)  # type: ignore[call-overload]
            if c.outbox is not None:
                self.flush(c)  # outbox.resendAll()
            self.check_resumed(c)
        elif kind == "reset":
            # The page reloads the history over HTTP from here; counted, and resumed from it.
            c.resets += 1
            c.last = max(c.last, int(f["last_seq"]))  # type: ignore[call-overload]
            self.check_resumed(c)
        elif kind == "error" and c.outbox is not None:
            cid = f.get("client_id")
            if cid in c.outbox.pending and f.get("code") in ("unavailable", "rate_limited"):
                wait = float(f.get("retry_after") or RETRY_DEFAULT)  # type: ignore[arg-type]
                c.outbox.retries.append((time.monotonic() + wait, str(cid)))

    def message(self, c: Client, f: dict[str, object]) -> None:
        seq = int(f["seq"])  # type: ignore[call-overload]
        cid = str(f.get("client_id"))
        seqs = self.room_seqs.setdefault(c.room, {})
        known = seqs.setdefault(seq, cid)
        if known != cid:
            self.mismatches += 1
        box = c.outbox
        if box is not None and f.get("user") == c.user and cid in box.pending:
            del box.pending[cid]
            box.acked[cid] = seq
        elif box is not None and cid in box.acked and box.acked[cid] != seq:
            self.double_stored += 1
        if seq <= c.last:
            c.duplicates += 1
            if box is not None and cid in box.resent:
                c.ack_duplicates += 1  # a re-send's acknowledgement: to the sender alone
        elif seq == c.last + 1:
            c.last = seq
            if not c.resumed:
                self.check_resumed(c)
        else:
            self.reconnect_now(c)

    def check_resumed(self, c: Client) -> None:
        if c.state == "live" and not c.resumed and c.last >= c.target:
            c.resumed = True
            c.resumed_at = time.monotonic()
            self.unresumed.discard(c.index)
            if self.storm and not self.unresumed:
                self.storm = False
                print(f"resumed {len(self.clients)} {c.resumed_at:.6f}", flush=True)

    # -- sending ---------------------------------------------------------------------------

    def flush(self, c: Client) -> None:
        """Send every pending message of a sender again (outbox.resendAll)."""
        assert c.outbox is not None
        for cid, text in c.outbox.pending.items():
            self.send_message(c, cid, text)

    def send_message(self, c: Client, cid: str, text: str) -> None:
        box = c.outbox
        assert box is not None
        if c.state in ("open", "live"):
            if cid in box.sent:
                box.resent.add(cid)
            box.sent.add(cid)
            self.write(
                c,
                masked(
                    0x1, json.dumps({"type": "message", "text": text, "client_id": cid}).encode()
                ),
            )

    def post(self, c: Client) -> None:
        """Write one new message (outbox.send): sent now if open, else after the next hello."""
        box = c.outbox
        assert box is not None
        cid = f"{box.tag}-{box.made}"
        box.made += 1
        box.pending[cid] = f"storm {cid}"
        self.send_message(c, cid, box.pending[cid])

    def retry_due(self, now: float) -> None:
        for c in self.senders:
            box = c.outbox
            assert box is not None
            if box.retries and box.retries[0][0] <= now:
                due = [cid for t, cid in box.retries if t <= now]
                box.retries = [(t, cid) for t, cid in box.retries if t > now]
                for cid in due:
                    if cid in box.pending:
                        self.send_message(c, cid, box.pending[cid])

    # -- the loop --------------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            due, index = heapq.heappop(self.timers)
            c = self.clients[index]
            if c.state == "idle" and not c.ended and due == c.due:
                self.connect(c)
        if self.timers:
            timeout = min(timeout, max(0.0, self.timers[0][0] - now))
        for fd, _ in self.epoll.poll(timeout):
            if fd == self.stdin:
                self.line = sys.stdin.readline()
                self.epoll.unregister(self.stdin)
                continue
            c = self.by_fd.get(fd)
            if c is None:
                continue
            if c.state == "connecting":
                self.send_upgrade(c)
                continue
            try:
                n = c.sock.recv_into(self.read_buffer, READ_SIZE, socket.MSG_DONTWAIT)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n:
                self.feed(c, self.read_buffer[:n])
            elif c.state == "live":
                self.closed(c)
            else:
                self.fail(c, "closed before hello" if c.state == "open" else "closed before 101")
        now = time.monotonic()
        if now >= self.next_sweep:
            self.next_sweep = now + 1.0
            if self.unresumed and now >= self.next_progress:
                self.next_progress = now + 5.0
                self.progress()
            for c in self.clients:
                if c.state in ("connecting", "upgrading") and now - c.opened_at > HANDSHAKE_TIMEOUT:
                    self.fail(c, "handshake timeout")

    def progress(self) -> None:
        """Say on stderr how many sockets wait to be resumed, in which state, and why."""
        states: dict[str, int] = {}
        failures: dict[str, int] = {}
        for i in self.unresumed:
            c = self.clients[i]
            states[c.state] = states.get(c.state, 0) + 1
            for why, n in c.failures.items():
                failures[why] = failures.get(why, 0) + n
        print(
            f"storm client: {len(self.unresumed)} not resumed; states {states}; their failed "
            f"attempts so far {failures}",
            file=sys.stderr,
            flush=True,
        )

    def watch_stdin(self) -> None:
        self.line = None
        self.epoll.register(self.stdin, select.EPOLLIN)

    def open_all(self) -> None:
        for start in range(0, len(self.clients), CONNECT_BATCH):
            batch = self.clients[start : start + CONNECT_BATCH]
            deadline = time.monotonic() + OPEN_TIMEOUT
            for c in batch:
                self.connect(c)
            while not all(c.resumed for c in batch):
                if time.monotonic() > deadline:
                    raise TimeoutError("sockets did not open in time")
                self.poll(0.05)
        print("connected", flush=True)

    def run_load(self) -> None:
        """Send at the rate until the next stdin line; the sockets look after themselves."""
        self.watch_stdin()
        interval = 1.0 / self.rate if self.rate > 0 else float("inf")
        sent = 0
        next_at = time.monotonic()
        started = time.monotonic()
        while self.line is None:
            now = time.monotonic()
            if now >= next_at:
                self.post(self.senders[sent % len(self.senders)])
                sent += 1
                next_at = started + sent * interval
            self.retry_due(now)
            self.poll(min(0.05, max(0.0, next_at - time.monotonic())))

    def drain(self, grace: float) -> dict[str, int]:
        """Wait for every acknowledgement and for every socket to reach its room's last seq."""
        deadline = time.monotonic() + grace
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            last = {}
            for c in self.senders:
                assert c.outbox is not None
                for seq in c.outbox.acked.values():
                    last[c.room] = max(last.get(c.room, 0), seq)
            pending = any(c.outbox.pending for c in self.senders)  # type: ignore[union-attr]
            behind = any(c.last < last.get(c.room, 0) or not c.resumed for c in self.clients)
            if not pending and not behind:
                break
            self.retry_due(time.monotonic())
            self.poll(0.05)
        return last

    def acked_by_room(self) -> dict[str, list[int]]:
        rooms: dict[str, list[int]] = {}
        for c in self.senders:
            assert c.outbox is not None
            rooms.setdefault(c.room, []).extend(c.outbox.acked.values())
        return {room: sorted(seqs) for room, seqs in rooms.items()}

    def report(self, last: dict[str, int]) -> dict[str, object]:
        clients = self.clients
        lost = [max(0, last.get(c.room, 0) - c.last) for c in clients]
        failures: dict[str, int] = {}
        for c in clients:
            for why, n in c.failures.items():
                failures[why] = failures.get(why, 0) + n
        boxes = [c.outbox for c in self.senders if c.outbox is not None]
        return {
            "sockets": len(clients),
            "connections": sum(c.connections for c in clients),
            "reconnected_sockets": sum(c.connections > 1 for c in clients),
            "reconnects_by_port": {str(k): v for k, v in self.reconnects_by_port.items()},
            "failed_attempts": failures,
            "not_resumed": sum(not c.resumed for c in clients),
            "session_ended": sum(c.ended for c in clients),
            "resets": sum(c.resets for c in clients),
            "gaps": sum(c.gaps for c in clients),
            "duplicates": sum(c.duplicates for c in clients),
            "ack_duplicates": sum(c.ack_duplicates for c in clients),
            "lost": sum(lost),
            "sockets_with_loss": sum(n > 0 for n in lost),
            "loss_sample": [
                {
                    "socket": c.index,
                    "room": c.room,
                    "port": c.port,
                    "last": c.last,
                    "room_last": last.get(c.room, 0),
                    "connections": c.connections,
                }
                for c, n in zip(clients, lost, strict=True)
                if n
            ][:10],
            "frames_checked": sum(c.last - (c.baseline or 0) for c in clients),
            "messages_made": sum(b.made for b in boxes),
            "messages_acked": sum(len(b.acked) for b in boxes),
            "messages_resent": sum(len(b.resent) for b in boxes),
            "unacked": sum(len(b.pending) for b in boxes),
            "seq_mismatches": self.mismatches,
            "double_stored": self.double_stored,
            "room_last_seq": last,
            "acked": self.acked_by_room(),
            "closed_at": [c.closed_at for c in clients],
            "resumed_at": [c.resumed_at for c in clients],
            "cpu_s": time.process_time(),
        }


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    storm = Storm(plan)
    storm.open_all()
    storm.watch_stdin()
    while storm.line is None:
        storm.poll(1.0)
    storm.run_load()
    last = storm.drain(float(plan.get("grace", 20)))
    print(json.dumps(storm.report(last)), flush=True)
    storm.watch_stdin()
    while storm.line is None:
        storm.poll(1.0)
    for c in storm.clients:
        storm.drop(c)


if __name__ == "__main__":
    main()
