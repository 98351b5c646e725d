"""`/account`: one's password and sessions."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from auth import require_login
from auth.accounts import end_sessions, set_password
from auth.forms import new_password_errors
from auth.passwords import PASSWORDS_KEY, busy_refusal
from auth.sessions import end_session, session_ended
from common.forms import field
from common.pages import Page, Refusal, redirect, render_form
from common.workers import Busy
from settings import SETTINGS_KEY
from storage import STORE_KEY
from storage.base import Session

WRONG_PASSWORD = "That is not your current password."


async def render_account(
    request: web.Request, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render the account page with the person's live sessions."""
    session = require_login(request)
    sessions = await request.app[STORE_KEY].sessions.of_user(session.user)
    full = {"sessions": sessions, "current": session.public_id, "changed": False, **context}
    return await render_form(request, "account.html", full, status)


class Account(Page):
    """The account page."""

    async def get(self) -> web.Response:
        changed = self.request.query.get("changed") == "password"
        return await render_account(self.request, {"changed": changed})


class ChangePassword(web.View):
    """`POST /account/password`: the current password, then the new one twice.

    The other sessions end (their sockets close); this one stays logged in.
    """

    async def post(self) -> web.Response:
        request = self.request
        session = require_login(request)
        form = await request.post()
        current, new = field(form, "current_password"), field(form, "password")
        errors: dict[str, str] = {}
        passwords = request.app[PASSWORDS_KEY]
        try:
            if not await passwords.verify(session.user.password_hash, current[:1024]):
                errors["current_password"] = WRONG_PASSWORD
        except Busy:
            raise busy_refusal() from None
        minimum = request.app[SETTINGS_KEY].password_min_length
        errors.update(new_password_errors(new, field(form, "password_confirm"), minimum))
        if errors:
            return await render_account(request, {"errors": errors}, status=400)
        try:
            new_hash = await passwords.hash(new)
        except Busy:
            raise busy_refusal() from None
        await set_password(
            request.app[STORE_KEY],
            session.user.login,
            new_hash,
            functools.partial(session_ended, request.app),
            keep=session.id,
        )
        raise redirect(request, "account", changed="password")


class EndSession(web.View):
    """`POST /account/sessions/<id>/end`: log one of one's sessions out (this one: to login)."""

    async def post(self) -> web.Response:
        request = self.request
        session = require_login(request)
        handle = request.match_info["id"]
        if handle == session.public_id:
            await end_session(request)
            raise redirect(request, "login")
        store = request.app[STORE_KEY]
        target = next(
            (s for s in await store.sessions.of_user(session.user) if s.public_id == handle), None
        )
        if target is None:
            raise Refusal(404, "That session has ended already.")
        await store.sessions.delete(target.id)
        await session_ended(request.app, target.id)
        raise redirect(request, "account")


class LogoutEverywhere(web.View):
    """`POST /account/logout-everywhere`: end every session of the account, this one too."""

    async def post(self) -> web.Response:
        request = self.request
        session: Session = require_login(request)
        others = functools.partial(session_ended, request.app)
        await end_sessions(request.app[STORE_KEY], session.user, others, keep=session.id)
        await end_session(request)
        raise redirect(request, "login")
