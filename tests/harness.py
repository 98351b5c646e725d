"""The real-process harness: `python app.py` and redis-server as child processes on free ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(**extra: str) -> dict[str, str]:
    """The environment minus any chat settings, with cheap hashing, plus the given ones."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "MONGODB_URI", "DATA_DIR", "PORT", "HOST"}
    }
    env.update({"PYTHONUNBUFFERED": "1", "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64"})
    env.setdefault("SIGNUP_MODE", "open")  # the tests sign several people up
    env.setdefault("HASH_QUEUE", "1000")  # ... some of them at once (20 in test_process.py)
    env.update(extra)
    return env


def run_app(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    """Run `python app.py [args]` to its end (for start-ups that must fail), output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args],
        cwd=cwd,
        env=app_env(**env),
        capture_output=True,
        timeout=30,
    )


class AppProcess:
    """`python app.py` as a child process, in a given directory, on a given port."""

    def __init__(
        self, cwd: Path, port: int | None = None, args: tuple[str, ...] = (), **env: str
    ) -> None:
        self.cwd = cwd
        self.args = args  # command-line options, e.g. ("--workers", "2")
        self.port = port or free_port()
        self.env = app_env(PORT=str(self.port), **env)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self, output: int | None = subprocess.DEVNULL, log: Path | None = None) -> AppProcess:
        """Start the process and wait until it accepts connections; `log`: its output's file."""
        if log is not None:
            self.log = log.open("wb")
            output = self.log.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"app did not start on port {self.port}")

    def terminate(self, timeout: float = 10) -> int:
        """Send SIGTERM and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if self.log is not None:
            self.log.close()


class RedisServer:
    """A throwaway redis-server on a free local port, without persistence."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING."""
        if not Path(REDIS).exists():
            pytest.fail("redis-server is missing: install Debian's redis-server package")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Stop the server, if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def browser_session() -> aiohttp.ClientSession:
    """A client session that keeps cookies for 127.0.0.1, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_up(session: aiohttp.ClientSession, url: str, login: str) -> None:
    """Sign up on a running process (`AppProcess.url`) through the real form; then logged in."""
    async with session.get(url + "/signup") as resp:
        match = CSRF_RE.search(await resp.text())
        assert match
    form = {
        "login": login,
        "email": f"{login}@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "csrf_token": match.group(1),
    }
    async with session.post(
        url + "/signup", data=form, headers={"Origin": url}, allow_redirects=False
    ) as resp:
        assert resp.status == 302, await resp.text()


async def open_socket(
    session: aiohttp.ClientSession, url: str, query: str = ""
) -> aiohttp.ClientWebSocketResponse:
    """Open the chat socket on a running process, as a page of that process does."""
    return await session.ws_connect(url + "/ws" + query, headers={"Origin": url})
