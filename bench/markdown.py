"""Formatting benchmark: how long does the server take to render message text?

    python bench/markdown.py           # many rounds
    python bench/markdown.py --smoke   # a few rounds: checks the harness, not the numbers

Times common/markdown.py in process, without its cache, on: a history page of 100 ordinary
formatted messages, a page of 100 messages of 2,000 characters (the most allowed), and hostile
inputs like those of the shared case table at 1,000 and at 2,000 characters. The ratio of the two
is about 2 for a linear renderer and 4 or more for a quadratic one; that ratio, not a time, says
whether the scan is linear.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from common.markdown import render  # noqa: E402

uncached = render.__wrapped__  # what a first view costs; render() keeps the latest renderings

log = logging.getLogger("bench.markdown")

ORDINARY = [
    "hello there, see https://example.com/docs?x=1 for the **details**",
    "`make test` fails on _my_ machine:\n```\nTraceback (most recent call last):\n  File x\n```",
    "> quoting you\nagreed, ~~not~~ really\n- one\n- two [link](https://a.example/b)",
    "plain text without anything special in it, just words and a number 42",
]

# Each makes a text of n characters that a careless renderer scans again and again.
HOSTILE: dict[str, Callable[[int], str]] = {
    "openers": lambda n: "**" * (n // 2),
    "mixed openers": lambda n: ("*_~" * n)[:n],
    "unclosed links": lambda n: ("[a](" * n)[:n],
    "unclosed labels": lambda n: "[" * n,
    "backticks": lambda n: "`a" * (n // 2),
    "link prefixes": lambda n: ("http://" * n)[:n],
    "punctuation after a link": lambda n: "https://a.example/" + "." * (n - 18),
    "nested markers": lambda n: ("**_~~" * n)[:n],
    "quote lines": lambda n: ("> a\n" * n)[:n],
    "fences": lambda n: ("```\n" * n)[:n],
}


def per_call_us(texts: list[str], rounds: int) -> float:
    """Render every text `rounds` times; microseconds per text, best round."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for text in texts:
            uncached(text)
        best = min(best, (time.perf_counter() - start) / len(texts))
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few rounds only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rounds = 3 if args.smoke else 30
    page = (ORDINARY * 25)[:100]
    long_page = [(text + " ") * (2000 // (len(text) + 1)) for text in (ORDINARY * 25)[:100]]
    summary: dict[str, object] = {
        "page_100_ordinary_ms": per_call_us(page, rounds) * 100 / 1000,
        "page_100_long_ms": per_call_us(long_page, rounds) * 100 / 1000,
    }
    hostile: dict[str, dict[str, float]] = {}
    for name, make in HOSTILE.items():
        small, large = per_call_us([make(1000)], rounds * 5), per_call_us([make(2000)], rounds * 5)
        hostile[name] = {"us_2000": large, "ratio_2000_to_1000": large / small}
        log.info("%-26s %8.0f us at 2,000 chars, x%.2f from 1,000", name, large, large / small)
    summary["hostile"] = hostile
    log.info("a page of 100 ordinary messages: %.2f ms", summary["page_100_ordinary_ms"])
    log.info("a page of 100 messages of 2,000 chars: %.2f ms", summary["page_100_long_ms"])
    sys.stdout.write("SUMMARY " + json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
