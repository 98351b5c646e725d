"""Bots' outgoing webhooks: a mention of a bot, or a direct message to one, is POSTed to its URL.

Posting never waits for them: a stored message is put on a bounded queue, and a few workers
look up the bots it concerns. Each bot's calls then wait in a lane of its own and are made one
at a time, in order (WEBHOOK_TIMEOUT each, 3 tries with backoff, no redirects): a bot whose
receiver is slow or down holds one call, never the workers nor the other bots. The JSON reply
`{"text": ...}` is posted by the bot in the same room.

Against SSRF, a URL's host must be, and resolve only to, public addresses (not loopback,
private, link-local, multicast, reserved, nor such an address mapped into IPv6) unless
WEBHOOK_ALLOW_PRIVATE; the resolver that checks them is the one the connection uses, so a
second DNS answer cannot swap in another address between the check and the connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from chat.frames import TEXT_MAX
from chat.posting import POSTED_KEY, post_message
from common.tasks import running, stop
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import DIRECT, Bot, Message, Room, StorageError, login_key

log = logging.getLogger(__name__)

ATTEMPTS = 3
QUEUE_SIZE = 1000  # messages waiting for their webhooks; beyond it they are dropped (logged)
WORKERS = 4  # messages looked at, and webhook calls under way, at once
LANE_SIZE = 100  # calls waiting for one bot; beyond it they are dropped (logged)
MENTIONS_MAX = 5  # bots looked up per message
REPLY_MAX = 64 * 1024  # bytes of a webhook's answer read
USER_AGENT = "aiohttp-chat-webhook/1"
# `@login` not inside a word or an e-mail address; a trailing dot ends a sentence, not the login.
MENTION_RE = re.compile(r"(?<![\w@.])@([A-Za-z0-9_.-]{3,32})")
# NAT64 (RFC 6052): an IPv6 address that a gateway turns into the IPv4 one in its last 32 bits.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateAddress(OSError):
    """The webhook's host is, or resolves to, an address it may not reach."""


def public_address(ip: Address) -> bool:
    """Say whether an address is a public unicast one (IPv4 inside IPv6 judged as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return public_address(embedded)
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
    )


class GuardedResolver(AbstractResolver):
    """Resolve names as usual, refusing any name with a non-public address among its answers."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Return the host's addresses; PrivateAddress when any of them is not public."""
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"])
            except ValueError:  # e.g. a scoped "fe80::1%eth0": link-local anyway
                raise PrivateAddress(f"{host} resolves to {result['host']}") from None
            if not public_address(ip):
                raise PrivateAddress(f"{host} resolves to the non-public address {ip}")
        return results

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


def check_destination(url: str, allow_private: bool) -> URL:
    """Return the URL to call; PrivateAddress when its host is a non-public IP address.

    A host name is checked when it is resolved (GuardedResolver), as it is connected to.
    """
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise PrivateAddress(f"not an http(s) URL with a host: {url!r}")
    if not allow_private:
        try:
            ip = ipaddress.ip_address(parsed.host.strip("[]"))
        except ValueError:
            return parsed  # a name: the resolver checks every address it has
        if not public_address(ip):
            raise PrivateAddress(f"{parsed.host} is not a public address")
    return parsed


def mentioned(text: str) -> list[str]:
    """Return the distinct logins `@mentioned` in a text (at most MENTIONS_MAX), in order."""
    found: dict[str, str] = {}
    for match in MENTION_RE.finditer(text):
        login = match.group(1).rstrip(".")
        if len(login) >= 3:
            found.setdefault(login_key(login), login)
        if len(found) >= MENTIONS_MAX:
            break
    return list(found.values())


