"""manage.py, the operator's command line: every command on both stores, its exit codes and
messages, as a real process, and what it does to a running app (pages, sockets, Redis)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType
from cryptography.fernet import Fernet

import manage
from auth.accounts import signup_mode
from auth.passwords import Passwords
from chat.broker import CHANNEL
from chat.hub import HUB_KEY
from conftest import PASSWORD, Auth
from harness import ROOT, RedisServer, app_env, free_port
from settings import Settings
from storage import STORE_KEY
from storage.base import ADMIN, Store, User, iso, now

CHAT_VARS = [name.upper() for name in Settings.__dataclass_fields__]
HASHING = Passwords(1, 64)
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Point the app at the test's redis-server, when the test has one."""
    if "redis_server" in request.fixturenames:
        return {"redis_url": request.getfixturevalue("redis_server").url}
    return {}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No chat setting in the environment and no .env: only what a test sets counts."""
    for name in CHAT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ARGON2_TIME_COST", "1")
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "64")
    return monkeypatch


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, settings: Settings) -> pytest.MonkeyPatch:
    """The environment of an operator whose server runs with `settings` (either store)."""
    clean_env.setenv("DATA_DIR", str(settings.data_dir))
    clean_env.setenv("SECRET_KEY", settings.secret_key)
    if settings.mongodb_uri:
        clean_env.setenv("MONGODB_URI", settings.mongodb_uri)
        clean_env.setenv("MONGODB_DB", settings.mongodb_db)
    return clean_env


class Terminal(io.StringIO):
    """A stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class CLI:
    """Run `manage.main` in a thread of its own (its own event loop, as a process would)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    async def __call__(self, *argv: str, stdin: str | io.StringIO = "") -> tuple[int, str, str]:
        """Return the exit code, stdout and stderr."""
        self.capsys.readouterr()
        self.monkeypatch.setattr(
            sys, "stdin", io.StringIO(stdin) if isinstance(stdin, str) else stdin
        )
        code = await asyncio.to_thread(manage.main, list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CLI:
    """The command line, configured for the test's store."""
    return CLI(env, capsys)


