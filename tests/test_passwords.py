"""Password hashing is bounded: a few argon2 operations at once, a short queue, then 503."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from auth.passwords import HASH_NICENESS, PASSWORDS_KEY, Passwords
from common.limits import LIMITS_KEY
from common.workers import Busy
from conftest import PASSWORD, Auth


class Gate:
    """A stand-in for argon2's hasher that holds every call until opened, counting them."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.niceness: set[int] = set()

    def _through(self, name: str, fn: Any, *args: str) -> Any:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.calls.append(name)
            self.threads.add(threading.current_thread().name)
            self.niceness.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        try:
            assert self.opened.wait(5), "the gate was never opened"
            return fn(*args)
        finally:
            with self.lock:
                self.running -= 1

    def hash(self, password: str) -> str:
        return self._through("hash", self.real.hash, password)  # type: ignore[no-any-return]

    def check_needs_rehash(self, password_hash: str) -> bool:
        return self.real.check_needs_rehash(password_hash)  # type: ignore[no-any-return]

    def verify(self, password_hash: str, password: str) -> bool:
        return self._through("verify", self.real.verify, password_hash, password)  # type: ignore[no-any-return]

    async def until_running(self, count: int) -> None:
        """Wait until `count` calls are held at the gate."""
        async with asyncio.timeout(5):
            while self.running < count:
                await asyncio.sleep(0.01)


def gated(passwords: Passwords) -> Gate:
    gate = Gate(passwords._hasher)
    passwords._hasher = gate  # type: ignore[assignment]
    return gate


async def test_at_most_concurrency_hash_at_once_then_a_short_queue_then_busy() -> None:
    passwords = Passwords(time_cost=1, memory_kib=64, concurrency=2, queue=3)
    gate = gated(passwords)
    admitted = [asyncio.create_task(passwords.hash(f"password {i}")) for i in range(5)]
    try:
        await gate.until_running(2)
        await asyncio.sleep(0.1)  # room for any more to start
        assert gate.running == 2  # never more than HASH_CONCURRENCY argon2 operations at once
        with pytest.raises(Busy):  # 2 running and 3 waiting: a sixth is refused at once
            await asyncio.wait_for(passwords.hash("one too many"), 1)
    finally:
        gate.opened.set()
    hashes = await asyncio.gather(*admitted)
    assert len(set(hashes)) == 5
    assert gate.most == 2
    assert all(name.startswith("argon2") for name in gate.threads), gate.threads
    # The hashing threads yield the CPU to the event loop's thread.
    assert gate.niceness == {os.getpriority(os.PRIO_PROCESS, 0) + HASH_NICENESS}
    assert await passwords.hash("there is room again")  # the queue drained
    passwords.close()


async def test_unknown_logins_take_a_slot_too() -> None:
    passwords = Passwords(time_cost=1, memory_kib=64, concurrency=1, queue=0)
    passwords._dummy_hash = passwords._hasher.hash("not a real password")
    gate = gated(passwords)
    unknown = asyncio.create_task(passwords.verify(None, "guess"))
    try:
        await gate.until_running(1)
        with pytest.raises(Busy):
            await asyncio.wait_for(passwords.verify(None, "another guess"), 1)
    finally:
        gate.opened.set()
    assert await unknown is False
    passwords.close()


@pytest.mark.parametrize("settings_overrides", [{"hash_concurrency": 1, "hash_queue": 0}])
async def test_login_while_hashing_is_saturated_gets_503(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    app = auth.client.app
    gate = gated(app[PASSWORDS_KEY])
    first, second = Auth(await make_client()), Auth(await make_client())
    held = asyncio.create_task(first.login("alice", "wrong password!!"))
    try:
        await gate.until_running(1)
        busy = await second.post(
            "/login", {"login": "alice", "password": PASSWORD}, headers={"Accept": "text/html"}
        )
        assert busy.status == 503 and busy.headers["Retry-After"] == "1"
        assert "busy checking passwords" in await busy.text()  # the friendly page
        as_json = await second.login("alice", PASSWORD)
        assert as_json.status == 503 and as_json.headers["Retry-After"] == "1"
        assert "busy" in (await as_json.json())["error"]
    finally:
        gate.opened.set()
    assert (await held).status == 401
    # Refused before any check: the refusals count as no failed login.
    assert app[LIMITS_KEY].login_address.count("127.0.0.1") == 1
    assert (await second.login("alice", PASSWORD)).status == 302


@pytest.mark.parametrize("settings_overrides", [{"hash_concurrency": 1, "hash_queue": 0}])
async def test_signup_while_hashing_is_saturated_gets_503(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    gate = gated(auth.client.app[PASSWORDS_KEY])
    held = asyncio.create_task(Auth(await make_client()).login("alice", "wrong password!!"))
    try:
        await gate.until_running(1)
        busy = await Auth(await make_client()).signup("bob")
        assert busy.status == 503 and busy.headers["Retry-After"] == "1"
    finally:
        gate.opened.set()
    await held
    assert (await Auth(await make_client()).signup("bob")).status == 302


@pytest.mark.parametrize("settings_overrides", [{"signup_limit_address": 2}])
async def test_signup_with_a_taken_login_is_refused_before_hashing_and_counted(
    auth: Auth, make_client: Any
) -> None:
    assert (await auth.signup("alice")).status == 302  # the address's first sign-up
    gate = gated(auth.client.app[PASSWORDS_KEY])
    gate.opened.set()
    taken = await Auth(await make_client()).signup("ALICE")
    assert taken.status == 409 and "This login is taken" in await taken.text()
    assert gate.calls == []  # no hash was spent on it
    # It counted: the address has used its two sign-ups.
    refused = await Auth(await make_client()).signup("bob")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0


@pytest.mark.parametrize("settings_overrides", [{"hash_concurrency": 1, "hash_queue": 0}])
async def test_password_change_while_hashing_is_saturated_gets_503(
    auth: Auth, make_client: Any
) -> None:
    await auth.signup("alice")
    gate = gated(auth.client.app[PASSWORDS_KEY])
    held = asyncio.create_task(Auth(await make_client()).login("alice", "wrong password!!"))
    try:
        await gate.until_running(1)
        new = "another good password"
        form = {"current_password": PASSWORD, "password": new, "password_confirm": new}
        busy = await auth.post("/account/password", form, csrf_path="/account")
        assert busy.status == 503 and busy.headers["Retry-After"] == "1"
    finally:
        gate.opened.set()
    await held
    assert (await Auth(await make_client()).login("alice", PASSWORD)).status == 302  # unchanged
