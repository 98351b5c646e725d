"""Password hashing with argon2id, run off the event loop."""

from __future__ import annotations

import asyncio

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hash and verify passwords in a worker thread so the event loop keeps serving."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of a password."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Say whether the password matches; with no hash, spend the same time and say no."""
        if password_hash is None:
            # Unknown logins cost as much as wrong passwords, so timing does not reveal accounts.
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("not a real password")
            await asyncio.to_thread(self._check, self._dummy_hash, password)
            return False
        return await asyncio.to_thread(self._check, password_hash, password)

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