@pytest.fixture
def bare_cli(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CLI:
    """The command line with a fresh SQLite DATA_DIR and whatever else a test sets."""
    return CLI(clean_env, capsys)


async def account(store: Store, login: str, role: str | None = None) -> User:
    """Create an account directly in the store (the first is the admin)."""
    user = await store.users.create(login, f"{login}@example.com", await HASHING.hash(PASSWORD))
    if role is not None:
        user = await store.users.set_role(login, role) or user
    return user


# create-admin


async def test_create_admin_makes_admin_accounts(cli: CLI, store: Store) -> None:
    code, out, err = await cli("create-admin", "alice", stdin=PASSWORD + "\n")
    assert (code, err) == (0, "")
    assert out.startswith("created admin alice in the ")
    alice = await store.users.find_by_login("alice")
    assert alice is not None and alice.is_admin and alice.email == "alice@localhost"
    assert await HASHING.verify(alice.password_hash, PASSWORD)
    # Not the first account: an admin all the same, and the password line ends at \r\n.
    code, _, _ = await cli("create-admin", "bob", "--email", "bob@example.com", stdin="x" * 12)
    assert code == 0
    bob = await store.users.find_by_login("bob")
    assert bob is not None and (bob.role, bob.email) == (ADMIN, "bob@example.com")
    assert await HASHING.verify(bob.password_hash, "x" * 12)
    assert await cli("create-admin", "carol", stdin=PASSWORD + "\r\n") == (
        0,
        f"created admin carol in the {manage.where(manage.load_settings())}\n",
        "",
    )


async def test_create_admin_refuses_taken_logins_and_bad_input(cli: CLI, store: Store) -> None:
    await account(store, "alice")
    refusals = [
        (("create-admin", "ALICE"), PASSWORD, "the login 'ALICE' is taken"),
        (("create-admin", "al1ce"), PASSWORD, "the login 'al1ce' looks like the taken 'alice'"),
        (("create-admin", "a b"), PASSWORD, "'a b' is not a valid login"),
        (("create-admin", "bob"), "too short\n", "the password is too short: use at least 10"),
        (("create-admin", "bob"), "x" * 257, "the password is too long"),
        (("create-admin", "bob"), "", "no password given"),
        (("create-admin", "bob", "--email", "nope"), PASSWORD, "'nope' is not an email address"),
    ]
    for argv, stdin, message in refusals:
        code, out, err = await cli(*argv, stdin=stdin)
        assert (code, out) == (1, ""), argv
        assert err.startswith(f"manage.py: {message}") and err.count("\n") == 1, err
    assert [u.login for u in await store.users.list(10)] == ["alice"]
    alice = await store.users.find_by_login("alice")
    assert alice is not None and alice.role == ADMIN  # the first account; left as it was


async def test_a_terminal_is_asked_the_password_twice(
    cli: CLI, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[str] = []
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr(manage.getpass, "getpass", fake_getpass)
    answers[:] = [PASSWORD, PASSWORD + "!"]
    code, _, err = await cli("create-admin", "alice", stdin=Terminal("never read\n"))
    assert (code, err) == (1, "manage.py: the two passwords differ\n")
    assert await store.users.find_by_login("alice") is None
    answers[:] = [PASSWORD, PASSWORD]
    code, _, _ = await cli("create-admin", "alice", stdin=Terminal("never read\n"))
    assert code == 0 and len(prompts) == 4
    alice = await store.users.find_by_login("alice")
    assert alice is not None and await HASHING.verify(alice.password_hash, PASSWORD)


# reset-password


async def test_reset_password_ends_every_session(cli: CLI, store: Store) -> None:
    bob = await account(store, "bob")
    ids = [(await store.sessions.create(bob, 3600)).id for _ in range(2)]
    code, out, err = await cli("reset-password", "BOB", stdin=NEW_PASSWORD + "\n")
    assert (code, out, err) == (0, "new password for bob; ended 2 sessions\n", "")
    assert await store.sessions.live(ids) == set()
    bob = await store.users.find_by_login("bob")  # type: ignore[assignment]
    assert await HASHING.verify(bob.password_hash, NEW_PASSWORD)
    assert not await HASHING.verify(bob.password_hash, PASSWORD)
    code, _, err = await cli("reset-password", "nobody", stdin=NEW_PASSWORD)
    assert (code, err) == (1, "manage.py: no account has the login 'nobody'\n")
    code, _, err = await cli("reset-password", "bob", stdin="short")
    assert code == 1 and "too short" in err
    bob = await store.users.find_by_login("bob")  # type: ignore[assignment]
    assert await HASHING.verify(bob.password_hash, NEW_PASSWORD)


# invite


async def test_invite_prints_a_live_join_link(cli: CLI, store: Store) -> None:
    code, out, err = await cli("invite")
    assert (code, err) == (0, "")
    link, expiry = out.splitlines()
    assert link.startswith("http://127.0.0.1:8080/join/")
    invite = await store.invites.find(link.rsplit("/", 1)[1])
    assert invite is not None and invite.live(now()) and invite.created_by == "manage.py"
    assert expiry == f"expires {iso(invite.expires_at)} (INVITE_TTL: 604800 s)"

    await account(store, "alice", ADMIN)
    cli.monkeypatch.setenv("INVITE_TTL", "3600")
    code, out, _ = await cli("invite", "--base-url", "https://chat.example.com/", "--by", "ALICE")
    link = out.splitlines()[0]
    assert code == 0 and link.startswith("https://chat.example.com/join/")
    invite = await store.invites.find(link.rsplit("/", 1)[1])
    assert invite is not None and invite.created_by == "alice"
    assert 3590 < (invite.expires_at - invite.created_at).total_seconds() <= 3600

    code, out, err = await cli("invite", "--by", "nobody")
    assert (code, out, err) == (1, "", "manage.py: no account has the login 'nobody'\n")
    code, out, err = await cli("invite", "--base-url", "ftp://example.com")
    assert (code, out) == (2, "") and "is not an http:// or https:// URL" in err
    assert len(await store.invites.live(10)) == 2


# set-signup


async def test_set_signup_overrides_the_setting(cli: CLI, store: Store, settings: Settings) -> None:
    for mode in ("closed", "open", "invite"):
        assert await cli("set-signup", mode) == (0, f"sign-up mode: {mode}\n", "")
        assert await signup_mode(store, settings) == mode
    code, out, err = await cli("set-signup", "maybe")
    assert (code, out) == (2, "") and "invalid choice: 'maybe'" in err
    assert await signup_mode(store, settings) == "invite"


# deactivate, reactivate


async def test_deactivate_and_reactivate(cli: CLI, store: Store) -> None:
    await account(store, "alice")
    bob = await account(store, "bob")
    session = await store.sessions.create(bob, 3600)
    assert await cli("deactivate", "Bob") == (0, "deactivated bob; ended 1 session\n", "")
    bob = await store.users.find_by_login("bob")  # type: ignore[assignment]
    assert not bob.active and await store.sessions.live([session.id]) == set()
    assert await cli("deactivate", "bob") == (0, "deactivated bob; ended 0 sessions\n", "")

    code, out, err = await cli("deactivate", "alice")
    assert (code, out) == (1, "")
    assert err == (
        "manage.py: cannot deactivate alice: the chat needs at least one active admin; "
        "make another account an admin first\n"
    )
    alice = await store.users.find_by_login("alice")
    assert alice is not None and alice.is_admin
    assert (await cli("deactivate", "nobody"))[:2] == (1, "")

    assert await cli("reactivate", "bob") == (0, "reactivated bob\n", "")
    bob = await store.users.find_by_login("bob")  # type: ignore[assignment]
    assert bob.active
    code, _, err = await cli("reactivate", "nobody")
    assert (code, err) == (1, "manage.py: no account has the login 'nobody'\n")


async def test_a_redis_failure_is_only_a_warning(cli: CLI, store: Store) -> None:
    await account(store, "alice")
    bob = await account(store, "bob")
    await store.sessions.create(bob, 3600)
    cli.monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code, out, err = await cli("deactivate", "bob")
    assert (code, out) == (0, "deactivated bob; ended 1 session\n")
    assert err.startswith("manage.py: warning: cannot tell the servers over Redis (")
    assert err.endswith("their open sockets close within 30 s\n") and err.count("\n") == 1


# users


async def test_users_lists_every_account(cli: CLI, store: Store) -> None:
    code, out, _ = await cli("users")
    assert code == 0 and out.startswith("no accounts in the ")
    await account(store, "alice")
    await account(store, "bob")
    await store.users.set_active("bob", False)
    session = await store.sessions.create(await account(store, "carol"), 3600)
    seen = now()
    await store.sessions.seen(session, seen)
    code, out, err = await cli("users")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "LOGIN",
        "ROLE",
        "STATE",
        "CREATED",
        "(UTC)",
        "LAST",
        "SEEN",
        "(UTC)",
    ]
    created = {u.login: manage._minute(u.created_at) for u in await store.users.list(10)}
    assert [line.split(maxsplit=3) for line in lines[1:]] == [
        ["alice", "admin", "active", f"{created['alice']}  never"],
        ["bob", "member", "deactivated", f"{created['bob']}  never"],
        ["carol", "member", "active", f"{created['carol']}  {manage._minute(seen)}"],
    ]


# Usage and failures


async def test_usage_errors_and_help(bare_cli: CLI) -> None:
    code, out, _ = await bare_cli("--help")
    assert code == 0
    for command in ("create-admin", "reset-password", "invite", "set-signup", "deactivate"):
        assert command in out
    assert "Exit codes" in out
    assert (await bare_cli())[:2] == (2, "")
    assert (await bare_cli("drop-tables"))[:2] == (2, "")
    assert (await bare_cli("deactivate"))[:2] == (2, "")
    code, out, err = await bare_cli("create-admin", "--help")
    assert code == 0 and "refused, not promoted" in out


async def test_configuration_errors_and_an_unreachable_database_exit_3(bare_cli: CLI) -> None:
    bare_cli.monkeypatch.setenv("PORT", "eighty")
    code, out, err = await bare_cli("users")
    assert (code, out) == (3, "")
    assert err.startswith("manage.py: configuration error: PORT='eighty' is not valid")
    bare_cli.monkeypatch.delenv("PORT")
    bare_cli.monkeypatch.setenv("MONGODB_URI", f"mongodb://127.0.0.1:{free_port()}/")
    code, out, err = await bare_cli("users")
    assert (code, out) == (3, "")
    assert err.startswith("manage.py: configuration error: SECRET_KEY is required")
    bare_cli.monkeypatch.setenv("SECRET_KEY", Fernet.generate_key().decode())
    bare_cli.monkeypatch.setenv("MONGODB_TIMEOUT_MS", "300")
    code, out, err = await bare_cli("deactivate", "bob")
    assert (code, out) == (3, "")
    assert err.startswith("manage.py: cannot reach the database: MongoDB failed: ")
    assert err.count("\n") == 1


def test_as_a_real_process(tmp_path: Path) -> None:
    env = app_env(DATA_DIR=str(tmp_path / "data"))

    def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *argv],
            cwd=tmp_path,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = run("--help")
    assert shown.returncode == 0 and "create-admin" in shown.stdout and shown.stderr == ""
    made = run("create-admin", "alice", stdin=PASSWORD + "\n")
    assert (made.returncode, made.stderr) == (0, "")
    database = (tmp_path / "data" / "chat.sqlite3").resolve()
    assert made.stdout == f"created admin alice in the SQLite database {database}\n"
    listed = run("users")
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[:3] == [
        "alice",
        "admin",
        "active",
    ]
    refused = run("deactivate", "alice")
    assert refused.returncode == 1 and "at least one active admin" in refused.stderr


