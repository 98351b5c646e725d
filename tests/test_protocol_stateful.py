"""Stateful property test: any mix of connect, send, re-send, disconnect, resume and logout leaves
every person having seen exactly the room's stored history, in order, without duplicates."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from app import create_app
from conftest import PASSWORD, base_settings
from harness import CSRF_RE
from storage import STORE_KEY

T = TypeVar("T")
PEOPLE = ("alice", "bob")


class Loop:
    """An event loop on a thread of its own, so Hypothesis's synchronous rules can drive it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Person:
    """A browser: a session, at most one socket, and every message frame it was shown."""

    def __init__(self, login: str, url: str) -> None:
        self.login = login
        self.url = url
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]  # made on the loop
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.seen: list[int] = []  # seqs shown, across every connection
        self.start: int | None = None  # last_seq in the first hello: history begins after it
        self.reset = False
        self.ids = itertools.count()
        self.last_id: str | None = None
        self.resends: collections.Counter[str] = collections.Counter()  # acks still owed

    async def form(self, path: str, data: dict[str, str]) -> int:
        async with self.http.get(self.url + ("/signup" if path == "/signup" else "/login")) as r:
            match = CSRF_RE.search(await r.text())
            assert match
        async with self.http.post(
            self.url + path,
            data={**data, "csrf_token": match.group(1)},
            headers={"Origin": self.url},
            allow_redirects=False,
        ) as resp:
            return resp.status

    async def sign_up(self) -> None:
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        form = {"login": self.login, "email": f"{self.login}@example.com"}
        form |= {"password": PASSWORD, "password_confirm": PASSWORD}
        assert await self.form("/signup", form) == 302

    async def connect(self) -> None:
        after = self.seen[-1] if self.seen else self.start
        query = "" if after is None else f"?after={after}"
        self.ws = await self.http.ws_connect(self.url + "/ws" + query, headers={"Origin": self.url})
        hello = await self.ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        if self.start is None:
            self.start = hello["last_seq"]
        self.reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] == "message" and (not self.seen or frame["seq"] > self.seen[-1]):
                self.seen.append(frame["seq"])
            elif frame["type"] == "message" and self.resends[frame["client_id"]] > 0:
                self.resends[frame["client_id"]] -= 1  # a re-send's acknowledgement, by design
            elif frame["type"] == "message":
                raise AssertionError(f"{self.login} was shown seq {frame['seq']} again")
            elif frame["type"] == "reset":
                self.reset = True

    async def send(self, text: str, resend: bool) -> None:
        assert self.ws is not None
        if not resend or self.last_id is None:
            self.last_id = f"{self.login}-{next(self.ids)}"
        else:
            self.resends[self.last_id] += 1
        await self.ws.send_str(
            json.dumps({"type": "message", "text": text, "client_id": self.last_id})
        )

    async def disconnect(self) -> None:
        assert self.ws is not None and self.reader is not None
        await self.ws.close()
        await self.reader
        self.ws = self.reader = None

    async def logout_and_back(self) -> None:
        ws, reader = self.ws, self.reader
        assert await self.form("/logout", {}) == 302
        if ws is not None and reader is not None:
            await reader  # the server closes the socket (1008)
            assert ws.close_code in (1008, 1006)
        self.ws = self.reader = None
        form = {"login": self.login, "password": PASSWORD}
        assert await self.form("/login", form) == 302


class ProtocolMachine(RuleBasedStateMachine):
    """People come and go; the room's history stays the single truth they all see."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = Loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.app, self.server = self.loop.run(self._start(Path(self.tmp.name)))
        url = str(self.server.make_url("")).rstrip("/")
        self.people = {login: Person(login, url) for login in PEOPLE}
        for person in self.people.values():
            self.loop.run(person.sign_up())

    @staticmethod
    async def _start(tmp: Path) -> tuple[Any, TestServer]:
        app = create_app(base_settings(tmp, message_burst=1000, log_level="WARNING"))
        server = TestServer(app)
        await server.start_server()
        return app, server

    @rule(who=st.sampled_from(PEOPLE))
    def connect(self, who: str) -> None:
        person = self.people[who]
        if person.ws is None:
            self.loop.run(person.connect())

    @rule(who=st.sampled_from(PEOPLE), text=st.text(min_size=1, max_size=30), resend=st.booleans())
    def send(self, who: str, text: str, resend: bool) -> None:
        person = self.people[who]
        if person.ws is not None:
            self.loop.run(person.send(text, resend))

    @precondition(lambda self: any(p.ws is not None for p in self.people.values()))
    @rule(who=st.sampled_from(PEOPLE))
    def disconnect(self, who: str) -> None:
        person = self.people[who]
        if person.ws is not None:
            self.loop.run(person.disconnect())

    @rule(who=st.sampled_from(PEOPLE))
    def logout(self, who: str) -> None:
        self.loop.run(self.people[who].logout_and_back())

    def teardown(self) -> None:
        try:
            self.loop.run(self._check())
        finally:
            self.loop.run(self._close())
            self.loop.close()
            self.tmp.cleanup()

    async def _check(self) -> None:
        await asyncio.sleep(0.2)  # let in-flight messages be stored
        last = await self.app[STORE_KEY].messages.last_seq("general")
        for person in self.people.values():
            if person.reader is not None and person.reader.done():
                person.reader.result()  # a reader that saw a duplicate failed: report it
            if person.ws is None:
                await person.connect()  # come back once more and resume
            async with asyncio.timeout(10):
                while (person.seen[-1] if person.seen else person.start or 0) < last:
                    await asyncio.sleep(0.02)
            start = person.start or 0
            assert not person.reset  # never more than 500 behind here
            assert person.seen == list(range(start + 1, last + 1)), (person.login, start, last)

    async def _close(self) -> None:
        for person in self.people.values():
            if person.ws is not None:
                await person.disconnect()
            await person.http.close()
        await self.server.close()


ProtocolMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestProtocol = ProtocolMachine.TestCase
