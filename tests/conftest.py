"""Fixtures, one concern each: the database, settings, the app and its clients, people, sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientWebSocketResponse, web
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from pymongo import MongoClient

from harness import CSRF_RE, PASSWORD, ROOT, RedisServer
from harness import AppProcess as AppProcess  # test_browser.py imports it from here

sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from settings import SETTINGS_KEY, Settings  # noqa: E402
from storage import open_store  # noqa: E402
from storage.base import Store  # noqa: E402

# The headers of a WebSocket upgrade, for requests that expect to be refused before it.
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}

BACKENDS = ["sqlite", "secantus"] + (["mongodb"] if os.environ.get("MONGODB_TEST_URI") else [])


# The database


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (the multi-process tests)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secantus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start one SecantusDB server (MongoDB wire protocol) for the whole run."""
    from secantus import SecantusDBServer

    server = SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("secantus")))
    server.start()
    yield server.uri
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name the storage backend under test."""
    return str(request.param)


@pytest.fixture
def mongo_uri(backend: str, request: pytest.FixtureRequest) -> str:
    """Return the URI of the MongoDB server for this backend ('' for SQLite)."""
    if backend == "sqlite":
        return ""
    if backend == "mongodb":
        return os.environ["MONGODB_TEST_URI"]
    return str(request.getfixturevalue("secantus_uri"))


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """A set-up store on a throwaway database, without the app."""
    s = open_store(settings)
    await s.setup()
    yield s
    await s.close()


# Settings


def base_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Return settings for tests: a temp DATA_DIR and cheap password hashing."""
    values: dict[str, Any] = {
        "secret_key": Fernet.generate_key().decode(),
        "data_dir": tmp_path / "data",
        "argon2_time_cost": 1,
        "argon2_memory_kib": 64,
        "log_level": "DEBUG",
        # Many tests send bursts of messages on purpose; test_limits.py tests the real defaults.
        "message_burst": 10_000,
        "message_per_minute": 600_000,
        # Most tests sign several people up; tests/test_team.py tests the modes themselves.
        "signup_mode": "open",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Per-test settings changes; override this fixture in a test module."""
    return {}


@pytest.fixture
def settings(
    tmp_path: Path, mongo_uri: str, settings_overrides: dict[str, Any]
) -> Iterator[Settings]:
    """Settings for a throwaway database of the backend under test, dropped afterwards."""
    db_name = f"test_{uuid.uuid4().hex[:12]}"
    yield base_settings(tmp_path, mongodb_uri=mongo_uri, mongodb_db=db_name, **settings_overrides)
    if mongo_uri:
        with MongoClient(mongo_uri) as client:
            client.drop_database(db_name)


# The app and its clients


@pytest.fixture
def app(settings: Settings) -> web.Application:
    """The app, built by the real factory."""
    return create_app(settings)


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    app: web.Application,
) -> TestClient[Any, Any]:
    """A browser-like client of the app."""
    return await aiohttp_client(app)


@pytest.fixture
async def make_client(client: TestClient[Any, Any]) -> AsyncIterator[Callable[[], Any]]:
    """Make more clients (each with its own cookies) against the same running server."""
    extra: list[TestClient[Any, Any]] = []

    async def make() -> TestClient[Any, Any]:
        other: TestClient[Any, Any] = TestClient(client.server)
        await other.start_server()
        extra.append(other)
        return other

    yield make
    for other in extra:
        await other.close()


# People


def origin(client: TestClient[Any, Any]) -> str:
    """Return the origin the server considers its own."""
    return f"http://{client.host}:{client.port}"


class Auth:
    """Sign up, log in and out through the real forms, and open the chat socket."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def csrf(self, path: str = "/login") -> str:
        """Fetch a form page and return its CSRF token."""
        resp = await self.client.get(path)
        match = CSRF_RE.search(await resp.text())
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    async def post(self, path: str, data: dict[str, str], **kw: Any) -> ClientResponse:
        """POST a form the way a browser on this site does."""
        headers = {"Origin": origin(self.client), **kw.pop("headers", {})}
        if "csrf_token" not in data:
            data = {**data, "csrf_token": await self.csrf(kw.pop("csrf_path", "/login"))}
        return await self.client.post(path, data=data, headers=headers, allow_redirects=False, **kw)

    async def signup(
        self, login: str = "alice", password: str = PASSWORD, email: str | None = None
    ) -> ClientResponse:
        """Create an account (and so log it in)."""
        data = {
            "login": login,
            "email": email or f"{login}@example.com",
            "password": password,
            "password_confirm": password,
        }
        return await self.post("/signup", data, csrf_path="/signup")

    async def login(
        self, login: str = "alice", password: str = PASSWORD, next: str | None = None
    ) -> ClientResponse:
        """Log in through the form."""
        data = {"login": login, "password": password}
        if next is not None:
            data["next"] = next
        return await self.post("/login", data)

    async def logout(self) -> ClientResponse:
        """Log out through the form."""
        return await self.post("/logout", {"csrf_token": await self.csrf("/")})

    def cookie(self) -> str:
        """Return the value of this client's session cookie."""
        cookies = self.client.session.cookie_jar.filter_cookies(self.client.make_url("/"))
        return cookies[cookie_name(self)].value

    async def ws(self, query: str = "", **kw: Any) -> ClientWebSocketResponse:
        """Open the chat socket as this client."""
        headers = {"Origin": origin(self.client), **kw.pop("headers", {})}
        return await self.client.ws_connect("/ws" + query, headers=headers, **kw)

    async def upgrade(self, query: str = "", headers: dict[str, str] | None = None) -> Any:
        """Ask for the socket by a plain request, for a handshake refused before the upgrade."""
        if headers is None:
            headers = {"Origin": origin(self.client)}
        return await self.client.get("/ws" + query, headers={**headers, **UPGRADE})


@pytest.fixture
def auth(client: TestClient[Any, Any]) -> Auth:
    """An Auth helper for the main client."""
    return Auth(client)


@pytest.fixture
async def make_user(
    make_client: Callable[[], Awaitable[TestClient[Any, Any]]],
) -> Callable[[str], Awaitable[Auth]]:
    """Make a signed-up, logged-in person with their own client."""

    async def make(login: str) -> Auth:
        person = Auth(await make_client())
        resp = await person.signup(login)
        assert resp.status == 302, await resp.text()
        return person

    return make


# Sockets


async def receive(ws: ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    """Receive the next JSON frame."""
    data: dict[str, Any] = await ws.receive_json(timeout=timeout)
    return data


async def receive_until(
    ws: ClientWebSocketResponse, kind: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Receive frames until one of the given type arrives."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await receive(ws, timeout)
            if frame["type"] == kind:
                return frame


async def hello(ws: ClientWebSocketResponse) -> dict[str, Any]:
    """Receive and check the hello frame."""
    frame = await receive(ws)
    assert frame["type"] == "hello", frame
    return frame


@pytest.fixture
async def connect(
    client: TestClient[Any, Any],
) -> AsyncIterator[Callable[..., Awaitable[ClientWebSocketResponse]]]:
    """Open a person's chat socket and read its hello: `await connect(person, "?room=dev")`."""
    opened: list[ClientWebSocketResponse] = []

    async def open_socket(person: Auth, query: str = "", **kw: Any) -> ClientWebSocketResponse:
        ws = await person.ws(query, **kw)
        opened.append(ws)
        await hello(ws)
        return ws

    yield open_socket
    for ws in opened:
        await ws.close()


@pytest.fixture
async def ws(
    auth: Auth, connect: Callable[..., Awaitable[ClientWebSocketResponse]]
) -> ClientWebSocketResponse:
    """Alice, signed up on the main client, with her socket open on general."""
    resp = await auth.signup("alice")
    assert resp.status == 302, await resp.text()
    return await connect(auth)


def cookie_name(person: Auth) -> str:
    """Return the session cookie's name on this person's app."""
    app = person.client.app
    return app[SETTINGS_KEY].cookie_name if app is not None else "chat_session"


async def raw_ws_connect(person: Auth) -> socket.socket:
    """Open a person's socket by hand with a tiny receive buffer, then never read from it."""
    client = person.client
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (client.host, client.port))
    request = (
        f"GET /ws HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f'Origin: {origin(client)}\r\nCookie: {cookie_name(person)}="{person.cookie()}"\r\n\r\n'
    )
    await loop.sock_sendall(sock, request.encode())
    head = await asyncio.wait_for(loop.sock_recv(sock, 1024), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def client_frame(opcode: int, payload: bytes, *, mask: bool = True) -> bytes:
    """A client frame of any length, masked unless told otherwise."""
    n = len(payload)
    if n < 126:
        size = bytes([n])
    else:
        size = (
            bytes([126]) + n.to_bytes(2, "big")
            if n < 65536
            else bytes([127]) + n.to_bytes(8, "big")
        )
    if not mask:
        return bytes([0x80 | opcode, size[0]]) + size[1:] + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | size[0]]) + size[1:] + key + body


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report how long the browser tests took in all."""
    total = sum(
        report.duration
        for key in ("passed", "failed", "error")
        for report in terminalreporter.stats.get(key, [])
        if getattr(report, "when", "") in ("setup", "call", "teardown")
        and "test_browser.py" in report.nodeid
    )
    if total:
        terminalreporter.write_line(f"browser tests: {total:.1f} s in all")
