"""The operator's command line: accounts, invitations, sign-up, backups; on either store, live."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import json
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

from yarl import URL

from auth.accounts import NoSuchAccount, deactivate, reactivate, set_password, set_signup_mode
from auth.forms import EMAIL_MAX, EMAIL_RE, LOGIN_RE, PASSWORD_MAX
from auth.passwords import Passwords
from chat import EXPIRY_SWEEP
from chat.broker import CHANNEL
from settings import SIGNUP_MODES, Settings, SettingsError, load_settings
from storage import open_store
from storage.backup import BackupError, Summary, backup, restore
from storage.base import (
    ADMIN,
    MAX_PAGE,
    LastAdmin,
    LoginTaken,
    StorageUnavailable,
    Store,
    iso,
    login_skeleton,
)

PROG = "manage.py"
ORIGIN = "manage"  # the origin of the events published on Redis (a server's is a 12-hex id)
OK, REFUSED, USAGE, UNAVAILABLE = 0, 1, 2, 3
INTERRUPTED = 130
LAST_ADMIN = "the chat needs at least one active admin; make another account an admin first"

Command = Callable[[argparse.Namespace, Settings, Store], Awaitable[None]]
FileCommand = Callable[[argparse.Namespace, Settings], None]  # works on the files, not the store
MONGO_TOOLS = (
    "copies the SQLite store only; with MONGODB_URI set use MongoDB's tools "
    "(see the README, Back up and restore): "
    'mongodump --uri "$MONGODB_URI" --db "${MONGODB_DB:-chat}" --archive=chat.archive --gzip, and '
    'mongorestore --uri "$MONGODB_URI" --nsInclude "${MONGODB_DB:-chat}.*" --archive=chat.archive '
    "--gzip --drop"
)


class Refused(Exception):
    """The operation was refused; the message says why (exit code 1)."""


class Unsupported(Exception):
    """The command does not apply to this configuration; the message says what does (exit 2)."""


def error(message: str) -> None:
    """Print one line to stderr, prefixed with the program's name."""
    print(f"{PROG}: {message}", file=sys.stderr)


def where(settings: Settings) -> str:
    """Name the database the settings select (never the URI: it may hold a password)."""
    if settings.mongodb_uri:
        return f"MongoDB database {settings.mongodb_db!r}"
    return f"SQLite database {(settings.data_dir / 'chat.sqlite3').resolve()}"


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Let Ctrl-C stop a prompt at once: under asyncio.run it would wait for the next await."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def read_password(settings: Settings) -> str:
    """Ask for a new password twice on a terminal, else read one line from stdin."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        try:
            with interruptible():
                password = getpass.getpass("New password: ")
                again = getpass.getpass("Once more: ")
        except EOFError:
            print(file=sys.stderr)  # end the prompt's line
            raise Refused("no password given") from None
        if again != password:
            raise Refused("the two passwords differ")
    else:
        line = stdin.readline() if stdin is not None else ""
        if not line:
            raise Refused("no password given: type it, or pipe it as one line on stdin")
        password = line.rstrip("\r\n")
    if len(password) < settings.password_min_length:
        raise Refused(
            f"the password is too short: use at least {settings.password_min_length} characters"
        )
    if len(password) > PASSWORD_MAX:
        raise Refused(f"the password is too long: use at most {PASSWORD_MAX} characters")
    return password


async def new_hash(settings: Settings) -> str:
    """Read a new password and return its argon2id hash, as the server makes them."""
    password = read_password(settings)
    return await Passwords(settings.argon2_time_cost, settings.argon2_memory_kib).hash(password)


async def exists(store: Store, login: str) -> str:
    """Return the login as stored; refuse when no account has it."""
    user = await store.users.find_by_login(login)
    if user is None:
        raise Refused(f"no account has the login {login!r}")
    return user.login


async def announce_ended(settings: Settings, ids: list[str]) -> None:
    """Tell every server over Redis that these sessions ended, so their sockets close at once.

    Without Redis, or when it fails, the servers notice within EXPIRY_SWEEP seconds.
    """
    if not settings.redis_url or not ids:
        return
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        for sid in ids:
            event = {"kind": "session_end", "session": sid, "origin": ORIGIN}
            await client.publish(CHANNEL, json.dumps(event))
    except (RedisError, OSError) as exc:
        error(
            f"warning: cannot tell the servers over Redis ({exc}); "
            f"their open sockets close within {EXPIRY_SWEEP:.0f} s"
        )
    finally:
        await client.aclose()


def plural(count: int, noun: str) -> str:
    """Return e.g. '1 session' or '2 sessions'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


# The commands


