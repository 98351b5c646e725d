"""Rate limits answer clearly: 429 with Retry-After on forms, `rate_limited` on the socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMsgType
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.budgets import MESSAGES, Budgets, SharedBudgets
from common.limits import LIMITS_KEY, GrowingDelay, TokenBucket, WindowLimit
from conftest import PASSWORD, Auth, receive
from settings import Settings

DEFAULTS = Settings(secret_key="k")


class Clock:
    """A clock for the limits that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_limit_counts_and_expires() -> None:
    clock = Clock()
    limit = WindowLimit(3, 60, clock)
    for _ in range(3):
        assert limit.retry_after("k") == 0
        limit.hit("k")
    assert limit.retry_after("k") == 60
    clock.now += 45
    assert limit.retry_after("k") == 15
    assert limit.retry_after("other") == 0
    clock.now += 15
    assert limit.retry_after("k") == 0  # a new window


def test_window_limit_reset_clears_the_count() -> None:
    clock = Clock()
    limit = WindowLimit(3, 60, clock)
    for _ in range(3):
        limit.hit("k")
    assert limit.retry_after("k") == 60
    limit.reset("k")
    assert limit.retry_after("k") == 0


def test_growing_delay_grows_and_is_bounded() -> None:
    clock = Clock()
    delay = GrowingDelay(3, 2.0, 60, clock)
    seen = []
    for _ in range(8):
        seen.append(delay.delay("k"))
        delay.hit("k")
    # Three failures are free; then 0.25 s, doubling per failure, never past 2 s.
    assert seen == [0, 0, 0, 0.25, 0.5, 1.0, 2.0, 2.0]
    for _ in range(100):
        delay.hit("k")
    assert delay.delay("k") == 2.0  # bounded however many failures
    assert delay.delay("other") == 0
    clock.now += 60
    assert delay.delay("k") == 0  # a new window
    for _ in range(5):
        delay.hit("k")
    delay.reset("k")
    assert delay.delay("k") == 0
    assert GrowingDelay(1, 0.0, 60, clock).delay("k") == 0  # LOGIN_DELAY_MAX=0: no delay


async def test_growing_delay_sleeps_without_a_thread() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    delay = GrowingDelay(1, 10.0, 60, Clock(), sleep)
    assert await delay.wait("k") == 0 and slept == []
    delay.hit("k")
    delay.hit("k")
    assert await delay.wait("k") == 0.5 and slept == [0.5]


def test_token_bucket_bursts_then_refills() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 100 / 60, clock)
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    wait = bucket.take()
    assert wait == pytest.approx(0.6)
    clock.now += 0.6
    assert bucket.take() == 0.0


async def fail_logins_to_the_limit(person: Auth) -> None:
    """Log in to alice's account with a wrong password as often as the limit allows."""
    for _ in range(DEFAULTS.login_limit_account):
        assert (await person.login("alice", "wrong password!!")).status == 401


