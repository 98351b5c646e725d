"""Sign-up, login and logout pages."""

from __future__ import annotations

from aiohttp import web

from auth.forms import safe_next, validate_signup
from auth.passwords import PASSWORDS_KEY
from auth.sessions import end_session, start_session
from common import SESSION_KEY
from common.forms import field
from common.limits import LIMITS_KEY, too_many
from common.pages import Page, redirect, render_form
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import LoginTaken, login_key

LOGIN_FAILED = "Wrong login or password."


class SignUp(Page):
    """Registration: create an account and log it in."""

    async def get(self) -> web.Response:
        if SESSION_KEY in self.request:
            raise redirect(self.request, "index")
        return await render_form(self.request, "signup.html", {})

    async def post(self) -> web.Response:
        request = self.request
        settings = request.app[SETTINGS_KEY]
        limit = request.app[LIMITS_KEY].signup_address
        address = request.remote or ""
        if wait := limit.retry_after(address):
            raise too_many(wait)
        values, errors = validate_signup(await request.post(), settings.password_min_length)
        shown = {"login": values["login"], "email": values["email"]}  # never the password
        if errors:
            return await render_form(
                request, "signup.html", {"form": shown, "errors": errors}, status=400
            )
        password_hash = await request.app[PASSWORDS_KEY].hash(values["password"])
        try:
            user = await request.app[STORE_KEY].users.create(
                values["login"], values["email"], password_hash
            )
        except LoginTaken:
            errors = {"login": "This login is taken; choose another."}
            return await render_form(
                request, "signup.html", {"form": shown, "errors": errors}, status=409
            )
        limit.hit(address)
        await start_session(request, user)
        raise redirect(request, "index")


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
        login = field(form, "login").strip()
        password = field(form, "password")
        nxt = safe_next(field(form, "next") or request.query.get("next", ""), "/")
        limits = request.app[LIMITS_KEY]
        account, address = login_key(login), request.remote or ""
        # Checked before the password, so a blocked account cannot be probed any further.
        wait = max(
            limits.login_account.retry_after(account), limits.login_address.retry_after(address)
        )
        if wait:
            raise too_many(wait)
        user = await request.app[STORE_KEY].users.find_by_login(login) if login else None
        ok = await request.app[PASSWORDS_KEY].verify(
            user.password_hash if user else None, password[:1024]
        )
        if user is None or not ok:
            limits.login_account.hit(account)
            limits.login_address.hit(address)
            context = {"form": {"login": login}, "next": nxt, "errors": {"form": LOGIN_FAILED}}
            return await render_form(request, "login.html", context, status=401)
        limits.login_account.reset(account)
        await start_session(request, user)
        raise web.HTTPFound(nxt)


class Logout(web.View):
    """Logging out (POST only): ends the session everywhere, sockets included."""

    async def post(self) -> web.Response:
        await end_session(self.request)  # its sockets close too, on every process
        raise redirect(self.request, "login")
