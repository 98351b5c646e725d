"""Lighthouse (mobile, default throttling) on the login page and on a logged-in room with messages.

    python bench/lighthouse.py          # both pages; exits 1 if a score is under its target
    python bench/lighthouse.py --json   # the same, plus the figures as one JSON line (SUMMARY ...)

It starts the product (`app.py`, embedded store, in a temp directory), signs a person up through
the real form, posts messages of every kind the page renders (plain, formatted, a code block, a
reply, a reaction), and runs the pinned Lighthouse (tests/tools, installed by `npm ci` when missing)
in Debian's Chromium, headless, with no network beyond 127.0.0.1. The room is audited logged in:
the session cookie goes in `--extra-headers`. Lighthouse's mobile preset simulates a mid-range
phone on a slow 4G link, so its scores do not depend much on this machine's speed; Performance
does a little (the page's script time is measured, then scaled).

Targets: Performance, Accessibility and Best Practices >= 95 each, Cumulative Layout Shift < 0.05.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from node_tools import NodeToolsMissing, lighthouse_cli, node  # noqa: E402

from harness import PASSWORD, AppProcess  # noqa: E402

CHROME = "/usr/bin/chromium"
CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-background-networking "
    "--disable-component-update --disable-sync --no-first-run"
)
CATEGORIES = ("performance", "accessibility", "best-practices")
MIN_SCORE = 95
MAX_CLS = 0.05
RUN_TIMEOUT = 240  # seconds for one Lighthouse run
MESSAGES = [
    "Morning all, the **release** is on Friday",
    "See https://example.com/notes for the plan",
    "```\nmake release VERSION=1.4\n```",
    "_Who_ reviews the `changelog`?",
    "> quoted from yesterday\nand my answer",
    "- one\n- two\n- three",
]


async def logged_in_room(url: str, count: int) -> str:
    """Sign a person up and post `count` messages, a reply and a reaction; return the Cookie."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, headers={"Origin": url}) as s:
        async with s.get(url + "/signup") as resp:
            match = re.search(r'name="csrf_token" value="([^"]+)"', await resp.text())
            assert match, "no CSRF token on /signup"
        form = {
            "login": "alice",
            "email": "alice@example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "csrf_token": match.group(1),
        }
        async with s.post(url + "/signup", data=form) as resp:
            assert resp.status == 200, resp.status
        async with s.ws_connect(url + "/ws?room=general") as ws:
            await ws.receive_json(timeout=5)
            for i in range(count):
                frame: dict[str, Any] = {
                    "type": "message",
                    "text": MESSAGES[i % len(MESSAGES)],
                    "client_id": f"m{i}",
                }
                if i == count - 1:
                    frame["reply_to"] = 1
                await ws.send_json(frame)
            await ws.send_json({"type": "react", "seq": 1, "emoji": "👍", "client_id": "r1"})
            got = 0
            while got < count:
                if (await ws.receive_json(timeout=10))["type"] == "message":
                    got += 1
        cookies = jar.filter_cookies(URL(url))
        return "; ".join(f"{k}={v.value}" for k, v in cookies.items())


def lighthouse(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run Lighthouse on one URL; return its JSON report."""
    command = [
        node(),
        str(lighthouse_cli()),
        url,
        "--output=json",
        "--output-path=stdout",
        "--quiet",
        f"--only-categories={','.join(CATEGORIES)}",
        f"--chrome-flags={CHROME_FLAGS}",
    ]
    if headers:
        command.append(f"--extra-headers={json.dumps(headers)}")
    env = {**os.environ, "CHROME_PATH": CHROME}
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            env={**env, "TMPDIR": tmp},
            check=False,
        )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(
            f"lighthouse failed ({done.returncode}) on {url}:\n{done.stderr[-3000:]}"
        )
    report: dict[str, Any] = json.loads(done.stdout)
    if os.environ.get("LIGHTHOUSE_REPORT_DIR"):  # keep the whole report, to see what cost points
        name = re.sub(r"\W+", "-", url.split("//", 1)[-1]).strip("-") + ".json"
        Path(os.environ["LIGHTHOUSE_REPORT_DIR"], name).write_text(done.stdout)
    if report.get("runtimeError"):
        raise RuntimeError(f"lighthouse on {url}: {report['runtimeError']}")
    return report


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """Return the scores (0..100), CLS and what cost points, from a report."""
    scores = {c: round((report["categories"][c]["score"] or 0) * 100) for c in CATEGORIES}
    audits = report["audits"]
    lost = sorted(
        f"{a['id']} ({a['score']:.2f})"
        for a in audits.values()
        if a.get("scoreDisplayMode") in ("binary", "numeric", "metricSavings")
        and a.get("score") is not None
        and a["score"] < 0.9
    )
    return {
        **scores,
        "cls": round(audits["cumulative-layout-shift"]["numericValue"], 4),
        "fcp_ms": round(audits["first-contentful-paint"]["numericValue"]),
        "lcp_ms": round(audits["largest-contentful-paint"]["numericValue"]),
        "tbt_ms": round(audits["total-blocking-time"]["numericValue"]),
        "below_0.9": lost,
    }


def under_target(row: dict[str, Any]) -> list[str]:
    """Return what in one page's figures misses its target."""
    misses = [f"{c} {row[c]} < {MIN_SCORE}" for c in CATEGORIES if row[c] < MIN_SCORE]
    if row["cls"] >= MAX_CLS:
        misses.append(f"CLS {row['cls']} >= {MAX_CLS}")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="also print SUMMARY <json>")
    parser.add_argument("--messages", type=int, default=40, help="messages in the room")
    args = parser.parse_args()
    try:
        lighthouse_cli()
    except NodeToolsMissing as exc:
        print(f"lighthouse: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        app = AppProcess(Path(tmp), MESSAGE_BURST="1000", MESSAGE_PER_MINUTE="60000").start()
        try:
            cookie = asyncio.run(logged_in_room(app.url, args.messages))
            rows = {
                "login": figures(lighthouse(app.url + "/login")),
                "room": figures(lighthouse(app.url + "/rooms/general", {"Cookie": cookie})),
            }
        finally:
            app.kill()
    failed = False
    for page, row in rows.items():
        misses = under_target(row)
        failed = failed or bool(misses)
        scores = " ".join(f"{c}={row[c]}" for c in CATEGORIES)
        print(
            f"{page:6} {scores} CLS={row['cls']} FCP={row['fcp_ms']}ms LCP={row['lcp_ms']}ms "
            f"TBT={row['tbt_ms']}ms {'PASS' if not misses else 'FAIL: ' + '; '.join(misses)}"
        )
        if row["below_0.9"]:
            print(f"       audits under 0.9: {', '.join(row['below_0.9'])}")
    if args.json:
        print("SUMMARY " + json.dumps(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