async def create_admin(args: argparse.Namespace, settings: Settings, store: Store) -> None:
    """Create an admin account; an existing login is refused, never changed."""
    login: str = args.login
    if not LOGIN_RE.fullmatch(login):
        raise Refused(f"{login!r} is not a valid login: use 3 to 32 letters, digits, . - or _")
    email: str = args.email or f"{login}@localhost"
    if args.email is not None and (len(email) > EMAIL_MAX or not EMAIL_RE.fullmatch(email)):
        raise Refused(f"{email!r} is not an email address like name@example.com")
    taken = f"the login {login!r} is taken (logins ignore case): promote it on /admin instead"
    if await store.users.find_by_login(login) is not None:
        raise Refused(taken)
    twin = await store.users.find_by_skeleton(login_skeleton(login))
    if twin is not None:
        raise Refused(f"the login {login!r} looks like the taken {twin.login!r}: choose another")
    password_hash = await new_hash(settings)
    try:
        user = await store.users.create(login, email, password_hash)
    except LoginTaken:
        raise Refused(taken) from None
    await store.users.set_role(user.login, ADMIN)
    print(f"created admin {user.login} in the {where(settings)}")


async def reset_password(args: argparse.Namespace, settings: Settings, store: Store) -> None:
    """Give an account a new password and end all its sessions."""
    login = await exists(store, args.login)
    if await store.bots.find(login) is not None:
        raise Refused(f"{login!r} is a bot: it never logs in with a password")
    password_hash = await new_hash(settings)
    ended: list[str] = []
    try:
        user = await set_password(store, login, password_hash, _collect(ended), keep=None)
    except NoSuchAccount:
        raise Refused(f"no account has the login {login!r}") from None
    await announce_ended(settings, ended)
    print(f"new password for {user.login}; ended {plural(len(ended), 'session')}")


async def invite(args: argparse.Namespace, settings: Settings, store: Store) -> None:
    """Create an invitation and print its link and expiry."""
    by = await exists(store, args.by) if args.by else PROG
    base = args.base_url or f"http://{_host(settings.host)}:{settings.port}"
    if not args.base_url and settings.host in ("0.0.0.0", "::"):
        error(f"note: HOST is {settings.host}; pass --base-url with the address people open")
    created = await store.invites.create(by, settings.invite_ttl)
    print(f"{base.rstrip('/')}/join/{created.token}")
    print(f"expires {iso(created.expires_at)} (INVITE_TTL: {settings.invite_ttl} s)")


async def set_signup(args: argparse.Namespace, settings: Settings, store: Store) -> None:
    """Choose who may sign up, overriding SIGNUP_MODE (as /admin does)."""
    await set_signup_mode(store, args.mode)
    print(f"sign-up mode: {args.mode}")


async def deactivate_cmd(args: argparse.Namespace, settings: Settings, store: Store) -> None:
    """Refuse an account's logins and end all its sessions."""
    ended: list[str] = []
    try:
        user = await deactivate(store, args.login, _collect(ended))
    except NoSuchAccount:
        raise Refused(f"no account has the login {args.login!r}") from None
    except LastAdmin:
        raise Refused(f"cannot deactivate {args.login}: {LAST_ADMIN}") from None
    await announce_ended(settings, ended)
    print(f"deactivated {user.login}; ended {plural(len(ended), 'session')}")


async def reactivate_cmd(args: argparse.Namespace, settings: Settings, store: Store) -> None:
    """Let a deactivated account log in again."""
    try:
        user = await reactivate(store, args.login)
    except NoSuchAccount:
        raise Refused(f"no account has the login {args.login!r}") from None
    print(f"reactivated {user.login}")


