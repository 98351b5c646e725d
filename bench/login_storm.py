"""Login storm: many concurrent logins against the real product, watching memory and the loop.

    python bench/login_storm.py            # 100 logins at once, default argon2 (~15 s)
    python bench/login_storm.py --smoke    # seconds, cheap argon2: checks the harness only

Starts the product (`app.py`, embedded store, in a temp directory, SIGNUP_MODE=open, the login
and sign-up limits raised so they do not answer first, argon2 at its defaults unless --smoke),
creates one account through the real form, then fires `--logins` POST /login at once (half with
the right password, half with a wrong one) from one aiohttp client on 127.0.0.1. Meanwhile it
samples the server's RSS every 50 ms and times a GET /healthz fired every 20 ms from a thread of
its own (the loop-lag proxy: the app's own probe runs once a second). Reports the peak RSS
(VmHWM), the healthz latency p99 and max, the app's loop_lag_ms after the storm, and how many
logins got 302, 401 and 503; PASS when the peak RSS stays under 256 MiB and the healthz p99
under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ws_fanout import PASSWORD, ROOT, Server, sign_up  # noqa: E402

RSS_LIMIT_MIB = 256.0
LAG_LIMIT_MS = 50.0
STORM_TIMEOUT = 120.0  # seconds: the storm is bounded however slow the machine
LIMITS = {  # raised, not bypassed: the storm comes from one address at one account
    "SIGNUP_MODE": "open",
    "SIGNUP_LIMIT_ADDRESS": "100000",
    "LOGIN_LIMIT_ACCOUNT": "100000",
    "LOGIN_LIMIT_ADDRESS": "100000",
}


def status_kib(pid: int, field: str) -> float:
    """A size field (VmRSS, VmHWM) of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise KeyError(field)


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie (nearest rank); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def login_form(session: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    """GET /login: a fresh session cookie and its CSRF token."""
    async with session.get(url + "/login") as resp:
        match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
        assert match, "no CSRF token"
        return resp.cookies["chat_session"].value, match.group(1)


async def storm(url: str, pid: int, logins: int) -> dict[str, object]:
    """Fire the logins at once; sample RSS and healthz latency until they are all answered."""
    connector = aiohttp.TCPConnector(limit=logins + 10)
    jar = aiohttp.DummyCookieJar()  # each login carries its own session cookie
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        forms = await asyncio.gather(*(login_form(session, url) for _ in range(logins)))
        rss: list[float] = []
        healthz_ms: list[float] = []
        healthz_failed = 0
        done = threading.Event()

        async def sample_rss() -> None:
            while not done.is_set():
                rss.append(status_kib(pid, "VmRSS") / 1024)
                await asyncio.sleep(0.05)

        def probe_healthz() -> None:
            # A thread of its own with a blocking connection: what the storm's client does on
            # its event loop does not delay the probes or their timing.
            nonlocal healthz_failed
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            while not done.is_set():
                started = time.perf_counter()
                try:
                    conn.request("GET", "/healthz")
                    resp = conn.getresponse()
                    resp.read()
                    ok = resp.status == 200
                except (OSError, http.client.HTTPException):
                    conn.close()
                    ok = False
                if ok:
                    healthz_ms.append((time.perf_counter() - started) * 1000)
                else:
                    healthz_failed += 1
                time.sleep(0.02)
            conn.close()

        async def log_in(i: int, cookie: str, token: str) -> int:
            form = {
                "login": "storm",
                "password": PASSWORD if i % 2 == 0 else "a wrong password",
                "csrf_token": token,
            }
            headers = {"Origin": url, "Cookie": f'chat_session="{cookie}"'}
            async with session.post(
                url + "/login", data=form, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                return resp.status

        port = int(url.rsplit(":", 1)[1])
        prober = threading.Thread(target=probe_healthz, name="healthz")
        prober.start()
        watchers = [asyncio.create_task(sample_rss())]
        await asyncio.sleep(0.2)  # a few calm probes first
        started = time.perf_counter()
        async with asyncio.timeout(STORM_TIMEOUT):
            statuses = await asyncio.gather(
                *(log_in(i, cookie, token) for i, (cookie, token) in enumerate(forms))
            )
        seconds = time.perf_counter() - started
        await asyncio.sleep(1.2)  # let the app's once-a-second lag probe see the storm's end
        done.set()
        await asyncio.gather(*watchers)
        await asyncio.to_thread(prober.join)
        async with session.get(url + "/healthz") as resp:
            loop_lag = (await resp.json())["loop_lag_ms"]
    counts = Counter(statuses)
    return {
        "logins": logins,
        "seconds": round(seconds, 2),
        "status_302": counts.get(302, 0),
        "status_401": counts.get(401, 0),
        "status_503": counts.get(503, 0),
        "status_other": sum(n for s, n in counts.items() if s not in (302, 401, 503)),
        "rss_mib_sampled_max": round(max(rss), 1),
        "healthz_probes": len(healthz_ms),
        "healthz_failed": healthz_failed,
        "healthz_p50_ms": round(statistics.median(healthz_ms), 2),
        "healthz_p99_ms": round(percentile(healthz_ms, 0.99), 2),
        "healthz_max_ms": round(max(healthz_ms), 2),
        "loop_lag_p99_ms": loop_lag["p99"],
        "loop_lag_max_ms": loop_lag["max"],
    }


async def run(args: argparse.Namespace, server: Server) -> dict[str, object]:
    """Create the account, note the calm RSS, run the storm, then read the peak RSS."""
    url = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await sign_up(session, url, "storm")
    rss_before = status_kib(server.pid, "VmRSS") / 1024
    figures = await storm(url, server.pid, args.logins)
    figures["rss_mib_before"] = round(rss_before, 1)
    figures["rss_mib_peak"] = round(status_kib(server.pid, "VmHWM") / 1024, 1)  # since start
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=100, help="concurrent logins")
    parser.add_argument("--hash-concurrency", help="HASH_CONCURRENCY for the server")
    parser.add_argument("--hash-queue", help="HASH_QUEUE for the server")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: check the harness")
    args = parser.parse_args()
    env = {"LOG_LEVEL": "WARNING", **LIMITS}
    if args.smoke:  # cheap argon2: only the harness is checked
        args.logins = 10
        env.update({"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024"})
    else:  # the real cost, whatever the caller's environment says
        env.update({"ARGON2_TIME_COST": "3", "ARGON2_MEMORY_KIB": "65536"})
    if args.hash_concurrency:
        env["HASH_CONCURRENCY"] = args.hash_concurrency
    if args.hash_queue:
        env["HASH_QUEUE"] = args.hash_queue
    work = Path(tempfile.mkdtemp(prefix="chat-login-storm-"))
    env["DATA_DIR"] = str(work / "data")
    server = Server("product", [sys.executable, str(ROOT / "app.py")], env, work)
    try:
        server.start()
        figures = asyncio.run(run(args, server))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    passed = (
        figures["rss_mib_peak"] <= RSS_LIMIT_MIB  # type: ignore[operator]
        and figures["healthz_p99_ms"] <= LAG_LIMIT_MS  # type: ignore[operator]
        and figures["status_other"] == 0
    )
    print(
        f"{figures['logins']} concurrent logins in {figures['seconds']} s: "
        f"302 x{figures['status_302']}, 401 x{figures['status_401']}, "
        f"503 x{figures['status_503']}, other x{figures['status_other']}"
    )
    print(
        f"RSS: {figures['rss_mib_before']} MiB before, peak {figures['rss_mib_peak']} MiB "
        f"(limit {RSS_LIMIT_MIB:.0f})"
    )
    print(
        f"GET /healthz every 20 ms: p50 {figures['healthz_p50_ms']} ms, "
        f"p99 {figures['healthz_p99_ms']} ms (limit {LAG_LIMIT_MS:.0f}), "
        f"max {figures['healthz_max_ms']} ms, {figures['healthz_probes']} probes, "
        f"{figures['healthz_failed']} failed; app loop lag p99 {figures['loop_lag_p99_ms']} ms, "
        f"max {figures['loop_lag_max_ms']} ms"
    )
    print("PASS" if passed else "FAIL")
    print("SUMMARY " + json.dumps({**figures, "passed": passed}))
    return 0 if passed or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
