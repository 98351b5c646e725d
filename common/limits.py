"""Rate limits: fixed-window counters per key, and a token bucket per connection.

Counters live in this process's memory (each process of several limits on its own).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from settings import Settings

MAX_KEYS = 100_000  # counters kept before expired ones are swept


class WindowLimit:
    """At most `limit` hits per key in each window of `window` seconds."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, tuple[float, int]] = {}

    def retry_after(self, key: str) -> int:
        """Seconds until `key` may try again; 0 when it may now."""
        start, count = self._hits.get(key, (0.0, 0))
        left = start + self.window - self.clock()
        if left <= 0 or count < self.limit:
            return 0
        return max(1, math.ceil(left))

    def count(self, key: str) -> int:
        """Attempts counted for `key` in its current window."""
        start, count = self._hits.get(key, (0.0, 0))
        return count if self.clock() - start < self.window else 0

    def hit(self, key: str) -> None:
        """Count one attempt for `key`."""
        now = self.clock()
        start, count = self._hits.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._hits[key] = (start, count + 1)
        if len(self._hits) > MAX_KEYS:
            self._sweep(now)

    def reset(self, key: str) -> None:
        """Forget `key`'s attempts (a successful login)."""
        self._hits.pop(key, None)

    def _sweep(self, now: float) -> None:
        for key, (start, _) in list(self._hits.items()):
            if now - start >= self.window:
                del self._hits[key]


class GrowingDelay:
    """After `free` failures per key in a window, each attempt waits longer: 0.25 s, 0.5 s, ...

    The wait doubles with every further failure up to `longest` seconds, and is slept on the
    event loop (no thread held). It slows guessing without locking anyone out.
    """

    FIRST = 0.25  # seconds of the first delay

    def __init__(
        self,
        free: int,
        longest: float,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.free = free
        self.longest = longest
        self.failures = WindowLimit(free, window, clock)
        self.sleep = sleep

    def delay(self, key: str) -> float:
        """Seconds the next attempt for `key` waits before it is checked."""
        extra = self.failures.count(key) - self.free
        if extra < 0 or self.longest <= 0:
            return 0.0
        return min(self.FIRST * 2 ** min(extra, 64), self.longest)

    async def wait(self, key: str) -> float:
        """Sleep the delay `key` has earned, and return it."""
        seconds = self.delay(key)
        if seconds:
            await self.sleep(seconds)
        return seconds

    def hit(self, key: str) -> None:
        """Count one failure for `key`."""
        self.failures.hit(key)

    def reset(self, key: str) -> None:
        """Forget `key`'s failures (a successful login)."""
        self.failures.reset(key)


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; one per message."""

    __slots__ = ("burst", "rate", "tokens", "stamp", "clock")

    def __init__(
        self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> float:
        """Take a token: 0 when granted, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Limits:
    """The app's request limits, built from settings."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Build the limits the settings configure."""
        return cls(
            settings.login_limit_account,
            settings.login_limit_address,
            settings.login_window,
            settings.login_delay_max,
            settings.signup_limit_address,
            settings.signup_window,
            settings.room_limit_user,
            settings.room_window,
        )

    def __init__(
        self,
        login_per_account: int,
        login_per_address: int,
        login_window: float,
        login_delay_max: float,
        signup_per_address: int,
        signup_window: float,
        rooms_per_user: int,
        room_window: float,
    ) -> None:
        # Failed logins: limited per (account, address) and per address; per account from
        # anywhere they only slow down, so others' failures never lock the owner out.
        self.login_account = WindowLimit(login_per_account, login_window)  # login_pair() keys
        self.login_address = WindowLimit(login_per_address, login_window)
        self.login_delay = GrowingDelay(login_per_account, login_delay_max, login_window)
        self.signup_address = WindowLimit(signup_per_address, signup_window)
        self.room_user = WindowLimit(rooms_per_user, room_window)


def login_pair(account: str, address: str) -> str:
    """The key of an (account, address) pair's failed logins."""
    return f"{account}\x00{address}"


def too_many(retry_after: int) -> web.HTTPTooManyRequests:
    """Return a 429 that says when to try again."""
    return web.HTTPTooManyRequests(headers={"Retry-After": str(retry_after)})


LIMITS_KEY = web.AppKey("limits", Limits)
