"""Uploads: does a 20 MB upload slow the room's sockets down, and what does a bomb cost?

    python bench/upload.py            # 20 sockets, 20 msg/s, 20 MB uploads, 8 x 2 phases (~2 min)
    python bench/upload.py --smoke    # seconds, a 2 MB file: checks the harness only

Starts the product (`app.py`, embedded store, in a temp directory), opens `--sockets`
authenticated sockets in #general (one account each, through the real sign-up form) and posts
`--rate` messages a second from one of them; every socket times each message from its sending
to its arrival (one clock: one process). Phases of `--phase` seconds alternate: calm, then with
uploads (another account uploads a `--mb` MB file through `POST /rooms/general/uploads`, again
and again until the phase ends, from a thread of its own over a blocking connection, so the
upload's client does not delay the sockets' loop) at the pace of a `--mbps` link (100 Mbit/s:
a 20 MB file takes 1.7 s; 0 is the loopback's own pace, several hundred MB/s, a worst case that
mostly measures the kernel's copying), `--reps` times: C/U/C/U... Reported: the
sockets' p99 in the calm and in the upload phases, all repetitions pooled, and their ratio; the
p99 of each phase, and the median of each upload phase's ratio to the calm phase before it;
PASS when the pooled upload p99 is within 10% of the calm one (or within 2 ms: at a p99 of a
few milliseconds, 10% is below the machine's own noise). `--control` uploads nothing: the
ratio it gives is the noise of the machine itself. Also the server's RSS growth over
the uploads, sampled every 50 ms (streamed, not buffered: far below the file's size).

Then, in a fresh subprocess each (so ru_maxrss is that work's alone), the image examination of
chat/images.py on a decompression bomb (a PNG whose header says 30,000 x 30,000 pixels), and
for comparison on a real 6000 x 4000 JPEG: the peak RSS growth of each; PASS when the bomb's
stays under 100 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path

import aiohttp
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))

from login_storm import percentile, status_kib  # noqa: E402
from ws_fanout import BENCH_LIMITS, ROOT, Server, sign_up  # noqa: E402

RATIO_LIMIT, SLACK_MS = 1.10, 2.0
BOMB_LIMIT_MIB = 100.0
BOUNDARY = "benchUploadBoundary"


async def account(url: str, login: str) -> tuple[str, str]:
    """Sign up; return the session's Cookie header and its CSRF token."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await sign_up(s, url, login)
        async with s.get(url + "/") as resp:
            match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
            assert match, "no CSRF token"
        value = s.cookie_jar.filter_cookies(URL(url))["chat_session"].value
    return f'chat_session="{value}"', match.group(1)


class Uploader(threading.Thread):
    """Upload the file again and again while `active` is set, over one blocking connection."""

    def __init__(self, port: int, cookie: str, token: str, path: Path, mbps: float) -> None:
        super().__init__(name="uploader", daemon=True)
        self.port, self.cookie, self.token, self.path = port, cookie, token, path
        self.bytes_per_s = mbps * 1e6 / 8  # 0: as fast as the loopback goes
        self.active = threading.Event()
        self.idle = threading.Event()  # set between uploads
        self.idle.set()
        self.stop = threading.Event()
        self.statuses: list[int] = []

    def run(self) -> None:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        size = len(head) + self.path.stat().st_size + len(tail)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.is_set():
            if not self.active.wait(0.05):
                continue
            self.idle.clear()
            with self.path.open("rb") as f:

                def body() -> object:
                    yield head
                    started, sent = time.perf_counter(), 0
                    while chunk := f.read(64 * 1024):
                        yield chunk
                        sent += len(chunk)
                        if self.bytes_per_s:  # the pace of a link, not of the loopback
                            ahead = sent / self.bytes_per_s - (time.perf_counter() - started)
                            if ahead > 0:
                                time.sleep(ahead)
                    yield tail

                conn.request(
                    "POST",
                    "/rooms/general/uploads",
                    body=body(),
                    headers={
                        "Origin": f"http://127.0.0.1:{self.port}",
                        "Cookie": self.cookie,
                        "X-CSRF-Token": self.token,
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                        "Content-Length": str(size),
                    },
                )
                resp = conn.getresponse()
                resp.read()
                self.statuses.append(resp.status)
            self.idle.set()
        conn.close()