async def users(args: argparse.Namespace, settings: Settings, store: Store) -> None:
    """Print every account: login, role, state, created, last seen (UTC)."""
    accounts = await store.users.list(MAX_PAGE)
    if not accounts:
        print(f"no accounts in the {where(settings)}")
        return
    rows = [("LOGIN", "ROLE", "STATE", "CREATED (UTC)", "LAST SEEN (UTC)")]
    rows += [
        (
            u.login,
            u.role,
            "active" if u.active else "deactivated",
            _minute(u.created_at),
            _minute(u.last_seen_at) if u.last_seen_at else "never",
        )
        for u in accounts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if len(accounts) == MAX_PAGE:
        error(f"note: only the first {MAX_PAGE} accounts are listed")


def backup_cmd(args: argparse.Namespace, settings: Settings) -> None:
    """Write a backup of the SQLite store (database and uploads) to one file."""
    if settings.mongodb_uri:
        raise Unsupported(f"backup {MONGO_TOOLS}")
    try:
        made = backup(settings.data_dir, args.path, force=args.force)
    except BackupError as exc:
        raise Refused(str(exc)) from None
    print(f"backed up {_contents(made)} to {args.path}")


def restore_cmd(args: argparse.Namespace, settings: Settings) -> None:
    """Replace the SQLite store with a backup, after checking the backup whole."""
    if settings.mongodb_uri:
        raise Unsupported(f"restore {MONGO_TOOLS}")
    try:
        got = restore(args.path, settings.data_dir, force=args.force)
    except BackupError as exc:
        raise Refused(str(exc)) from None
    print(f"restored {_contents(got)}, backed up {got.created_at}, into the {where(settings)}")
    if got.replaced is not None:
        print(f"the files it replaced are in {got.replaced}")


def _contents(summary: Summary) -> str:
    """Say what a backup holds, e.g. '2 accounts, 1 room, 5 messages and 0 uploads'."""
    c = summary.counts
    return (
        f"{plural(c['users'], 'account')}, {plural(c['rooms'], 'room')}, "
        f"{plural(c['messages'], 'message')} and {plural(summary.uploads, 'upload')}"
    )


def _collect(ids: list[str]) -> Callable[[str], Awaitable[None]]:
    """Return a session-ended hook that notes the ids, to announce them afterwards."""

    async def ended(session_id: str) -> None:
        ids.append(session_id)

    return ended


def _host(host: str) -> str:
    """Bracket an IPv6 address for use in a URL."""
    return f"[{host}]" if ":" in host else host


def _minute(t: dt.datetime) -> str:
    """Format a time as UTC to the minute."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def _base_url(raw: str) -> str:
    """Parse --base-url: an absolute http(s) URL."""
    try:
        url = URL(raw)
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an http:// or https:// URL")
    return raw


# The parser and the entry point


def parser() -> argparse.ArgumentParser:
    """Build the argument parser: one subcommand per operation."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Administer the chat from the command line, on SQLite or MongoDB, "
        "while the server runs. Settings come from the environment and ./.env, as for app.py: "
        "run it where the server runs, with the same DATA_DIR or MONGODB_URI.",
        epilog="Exit codes: 0 done; 1 refused (unknown login, login taken, last admin, bad "
        "password, a backup that is damaged or would be overwritten); 2 bad usage (backup or "
        "restore on MongoDB: use mongodump and mongorestore); 3 configuration error or database "
        "unreachable; 130 interrupted. A password is asked twice on a terminal, else read as one "
        "line from stdin.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        cmd.set_defaults(func=func)
        return cmd

    cmd = command(
        "create-admin",
        create_admin,
        "create an admin account (a login already taken is refused, not promoted: "
        "promote people on /admin)",
    )
    cmd.add_argument("login")
    cmd.add_argument("--email", help="its email address (default: LOGIN@localhost)")
    cmd = command("reset-password", reset_password, "set a new password and end every session")
    cmd.add_argument("login")
    cmd = command("invite", invite, "create an invitation and print its join link")
    cmd.add_argument(
        "--base-url",
        type=_base_url,
        help="the address people open, e.g. https://chat.example.com (default: http://HOST:PORT)",
    )
    cmd.add_argument("--by", metavar="LOGIN", help="the account named as its creator on /admin")
    cmd = command("set-signup", set_signup, "choose who may sign up (overrides SIGNUP_MODE)")
    cmd.add_argument("mode", choices=SIGNUP_MODES)
    cmd = command("deactivate", deactivate_cmd, "refuse an account's logins, end its sessions")
    cmd.add_argument("login")
    cmd = command("reactivate", reactivate_cmd, "let a deactivated account log in again")
    cmd.add_argument("login")
    command("users", users, "list the accounts: login, role, state, created, last seen")
    for name, func, help, force in (
        (
            "backup",
            backup_cmd,
            "write the SQLite store (database, uploads) to one tar file, PATH, while the chat runs "
            "(PATH ending in .tar.gz or .tgz: compressed; the secret key is left out)",
            "replace PATH if it exists",
        ),
        (
            "restore",
            restore_cmd,
            "replace the SQLite store with the backup at PATH (stop the chat first)",
            "replace a store that holds accounts, messages or uploads (kept aside in "
            "DATA_DIR/replaced-TIME)",
        ),
    ):
        cmd = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        cmd.set_defaults(func=None, file_func=func)
        cmd.add_argument("path", metavar="PATH", type=Path)
        cmd.add_argument("--force", action="store_true", help=force)
    return p


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Store]:
    """Open and set up the store the settings select; close it afterwards."""
    store = open_store(settings)
    try:
        await store.setup()
        yield store
    finally:
        await store.close()


async def run(args: argparse.Namespace) -> int:
    """Load the settings, open the store, run the command; return the exit code."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        error(f"configuration error: {exc}")
        return UNAVAILABLE
    file_func: FileCommand | None = getattr(args, "file_func", None)
    try:
        if file_func is not None:
            file_func(args, settings)
        else:
            async with opened(settings) as store:
                await args.func(args, settings, store)
    except Refused as exc:
        error(str(exc))
        return REFUSED
    except Unsupported as exc:
        error(str(exc))
        return USAGE
    except StorageUnavailable as exc:
        error(f"cannot reach the database: {exc}")
        return UNAVAILABLE
    return OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it; return the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else USAGE
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print(file=sys.stderr)  # end the line ^C was typed on
        error("interrupted")
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