def signature(bot: Bot, body: bytes) -> str:
    """Sign a webhook body: HMAC-SHA256 keyed by the hex SHA-256 of the bot's key.

    The bot's owner has the key, so can check it; the chat keeps only that hash.
    """
    return "sha256=" + hmac.new(bot.key_hash.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """The queue of stored messages to look at, and the workers that call bots' webhooks."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self.session: aiohttp.ClientSession | None = None
        # Per bot (by login key): the calls waiting, and the task making them one by one.
        self.lanes: dict[str, collections.deque[tuple[Bot, Room, Message, str]]] = {}
        self._callers: set[asyncio.Task[None]] = set()
        self._calls_left = 0  # calls waiting or under way, in all lanes
        self._idle = asyncio.Event()
        self._idle.set()

    def notice(self, message: Message) -> None:
        """Queue a stored message if it may concern a bot; never waits."""
        if "@" not in message.text and not message.room.startswith("dm-"):
            return  # no mention, and no direct room: nothing for a bot (the cheap common case)
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            log.warning(
                "webhooks: queue full, message %s of %s not sent", message.seq, message.room
            )

    async def work(self) -> None:
        """Take queued messages one by one and call the webhooks they concern, for ever."""
        while True:
            message = await self.queue.get()
            try:
                await self.dispatch(message)
            except StorageError as exc:
                log.warning("webhooks: cannot look up bots for %s: %s", message.room, exc)
            except Exception:
                log.exception("webhooks: failed for message %s of %s", message.seq, message.room)
            finally:
                self.queue.task_done()

    async def dispatch(self, message: Message) -> None:
        """Call the webhook of every bot the message mentions or is sent to directly."""
        store = self.app[STORE_KEY]
        if await store.bots.find(message.user) is not None:
            return  # bots' own messages trigger no webhook: two bots never loop
        room = await store.rooms.find(message.room)
        if room is None:
            return
        targets: dict[str, str] = {}
        if room.kind == DIRECT:
            for peer in room.peers:
                if login_key(peer) != login_key(message.user):
                    targets[login_key(peer)] = "direct"
        for login in mentioned(message.text):
            targets.setdefault(login_key(login), "mention")
        for login, event in targets.items():
            bot = await store.bots.find(login)
            if bot is None or bot.revoked or not bot.webhook_url:
                continue
            account = await store.users.find_by_login(bot.login)
            if account is None or not account.active:
                continue
            # A mention in a room the bot may not see is not its business (privacy).
            if await store.rooms.visible(room.slug, bot.login) is None:
                continue
            self._enqueue(bot, room, message, event)

    def _enqueue(self, bot: Bot, room: Room, message: Message, event: str) -> None:
        """Put a call in its bot's lane, starting the lane's caller if it has none."""
        key = login_key(bot.login)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = collections.deque()
            caller = asyncio.create_task(self._call_lane(key, lane))
            self._callers.add(caller)
            caller.add_done_callback(self._callers.discard)
        elif len(lane) >= LANE_SIZE:
            log.warning(
                "webhooks: %d calls wait for bot %s; message %s of %s not sent",
                len(lane), bot.login, message.seq, room.slug,
            )  # fmt: skip
            return
        lane.append((bot, room, message, event))
        self._calls_left += 1
        self._idle.clear()

    async def _call_lane(
        self, key: str, lane: collections.deque[tuple[Bot, Room, Message, str]]
    ) -> None:
        """Make one bot's calls in order, one at a time; drop the lane once it is empty."""
        while lane:
            bot, room, message, event = lane.popleft()
            try:
                await self.call(bot, room, message, event)
            except StorageError as exc:
                log.warning("webhooks: answer to %s of %s failed: %s", message.seq, room.slug, exc)
            except Exception:
                log.exception("webhooks: answer to %s of %s failed", message.seq, room.slug)
            finally:
                self._calls_left -= 1
                if not self._calls_left:
                    self._idle.set()
        del self.lanes[key]  # no await since the lane was found empty: nothing was added

    async def settled(self) -> None:
        """Wait until every queued message was looked at and its calls made, replies included."""
        while True:
            await self.queue.join()
            if not self._calls_left:
                return
            await self._idle.wait()  # a reply posted meanwhile is a new message: look again

    async def close(self) -> None:
        """Stop the calls under way and drop those waiting."""
        await asyncio.gather(*(stop(caller) for caller in list(self._callers)))
        self.lanes.clear()
        self._calls_left = 0
        self._idle.set()

    async def call(self, bot: Bot, room: Room, message: Message, event: str) -> None:
        """POST the event to the bot's URL (tried ATTEMPTS times) and post its reply."""
        settings = self.app[SETTINGS_KEY]
        payload = {
            "event": event,
            "bot": bot.login,
            "room": {"slug": room.slug, "name": room.name, "kind": room.kind},
            "message": message.to_json(),
        }
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Chat-Signature": signature(bot, body),
        }
        delay = settings.webhook_backoff
        for attempt in range(1, ATTEMPTS + 1):
            outcome = await self._attempt(bot, body, headers)
            if outcome is not None:
                if outcome:
                    await self.reply(bot, room, message, outcome)
                return
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("webhook of bot %s: gave up after %d tries", bot.login, ATTEMPTS)

    async def _attempt(self, bot: Bot, body: bytes, headers: dict[str, str]) -> str | None:
        """Make one call: the reply's text ('' for none, or no retry), None to try again."""
        settings = self.app[SETTINGS_KEY]
        assert self.session is not None
        try:
            url = check_destination(bot.webhook_url, settings.webhook_allow_private)
            async with self.session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout),
            ) as resp:
                if resp.status >= 500 or resp.status == 429:
                    log.info("webhook of bot %s: answered %d; will retry", bot.login, resp.status)
                    return None
                if not 200 <= resp.status < 300:
                    log.warning(
                        "webhook of bot %s: answered %d; not retried", bot.login, resp.status
                    )
                    return ""
                raw = await read_bounded(resp)
        except PrivateAddress as exc:
            log.warning("webhook of bot %s refused: %s", bot.login, exc)
            return ""
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PrivateAddress):
                log.warning("webhook of bot %s refused: %s", bot.login, exc.os_error)
                return ""
            log.info("webhook of bot %s: cannot connect (%s); will retry", bot.login, exc)
            return None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.info("webhook of bot %s failed (%r); will retry", bot.login, exc)
            return None
        return reply_text(raw)

    async def reply(self, bot: Bot, room: Room, message: Message, text: str) -> None:
        """Post a webhook's answer as the bot, once per message it answers."""
        store = self.app[STORE_KEY]
        current = await store.bots.find(bot.login)
        if current is None or current.revoked:
            return
        # Deactivated while its receiver answered: the bot API refuses it, so does this.
        account = await store.users.find_by_login(bot.login)
        if account is None or not account.active:
            return
        if await store.rooms.visible(room.slug, bot.login) is None:
            return
        await post_message(self.app, room.slug, bot.login, text, f"webhook:{message.id}")