class OnTerminal:
    """`python manage.py ...` as a real process on a pseudo-terminal, as an operator runs it."""

    def __init__(self, cwd: Path, *argv: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *argv],
            cwd=cwd,
            env=app_env(DATA_DIR=str(cwd / "data")),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.output = ""

    def expect(self, text: str, timeout: float = 30) -> None:
        """Read the terminal until `text` shows."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, self.output
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.output += os.read(self.master, 1024).decode()
                except OSError:  # the process ended and closed its side
                    break
        assert text in self.output, self.output

    def type(self, line: str) -> None:
        """Type a line."""
        os.write(self.master, line.encode() + b"\n")

    def wait(self) -> int:
        """Wait for the exit code."""
        return self.proc.wait(30)

    def close(self) -> None:
        """Make sure the process is gone, and close the terminal."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., OnTerminal]]:
    """Start `manage.py` on terminals in tmp_path; none outlives the test."""
    started: list[OnTerminal] = []

    def start(*argv: str) -> OnTerminal:
        started.append(OnTerminal(tmp_path, *argv))
        return started[-1]

    yield start
    for term in started:
        term.close()


def test_a_terminal_asks_twice_and_ctrl_c_stops_the_prompt(
    terminal: Callable[..., OnTerminal],
) -> None:
    term = terminal("create-admin", "alice")
    term.expect("New password: ")
    term.type(PASSWORD)
    term.expect("Once more: ")
    term.type(PASSWORD)
    term.expect("created admin alice")
    assert term.wait() == 0
    assert PASSWORD not in term.output  # not echoed

    term = terminal("reset-password", "alice")
    term.expect("New password: ")
    term.proc.send_signal(signal.SIGINT)  # what ^C sends: at once, not after Enter
    term.expect("manage.py: interrupted")
    assert term.wait() == 130


