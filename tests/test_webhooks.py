"""Bots' outgoing webhooks (both stores), a local aiohttp server playing the receiver: the reply
is posted in the room, failures are retried, slow receivers time out, private addresses are
refused unless WEBHOOK_ALLOW_PRIVATE (on here for the local receiver, off where SSRF is tested)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chat.webhooks import (
    WEBHOOKS_KEY,
    WORKERS,
    GuardedResolver,
    PrivateAddress,
    check_destination,
    mentioned,
    public_address,
)
from conftest import Auth, receive_until
from storage import STORE_KEY

NEW_KEY_START = 'id="new-bot-key" type="text" readonly value="'
Answer = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


class Receiver:
    """A webhook receiver on 127.0.0.1: records each call, answers as `answer` says."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[tuple[dict[str, Any], dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.calls.append((json.loads(body), dict(request.headers), body))
        return await self.answer(request, len(self.calls))


async def reply(text: str) -> web.Response:
    return web.json_response({"text": text})


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Reach the local receiver, retry at once, and time out soon (a slow receiver)."""
    return {"webhook_allow_private": True, "webhook_backoff": 0.01, "webhook_timeout": 0.5}


@pytest.fixture
async def receiver(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> Callable[[Answer], Awaitable[tuple[Receiver, str]]]:
    """Start a receiver answering as told; return it and its URL."""

    async def start(answer: Answer) -> tuple[Receiver, str]:
        hook = Receiver(answer)
        app = web.Application()
        app.router.add_post("/hook", hook.handle)
        app.router.add_post("/elsewhere", hook.handle)
        server = await aiohttp_server(app)
        return hook, str(server.make_url("/hook"))

    return start


async def make_bot(admin: Auth, url: str, login: str = "helper") -> str:
    data = {"login": login, "webhook_url": url}
    resp = await admin.post("/admin/bots", data, csrf_path="/admin")
    page = await resp.text()
    assert resp.status == 201, page
    return page.split(NEW_KEY_START, 1)[1].split('"', 1)[0]


async def settled(person: Auth) -> None:
    """Wait until every queued message's webhooks were called (and retried) to the end."""
    await asyncio.wait_for(person.client.app[WEBHOOKS_KEY].settled(), 10)


async def say(ws: Any, text: str, client_id: str) -> dict[str, Any]:
    await ws.send_json({"type": "message", "text": text, "client_id": client_id})
    return await receive_until(ws, "message")


