"""`/metrics`: Prometheus text (read by prometheus_client's own parser), and who may read it."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, web
from aiohttp.test_utils import TestClient, make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from chat.broker import BROKER_KEY
from chat.hub import HUB_KEY
from common.metrics import METRICS_KEY, Metrics, instrument_store, is_loopback, may_scrape, uploaded
from conftest import Auth, base_settings, receive_until
from harness import RedisServer
from storage.base import StorageUnavailable

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
TOKEN = "s3cret-metrics-token-0123456789"


async def scrape(client: TestClient[Any, Any], **headers: str) -> Samples:
    """Read /metrics through the real parser; every sample by name and sorted labels."""
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """Return one sample's value (0 when it is absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def named(samples: Samples, name: str) -> list[dict[str, str]]:
    """Return the label sets of every sample with this name."""
    return [dict(labels) for n, labels in samples if n == name]


async def test_metrics_count_requests_messages_frames_and_closes(
    client: TestClient[Any, Any],
    auth: Auth,
    connect: Callable[..., Awaitable[ClientWebSocketResponse]],
) -> None:
    assert (await auth.signup("alice")).status == 302
    await client.get("/join/not-a-real-token-at-all")
    ws = await connect(auth)
    await ws.send_json({"type": "message", "text": "hello", "client_id": "c1"})
    await receive_until(ws, "message")

    samples = await scrape(client)
    process = client.app[METRICS_KEY].process
    assert value(samples, "chat_open_sockets", process=process) == 1
    assert value(samples, "chat_messages_stored_total") == 1
    assert value(samples, "chat_frames_delivered_total") >= 1
    assert value(samples, "chat_http_requests_total", route="signup", method="POST", status="302")
    assert value(samples, "chat_http_requests_total", route="ws", method="GET", status="101") == 1
    assert value(samples, "chat_http_request_duration_seconds_count", route="signup") >= 2
    # A socket's life is not a request's latency: the upgrade is counted, never timed.
    assert value(samples, "chat_http_request_duration_seconds_count", route="ws") == 0
    add = value(samples, "chat_storage_duration_seconds_count", operation="messages.add")
    assert add == 1
    assert value(samples, "chat_storage_duration_seconds_count", operation="users.create") == 1
    assert value(samples, "chat_process_info", process=process, pid=process.split(":")[-1]) == 1
    assert ("chat_event_loop_lag_seconds", ()) in samples
    assert ("chat_event_loop_lag_max_seconds", ()) in samples
    assert ("process_cpu_seconds_total", ()) in samples
    assert not named(samples, "chat_redis_connected")  # no REDIS_URL: nothing to report
    # Routes by name, never by path: the invitation token in /join/<token> is nowhere.
    routes = {labels["route"] for labels in named(samples, "chat_http_requests_total")}
    assert "join" in routes and not any("/" in r or "token" in r for r in routes)

    await ws.close()
    await client.get("/healthz")  # the server has seen the close by the time this is answered
    for _ in range(50):
        samples = await scrape(client)
        if value(samples, "chat_socket_closes_total", code="1000"):
            break
    assert value(samples, "chat_socket_closes_total", code="1000") == 1
    assert value(samples, "chat_open_sockets", process=process) == 0


async def test_frames_are_counted_per_socket(
    client: TestClient[Any, Any],
    make_user: Callable[[str], Awaitable[Auth]],
    connect: Callable[..., Awaitable[ClientWebSocketResponse]],
) -> None:
    people = [await make_user(login) for login in ("ann", "bob", "cyd")]
    sockets = [await connect(person) for person in people]
    before = client.app[HUB_KEY].frames_delivered
    await sockets[0].send_json({"type": "message", "text": "to all", "client_id": "m1"})
    for ws in sockets:
        await receive_until(ws, "message")
    assert client.app[HUB_KEY].frames_delivered - before == 3
    await sockets[0].send_json({"type": "typing"})
    for ws in sockets[1:]:
        await receive_until(ws, "typing")
    assert client.app[HUB_KEY].frames_delivered - before == 5  # not to the typist herself