# With the app running


async def test_deactivate_logs_out_a_running_app(
    cli: CLI, make_user: Any, connect: Any, client: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    alice_ws = await connect(alice)
    bob_ws = await connect(bob)
    assert await cli("deactivate", "bob") == (0, "deactivated bob; ended 1 session\n", "")
    page = await bob.client.get("/", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/login")
    assert (await alice.client.get("/", allow_redirects=False)).status == 200
    await client.app[HUB_KEY].close_ended(client.app[STORE_KEY].sessions)
    closing = await bob_ws.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
    assert not alice_ws.closed


async def test_deactivate_closes_the_sockets_at_once_over_redis(
    cli: CLI,
    redis_server: RedisServer,
    make_user: Any,
    make_client: Any,
    connect: Any,
    client: Any,
) -> None:
    await make_user("alice")
    bob = await make_user("bob")
    bob_phone = Auth(await make_client())
    assert (await bob_phone.login("bob")).status == 302
    sockets = [await connect(bob), await connect(bob_phone)]
    store = client.app[STORE_KEY]
    user = await store.users.find_by_login("bob")
    ids = {s.id for s in await store.sessions.of_user(user)}
    assert len(ids) == 2

    listener = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(CHANNEL)
        cli.monkeypatch.setenv("REDIS_URL", redis_server.url)
        assert await cli("deactivate", "bob") == (0, "deactivated bob; ended 2 sessions\n", "")
        for ws in sockets:  # no sweep: the app heard it on Redis
            closing = await ws.receive(timeout=5)
            assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while len(events) < 2:
                message = await pubsub.get_message(timeout=1)
                if message is not None:
                    event = json.loads(message["data"])
                    if event.get("origin") == "manage":
                        events.append(event)
    finally:
        await pubsub.aclose()
        await listener.aclose()
    assert sorted(e["session"] for e in events) == sorted(ids)
    assert {json.dumps(sorted(e)) for e in events} == {'["kind", "origin", "session"]'}
    assert {e["kind"] for e in events} == {"session_end"}
