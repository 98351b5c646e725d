"""Bots on `/admin`: create one (its key shown once), revoke its key, set its outgoing webhook."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from yarl import URL

from auth.admin import render_admin, require_admin
from auth.forms import LOGIN_RE, clean_login
from auth.origin import own_origin
from common.forms import field
from common.pages import Refusal, redirect
from storage import STORE_KEY
from storage.base import (
    BOT_PASSWORD_HASH,
    Bot,
    LoginTaken,
    Store,
    bot_key_hash,
    login_key,
    login_skeleton,
    new_bot_key,
)

INITIALS_RE = re.compile(r"[A-Za-z0-9]{1,3}")
WEBHOOK_URL_MAX = 500
BOT_EMAIL_DOMAIN = "bots.invalid"  # a bot's account has no real address (RFC 2606 name)
NO_BOT = "There is no bot with this login."


class BotRefused(Exception):
    """A bot could not be made or changed as asked; the message says why."""


def check_webhook_url(raw: str) -> str:
    """Return the cleaned outgoing-webhook URL ('' for none); BotRefused when it is unusable.

    Only http(s) with a host; an address written as an IP is checked again (with every
    resolved one) when it is called, where WEBHOOK_ALLOW_PRIVATE decides.
    """
    url = raw.strip()
    if not url:
        return ""
    if len(url) > WEBHOOK_URL_MAX:
        raise BotRefused(f"Use a webhook URL of at most {WEBHOOK_URL_MAX} characters.")
    try:
        parsed = URL(url)
    except ValueError:
        raise BotRefused("The webhook URL is not a valid URL.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.user is not None:
        raise BotRefused("Use an http:// or https:// webhook URL with a host and no password.")
    return url


def bot_initials(login: str, raw: str) -> str:
    """Return the avatar initials: as given (1 to 3 letters or digits), else from the login."""
    initials = raw.strip() or "".join(c for c in login if c.isalnum())[:2]
    if not INITIALS_RE.fullmatch(initials):
        raise BotRefused("Use 1 to 3 letters or digits as initials.")
    return initials.upper()


async def create_bot(
    store: Store, login: str, initials: str, created_by: str, webhook_url: str = ""
) -> tuple[Bot, str]:
    """Make a bot account and its record; return the bot and its key (shown once, never kept)."""
    login = clean_login(login)
    if not LOGIN_RE.fullmatch(login):
        raise BotRefused("Use 3 to 32 letters, digits, dots, dashes or underscores as login.")
    initials = bot_initials(login, initials)
    webhook_url = check_webhook_url(webhook_url)
    if await store.users.find_by_login(login) is not None:
        raise BotRefused("This login is taken; choose another.")
    twin = await store.users.find_by_skeleton(login_skeleton(login))
    if twin is not None and login_key(twin.login) != login_key(login):
        raise BotRefused("This login looks like one that is taken; choose another.")
    try:
        await store.users.create(login, f"{login}@{BOT_EMAIL_DOMAIN}", BOT_PASSWORD_HASH)
        key = new_bot_key()
        bot = await store.bots.create(login, bot_key_hash(key), created_by, initials)
    except LoginTaken:
        raise BotRefused("This login is taken; choose another.") from None
    if webhook_url:
        await store.bots.set_webhook(login, webhook_url)
        bot = Bot(bot.login, bot.key_hash, created_by, bot.created_at, initials, webhook_url)
    return bot, key


def bot_urls(request: web.Request, key: str) -> dict[str, str]:
    """Return the bot API's URLs for a key, as shown once after the bot is made."""
    origin = own_origin(request)
    return {
        "messages": origin
        + str(request.app.router["bot-messages"].url_for(key=key, slug="general")),
        "slack": origin + str(request.app.router["bot-slack"].url_for(key=key, slug="general")),
    }


async def render_bots(request: web.Request, **extra: Any) -> web.Response:
    """Render /admin with the bots section's extra context (an error, a new key)."""
    error = extra.pop("error", "")
    status = extra.pop("status", 200)
    return await render_admin(request, error=error, status=status, extra=extra)


class BotCreate(web.View):
    """`POST /admin/bots` (fields login, initials, webhook_url): a new bot; its key shown once."""

    async def post(self) -> web.Response:
        session = require_admin(self.request)
        form = await self.request.post()
        try:
            bot, key = await create_bot(
                self.request.app[STORE_KEY],
                field(form, "login"),
                field(form, "initials"),
                session.user.login,
                field(form, "webhook_url"),
            )
        except BotRefused as exc:
            return await render_bots(self.request, error=str(exc), status=400)
        # Answered, not redirected: the key is on this page only, and never again.
        response = await render_bots(
            self.request, status=201, new_bot=bot, new_key=key, new_urls=bot_urls(self.request, key)
        )
        response.headers["Cache-Control"] = "no-store"
        return response


class BotRevoke(web.View):
    """`POST /admin/bots/<login>/revoke`: the bot's key stops working at once, for good."""

    async def post(self) -> web.Response:
        require_admin(self.request)
        if not await self.request.app[STORE_KEY].bots.revoke(self.request.match_info["login"]):
            raise Refusal(404, NO_BOT)
        raise redirect(self.request, "admin")


class BotRekey(web.View):
    """`POST /admin/bots/<login>/rekey`: a new key, shown once; the old one stops at once."""

    async def post(self) -> web.Response:
        require_admin(self.request)
        store = self.request.app[STORE_KEY]
        login = self.request.match_info["login"]
        key = new_bot_key()
        if not await store.bots.rekey(login, bot_key_hash(key)):
            raise Refusal(404, NO_BOT)  # none, or revoked: a revoked bot stays so, for good
        bot = await store.bots.find(login)
        response = await render_bots(
            self.request,
            new_bot=bot,
            new_key=key,
            rekeyed=True,
            new_urls=bot_urls(self.request, key),
        )
        response.headers["Cache-Control"] = "no-store"
        return response


class BotWebhook(web.View):
    """`POST /admin/bots/<login>/webhook` (field url; empty: none): where mentions are sent."""

    async def post(self) -> web.Response:
        require_admin(self.request)
        try:
            url = check_webhook_url(field(await self.request.post(), "url"))
        except BotRefused as exc:
            return await render_bots(self.request, error=str(exc), status=400)
        if not await self.request.app[STORE_KEY].bots.set_webhook(
            self.request.match_info["login"], url
        ):
            raise Refusal(404, NO_BOT)
        raise redirect(self.request, "admin")
