"""Sign-up, login and logout pages."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from auth.accounts import signup_mode
from auth.forms import clean_login, safe_next, validate_signup
from auth.passwords import PASSWORDS_KEY, busy_refusal
from auth.sessions import end_session, start_session
from common import SESSION_KEY
from common.forms import field
from common.limits import LIMITS_KEY, login_pair, too_many
from common.pages import Page, Refusal, redirect, render_form
from common.workers import Busy
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import Invite, LoginTaken, login_key, login_skeleton, now

LOGIN_FAILED = "Wrong login or password."
# Another account's login looks the same (I, l and 1; O and 0; rn and m): one could pass for it.
LOOKALIKE_LOGIN = "This login looks like one that is taken; choose another."


SIGNUP_REFUSED = {
    "invite": "Sign-up here is by invitation only. Ask an admin of this chat for an invitation "
    "link, then open it to create your account.",
    "closed": "Sign-up is closed: this chat takes no new accounts. Ask an admin if you need one.",
}
INVITE_INVALID = (
    "This invitation link is not valid: it may have expired or been revoked. "
    "Ask an admin of this chat for a new one."
)


async def allowed_signup(request: web.Request, invite: Invite | None) -> str | None:
    """Return why a sign-up is refused now, or None when it may go ahead.

    The first account of an empty store may always sign up; then the mode decides: `open`
    lets anyone in, `invite` those with a live invitation, `closed` nobody.
    """
    store = request.app[STORE_KEY]
    if not await store.users.exist():
        return None
    mode = await signup_mode(store, request.app[SETTINGS_KEY])
    if mode == "open" or (mode == "invite" and invite is not None):
        return None
    return SIGNUP_REFUSED["closed" if mode == "closed" else "invite"]


class SignUp(Page):
    """Registration: create an account and log it in (when the sign-up mode allows)."""

    invite: Invite | None = None

    async def form_url(self) -> str:
        return str(self.request.app.router["signup"].url_for())

    async def find_invite(self) -> Invite | None:
        return None

    async def render(self, context: dict[str, Any], status: int = 200) -> web.Response:
        context = {"action": await self.form_url(), "invite": self.invite, **context}
        return await render_form(self.request, "signup.html", context, status)

    async def get(self) -> web.Response:
        if SESSION_KEY in self.request:
            raise redirect(self.request, "index")
        self.invite = await self.find_invite()
        refused = await allowed_signup(self.request, self.invite)
        if refused:
            return await self.render({"refused": refused})
        return await self.render({})

    async def post(self) -> web.Response:
        request = self.request
        settings = request.app[SETTINGS_KEY]
        self.invite = await self.find_invite()
        refused = await allowed_signup(request, self.invite)
        if refused:
            return await self.render({"refused": refused}, status=403)
        limit = request.app[LIMITS_KEY].signup_address
        address = request.remote or ""
        if wait := limit.retry_after(address):
            raise too_many(wait)
        values, errors = validate_signup(await request.post(), settings.password_min_length)
        shown = {"login": values["login"], "email": values["email"]}  # never the password
        if errors:
            return await self.render({"form": shown, "errors": errors}, status=400)
        store = request.app[STORE_KEY]
        # A taken login is refused before the costly hash, and counts against the address, so
        # the 409 cannot be used to list accounts faster than sign-ups are allowed.
        taken = {"login": "This login is taken; choose another."}
        if await store.users.find_by_login(values["login"]) is not None:
            limit.hit(address)
            return await self.render({"form": shown, "errors": taken}, status=409)
        twin = await store.users.find_by_skeleton(login_skeleton(values["login"]))
        if twin is not None and login_key(twin.login) != login_key(values["login"]):
            limit.hit(address)
            errors = {"login": LOOKALIKE_LOGIN}
            return await self.render({"form": shown, "errors": errors}, status=409)
        try:
            password_hash = await request.app[PASSWORDS_KEY].hash(values["password"])
        except Busy:
            raise busy_refusal() from None
        try:
            user = await store.users.create(values["login"], values["email"], password_hash)
        except LoginTaken:  # taken meanwhile: the unique index decides races
            limit.hit(address)
            return await self.render({"form": shown, "errors": taken}, status=409)
        if self.invite is not None:
            await store.invites.use(self.invite.token)
        limit.hit(address)
        await start_session(request, user)
        raise redirect(request, "index")


class Join(SignUp):
    """`/join/<token>`: sign up with an invitation; a token not live is a 404 page."""

    async def form_url(self) -> str:
        token = self.request.match_info["token"]
        return str(self.request.app.router["join"].url_for(token=token))

    async def find_invite(self) -> Invite | None:
        invite = await self.request.app[STORE_KEY].invites.find(self.request.match_info["token"])
        if invite is None or not invite.live(now()):
            raise Refusal(404, INVITE_INVALID)
        return invite


class Login(Page):
    """Logging in with login and password."""

    async def get(self) -> web.Response:
        nxt = safe_next(self.request.query.get("next", ""), "/")
        if SESSION_KEY in self.request:
            raise web.HTTPFound(nxt)
        return await render_form(self.request, "login.html", {"next": nxt})

    async def post(self) -> web.Response:
        request = self.request
        form = await request.post()
        login = clean_login(field(form, "login"))
        password = field(form, "password")
        nxt = safe_next(field(form, "next") or request.query.get("next", ""), "/")
        limits = request.app[LIMITS_KEY]
        account, address = login_key(login), request.remote or ""
        pair = login_pair(account, address)
        # Checked before the password, so a blocked pair or address cannot probe any further.
        wait = max(
            limits.login_account.retry_after(pair), limits.login_address.retry_after(address)
        )
        if wait:
            raise too_many(wait)
        # Failures on this account from anywhere slow every attempt on it (bounded), the owner's
        # too, but never lock it: the right password from another address still gets in.
        await limits.login_delay.wait(account)
        store, passwords = request.app[STORE_KEY], request.app[PASSWORDS_KEY]
        user = await store.users.find_by_login(login) if login else None
        try:
            ok = await passwords.verify(user.password_hash if user else None, password[:1024])
        except Busy:
            raise busy_refusal() from None
        if user is None or not ok or not user.active:  # deactivated: the same failure
            limits.login_account.hit(pair)
            limits.login_address.hit(address)
            limits.login_delay.hit(account)
            context = {"form": {"login": login}, "next": nxt, "errors": {"form": LOGIN_FAILED}}
            return await render_form(request, "login.html", context, status=401)
        limits.login_account.reset(pair)
        limits.login_delay.reset(account)
        if passwords.needs_rehash(user.password_hash):
            # Made under older ARGON2_* costs: store it under the current ones. The password
            # is the same, so no session ends; with hashing saturated, the next login does it.
            with contextlib.suppress(Busy):
                await store.users.set_password(user.login, await passwords.hash(password[:1024]))
        await start_session(request, user)
        raise web.HTTPFound(nxt)


class Logout(web.View):
    """Logging out (POST only): ends the session everywhere, sockets included."""

    async def post(self) -> web.Response:
        await end_session(self.request)  # its sockets close too, on every process
        raise redirect(self.request, "login")
