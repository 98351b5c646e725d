"""The bot HTTP API: post, read, edit and delete with the bot's key in the URL; Slack's format.

These routes are for machines: the key authenticates, never a cookie (`middlewares` neither
looks up a session nor asks for a CSRF token on them, and nothing here reads one). A bot is an
account, so rooms' privacy applies to it as to a person; it spends from a budget of its own.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from aiohttp import web

from chat.budgets import BUDGETS_KEY, MESSAGES, SIGNALS, Budget, Budgets
from chat.frames import CLIENT_ID_MAX, TEXT_MAX
from chat.posting import change_message, post_message
from common.numbers import MAX_WHOLE, whole_number
from common.pages import Refusal
from storage import STORE_KEY
from storage.base import Bot, ChangeRefused, Room, bot_key_hash

HISTORY_MAX = 100
BUDGETS_KEPT = 10_000  # bots' budgets kept before the full ones are dropped
NO_KEY = "Unknown or revoked bot key."
NO_ROOM = "No such room, or the bot is not a member of it."
CHANGE_STATUS = {"not_found": 404, "forbidden": 403, "deleted": 409, "too_late": 409}
ATTACHMENTS_MAX = 20
BLOCKS_MAX = 50
# Slack's link markup: <https://example.com|label> and <https://example.com>.
SLACK_LINK_RE = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")


class BotBudgets:
    """Each bot's rate budget (messages, reads), the sizes a person's sockets have."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self.by_login: dict[str, Budget] = {}

    async def wait(self, login: str, kind: str) -> float:
        """Spend one token of the bot's `kind` budget: 0 when granted, else seconds to wait."""
        budget = self.by_login.get(login)
        if budget is None:
            if len(self.by_login) >= BUDGETS_KEPT:
                for known, old in list(self.by_login.items()):
                    if old.full():
                        del self.by_login[known]
            budget = Budget(self.budgets.message_burst, self.budgets.message_rate)
            self.by_login[login] = budget
        bucket = budget.messages if kind == MESSAGES else budget.signals
        wait = bucket.take()
        if not wait and self.budgets.shared is not None:  # the same budget on every process
            wait = await self.budgets.shared_wait(login, kind, bucket)
        return wait


BOT_BUDGETS_KEY = web.AppKey("bot_budgets", BotBudgets)


def setup_bots(app: web.Application) -> None:
    """Give bots their budgets."""
    app[BOT_BUDGETS_KEY] = BotBudgets(app[BUDGETS_KEY])


def clean_text(value: object) -> str:
    """Return a message's text, stripped; 400 when it is no text, empty or too long."""
    if not isinstance(value, str):
        raise Refusal(400, "text must be a string.")
    text = value.strip()
    if not text:
        raise Refusal(400, "The message is empty.")
    if len(text) > TEXT_MAX:
        raise Refusal(400, f"Messages are at most {TEXT_MAX} characters.")
    return text


def clean_client_id(value: object) -> str:
    """Return the client_id a bot sent, or a fresh one when it sent none."""
    if value is None or value == "":
        return "api-" + secrets.token_urlsafe(12)
    if not isinstance(value, str) or len(value) > CLIENT_ID_MAX:
        raise Refusal(400, f"client_id must be a string of 1 to {CLIENT_ID_MAX} characters.")
    return value


def fold(text: str) -> str:
    """Turn Slack's link markup into plain text: `label (url)`, or the bare url."""
    return SLACK_LINK_RE.sub(lambda m: f"{m[2]} ({m[1]})" if m[2] else m[1], text).strip()


def _texts(items: object, limit: int) -> list[Any]:
    return items[:limit] if isinstance(items, list) else []


def _block_text(block: object) -> list[str]:
    """Return the texts of one Slack block (section, header, context, rich text fallback)."""
    if not isinstance(block, dict):
        return []
    found = []
    text = block.get("text")
    if isinstance(text, dict) and isinstance(text.get("text"), str):
        found.append(text["text"])
    for part in _texts(block.get("fields"), 10) + _texts(block.get("elements"), 10):
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            found.append(part["text"])
    return found


def slack_text(payload: object) -> str:
    """Return a Slack message's text: `text`, then attachments' and blocks' texts, one a line."""
    if not isinstance(payload, dict):
        return ""
    parts: list[str] = []
    if isinstance(payload.get("text"), str):
        parts.append(payload["text"])
    for attachment in _texts(payload.get("attachments"), ATTACHMENTS_MAX):
        if not isinstance(attachment, dict):
            continue
        shown = [attachment[k] for k in ("pretext", "title", "text") if k in attachment]
        for item in _texts(attachment.get("fields"), 20):
            if isinstance(item, dict):
                shown.append(f"{item.get('title', '')}: {item.get('value', '')}".strip(": "))
        if not any(isinstance(s, str) and s.strip() for s in shown):
            shown = [attachment.get("fallback", "")]
        parts.extend(s for s in shown if isinstance(s, str))
        for block in _texts(attachment.get("blocks"), BLOCKS_MAX):
            parts.extend(_block_text(block))
    # With blocks, Slack's `text` is their fallback: a text given both ways is kept once.
    for block in _texts(payload.get("blocks"), BLOCKS_MAX):
        parts.extend(t for t in _block_text(block) if t not in parts)
    return "\n".join(folded for p in parts if (folded := fold(p)))


