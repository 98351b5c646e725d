"""Rate budgets per account: every socket of a person, on every process, spends from one budget.

In one process a person's sockets share one `Budget` (two token buckets: messages, and signals
such as `typing` and `read`). With Redis, the same buckets also live in Redis, so that all of a
person's processes share them; when Redis cannot be reached the process-local budget is used.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from common.limits import TokenBucket

log = logging.getLogger(__name__)

SIGNAL_BURST = 30
SIGNAL_PER_SECOND = 2.0
MESSAGES = "messages"
SIGNALS = "signals"
MAX_IDLE = 10_000  # budgets of people with no socket left kept before full ones are dropped
REDIS_RETRY = 5.0  # seconds without asking Redis after it failed

# A token bucket in one Redis hash, timed by the Redis clock (every process sees the same one).
# KEYS[1]: the hash; ARGV: burst, rate per second. Returns the seconds to wait ("0": granted).
TAKE_SCRIPT = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(b[1]) or burst
local stamp = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class Budget:
    """One account's budget in this process, shared by all its sockets here."""

    __slots__ = ("messages", "signals", "sockets")

    def __init__(self, message_burst: int, message_rate: float) -> None:
        self.messages = TokenBucket(message_burst, message_rate)
        self.signals = TokenBucket(SIGNAL_BURST, SIGNAL_PER_SECOND)
        self.sockets = 0

    def full(self) -> bool:
        """Say whether both buckets have refilled (forgetting the budget then loses nothing)."""
        now = time.monotonic()
        return all(
            b.tokens + (now - b.stamp) * b.rate >= b.burst for b in (self.messages, self.signals)
        )


class SharedBudgets:
    """The buckets of every account in Redis, shared by all processes."""

    def __init__(self, redis: Any, healthy: Any) -> None:
        self.redis = redis
        self.healthy = healthy  # () -> bool: the broker's view of Redis
        self.script = redis.register_script(TAKE_SCRIPT)
        self.down_until = 0.0
        self.failed = False

    async def take(self, login: str, kind: str, bucket: TokenBucket) -> float | None:
        """Take a token from the shared bucket: the wait (0 when granted), None if unreachable."""
        if not self.healthy() or time.monotonic() < self.down_until:
            return None
        try:
            key = f"chat:budget:{kind}:{login}"
            wait = await self.script(keys=[key], args=[bucket.burst, bucket.rate])
        except (RedisError, OSError) as exc:
            if not self.failed:
                log.warning("rate budgets: Redis failed (%s); limiting per process meanwhile", exc)
            self.failed = True
            self.down_until = time.monotonic() + REDIS_RETRY
            return None
        if self.failed:
            log.info("rate budgets: Redis answers again")
            self.failed = False
        return float(wait)


class Budgets:
    """The budgets of the accounts with sockets in this process (login -> Budget)."""

    def __init__(self, message_burst: int, message_rate: float) -> None:
        self.message_burst = message_burst
        self.message_rate = message_rate
        self.by_login: dict[str, Budget] = {}
        self.shared: SharedBudgets | None = None  # set when Redis is configured

    def acquire(self, login: str) -> Budget:
        """Return the person's budget for one more socket of theirs."""
        budget = self.by_login.get(login)
        if budget is None:
            if len(self.by_login) > MAX_IDLE:
                self._sweep()
            budget = self.by_login[login] = Budget(self.message_burst, self.message_rate)
        budget.sockets += 1
        return budget

    def release(self, login: str, budget: Budget) -> None:
        """Count a socket out; a budget without sockets is forgotten once it is full again."""
        budget.sockets -= 1
        if budget.sockets <= 0 and budget.full() and self.by_login.get(login) is budget:
            del self.by_login[login]

    def _sweep(self) -> None:
        for login, budget in list(self.by_login.items()):
            if budget.sockets <= 0 and budget.full():
                del self.by_login[login]

    async def shared_wait(self, login: str, kind: str, bucket: TokenBucket) -> float:
        """After a local token was taken, take the shared one too: 0 when granted, else the wait.

        Only called when Redis is configured; an unreachable Redis grants (the local budget holds).
        """
        assert self.shared is not None
        wait = await self.shared.take(login, kind, bucket)
        if wait:
            bucket.tokens += 1  # refused across processes: give the local token back
            return wait
        return 0.0


BUDGETS_KEY = web.AppKey("budgets", Budgets)
