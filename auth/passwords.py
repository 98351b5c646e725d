"""Password hashing with argon2id, run off the event loop, a bounded number at a time."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.pages import Refusal

T = TypeVar("T")

# On Linux each thread has its own niceness: hashing threads get 10 more than the process, so
# on a machine whose cores they fill the event loop still gets the CPU when it needs it.
HASH_NICENESS = 10
BUSY_MESSAGE = "The chat is busy checking passwords. Please try again in a moment."


class Busy(Exception):
    """Every hashing slot is taken and the wait queue is full: try again shortly."""


def busy_refusal() -> Refusal:
    """Return the 503 a request gets when hashing is saturated (Retry-After: 1)."""
    return Refusal(503, BUSY_MESSAGE, headers={"Retry-After": "1"})


def _yield_to_the_loop() -> None:
    """Lower this hashing thread's CPU priority so the event loop's thread runs first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: hashing still works
        pass


class Passwords:
    """Hash and verify passwords in worker threads so the event loop keeps serving.

    argon2 takes `memory_kib` per operation, so at most `concurrency` run at once, each in a
    thread of this object's own pool; up to `queue` more wait for a slot, and beyond that
    `Busy` is raised at once rather than piling up memory and latency.
    """

    def __init__(
        self, time_cost: int = 3, memory_kib: int = 65536, concurrency: int = 2, queue: int = 16
    ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        self._dummy_hash: str | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="argon2", initializer=_yield_to_the_loop
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + queue
        self._admitted = 0  # running or waiting for a slot

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        """Run one argon2 operation in the pool, waiting for a slot; Busy when none is near."""
        if self._admitted >= self._limit:
            raise Busy
        self._admitted += 1
        try:
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._admitted -= 1

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of a password; Busy when hashing is saturated."""
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Say whether the password matches; with no hash, spend the same time and say no."""
        if password_hash is None:
            # Unknown logins cost as much as wrong passwords, so timing does not reveal accounts.
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("not a real password")
            await self._run(self._check, self._dummy_hash, password)
            return False
        return await self._run(self._check, password_hash, password)

    def close(self) -> None:
        """Let the pool's threads end once their work is done."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def needs_rehash(self, password_hash: str) -> bool:
        """Say whether a hash was made with other argon2 parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return False

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


PASSWORDS_KEY = web.AppKey("passwords", Passwords)