async def read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """Read an answer's body up to REPLY_MAX bytes; b"" when it is longer (then ignored)."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > REPLY_MAX:
            return b""
        chunks.append(chunk)
    return b"".join(chunks)


def reply_text(raw: bytes) -> str:
    """Return the text of a webhook's JSON answer `{"text": ...}`, '' when it has none."""
    if not raw:
        return ""
    try:
        answer: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ""
    text = answer.get("text") if isinstance(answer, dict) else None
    if not isinstance(text, str):
        return ""
    text = text.strip()
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"


WEBHOOKS_KEY = web.AppKey("webhooks", Webhooks)


def setup_webhooks(app: web.Application) -> None:
    """Hear of every stored message, and run the webhook workers while the app runs."""
    webhooks = app[WEBHOOKS_KEY] = Webhooks(app)
    app.setdefault(POSTED_KEY, []).append(webhooks.notice)
    app.cleanup_ctx.append(webhooks_ctx)


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the webhooks' HTTP client (its resolver guarded) and run the workers."""
    webhooks = app[WEBHOOKS_KEY]
    allow_private = app[SETTINGS_KEY].webhook_allow_private
    resolver = ThreadedResolver() if allow_private else GuardedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, limit=WORKERS, use_dns_cache=False)
    webhooks.session = aiohttp.ClientSession(connector=connector, trust_env=False)
    try:
        async with contextlib.AsyncExitStack() as workers:
            for _ in range(WORKERS):
                await workers.enter_async_context(running(webhooks.work()))
            yield
    finally:
        await webhooks.close()
        await webhooks.session.close()
