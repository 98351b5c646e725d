"""`/admin`: who may sign up, invitations, and the people of the chat (admins only)."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from auth import require_login
from auth.accounts import (
    NoSuchAccount,
    deactivate,
    reactivate,
    set_signup_mode,
    signup_mode,
)
from auth.origin import own_origin
from auth.sessions import session_ended
from common.forms import field
from common.pages import Page, Refusal, redirect, render_page
from settings import SETTINGS_KEY, SIGNUP_MODES
from storage import STORE_KEY
from storage.base import MAX_PAGE, ROLES, LastAdmin, Session, login_key

ADMINS_ONLY = "Only an admin of this chat can do this."
LAST_ADMIN = "The chat needs at least one active admin: make someone else an admin first."
NOT_YOURSELF = "You cannot deactivate your own account; another admin can."
NO_ACCOUNT = "There is no account with this login."


def require_admin(request: web.Request) -> Session:
    """Return the logged-in admin's session; others get a 403 page."""
    session = require_login(request)
    if not session.user.is_admin:
        raise Refusal(403, ADMINS_ONLY)
    return session


def join_url(request: web.Request, token: str) -> str:
    """Return the full link of an invitation, as people will open it."""
    return own_origin(request) + str(request.app.router["join"].url_for(token=token))


async def render_admin(
    request: web.Request,
    error: str = "",
    status: int = 200,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    """Render /admin: the sign-up mode, the live invitations, every account and every bot."""
    store = request.app[STORE_KEY]
    settings = request.app[SETTINGS_KEY]
    upload_files, upload_bytes = await store.uploads.totals()
    context: dict[str, Any] = {
        "signup_mode": await signup_mode(store, settings),
        "signup_modes": SIGNUP_MODES,
        "invites": [
            {"invite": i, "url": join_url(request, i.token)}
            for i in await store.invites.live(MAX_PAGE)
        ],
        "people": await store.users.list(MAX_PAGE),
        "roles": ROLES,
        "bots": await store.bots.list(MAX_PAGE),
        "error": error,
        **(extra or {}),
        "upload_files": upload_files,
        "upload_bytes": upload_bytes,
        "upload_quota_mb": settings.upload_quota_mb,
    }
    return await render_page(request, "admin.html", context, status)


class Admin(Page):
    """The admin page."""

    async def get(self) -> web.Response:
        require_admin(self.request)
        return await render_admin(self.request)


class SignupMode(web.View):
    """`POST /admin/signup-mode` (field `mode`): who may sign up from now on."""

    async def post(self) -> web.Response:
        require_admin(self.request)
        mode = field(await self.request.post(), "mode")
        if mode not in SIGNUP_MODES:
            error = "Choose one of: " + ", ".join(SIGNUP_MODES) + "."
            return await render_admin(self.request, error=error, status=400)
        await set_signup_mode(self.request.app[STORE_KEY], mode)
        raise redirect(self.request, "admin")


class InviteCreate(web.View):
    """`POST /admin/invites`: a new invitation link, valid for INVITE_TTL."""

    async def post(self) -> web.Response:
        session = require_admin(self.request)
        ttl = self.request.app[SETTINGS_KEY].invite_ttl
        await self.request.app[STORE_KEY].invites.create(session.user.login, ttl)
        raise redirect(self.request, "admin")


class InviteRevoke(web.View):
    """`POST /admin/invites/<token>/revoke`: the link stops working at once."""

    async def post(self) -> web.Response:
        require_admin(self.request)
        if not await self.request.app[STORE_KEY].invites.revoke(self.request.match_info["token"]):
            raise Refusal(404, "There is no such invitation.")
        raise redirect(self.request, "admin")


class _AccountAction(web.View):
    """An admin's change to an account: 404 for no such login, 409 for the last admin."""

    async def change(self, login: str) -> None:
        raise NotImplementedError

    async def post(self) -> web.Response:
        session = require_admin(self.request)
        login = self.request.match_info["login"]
        try:
            await self.change(login)
        except NoSuchAccount:
            raise Refusal(404, NO_ACCOUNT) from None
        except LastAdmin:
            return await render_admin(self.request, error=LAST_ADMIN, status=409)
        me = await self.request.app[STORE_KEY].users.find_by_login(session.user.login)
        if me is None or not me.is_admin:
            raise redirect(self.request, "index")  # demoted oneself: /admin would be a 403
        raise redirect(self.request, "admin")


class UserRole(_AccountAction):
    """`POST /admin/users/<login>/role` (field `role`): promote to admin or demote to member."""

    async def change(self, login: str) -> None:
        role = field(await self.request.post(), "role")
        if role not in ROLES:
            raise Refusal(400, "Choose a role: " + " or ".join(ROLES) + ".")
        if await self.request.app[STORE_KEY].users.set_role(login, role) is None:
            raise NoSuchAccount(login)


class UserDeactivate(_AccountAction):
    """`POST /admin/users/<login>/deactivate`: end their sessions and sockets, refuse logins."""

    async def change(self, login: str) -> None:
        app = self.request.app
        if login_key(login) == login_key(require_admin(self.request).user.login):
            raise Refusal(409, NOT_YOURSELF)
        await deactivate(app[STORE_KEY], login, functools.partial(session_ended, app))


class UserReactivate(_AccountAction):
    """`POST /admin/users/<login>/reactivate`: they may log in again."""

    async def change(self, login: str) -> None:
        await reactivate(self.request.app[STORE_KEY], login)
