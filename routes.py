"""The route table: every URL the chat serves, by name."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from auth.account import Account, ChangePassword, EndSession, LogoutEverywhere
from auth.admin import (
    Admin,
    InviteCreate,
    InviteRevoke,
    SignupMode,
    UserDeactivate,
    UserReactivate,
    UserRole,
)
from auth.bots import BotCreate, BotRekey, BotRevoke, BotWebhook
from auth.views import Join, Login, Logout, SignUp
from chat.bots import BotMessage, BotMessages, BotSlack
from chat.search import SearchMessages, SearchPage
from chat.sidebar import RoomNotify, SidebarJson
from chat.uploads import RoomUploads, UploadFile, UploadThumb
from chat.views import (
    ChatPage,
    DirectMessage,
    DirectMessageForm,
    History,
    RoomCreate,
    RoomLeave,
    RoomList,
    RoomMembers,
)
from chat.ws import ChatSocket
from common.health import Healthz, Readyz
from common.metrics import MetricsView
from storage.base import THUMB_PATH, UPLOAD_PATH

STATIC_DIR = Path(__file__).parent / "static"


def setup_routes(app: web.Application) -> None:
    """Add all routes to the app."""
    app.add_routes(
        [
            web.view("/", RoomList, name="index"),
            web.view("/rooms", RoomCreate, name="rooms"),
            web.view("/rooms/{slug}", ChatPage, name="room"),
            web.view("/signup", SignUp, name="signup"),
            web.view("/login", Login, name="login"),
            web.view("/logout", Logout, name="logout"),
            web.view("/ws", ChatSocket, name="ws"),
            web.view("/rooms/{slug}/messages", History, name="history"),
            web.view("/rooms/{slug}/members", RoomMembers, name="room-members"),
            web.view("/rooms/{slug}/leave", RoomLeave, name="room-leave"),
            web.view("/rooms/{slug}/notify", RoomNotify, name="room-notify"),
            web.view("/sidebar.json", SidebarJson, name="sidebar"),
            web.view("/search", SearchPage, name="search"),
            web.view("/search/messages", SearchMessages, name="search-messages"),
            web.view("/rooms/{slug}/uploads", RoomUploads, name="room-uploads"),
            web.view(UPLOAD_PATH, UploadFile, name="upload"),
            web.view(THUMB_PATH, UploadThumb, name="upload-thumb"),
            web.view("/dm", DirectMessageForm, name="dm-form"),
            web.view("/dm/{login}", DirectMessage, name="dm"),
            web.view("/join/{token}", Join, name="join"),
            web.view("/account", Account, name="account"),
            web.view("/account/password", ChangePassword, name="account-password"),
            web.view("/account/sessions/{id}/end", EndSession, name="account-session-end"),
            web.view(
                "/account/logout-everywhere", LogoutEverywhere, name="account-logout-everywhere"
            ),
            web.view("/admin", Admin, name="admin"),
            web.view("/admin/signup-mode", SignupMode, name="admin-signup-mode"),
            web.view("/admin/invites", InviteCreate, name="admin-invites"),
            web.view("/admin/invites/{token}/revoke", InviteRevoke, name="admin-invite-revoke"),
            web.view("/admin/users/{login}/role", UserRole, name="admin-user-role"),
            web.view(
                "/admin/users/{login}/deactivate", UserDeactivate, name="admin-user-deactivate"
            ),
            web.view(
                "/admin/users/{login}/reactivate", UserReactivate, name="admin-user-reactivate"
            ),
            web.view("/admin/bots", BotCreate, name="admin-bots"),
            web.view("/admin/bots/{login}/revoke", BotRevoke, name="admin-bot-revoke"),
            web.view("/admin/bots/{login}/rekey", BotRekey, name="admin-bot-rekey"),
            web.view("/admin/bots/{login}/webhook", BotWebhook, name="admin-bot-webhook"),
            # The bot API: the key in the URL authenticates (see middlewares.MACHINE_ROUTES).
            web.view("/api/bots/{key}/rooms/{slug}/messages", BotMessages, name="bot-messages"),
            web.view("/api/bots/{key}/rooms/{slug}/messages/{seq}", BotMessage, name="bot-message"),
            web.view("/api/bots/{key}/rooms/{slug}/slack", BotSlack, name="bot-slack"),
            web.view("/healthz", Healthz, name="healthz"),
            web.view("/readyz", Readyz, name="readyz"),
            web.view("/metrics", MetricsView, name="metrics"),
            web.static("/static", STATIC_DIR, name="static"),
        ]
    )
