"""Password hashing with argon2id, run off the event loop, a bounded number at a time."""

from __future__ import annotations

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.pages import Refusal
from common.workers import Workers

# On Linux each thread has its own niceness: hashing threads get 10 more than the process, so
# on a machine whose cores they fill the event loop still gets the CPU when it needs it.
HASH_NICENESS = 10
BUSY_MESSAGE = "The chat is busy checking passwords. Please try again in a moment."


def busy_refusal() -> Refusal:
    """Return the 503 a request gets when hashing is saturated (Retry-After: 1)."""
    return Refusal(503, BUSY_MESSAGE, headers={"Retry-After": "1"})


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
        self._workers = Workers(concurrency, queue, "argon2", HASH_NICENESS)

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of a password; Busy when hashing is saturated."""
        return await self._workers.run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Say whether the password matches; with no hash, spend the same time and say no."""
        if password_hash is None:
            # Unknown logins cost as much as wrong passwords, so timing does not reveal accounts.
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("not a real password")
            await self._workers.run(self._check, self._dummy_hash, password)
            return False
        return await self._workers.run(self._check, password_hash, password)

    def close(self) -> None:
        """Let the pool's threads end once their work is done."""
        self._workers.close()

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