async def measure(args: argparse.Namespace, server: Server, big: Path) -> dict[str, object]:
    """Open the sockets, then alternate calm and upload phases, timing every delivery."""
    url = f"http://127.0.0.1:{server.port}"
    cookies = []
    for start in range(0, args.sockets, 10):
        cookies += await asyncio.gather(
            *(account(url, f"sock{i}") for i in range(start, min(args.sockets, start + 10)))
        )
    up_cookie, up_token = await account(url, "uploader")
    uploader = Uploader(server.port, up_cookie, up_token, big, args.mbps)
    uploader.start()
    latencies: dict[str, list[float]] = {"calm": [], "upload": []}
    upload_seconds = 0.0  # from the first upload's start to the last one's answer, phase by phase
    by_rep: dict[tuple[str, int], list[float]] = {}
    sent: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = [
            await session.ws_connect(url + "/ws", headers={"Origin": url, "Cookie": c})
            for c, _ in cookies
        ]
        for ws in sockets:
            assert (await ws.receive_json(timeout=10))["type"] == "hello"

        async def receive(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                frame = json.loads(msg.data)
                if frame.get("type") == "message" and frame["client_id"] in sent:
                    ms = (time.perf_counter() - sent[frame["client_id"]]) * 1000
                    name, rep, _ = frame["client_id"].split("-", 2)
                    latencies[name].append(ms)
                    by_rep.setdefault((name, int(rep)), []).append(ms)

        readers = [asyncio.create_task(receive(ws)) for ws in sockets]
        # Sampled: the peak since start (VmHWM) is the sign-ups' argon2, not the uploads'.
        rss_before = status_kib(server.pid, "VmRSS") / 1024
        rss_peak = [rss_before]

        async def sample_rss() -> None:
            while True:
                rss_peak[0] = max(rss_peak[0], status_kib(server.pid, "VmRSS") / 1024)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample_rss())
        started = time.perf_counter()
        for rep in range(args.reps):
            for name in ("calm", "upload"):
                if name == "upload" and not args.control:
                    uploader.active.set()
                    await asyncio.sleep(0.2)  # the upload is under way when timing starts
                end = time.perf_counter() + args.phase
                n = 0
                while time.perf_counter() < end:
                    client_id = f"{name}-{rep}-{n}"
                    sent[client_id] = time.perf_counter()
                    await sockets[0].send_json(
                        {"type": "message", "text": f"bench {n}", "client_id": client_id}
                    )
                    n += 1
                    await asyncio.sleep(1 / args.rate)
                uploader.active.clear()
                # The upload under way finishes before the next calm phase starts.
                await asyncio.to_thread(uploader.idle.wait, 120)
                if name == "upload":
                    upload_seconds += time.perf_counter() - end + args.phase + 0.2
                await asyncio.sleep(0.5)  # the last deliveries of the phase arrive
        seconds = time.perf_counter() - started
        uploader.stop.set()
        await asyncio.to_thread(uploader.join, 120)
        sampler.cancel()
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    calm, loaded = latencies["calm"], latencies["upload"]
    rep_p99 = {
        name: [round(percentile(by_rep.get((name, r), []), 0.99), 2) for r in range(args.reps)]
        for name in ("calm", "upload")
    }
    # Each upload phase against the calm phase just before it: the machine's drift cancels out.
    rep_ratios = [u / c for c, u in zip(rep_p99["calm"], rep_p99["upload"], strict=True) if c]
    expected = len(sent) * args.sockets
    return {
        "sockets": args.sockets,
        "rate": args.rate,
        "reps": args.reps,
        "seconds": round(seconds, 1),
        "file_mb": args.mb,
        "mbps": args.mbps,
        "uploads": len(uploader.statuses),
        # The upload's own pace, as received: the files over the upload phases' time.
        "upload_mb_per_s": round(len(uploader.statuses) * args.mb / upload_seconds, 1),
        "upload_statuses": sorted(set(uploader.statuses)),
        "delivery": round((len(calm) + len(loaded)) / max(1, expected), 4),
        "calm_p50_ms": round(percentile(calm, 0.5), 2),
        "calm_p99_ms": round(percentile(calm, 0.99), 2),
        "upload_p50_ms": round(percentile(loaded, 0.5), 2),
        "upload_p99_ms": round(percentile(loaded, 0.99), 2),
        "p99_ratio": round(percentile(loaded, 0.99) / percentile(calm, 0.99), 3),
        "calm_p99_ms_by_rep": rep_p99["calm"],
        "upload_p99_ms_by_rep": rep_p99["upload"],
        "p99_ratio_median_of_reps": round(statistics.median(rep_ratios), 3),
        "rss_mib_before": round(rss_before, 1),
        "rss_growth_mib": round(rss_peak[0] - rss_before, 1),
    }


def bomb_png() -> bytes:
    """A PNG of a few hundred bytes whose header says 30,000 x 30,000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    rows = zlib.compress(bytes(30_000 * 3 + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


# Run in a fresh interpreter: import everything, note the RSS, examine the file, then take the
# peak (VmHWM) less that RSS: an upper bound of what the examination itself needed.
EXAMINE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from chat.images import examine
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
before = kib("VmRSS")
result = examine(Path(sys.argv[2]), Path(sys.argv[2] + ".thumb"))
print(json.dumps({"growth_mib": (kib("VmHWM") - before) / 1024, "type": result.content_type}))
"""


