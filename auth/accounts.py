"""What admins, people and the command line do to accounts, on any store, with any process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from settings import SIGNUP_MODES, Settings
from storage.base import Store, User

SIGNUP_MODE = "signup_mode"  # the config key an admin's choice is kept under

SessionEnded = Callable[[str], Awaitable[None]]


class NoSuchAccount(Exception):
    """No account has this login."""


async def signup_mode(store: Store, settings: Settings) -> str:
    """Return who may sign up now: the admin's choice, else the SIGNUP_MODE setting."""
    stored = await store.config.get(SIGNUP_MODE)
    return stored if stored in SIGNUP_MODES else settings.signup_mode


async def set_signup_mode(store: Store, mode: str) -> None:
    """Keep an admin's choice of who may sign up; it overrides the setting."""
    if mode not in SIGNUP_MODES:
        raise ValueError(f"unknown sign-up mode {mode!r}; use " + ", ".join(SIGNUP_MODES))
    await store.config.set(SIGNUP_MODE, mode)


async def end_sessions(
    store: Store, user: User, ended: SessionEnded, keep: str | None = None
) -> int:
    """End every session of the user but `keep`, closing their sockets; return how many."""
    ids = await store.sessions.delete_of_user(user, keep)
    for sid in ids:
        await ended(sid)
    return len(ids)


async def deactivate(store: Store, login: str, ended: SessionEnded) -> User:
    """Refuse the account's logins from now on and end all its sessions (LastAdmin: refused)."""
    user = await store.users.set_active(login, False)
    if user is None:
        raise NoSuchAccount(login)
    await end_sessions(store, user, ended)
    return user


async def reactivate(store: Store, login: str) -> User:
    """Let a deactivated account log in again."""
    user = await store.users.set_active(login, True)
    if user is None:
        raise NoSuchAccount(login)
    return user


async def set_password(
    store: Store, login: str, password_hash: str, ended: SessionEnded, keep: str | None = None
) -> User:
    """Replace the account's password and end its other sessions."""
    user = await store.users.set_password(login, password_hash)
    if user is None:
        raise NoSuchAccount(login)
    await end_sessions(store, user, ended, keep)
    return user