async def test_upload_bytes_and_close_codes(client: TestClient[Any, Any]) -> None:
    uploaded(client.app, 1234)
    uploaded(client.app, 0)
    metrics = client.app[METRICS_KEY]
    for code in (1001, 1008, 4321, None):
        metrics.socket_closed(code)
    samples = await scrape(client)
    assert value(samples, "chat_upload_bytes_total") == 1234
    codes = {labels["code"]: 1 for labels in named(samples, "chat_socket_closes_total")}
    assert codes == {"1001": 1, "1008": 1, "other": 1, "none": 1}  # client codes: bounded


class FakeUsers:
    """A collection whose lookup finds the database down."""

    async def find_by_login(self, login: str) -> None:
        raise StorageUnavailable("down")

    async def _private(self) -> None:
        """Not part of the interface: never timed."""


class FakeMessages:
    """A collection that stores a message unless it was stored before."""

    async def add(self, room: str, user: str, text: str, client_id: str) -> tuple[str, bool]:
        return text, client_id == "new"


async def test_store_calls_are_timed_and_counted() -> None:
    store: Any = types.SimpleNamespace(users=FakeUsers(), messages=FakeMessages())
    metrics = Metrics()
    instrument_store(store, metrics)
    with pytest.raises(StorageUnavailable):
        await store.users.find_by_login("alice")
    assert await store.messages.add("general", "alice", "hi", "new") == ("hi", True)
    assert await store.messages.add("general", "alice", "hi", "old") == ("hi", False)
    assert store.users._private.__func__ is FakeUsers._private
    body, _ = metrics.render("")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert value(samples, "chat_storage_unavailable_total", operation="users.find_by_login") == 1
    op = {"operation": "users.find_by_login"}
    assert value(samples, "chat_storage_duration_seconds_count", **op) == 1
    assert value(samples, "chat_storage_duration_seconds_count", operation="messages.add") == 2
    assert value(samples, "chat_messages_stored_total") == 1  # the re-send stored nothing


async def test_redis_state_is_reported(client: TestClient[Any, Any]) -> None:
    broker = client.app[BROKER_KEY]
    for status, expected in (({"redis": "ok"}, 1), ({"redis": "unavailable"}, 0)):
        broker.status = lambda status=status: status  # type: ignore[method-assign]
        samples = await scrape(client)
        assert value(samples, "chat_redis_connected") == expected
        assert ("chat_redis_connected", ()) in samples


@pytest.mark.cluster
async def test_redis_connection_is_reported_live(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    tmp_path: Any,
) -> None:
    redis = RedisServer()
    redis.start()
    try:
        app = create_app(base_settings(tmp_path, redis_url=redis.url, presence_ttl=3.0))
        client = await aiohttp_client(app)
        assert value(await scrape(client), "chat_redis_connected") == 1
        redis.stop()
        for _ in range(100):  # the subscription notices at once; bounded all the same
            samples = await scrape(client)
            if not value(samples, "chat_redis_connected"):
                break
            await asyncio.sleep(0.1)
        assert ("chat_redis_connected", ()) in samples
        assert value(samples, "chat_redis_connected") == 0
    finally:
        redis.stop()


async def test_two_apps_keep_their_metrics_apart(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    tmp_path: Any,
) -> None:
    first = await aiohttp_client(create_app(base_settings(tmp_path / "a")))
    second = await aiohttp_client(create_app(base_settings(tmp_path / "b")))
    for _ in range(3):
        await first.get("/healthz")
    a, b = await scrape(first), await scrape(second)
    ok = {"route": "healthz", "method": "GET", "status": "200"}
    assert value(a, "chat_http_requests_total", **ok) == 3
    assert value(b, "chat_http_requests_total", **ok) == 0