class BotApi(web.View):
    """A bot API view: the URL's key names the bot, the URL's slug a room it may see."""

    async def bot(self) -> Bot:
        """Return the live bot whose key is in the URL; 404 for an unknown or revoked key."""
        store = self.request.app[STORE_KEY]
        bot = await store.bots.find_by_key(bot_key_hash(self.request.match_info["key"]))
        if bot is None or bot.revoked:
            raise Refusal(404, NO_KEY)
        account = await store.users.find_by_login(bot.login)
        if account is None or not account.active:
            raise Refusal(403, "This bot's account is deactivated.")
        return bot

    async def room(self, bot: Bot) -> Room:
        """Return the URL's room if the bot may see it; 404 exactly as for no room."""
        slug = self.request.match_info["slug"]
        room = await self.request.app[STORE_KEY].rooms.visible(slug, bot.login)
        if room is None:
            raise Refusal(404, NO_ROOM)
        return room

    async def spend(self, bot: Bot, kind: str) -> None:
        """Take one token of the bot's budget; 429 with Retry-After when it has none."""
        wait = await self.request.app[BOT_BUDGETS_KEY].wait(bot.login, kind)
        if wait:
            retry = str(max(1, round(wait + 0.5)))
            raise Refusal(429, "Too many requests: slow down.", headers={"Retry-After": retry})

    async def body(self) -> dict[str, Any]:
        """Return the posted message: JSON `{"text", "client_id"}`, or a plain-text body."""
        request = self.request
        raw = await request.read()
        if request.content_type == "application/json":
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise Refusal(400, "The body is not valid JSON.") from None
            if not isinstance(data, dict):
                raise Refusal(400, 'Send a JSON object: {"text": ..., "client_id": ...}.')
            return data
        if request.content_type == "text/plain":
            try:
                text = raw.decode(request.charset or "utf-8")
            except (UnicodeDecodeError, LookupError):
                raise Refusal(400, "The body is not valid text.") from None
            return {"text": text, "client_id": request.query.get("client_id")}
        raise Refusal(415, "Send application/json or text/plain.")


class BotMessages(BotApi):
    """`/api/bots/<key>/rooms/<slug>/messages`: GET recent messages, POST a new one."""

    async def get(self) -> web.Response:
        bot = await self.bot()
        room = await self.room(bot)
        await self.spend(bot, SIGNALS)
        query = self.request.query
        before = whole_number(query["before"]) if "before" in query else None
        limit = whole_number(query.get("limit", "50"))
        if limit is None or ("before" in query and before is None):
            raise Refusal(400, f"before and limit must be whole numbers up to {MAX_WHOLE}.")
        if not 1 <= limit <= HISTORY_MAX or (before is not None and before < 1):
            raise Refusal(400, f"limit must be 1 to {HISTORY_MAX}, and before at least 1.")
        rows = await self.request.app[STORE_KEY].messages.before(room.slug, before, limit + 1)
        return web.json_response(
            {"messages": [m.to_json() for m in rows[-limit:]], "has_more": len(rows) > limit}
        )

    async def post(self) -> web.Response:
        bot = await self.bot()
        room = await self.room(bot)
        await self.spend(bot, MESSAGES)
        data = await self.body()
        text, client_id = clean_text(data.get("text")), clean_client_id(data.get("client_id"))
        message, created = await post_message(
            self.request.app, room.slug, bot.login, text, client_id
        )
        return web.json_response({"message": message.to_json()}, status=201 if created else 200)


class BotMessage(BotApi):
    """`/api/bots/<key>/rooms/<slug>/messages/<seq>`: PUT new text, DELETE; the bot's own only."""

    async def change(self, bot: Bot, text: str | None) -> web.Response:
        room = await self.room(bot)
        seq = whole_number(self.request.match_info["seq"])
        if seq is None or seq < 1:
            raise Refusal(400, f"seq must be a whole number from 1 to {MAX_WHOLE}.")
        await self.spend(bot, MESSAGES)
        try:
            message = await change_message(self.request.app, room.slug, seq, bot.login, text)
        except ChangeRefused as exc:
            status = CHANGE_STATUS.get(exc.code, 503)
            return web.json_response({"error": exc.message, "code": exc.code}, status=status)
        return web.json_response({"message": message.to_json()})

    async def put(self) -> web.Response:
        bot = await self.bot()  # an unknown key is a 404 before the body is looked at
        return await self.change(bot, clean_text((await self.body()).get("text")))

    async def delete(self) -> web.Response:
        return await self.change(await self.bot(), None)


class BotSlack(BotApi):
    """`POST /api/bots/<key>/rooms/<slug>/slack`: a Slack incoming webhook; answers `ok`.

    JSON `{"text": ...}` (attachments' and blocks' texts folded in), or a form with `payload=`.
    A text longer than a message may be is cut, not refused: alerting tools cannot fix it.
    """

    async def post(self) -> web.Response:
        bot = await self.bot()
        room = await self.room(bot)
        await self.spend(bot, MESSAGES)
        request = self.request
        try:
            if request.content_type == "application/x-www-form-urlencoded":
                raw = (await request.post()).get("payload")
                payload = json.loads(raw) if isinstance(raw, str) else None
            else:
                payload = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            raise Refusal(400, "invalid_payload: the body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise Refusal(400, 'invalid_payload: send a JSON object like {"text": "..."}.')
        text = slack_text(payload)
        if not text:
            raise Refusal(400, "no_text: the payload has no text.")
        if len(text) > TEXT_MAX:
            text = text[: TEXT_MAX - 1] + "…"
        client_id = "slack-" + secrets.token_urlsafe(12)
        await post_message(request.app, room.slug, bot.login, text, client_id)
        return web.Response(text="ok")
