"""Bots (both stores): made on /admin, keys shown once and kept hashed, the bot HTTP API (post,
read, edit, delete, Slack's incoming format), privacy, rate limits, CSRF, keys kept out of logs."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestServer

import manage
from app import create_app
from auth.bots import create_bot
from common.logs import access_log_options
from common.redact import RedactKeys, redact
from conftest import PASSWORD, Auth, receive_until
from harness import CSRF_RE, AppProcess, browser_session, sign_up
from middlewares import MACHINE_ROUTES
from settings import Settings
from storage import STORE_KEY
from storage.base import BOT_PASSWORD_HASH, LoginTaken, Store, bot_key_hash

NEW_KEY = re.compile(r'id="new-bot-key" type="text" readonly value="([A-Za-z0-9_-]+)"')


async def make_bot(admin: Auth, login: str = "helper", **fields: str) -> str:
    """Make a bot on /admin; return its key, as the page shows it the one time."""
    resp = await admin.post("/admin/bots", {"login": login, **fields}, csrf_path="/admin")
    page = await resp.text()
    assert resp.status == 201, page
    match = NEW_KEY.search(page)
    assert match, page
    return match.group(1)


def api(key: str, slug: str = "general", tail: str = "messages") -> str:
    return f"/api/bots/{key}/rooms/{slug}/{tail}"


async def make_private_room(owner: Auth, name: str = "Plans") -> str:
    resp = await owner.post("/rooms", {"name": name, "private": "on"}, csrf_path="/")
    assert resp.status == 302, await resp.text()
    return resp.headers["Location"].removeprefix("/rooms/")


# Making bots, their keys


async def test_an_admin_makes_a_bot_whose_key_is_shown_once_and_kept_hashed(
    make_user: Any,
) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice, "helper", initials="hb")
    assert len(key) >= 43  # 256 random bits
    store = alice.client.app[STORE_KEY]
    bot = await store.bots.find("helper")
    assert bot is not None and bot.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (bot.initials, bot.created_by, bot.revoked) == ("HB", "alice", False)
    account = await store.users.find_by_login("helper")
    assert account is not None and account.is_bot and account.password_hash == BOT_PASSWORD_HASH
    page = await (await alice.client.get("/admin")).text()
    assert key not in page and 'data-login="helper"' in page  # listed, its key never again


async def test_only_an_admin_makes_or_revokes_bots(make_user: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    key = await make_bot(alice)
    resp = await bob.post("/admin/bots", {"login": "sneaky"}, csrf_path="/")
    assert resp.status == 403
    resp = await bob.post("/admin/bots/helper/revoke", {}, csrf_path="/")
    assert resp.status == 403
    assert await bob.client.app[STORE_KEY].bots.find("sneaky") is None
    assert (await bob.client.post(api(key), json={"text": "still works"})).status == 201


@pytest.mark.parametrize(
    ("login", "initials"),
    [
        ("a1ice", ""),
        ("alice", ""),
        ("x", ""),
        ("has space", ""),
        ("okbot", "toolong"),
        ("ok2", "!"),
    ],
)
async def test_a_bad_or_taken_or_lookalike_login_is_refused(
    make_user: Any, login: str, initials: str
) -> None:
    alice = await make_user("alice")
    data = {"login": login, "initials": initials}
    resp = await alice.post("/admin/bots", data, csrf_path="/admin")
    assert resp.status == 400
    assert 'id="new-bot-key"' not in await resp.text()


async def test_a_bot_never_logs_in_with_a_password(make_user: Any, make_client: Any) -> None:
    alice = await make_user("alice")
    await make_bot(alice)
    person = Auth(await make_client())
    for password in (PASSWORD, "", BOT_PASSWORD_HASH, "!bot"):
        resp = await person.login("helper", password)
        assert resp.status in (401, 429), password
    assert "Wrong login or password" in await (await person.login("helper", "x")).text()


async def test_a_revoked_key_stops_working_at_once(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    assert (await alice.client.post(api(key), json={"text": "one"})).status == 201
    resp = await alice.post("/admin/bots/helper/revoke", {}, csrf_path="/admin")
    assert resp.status == 302
    for method, path in (("POST", api(key)), ("GET", api(key)), ("POST", api(key, tail="slack"))):
        resp = await alice.client.request(method, path, json={"text": "two"})
        assert resp.status == 404, path
        assert await resp.json() == {"error": "Unknown or revoked bot key."}
    page = await (await alice.client.get("/admin")).text()
    assert "revoked" in page
    resp = await alice.post("/admin/bots/nobody/revoke", {}, csrf_path="/admin")
    assert resp.status == 404


async def test_a_new_key_replaces_the_old_one_at_once_and_is_shown_once(
    make_user: Any,
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    old = await make_bot(alice)
    resp = await bob.post("/admin/bots/helper/rekey", {}, csrf_path="/")
    assert resp.status == 403  # only an admin
    resp = await alice.post("/admin/bots/helper/rekey", {}, csrf_path="/admin")
    page = await resp.text()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert "has a new key" in page
    match = NEW_KEY.search(page)
    assert match
    new = match.group(1)
    assert new != old and len(new) >= 43
    resp = await alice.client.post(api(old), json={"text": "old key"})
    assert resp.status == 404
    assert await resp.json() == {"error": "Unknown or revoked bot key."}
    assert (await alice.client.post(api(new), json={"text": "new key"})).status == 201
    bot = await alice.client.app[STORE_KEY].bots.find("helper")
    assert bot is not None and bot.key_hash == bot_key_hash(new) and not bot.revoked
    assert new not in await (await alice.client.get("/admin")).text()  # shown that once
    # A revoked key stays revoked: no new key brings the bot back.
    await alice.post("/admin/bots/helper/revoke", {}, csrf_path="/admin")
    for login in ("helper", "nobody"):
        resp = await alice.post(f"/admin/bots/{login}/rekey", {}, csrf_path="/admin")
        assert resp.status == 404, login
    assert (await alice.client.post(api(new), json={"text": "revoked"})).status == 404


async def test_a_deactivated_bot_is_refused(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    resp = await alice.post("/admin/users/helper/deactivate", {}, csrf_path="/admin")
    assert resp.status == 302
    assert (await alice.client.post(api(key), json={"text": "x"})).status == 403


# Posting and reading


async def test_a_bot_posts_json_idempotently_and_plain_text(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    ws = await connect(alice)
    resp = await alice.client.post(api(key), json={"text": " deployed ", "client_id": "d-1"})
    assert resp.status == 201
    first = (await resp.json())["message"]
    assert (first["user"], first["text"], first["client_id"]) == ("helper", "deployed", "d-1")
    frame = await receive_until(ws, "message")
    assert (frame["user"], frame["seq"], frame["text"]) == ("helper", first["seq"], "deployed")
    again = await alice.client.post(api(key), json={"text": "deployed", "client_id": "d-1"})
    assert again.status == 200 and (await again.json())["message"]["seq"] == first["seq"]
    plain = await alice.client.post(
        api(key) + "?client_id=p-1", data="plain words", headers={"Content-Type": "text/plain"}
    )
    assert plain.status == 201
    assert (await plain.json())["message"]["seq"] == first["seq"] + 1
    store = alice.client.app[STORE_KEY]
    assert [m.text for m in await store.messages.before("general", None, 10)] == [
        "deployed",
        "plain words",
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"text": 5}', "application/json", 400),
        (b'{"text": "   "}', "application/json", 400),
        (json.dumps({"text": "x" * 2001}).encode(), "application/json", 400),
        (b'{"text": "x", "client_id": 7}', "application/json", 400),
        (b"\xff\xfe", "text/plain", 400),
        (b"text=hi", "application/x-www-form-urlencoded", 415),
    ],
)
async def test_bad_input_gets_a_clear_json_error_and_stores_nothing(
    make_user: Any, body: bytes, content_type: str, status: int
) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    resp = await alice.client.post(api(key), data=body, headers={"Content-Type": content_type})
    assert resp.status == status
    assert (await resp.json())["error"]
    assert await alice.client.app[STORE_KEY].messages.last_seq("general") == 0


async def test_a_body_over_the_size_limit_is_a_json_413(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    resp = await alice.client.post(api(key), json={"text": "x" * 100_000})
    assert resp.status == 413
    assert (await resp.json())["error"]


async def test_a_bot_reads_recent_messages(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    for n in range(3):
        await alice.client.post(api(key), json={"text": f"m{n}"})
    resp = await alice.client.get(api(key) + "?limit=2")
    body = await resp.json()
    assert [m["text"] for m in body["messages"]] == ["m1", "m2"] and body["has_more"] is True
    older = await (await alice.client.get(api(key) + "?before=2")).json()
    assert [m["text"] for m in older["messages"]] == ["m0"] and older["has_more"] is False
    for query in ("?limit=0", "?limit=x", "?before=0", "?limit=101"):
        assert (await alice.client.get(api(key) + query)).status == 400, query


async def test_unknown_key_and_room_are_404(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    assert (await alice.client.post(api("no-such-key"), json={"text": "x"})).status == 404
    resp = await alice.client.post(api(key, "no-such-room"), json={"text": "x"})
    assert resp.status == 404
    assert await resp.json() == {"error": "No such room, or the bot is not a member of it."}


# Privacy


async def test_a_bot_sees_a_private_room_only_once_added_like_a_person(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    slug = await make_private_room(alice)
    for method in ("GET", "POST"):
        resp = await alice.client.request(method, api(key, slug), json={"text": "peek"})
        assert resp.status == 404, method
        assert await resp.json() == {"error": "No such room, or the bot is not a member of it."}
    resp = await alice.post(f"/rooms/{slug}/members", {"login": "helper"}, csrf_path="/")
    assert resp.status == 302
    assert (await alice.client.post(api(key, slug), json={"text": "in"})).status == 201
    assert (await alice.client.get(api(key, slug))).status == 200


async def test_a_bot_answers_in_a_direct_conversation_with_it(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    resp = await alice.client.get("/dm/helper", allow_redirects=False)
    slug = resp.headers["Location"].removeprefix("/rooms/")
    assert (await alice.client.post(api(key, slug), json={"text": "hi alice"})).status == 201
    bob = await make_user("bob")
    other = await bob.client.get("/dm/alice", allow_redirects=False)
    bob_slug = other.headers["Location"].removeprefix("/rooms/")
    assert (await alice.client.post(api(key, bob_slug), json={"text": "x"})).status == 404


# Editing and deleting


async def test_a_bot_edits_and_deletes_only_its_own_messages(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    ws = await connect(alice)
    await ws.send_json({"type": "message", "text": "mine", "client_id": "a-1"})
    await receive_until(ws, "message")
    seq = (await (await alice.client.post(api(key), json={"text": "v1"})).json())["message"]["seq"]
    resp = await alice.client.put(f"{api(key)}/{seq}", json={"text": "v2"})
    assert resp.status == 200 and (await resp.json())["message"]["text"] == "v2"
    change = await receive_until(ws, "change")
    assert (change["seq"], change["text"], change["deleted"]) == (seq, "v2", False)
    plain = await alice.client.put(
        f"{api(key)}/{seq}", data="v3", headers={"Content-Type": "text/plain"}
    )
    assert (await plain.json())["message"]["text"] == "v3"
    resp = await alice.client.put(f"{api(key)}/1", json={"text": "hijack"})
    assert resp.status == 403 and (await resp.json())["code"] == "forbidden"
    assert (await alice.client.delete(f"{api(key)}/1")).status == 403
    resp = await alice.client.delete(f"{api(key)}/{seq}")
    assert resp.status == 200 and (await resp.json())["message"]["deleted"] is True
    assert (await alice.client.delete(f"{api(key)}/{seq}")).status == 409
    assert (await alice.client.delete(f"{api(key)}/999")).status == 404
    assert (await alice.client.delete(f"{api(key)}/zero")).status == 400
    store = alice.client.app[STORE_KEY]
    texts = [(m.user, m.text) for m in await store.messages.before("general", None, 10)]
    assert texts == [("alice", "mine"), ("helper", "")]


# Rate limits


@pytest.mark.parametrize("settings_overrides", [{"message_burst": 3, "message_per_minute": 1}])
async def test_a_bot_is_rate_limited_like_a_person(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice)
    statuses = [
        (await alice.client.post(api(key), json={"text": f"n{n}"})).status for n in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    resp = await alice.client.post(api(key, tail="slack"), json={"text": "alert"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"]
    other = await make_bot(alice, "second")  # each bot has its own budget
    assert (await alice.client.post(api(other), json={"text": "mine"})).status == 201
    assert await alice.client.app[STORE_KEY].messages.last_seq("general") == 4


# Slack's incoming webhook format


async def test_slack_format_json_and_form_payload(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice, "cibot")
    resp = await alice.client.post(
        api(key, tail="slack"), json={"text": "Build <https://ci.example/1|#1> ok"}
    )
    assert (resp.status, await resp.text()) == (200, "ok")
    form = FormData({"payload": json.dumps({"text": "from a form"})})
    resp = await alice.client.post(api(key, tail="slack"), data=form)
    assert (resp.status, await resp.text()) == (200, "ok")
    store = alice.client.app[STORE_KEY]
    texts = [m.text for m in await store.messages.before("general", None, 10)]
    assert texts == ["Build #1 (https://ci.example/1) ok", "from a form"]


async def test_slack_format_folds_alertmanager_attachments_and_blocks(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice, "alerts")
    alertmanager = {
        "channel": "#ops",
        "username": "Alertmanager",
        "attachments": [
            {
                "title": "[FIRING:1] DiskFull",
                "text": "Disk /var is 97% full on db-1",
                "fallback": "[FIRING:1] DiskFull",
                "color": "danger",
            }
        ],
    }
    blocks = {
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Deploy"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*env:* prod"}]},
        ]
    }
    for payload in (alertmanager, blocks):
        resp = await alice.client.post(api(key, tail="slack"), json=payload)
        assert resp.status == 200, await resp.text()
    store = alice.client.app[STORE_KEY]
    texts = [m.text for m in await store.messages.before("general", None, 10)]
    assert texts == ["[FIRING:1] DiskFull\nDisk /var is 97% full on db-1", "Deploy\n*env:* prod"]


@pytest.mark.parametrize(
    "body",
    [b"{nope", b'"text"', b'{"text": ""}', b'{"attachments": [{"color": "good"}]}'],
)
async def test_slack_format_refuses_bad_payloads_clearly(make_user: Any, body: bytes) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice, "cibot")
    resp = await alice.client.post(
        api(key, tail="slack"), data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(("invalid_payload", "no_text"))


async def test_slack_format_cuts_an_overlong_text(make_user: Any) -> None:
    alice = await make_user("alice")
    key = await make_bot(alice, "cibot")
    resp = await alice.client.post(api(key, tail="slack"), json={"text": "y" * 5000})
    assert resp.status == 200
    (message,) = await alice.client.app[STORE_KEY].messages.before("general", None, 10)
    assert len(message.text) == 2000 and message.text.endswith("…")


# CSRF and cookies


async def test_the_api_needs_no_csrf_token_and_a_cookie_gives_no_power(
    make_user: Any, make_client: Any
) -> None:
    alice = await make_user("alice")  # the admin, logged in: her cookie rides along
    key = await make_bot(alice)
    evil = {"Origin": "https://evil.example"}
    resp = await alice.client.post(api(key), json={"text": "from a machine"}, headers=evil)
    assert resp.status == 201
    assert (await resp.json())["message"]["user"] == "helper"  # never alice
    for path in (api("guess"), api("guess", tail="slack"), f"{api('guess')}/1"):
        resp = await alice.client.post(path, json={"text": "x"}, headers=evil)
        assert resp.status in (404, 405), path
    assert (await alice.client.delete(f"{api('guess')}/1")).status == 404
    # Every other unsafe route still wants the same origin and the token.
    resp = await alice.client.post("/admin/bots", data={"login": "forged"}, headers=evil)
    assert resp.status == 403
    resp = await alice.client.post("/admin/bots/helper/revoke", data={})
    assert resp.status == 403
    stranger = await make_client()
    resp = await stranger.post(api(key), json={"text": "no cookie needed"})
    assert resp.status == 201


async def test_only_the_bot_routes_are_exempt_from_the_origin_and_csrf_checks(
    make_user: Any,
) -> None:
    alice = await make_user("alice")
    app = alice.client.app
    exempt = set()
    for resource in app.router.resources():
        if resource.name in (None, "static"):
            continue
        info = resource.get_info()
        pattern = info.get("formatter", info.get("path", ""))
        path = re.sub(r"\{[^}]+\}", "x", pattern)
        resp = await alice.client.post(path, data={}, headers={"Origin": "https://evil.example"})
        if resp.status != 403:
            exempt.add(resource.name)
    assert exempt == MACHINE_ROUTES == {"bot-messages", "bot-message", "bot-slack"}


# Webhook URLs on /admin


async def test_an_admin_sets_and_clears_a_webhook_url(make_user: Any) -> None:
    alice = await make_user("alice")
    await make_bot(alice, "helper", webhook_url="https://hooks.example/chat")
    store = alice.client.app[STORE_KEY]
    bot = await store.bots.find("helper")
    assert bot is not None and bot.webhook_url == "https://hooks.example/chat"
    for bad in ("ftp://x.example/", "https://user:pw@x.example/", "not a url", "http://"):
        resp = await alice.post("/admin/bots/helper/webhook", {"url": bad}, csrf_path="/admin")
        assert resp.status == 400, bad
    resp = await alice.post("/admin/bots/helper/webhook", {"url": ""}, csrf_path="/admin")
    assert resp.status == 302
    bot = await store.bots.find("helper")
    assert bot is not None and bot.webhook_url == ""
    resp = await alice.post("/admin/bots/nobody/webhook", {"url": ""}, csrf_path="/admin")
    assert resp.status == 404


# Keys out of logs


def test_redact_hides_keys_in_paths_and_request_lines() -> None:
    line = "GET /api/bots/SeCrEt-key_1/rooms/general/messages?limit=5 HTTP/1.1"
    assert redact(line) == "GET /api/bots/<key>/rooms/general/messages?limit=5 HTTP/1.1"
    assert redact("/rooms/general") == "/rooms/general"


def test_the_log_filter_redacts_messages_and_tracebacks() -> None:
    record = logging.LogRecord(
        "chat",
        logging.ERROR,
        __file__,
        1,
        "failed %s %s",
        ("POST", "/api/bots/k3y/rooms/x/slack"),
        None,
    )
    try:
        raise RuntimeError("during /api/bots/k3y/rooms/x/slack")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactKeys().filter(record)
    text = logging.Formatter().format(record)
    assert "k3y" not in text and "/api/bots/<key>/rooms/x/slack" in text


async def test_the_access_log_never_shows_a_key(
    aiohttp_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server = TestServer(create_app(settings))
    # What app.main() runs the app with.
    await server.start_server(**access_log_options(settings.log_format))
    logged = await aiohttp_client(server)
    _, key = await create_bot(server.app[STORE_KEY], "helper", "", "alice")
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        assert (await logged.post(api(key), json={"text": "logged"})).status == 201
        assert (await logged.get(api(key) + "?limit=1")).status == 200
        assert (await logged.get(api(key).replace("bots", "%62ots"))).status == 200
        assert (await logged.get(api("not-a-key"))).status == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 4, lines
    assert all("/api/bots/{key}/rooms/{slug}/messages" in line for line in lines), lines
    assert key not in caplog.text and "not-a-key" not in caplog.text


async def test_the_real_process_logs_no_key(tmp_path: Path) -> None:
    """`python app.py` as deployed: access log and app log lines, none with the key."""
    server = AppProcess(tmp_path).start(log=tmp_path / "out.log")
    try:
        async with browser_session() as session:
            await sign_up(session, server.url, "alice")  # the first account: the admin
            async with session.get(server.url + "/admin") as resp:
                match = CSRF_RE.search(await resp.text())
                assert match
            form = {"login": "helper", "csrf_token": match.group(1)}
            headers = {"Origin": server.url}
            async with session.post(server.url + "/admin/bots", data=form, headers=headers) as resp:
                found = NEW_KEY.search(await resp.text())
                assert resp.status == 201 and found
            key = found.group(1)
            async with session.post(server.url + api(key), json={"text": "hi"}) as resp:
                assert resp.status == 201
            async with session.get(server.url + api(key, "nowhere")) as resp:
                assert resp.status == 404
    finally:
        assert await asyncio.to_thread(server.terminate) == 0
        server.kill()
    output = (tmp_path / "out.log").read_text()
    # The access line names the route's pattern (its {key} then redacted as any key would be).
    assert '"POST /api/bots/<key>/rooms/{slug}/messages HTTP/1.1" 201' in output
    assert '"GET /api/bots/<key>/rooms/{slug}/messages HTTP/1.1" 404' in output
    assert key not in output


# The store


async def test_the_store_keeps_bots_by_login_and_key_hash(store: Store) -> None:
    bot = await store.bots.create("Helper", bot_key_hash("k1"), "alice", "HB")
    with pytest.raises(LoginTaken):
        await store.bots.create("helper", bot_key_hash("k2"), "alice", "HB")
    found = await store.bots.find_by_key(bot_key_hash("k1"))
    assert found == bot and await store.bots.find("HELPER") == bot
    assert await store.bots.find_by_key(bot_key_hash("k2")) is None
    assert await store.bots.set_webhook("helper", "https://x.example/")
    assert await store.bots.rekey("HELPER", bot_key_hash("k3"))
    assert await store.bots.find_by_key(bot_key_hash("k1")) is None
    rekeyed = await store.bots.find_by_key(bot_key_hash("k3"))
    assert rekeyed is not None and rekeyed.login == "Helper"
    assert await store.bots.revoke("helper")
    assert not await store.bots.rekey("helper", bot_key_hash("k4"))  # revoked stays revoked
    assert not await store.bots.rekey("nobody", bot_key_hash("k5"))
    assert not await store.bots.revoke("nobody") and not await store.bots.set_webhook("no", "")
    (listed,) = await store.bots.list(10)
    assert (listed.webhook_url, listed.revoked, listed.login) == (
        "https://x.example/",
        True,
        "Helper",
    )


async def test_manage_py_gives_a_bot_no_password(store: Store, settings: Settings) -> None:
    await store.users.create("alice", "alice@example.com", "unused")
    await create_bot(store, "helper", "", "alice")
    with pytest.raises(manage.Refused, match="is a bot"):
        await manage.reset_password(argparse.Namespace(login="HELPER"), settings, store)
    account = await store.users.find_by_login("helper")
    assert account is not None and account.password_hash == BOT_PASSWORD_HASH