def examine_cost(path: Path) -> dict[str, object]:
    """Examine one file in a fresh process; return its peak RSS growth and the type found."""
    out = subprocess.run(
        [sys.executable, "-c", EXAMINE, str(ROOT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def images(work: Path, smoke: bool) -> dict[str, object]:
    """The bomb's and a real photo's peak RSS growth while examined."""
    from PIL import Image

    bomb = work / "bomb.png"
    bomb.write_bytes(bomb_png())
    photo = work / "photo.jpg"
    size = (1200, 800) if smoke else (6000, 4000)
    Image.effect_noise(size, 40).convert("RGB").save(photo, "JPEG", quality=90)
    b, p = examine_cost(bomb), examine_cost(photo)
    return {
        "bomb_rss_growth_mib": round(float(b["growth_mib"]), 1),  # type: ignore[arg-type]
        "bomb_type": b["type"],
        "photo_px": f"{size[0]}x{size[1]}",
        "photo_rss_growth_mib": round(float(p["growth_mib"]), 1),  # type: ignore[arg-type]
        "photo_type": p["type"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0, help="messages a second")
    parser.add_argument("--mb", type=int, default=20, help="the uploaded file's size")
    parser.add_argument("--phase", type=float, default=5.0, help="seconds per phase")
    parser.add_argument(
        "--mbps", type=float, default=100.0, help="the uploader's link, Mbit/s (0: unlimited)"
    )
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: check the harness")
    parser.add_argument(
        "--control", action="store_true", help="upload nothing in the upload phases (the noise)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.sockets, args.rate, args.mb, args.phase, args.reps = 4, 20.0, 2, 1.0, 1
    work = Path(tempfile.mkdtemp(prefix="chat-upload-bench-"))
    big = work / "big.bin"
    with big.open("wb") as f:
        for _ in range(args.mb):
            f.write(uuid.uuid4().bytes * 65536)  # 1 MiB, incompressible enough
    env = {**BENCH_LIMITS, "LOG_LEVEL": "WARNING", "DATA_DIR": str(work / "data")}
    env.update({"UPLOAD_QUOTA_MB": "0", "UPLOAD_MAX_MB": str(args.mb + 1)})
    server = Server("product", [sys.executable, str(ROOT / "app.py")], env, work)
    try:
        server.start()
        figures = asyncio.run(measure(args, server, big))
        figures.update(images(work, args.smoke))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    calm, loaded = figures["calm_p99_ms"], figures["upload_p99_ms"]
    within = loaded <= calm * RATIO_LIMIT or loaded <= calm + SLACK_MS  # type: ignore[operator]
    passed = (
        within
        and figures["delivery"] == 1.0
        and (figures["upload_statuses"] == [201] or args.control)
        and figures["bomb_rss_growth_mib"] < BOMB_LIMIT_MIB  # type: ignore[operator]
        and figures["bomb_type"] == "application/octet-stream"
    )
    print(
        f"{figures['sockets']} sockets, {figures['rate']:.0f} msg/s, {figures['reps']} x "
        f"(calm, uploading {figures['file_mb']} MB at {figures['mbps'] or 'unlimited'} Mbit/s): "
        f"{figures['uploads']} uploads "
        f"{figures['upload_statuses']} ({figures['upload_mb_per_s']} MB/s received), "
        f"delivery {figures['delivery']}"
    )
    print(
        f"p99 calm {calm} ms, while uploading {loaded} ms (ratio {figures['p99_ratio']}; "
        f"p50 {figures['calm_p50_ms']} / {figures['upload_p50_ms']} ms); server RSS "
        f"+{figures['rss_growth_mib']} MiB at most over the uploads"
    )
    print(
        f"p99 by repetition: calm {figures['calm_p99_ms_by_rep']}, uploading "
        f"{figures['upload_p99_ms_by_rep']} ms; median of the ratios "
        f"{figures['p99_ratio_median_of_reps']}"
    )
    print(
        f"bomb (30000x30000 PNG): peak RSS +{figures['bomb_rss_growth_mib']} MiB "
        f"(limit {BOMB_LIMIT_MIB:.0f}), {figures['bomb_type']}; "
        f"{figures['photo_px']} JPEG: +{figures['photo_rss_growth_mib']} MiB"
    )
    print("PASS" if passed else "FAIL")
    print("SUMMARY " + json.dumps({**figures, "passed": passed}))
    return 0 if passed or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