# Who may read /metrics


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """A token for the tests of access by token."""
    return {"metrics_token": TOKEN}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},  # came through a proxy: not our own machine
        {"X-Forwarded-For": "127.0.0.1"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
        {"Authorization": "Bearer wrong-token-wrong-token-wrong", "X-Real-IP": "203.0.113.9"},
        {"Authorization": f"Basic {TOKEN}", "X-Forwarded-For": "203.0.113.9"},
        {"Authorization": f"Bearer {TOKEN}x", "X-Forwarded-For": "203.0.113.9"},
        {"Authorization": "Bearer", "X-Forwarded-For": "203.0.113.9"},
    ],
)
async def test_metrics_are_hidden_from_remote_clients(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 404
    missing = await client.get("/no-such-page", headers=headers)
    assert await resp.text() == await missing.text()  # the same answer as for nothing at all
    assert "chat_" not in await resp.text()


async def test_token_opens_metrics_to_a_remote_client(client: TestClient[Any, Any]) -> None:
    samples = await scrape(
        client, **{"X-Forwarded-For": "203.0.113.9", "Authorization": f"bearer {TOKEN}"}
    )
    assert ("chat_messages_stored_total", ()) in samples
    assert await scrape(client)  # loopback, no token: served too


@pytest.mark.parametrize("trust_proxy", [False, True])
@pytest.mark.parametrize(
    ("peer", "headers", "token", "allowed"),
    [
        ("127.0.0.1", {}, "", True),
        ("127.8.9.1", {}, "", True),
        ("::1", {}, "", True),
        ("::ffff:127.0.0.1", {}, "", True),
        ("192.0.2.7", {}, "", False),
        ("::ffff:192.0.2.7", {}, "", False),
        ("10.0.0.1", {}, "", False),
        ("192.0.2.7", {"Authorization": f"Bearer {TOKEN}"}, TOKEN, True),
        ("192.0.2.7", {"Authorization": f"Bearer {TOKEN}"}, "", False),
        ("192.0.2.7", {"Authorization": "Bearer "}, TOKEN, False),
        ("192.0.2.7", {"Authorization": "Bearer ünïcode"}, TOKEN, False),
        ("127.0.0.1", {"X-Forwarded-For": "192.0.2.7"}, "", False),
        ("127.0.0.1", {"X-Forwarded-For": "192.0.2.7", "Authorization": f"Bearer {TOKEN}"},
         TOKEN, True),
    ],
)  # fmt: skip
async def test_who_may_scrape(
    peer: str, headers: dict[str, str], token: str, allowed: bool, trust_proxy: bool
) -> None:
    class Transport:
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return (peer, 40000) if name == "peername" else default

    request = make_mocked_request("GET", "/metrics", headers=headers, transport=Transport())
    if trust_proxy and "X-Forwarded-For" in headers:
        # As XForwardedRelaxed does: the forwarded client's address replaces the peer's.
        request = request.clone(remote=headers["X-Forwarded-For"])
    assert may_scrape(request, token) is allowed


@pytest.mark.parametrize("trust_proxy", [False, True])
async def test_proxied_request_is_remote(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    tmp_path: Any,
    trust_proxy: bool,
) -> None:
    app = create_app(base_settings(tmp_path, trust_proxy=trust_proxy, allowed_hosts=("*",)))
    client = await aiohttp_client(app)
    # Heroku's router connects from elsewhere, a local nginx from loopback: either way the
    # request names its client, who is not on this machine.
    resp = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1, 198.51.100.4"})
    assert resp.status == 404
    assert (await client.get("/metrics")).status == 200


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.2")
    for remote in (None, "", "0.0.0.0", "192.0.2.1", "::", "fe80::1", "localhost", "/tmp/sock"):
        assert not is_loopback(remote)


async def test_metrics_off_serves_nothing(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    tmp_path: Any,
) -> None:
    client = await aiohttp_client(create_app(base_settings(tmp_path, metrics=False)))
    resp = await client.get("/metrics")
    assert resp.status == 404
    assert await resp.text() == await (await client.get("/no-such-page")).text()
    assert (await client.get("/healthz")).status == 200