async def test_a_mention_is_posted_and_the_reply_appears_in_the_room(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    hook, url = await receiver(lambda request, n: reply("pong"))
    alice = await make_user("alice")
    key = await make_bot(alice, url)
    ws = await connect(alice)
    sent = await say(ws, "hey @helper, ping", "c-1")
    answer = await receive_until(ws, "message")
    assert (answer["user"], answer["text"]) == ("helper", "pong")
    ((payload, headers, body),) = hook.calls
    assert payload["event"] == "mention" and payload["bot"] == "helper"
    assert payload["room"] == {"slug": "general", "name": "General", "kind": "open"}
    assert (payload["message"]["seq"], payload["message"]["text"]) == (sent["seq"], sent["text"])
    signing_key = hashlib.sha256(key.encode()).hexdigest().encode()
    expected = "sha256=" + hmac.new(signing_key, body, hashlib.sha256).hexdigest()
    assert headers["X-Chat-Signature"] == expected
    assert key not in body.decode() and key not in json.dumps(headers)
    await settled(alice)
    assert len(hook.calls) == 1  # the bot's own reply triggers nothing


async def test_a_bot_deactivated_while_its_receiver_answers_posts_nothing(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    alice = await make_user("alice")

    async def deactivate_then_answer(request: web.Request, n: int) -> web.StreamResponse:
        await alice.client.app[STORE_KEY].users.set_active("helper", False)
        return await reply("too late")

    hook, url = await receiver(deactivate_then_answer)
    await make_bot(alice, url)
    ws = await connect(alice)
    sent = await say(ws, "@helper are you there?", "c-1")
    await settled(alice)
    assert len(hook.calls) == 1
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert [m["seq"] for m in history["messages"]] == [sent["seq"]]  # no answer posted


async def test_every_bot_mentioned_is_called_and_answers(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    async def by_name(request: web.Request, n: int) -> web.StreamResponse:
        return await reply("I am " + (await request.json())["bot"])

    hook, url = await receiver(by_name)
    alice = await make_user("alice")
    await make_bot(alice, url)
    await make_bot(alice, url, "other")
    ws = await connect(alice)
    await say(ws, "@helper and @OTHER, and @helper again", "c-1")
    answers = {(await receive_until(ws, "message"))["text"] for _ in range(2)}
    assert answers == {"I am helper", "I am other"}
    await settled(alice)
    assert sorted(c[0]["bot"] for c in hook.calls) == ["helper", "other"]


async def test_a_direct_message_to_the_bot_is_posted(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    hook, url = await receiver(lambda request, n: reply("at your service"))
    alice = await make_user("alice")
    await make_bot(alice, url)
    resp = await alice.client.get("/dm/helper", allow_redirects=False)
    slug = resp.headers["Location"].removeprefix("/rooms/")
    ws = await connect(alice, f"?room={slug}")
    await say(ws, "hello there", "c-1")
    answer = await receive_until(ws, "message")
    assert (answer["user"], answer["text"], answer["room"]) == ("helper", "at your service", slug)
    assert hook.calls[0][0]["event"] == "direct"


async def test_failures_are_retried_with_backoff(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    async def flaky(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=503) if n < 3 else await reply("third time")

    hook, url = await receiver(flaky)
    alice = await make_user("alice")
    await make_bot(alice, url)
    ws = await connect(alice)
    await say(ws, "@helper status?", "c-1")
    answer = await receive_until(ws, "message")
    assert answer["text"] == "third time" and len(hook.calls) == 3
    assert len({c[0]["message"]["id"] for c in hook.calls}) == 1


async def test_a_slow_receiver_times_out_and_is_tried_again(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    async def slow_first(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            await asyncio.sleep(2)  # beyond WEBHOOK_TIMEOUT (0.5 s here)
        return await reply("sorry, slow")

    hook, url = await receiver(slow_first)
    alice = await make_user("alice")
    await make_bot(alice, url)
    ws = await connect(alice)
    await say(ws, "@helper quick", "c-1")
    answer = await receive_until(ws, "message")
    assert answer["text"] == "sorry, slow" and len(hook.calls) == 2


async def test_it_gives_up_after_three_tries_and_posting_went_on(
    make_user: Any, connect: Any, receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hook, url = await receiver(lambda request, n: asyncio.sleep(0, web.Response(status=500)))
    alice = await make_user("alice")
    await make_bot(alice, url)
    ws = await connect(alice)
    await say(ws, "@helper are you there", "c-1")
    await say(ws, "never mind", "c-2")  # the poster was never held up
    await settled(alice)
    assert len(hook.calls) == 3
    assert "gave up after 3 tries" in caplog.text
    assert await alice.client.app[STORE_KEY].messages.last_seq("general") == 2


@pytest.mark.parametrize(
    "settings_overrides",
    [{"webhook_allow_private": True, "webhook_backoff": 0.01, "webhook_timeout": 60}],
)
async def test_a_stuck_receiver_holds_up_neither_other_bots_nor_its_own_order(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    # More messages for a stuck bot than there are workers: before lanes, they held every worker
    # (up to 3 tries of WEBHOOK_TIMEOUT each) and the other bot's call waited behind them.
    release = asyncio.Event()

    async def by_bot(request: web.Request, n: int) -> web.StreamResponse:
        payload = await request.json()
        if payload["bot"] == "stuck":
            await release.wait()
        return await reply(f"{payload['bot']} saw {payload['message']['text']}")

    hook, url = await receiver(by_bot)
    alice = await make_user("alice")
    await make_bot(alice, url, "stuck")
    await make_bot(alice, url, "quick")
    ws = await connect(alice)
    for i in range(WORKERS + 2):
        await say(ws, f"@stuck {i}", f"c-{i}")
    await say(ws, "@quick hello", "c-quick")
    answer = await receive_until(ws, "message")
    assert answer["text"] == "quick saw @quick hello"
    assert [c[0]["bot"] for c in hook.calls].count("stuck") == 1  # one call at a time per bot
    release.set()
    answers = [(await receive_until(ws, "message"))["text"] for _ in range(WORKERS + 2)]
    assert answers == [f"stuck saw @stuck {i}" for i in range(WORKERS + 2)]  # in order
    await settled(alice)
    assert len(hook.calls) == WORKERS + 3


async def test_a_redirect_is_not_followed_and_a_4xx_not_retried(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    async def redirect(request: web.Request, n: int) -> web.StreamResponse:
        if request.path == "/hook" and n == 1:
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=404)

    hook, url = await receiver(redirect)
    alice = await make_user("alice")
    await make_bot(alice, url)
    ws = await connect(alice)
    await say(ws, "@helper one", "c-1")
    await settled(alice)
    assert len(hook.calls) == 1  # /elsewhere never called
    await say(ws, "@helper two", "c-2")
    await settled(alice)
    assert len(hook.calls) == 2  # a 404 is answered once, not retried
    assert await alice.client.app[STORE_KEY].messages.last_seq("general") == 2


async def test_a_mention_in_a_room_the_bot_cannot_see_is_not_sent(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    hook, url = await receiver(lambda request, n: reply("leak"))
    alice = await make_user("alice")
    await make_bot(alice, url)
    resp = await alice.post("/rooms", {"name": "Secret", "private": "on"}, csrf_path="/")
    slug = resp.headers["Location"].removeprefix("/rooms/")
    ws = await connect(alice, f"?room={slug}")
    await say(ws, "don't tell @helper", "c-1")
    await settled(alice)
    assert hook.calls == []
    await alice.post(f"/rooms/{slug}/members", {"login": "helper"}, csrf_path="/")
    await say(ws, "now @helper may know", "c-2")
    answer = await receive_until(ws, "message")
    assert answer["user"] == "helper" and len(hook.calls) == 1


async def test_bots_own_messages_and_revoked_bots_trigger_nothing(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    hook, url = await receiver(lambda request, n: reply("loop"))
    alice = await make_user("alice")
    key = await make_bot(alice, url)
    await make_bot(alice, url, "other")
    resp = await alice.client.post(
        f"/api/bots/{key}/rooms/general/messages", json={"text": "@helper @other hi"}
    )
    assert resp.status == 201
    await settled(alice)
    assert hook.calls == []
    await alice.post("/admin/bots/helper/revoke", {}, csrf_path="/admin")
    ws = await connect(alice)
    await say(ws, "@helper?", "c-1")
    await settled(alice)
    assert hook.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"text": 3}',
        b'["text"]',
        b'{"text": "   "}',
        json.dumps({"text": "z" * 70_000}),
    ],
)
async def test_an_answer_without_usable_text_posts_nothing_and_is_not_retried(
    make_user: Any, connect: Any, receiver: Any, body: bytes | str
) -> None:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    hook, url = await receiver(answer)
    alice = await make_user("alice")
    await make_bot(alice, url)
    ws = await connect(alice)
    await say(ws, "@helper say something", "c-1")
    await settled(alice)
    assert len(hook.calls) == 1
    assert await alice.client.app[STORE_KEY].messages.last_seq("general") == 1


async def test_a_long_answer_is_cut_to_a_message(
    make_user: Any, connect: Any, receiver: Any
) -> None:
    hook, url = await receiver(lambda request, n: reply("w" * 3000))
    alice = await make_user("alice")
    await make_bot(alice, url)
    ws = await connect(alice)
    await say(ws, "@helper essay please", "c-1")
    answer = await receive_until(ws, "message")
    assert len(answer["text"]) == 2000 and answer["text"].endswith("…")


# SSRF


def test_mentions_are_logins_after_an_at_sign() -> None:
    assert mentioned("@helper, ask @Other.bot. not mail@helper.example") == ["helper", "Other.bot"]
    assert mentioned("@ab is too short; @@x") == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a01:203]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:7f00:1::]/",
        "ftp://93.184.216.34/",
    ],
)
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(PrivateAddress):
        check_destination(url, allow_private=False)


def test_public_addresses_and_names_pass_the_first_check() -> None:
    for url in ("https://93.184.216.34/x", "http://[2606:4700::1111]/", "https://hooks.example/"):
        assert str(check_destination(url, allow_private=False)) == url
    assert str(check_destination("http://127.0.0.1/", allow_private=True)) == "http://127.0.0.1/"
    assert public_address(ipaddress.ip_address("8.8.8.8"))
    assert not public_address(ipaddress.ip_address("::ffff:192.168.0.1"))


async def test_the_resolver_refuses_a_name_with_a_private_address() -> None:
    resolver = GuardedResolver()
    try:
        with pytest.raises(PrivateAddress):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": False}])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_without_allow_private_the_local_receiver_is_never_called(
    make_user: Any, connect: Any, receiver: Any, caplog: pytest.LogCaptureFixture, host: str
) -> None:
    hook, url = await receiver(lambda request, n: reply("should not"))
    alice = await make_user("alice")
    await make_bot(alice, url.replace("127.0.0.1", host))
    ws = await connect(alice)
    with caplog.at_level(logging.WARNING, logger="chat.webhooks"):
        await say(ws, "@helper hello", "c-1")
        await settled(alice)
    assert hook.calls == []
    assert "refused" in caplog.text
    assert await alice.client.app[STORE_KEY].messages.last_seq("general") == 1