async def test_failed_logins_per_account_get_429(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    person = Auth(await make_client())
    await fail_logins_to_the_limit(person)
    blocked = await person.post(
        "/login",
        {"login": "ALICE", "password": PASSWORD},
        headers={"Accept": "text/html"},
    )
    assert blocked.status == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= DEFAULTS.login_window
    assert "Too many attempts" in await blocked.text()


async def test_failed_logins_per_account_leave_other_accounts_alone(
    auth: Auth, make_client: Any
) -> None:
    await auth.signup("alice")
    person = Auth(await make_client())
    await fail_logins_to_the_limit(person)
    # Another account from the same address is not blocked yet.
    await Auth(await make_client()).signup("bob")
    assert (await person.login("bob", PASSWORD)).status == 302


async def test_success_resets_the_account_count(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    person = Auth(await make_client())
    for _ in range(DEFAULTS.login_limit_account - 1):
        assert (await person.login("alice", "wrong password!!")).status == 401
    assert (await person.login("alice", PASSWORD)).status == 302
    for _ in range(DEFAULTS.login_limit_account - 1):
        assert (await person.login("alice", "wrong password!!")).status == 401
    assert (await person.login("alice", PASSWORD)).status == 302


@pytest.mark.parametrize("settings_overrides", [{"login_limit_address": 3}])
async def test_failed_logins_per_address(auth: Auth, make_client: Any) -> None:
    person = Auth(await make_client())
    for name in ("a1", "a2", "a3"):
        assert (await person.login(name, "wrong password!!")).status == 401
    assert (await person.login("a4", "wrong password!!")).status == 429


async def test_signups_per_address(auth: Auth, make_client: Any) -> None:
    for i in range(DEFAULTS.signup_limit_address):
        assert (await Auth(await make_client()).signup(f"user{i}")).status == 302
    refused = await Auth(await make_client()).signup("one_more")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0


PROXY = {"trust_proxy": True}


def from_address(address: str) -> dict[str, str]:
    """Headers of a request the trusted proxy forwards from `address`."""
    return {"X-Forwarded-For": address}


def record_delays(auth: Auth) -> list[float]:
    """Make the per-account delay record its sleeps instead of sleeping."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    auth.client.app[LIMITS_KEY].login_delay.sleep = sleep
    return slept


@pytest.mark.parametrize("settings_overrides", [PROXY])
async def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(
    auth: Auth, make_client: Any
) -> None:
    # The issue changed this: five wrong passwords from anywhere used to lock the owner out
    # for LOGIN_WINDOW; now they block only that (account, address) pair.
    await auth.signup("alice")
    slept = record_delays(auth)
    attacker = Auth(await make_client())
    wrong = {"login": "alice", "password": "wrong password!!"}
    for _ in range(DEFAULTS.login_limit_account):
        resp = await attacker.post("/login", wrong, headers=from_address("203.0.113.7"))
        assert resp.status == 401
    blocked = await attacker.post("/login", wrong, headers=from_address("203.0.113.7"))
    assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0
    owner = Auth(await make_client())
    right = {"login": "alice", "password": PASSWORD}
    resp = await owner.post("/login", right, headers=from_address("198.51.100.9"))
    assert resp.status == 302  # the owner, from elsewhere, gets in
    assert slept == [0.25]  # after at most a short, bounded delay
    # The success cleared the account's delay.
    resp = await Auth(await make_client()).post("/login", right, headers=from_address("192.0.2.1"))
    assert resp.status == 302 and slept == [0.25]


@pytest.mark.parametrize("settings_overrides", [PROXY])
async def test_failures_from_many_addresses_slow_the_account_down_boundedly(
    auth: Auth, make_client: Any
) -> None:
    await auth.signup("alice")
    slept = record_delays(auth)
    person = Auth(await make_client())
    wrong = {"login": "alice", "password": "wrong password!!"}
    for i in range(DEFAULTS.login_limit_account + 10):  # a new address each time
        resp = await person.post("/login", wrong, headers=from_address(f"203.0.113.{i + 1}"))
        assert resp.status == 401
    assert slept == [min(0.25 * 2**k, DEFAULTS.login_delay_max) for k in range(10)]
    assert slept[-1] == DEFAULTS.login_delay_max == 10.0
    right = {"login": "alice", "password": PASSWORD}
    resp = await person.post("/login", right, headers=from_address("198.51.100.9"))
    assert resp.status == 302 and slept[-1] == 10.0  # slowed, not locked out


@pytest.mark.parametrize("settings_overrides", [{**PROXY, "login_limit_address": 3}])
async def test_failed_logins_per_address_across_accounts(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    person = Auth(await make_client())
    for name in ("a1", "a2", "a3"):
        resp = await person.post(
            "/login", {"login": name, "password": "x" * 12}, headers=from_address("203.0.113.7")
        )
        assert resp.status == 401
    right = {"login": "alice", "password": PASSWORD}
    blocked = await person.post("/login", right, headers=from_address("203.0.113.7"))
    assert blocked.status == 429  # that address is done, whichever account it tries
    resp = await person.post("/login", right, headers=from_address("198.51.100.9"))
    assert resp.status == 302  # another address is not


RATES = {"message_burst": 10, "message_per_minute": 100}


async def use_up_the_burst(ws: Any) -> None:
    """Send the burst of 10 messages, which goes through, and one more, which does not."""
    for i in range(10):  # the burst goes through
        await ws.send_str(json.dumps({"type": "message", "text": f"m{i}", "client_id": f"c{i}"}))
    for i in range(10):
        assert (await receive(ws))["seq"] == i + 1
    await ws.send_str(json.dumps({"type": "message", "text": "more", "client_id": "over"}))


@pytest.mark.parametrize("settings_overrides", [RATES])
async def test_message_past_the_burst_is_rate_limited(ws: Any) -> None:
    await use_up_the_burst(ws)
    refused = await receive(ws)
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert refused["client_id"] == "over"
    assert 0 < refused["retry_after"] <= 1
    assert not ws.closed


@pytest.mark.parametrize("settings_overrides", [RATES])
async def test_flooding_past_the_limit_closes_with_1008(ws: Any) -> None:
    await use_up_the_burst(ws)
    assert (await receive(ws))["code"] == "rate_limited"
    for i in range(40):  # keeps pushing into the full bucket
        await ws.send_str(json.dumps({"type": "message", "text": "x", "client_id": f"f{i}"}))
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type != WSMsgType.TEXT:
            break
        assert json.loads(msg.data)["code"] == "rate_limited"
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)


@pytest.mark.parametrize("settings_overrides", [{"sockets_per_user": 2}])
async def test_sockets_per_user(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    first = await connect(auth)
    await connect(auth)
    resp = await auth.upgrade()
    assert resp.status == 429 and "Retry-After" in resp.headers
    await first.close()
    await connect(auth)  # a closed one frees its place


@pytest.mark.parametrize("settings_overrides", [{"sockets_per_address": 2}])
async def test_sockets_per_address(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    await connect(alice)
    await connect(bob)
    resp = await bob.upgrade()
    assert resp.status == 429


SLOW = {"message_burst": 10, "message_per_minute": 1}  # no refill to speak of during a test


@pytest.mark.parametrize("settings_overrides", [SLOW])
async def test_one_account_shares_one_budget_across_its_sockets(
    auth: Auth, connect: Any, client: Any
) -> None:
    await auth.signup("alice")
    sockets = [await connect(auth) for _ in range(20)]

    async def burst(ws: Any, n: int) -> None:
        for i in range(10):
            await ws.send_str(json.dumps({"type": "message", "text": "x", "client_id": f"{n}-{i}"}))

    await asyncio.gather(*(burst(ws, n) for n, ws in enumerate(sockets)))
    frames = [f for ws in sockets for f in await drain(ws)]
    refused = [f for f in frames if f["type"] == "error"]
    assert {f["code"] for f in refused} == {"rate_limited"}
    assert len(refused) == 200 - SLOW["message_burst"]
    resp = await client.get("/rooms/general/messages?limit=100")
    assert len((await resp.json())["messages"]) == SLOW["message_burst"]


async def drain(ws: Any, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Receive frames until none comes for `quiet` seconds."""
    frames = []
    while True:
        try:
            frames.append(await receive(ws, timeout=quiet))
        except TimeoutError:
            return frames


@pytest.mark.parametrize("settings_overrides", [SLOW])
async def test_typing_shares_one_budget_across_sockets(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    sockets = [await connect(auth) for _ in range(2)]
    for ws in sockets:
        for _ in range(20):
            await ws.send_str(json.dumps({"type": "typing"}))
    # 40 typing frames spend from one bucket of 30
    limited = [f["code"] for ws in sockets for f in await drain(ws) if f["type"] == "error"]
    assert limited == ["rate_limited"] * 10


async def test_a_ping_flood_is_cut_with_1008(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    ws = await connect(auth, autoping=False)
    for i in range(200):
        await ws.ping(b"%d" % i)
    pongs = 0
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type != WSMsgType.PONG:
            break
        pongs += 1
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)
    assert pongs < 20  # the few within the budget were answered, then no more


async def test_unsolicited_pongs_are_cut_too(auth: Auth, connect: Any) -> None:
    await auth.signup("alice")
    ws = await connect(auth, autoping=False)
    for _ in range(200):
        await ws.pong(b"")
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)


class FailingScript:
    """A registered Redis script whose server is gone, or one that answers `wait`."""

    def __init__(self, wait: str | None) -> None:
        self.wait = wait
        self.calls = 0

    async def __call__(self, keys: list[str], args: list[Any]) -> str:
        self.calls += 1
        if self.wait is None:
            raise RedisConnectionError("Connection refused")
        return self.wait


class FakeRedis:
    """Just enough of redis.asyncio.Redis for SharedBudgets."""

    def __init__(self, script: FailingScript) -> None:
        self.script = script

    def register_script(self, source: str) -> FailingScript:
        return self.script


async def test_a_redis_failure_falls_back_to_the_local_budget_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = FailingScript(None)
    budgets = Budgets(10, 100 / 60)
    budgets.shared = SharedBudgets(FakeRedis(script), lambda: True)
    budget = budgets.acquire("alice")
    for _ in range(3):
        assert budget.messages.take() == 0.0
        assert await budgets.shared_wait("alice", MESSAGES, budget.messages) == 0.0  # granted
    assert script.calls == 1  # Redis is left alone for a while after it failed
    assert caplog.text.count("rate budgets: Redis failed") == 1
    assert budget.messages.tokens == pytest.approx(7, abs=0.1)  # the local budget still counts


async def test_a_refusal_across_processes_gives_the_local_token_back() -> None:
    budgets = Budgets(10, 100 / 60)
    budgets.shared = SharedBudgets(FakeRedis(FailingScript("0.5")), lambda: True)
    budget = budgets.acquire("alice")
    assert budget.messages.take() == 0.0
    assert await budgets.shared_wait("alice", MESSAGES, budget.messages) == 0.5
    assert budget.messages.tokens == pytest.approx(10, abs=0.1)


def test_a_budget_is_kept_until_it_refilled_and_shared_meanwhile() -> None:
    budgets = Budgets(10, 100 / 60)
    first = budgets.acquire("alice")
    assert budgets.acquire("alice") is first  # a second socket shares it
    budgets.release("alice", first)
    first.messages.take()
    budgets.release("alice", first)  # the last socket: not full, kept (reconnecting gains nothing)
    assert budgets.acquire("alice") is first
    budgets.release("alice", first)
    first.messages.tokens = 10.0
    budgets.release("alice", budgets.acquire("alice"))
    assert "alice" not in budgets.by_login  # full again: forgotten
