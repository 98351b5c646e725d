"""Search (#21) over HTTP, on both stores: matching, privacy, paging, the index following edits and
deletes, upgrades of existing stores, links to a message (`?at=`) and history pages forward."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from conftest import Auth, receive_until
from settings import Settings
from storage import open_store
from storage.base import now
from storage.search import parse
from storage.sqlite import MIGRATIONS, SCHEMA
from storage.sqlite_search import MIGRATION as SEARCH_MIGRATION


async def say(ws: Any, text: str, client_id: str) -> dict[str, Any]:
    """Post a message and return its acknowledgement (it is stored by then)."""
    await ws.send_str(json.dumps({"type": "message", "text": text, "client_id": client_id}))
    return await receive_until(ws, "message")


async def search(person: Auth, q: str, status: int = 200, **params: str) -> dict[str, Any]:
    """Ask /search/messages and check the status."""
    resp = await person.client.get("/search/messages", params={"q": q, **params})
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, (q, resp.status, body)
    return body


async def texts(person: Auth, q: str, **params: str) -> list[str]:
    """Return the texts of the first page of results, newest first."""
    return [r["text"] for r in (await search(person, q, **params))["results"]]


async def make_private_room(owner: Auth, name: str) -> str:
    resp = await owner.post("/rooms", {"name": name, "private": "on"}, csrf_path="/")
    assert resp.status == 302
    return resp.headers["Location"].rsplit("/", 1)[1]


async def test_words_are_found_whatever_their_case_and_accents(ws: Any, auth: Auth) -> None:
    said = await say(ws, "My Résumé is attached", "c1")
    await say(ws, "Привет всем", "c2")
    await say(ws, "nothing to see", "c3")
    body = await search(auth, "resume")
    (hit,) = body["results"]
    assert body["has_more"] is False
    assert {k: hit[k] for k in ("seq", "id", "room", "user", "text", "deleted")} == {
        k: said[k] for k in ("seq", "id", "room", "user", "text", "deleted")
    }
    assert hit["room_name"] == "General" and hit["created_at"] == said["created_at"]
    assert hit["url"] == f"/rooms/general?at={said['seq']}"
    assert hit["highlights"] == [[3, 9]]  # "Résumé"
    assert await texts(auth, "RÉSUMÉ") == ["My Résumé is attached"]
    assert await texts(auth, "привет") == ["Привет всем"]
    assert await texts(auth, "ПРИВЕТ") == ["Привет всем"]
    assert await texts(auth, "absent") == []


async def test_results_carry_reactions_and_reply_quotes_as_the_history_does(
    ws: Any, auth: Auth
) -> None:
    await say(ws, "the original plan", "c1")
    await ws.send_str(
        json.dumps({"type": "message", "text": "agreed, plan B", "client_id": "c2", "reply_to": 1})
    )
    await receive_until(ws, "message")
    await ws.send_str(json.dumps({"type": "react", "seq": 1, "emoji": "👍"}))
    await receive_until(ws, "change")
    hits = {r["seq"]: r for r in (await search(auth, "plan"))["results"]}
    history = await (await auth.client.get("/rooms/general/messages")).json()
    for m in history["messages"]:
        assert {k: hits[m["seq"]][k] for k in m} == m  # the history's message object, and more
    assert hits[1]["reactions"] == [{"emoji": "👍", "users": ["alice"]}]
    assert hits[2]["reply_to"] == {"seq": 1, "user": "alice", "excerpt": "the original plan"}


async def test_every_word_phrases_exclusions_prefix_author_and_room(
    make_user: Any, connect: Any
) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    resp = await alice.post("/rooms", {"name": "Dev"}, csrf_path="/")
    assert resp.status == 302
    a, b = await connect(alice), await connect(bob)
    dev = await connect(alice, "?room=dev")
    await say(a, "we deploy the big release today", "a1")
    await say(b, "release the big deploy", "b1")
    await say(a, "release party tonight", "a2")
    await say(dev, "deploying from dev", "a3")
    assert await texts(bob, "release deploy") == [
        "release the big deploy",
        "we deploy the big release today",
    ]
    assert await texts(bob, '"big release"') == ["we deploy the big release today"]
    assert await texts(bob, '"big deploy" release') == ["release the big deploy"]
    assert await texts(bob, "release -party -big") == []
    assert await texts(bob, 'release -"big release"') == [
        "release party tonight",
        "release the big deploy",
    ]
    assert await texts(bob, "deplo*") == [
        "deploying from dev",
        "release the big deploy",
        "we deploy the big release today",
    ]
    assert await texts(bob, "release from:bob") == ["release the big deploy"]
    assert await texts(bob, "release from:BOB") == ["release the big deploy"]
    assert await texts(bob, "release from:nobody") == []
    assert await texts(bob, "deplo* in:dev") == ["deploying from dev"]
    assert await texts(bob, "deplo* in:#dev") == ["deploying from dev"]
    assert await texts(bob, "deplo*", room="dev") == ["deploying from dev"]
    assert await texts(bob, "deplo* in:general", room="dev") == []
    assert await texts(bob, "deplo* in:nowhere") == []
    hit = (await search(bob, "deplo* in:dev"))["results"][0]
    assert hit["room_name"] == "Dev" and hit["url"].startswith("/rooms/dev?at=")
    assert hit["highlights"] == [[0, 9]]


async def test_chinese_japanese_and_korean_are_found_by_any_two_characters(
    ws: Any, auth: Auth
) -> None:
    await say(ws, "我住在北京市朝阳区", "c1")
    await say(ws, "東京都に住んでいます", "c2")
    await say(ws, "한국어를 배워요", "c3")
    assert await texts(auth, "北京") == ["我住在北京市朝阳区"]
    assert await texts(auth, "京市朝") == ["我住在北京市朝阳区"]
    assert await texts(auth, "京都") == ["東京都に住んでいます"]
    assert await texts(auth, "住んで") == ["東京都に住んでいます"]
    assert await texts(auth, "国語") == []
    assert await texts(auth, "국어") == ["한국어를 배워요"]
    assert await texts(auth, "京朝") == []  # not side by side
    assert (await search(auth, "北京"))["results"][0]["highlights"] == [[3, 5]]


async def test_results_are_newest_first_in_pages(ws: Any, auth: Auth) -> None:
    for i in range(25):
        await say(ws, f"note number {i}", f"c{i}")
    seen: list[int] = []
    before: str | None = None
    for _ in range(5):  # bounded: 3 pages are expected
        params = {"limit": "10"} | ({"before": before} if before else {})
        body = await search(auth, "note", **params)
        seen += [r["seq"] for r in body["results"]]
        if not body["has_more"]:
            break
        before = body["before"]
        assert isinstance(before, str)
    assert seen == list(range(25, 0, -1))
    assert len((await search(auth, "note", limit="100"))["results"]) == 25
    assert len((await search(auth, "note", limit="1"))["results"]) == 1


@pytest.mark.parametrize("limit", ["0", "101", "x", "-1", "1.5", ""])
async def test_a_bad_limit_is_400(ws: Any, auth: Auth, limit: str) -> None:
    body = await search(auth, "note", 400, limit=limit)
    assert "limit" in body["error"]


@pytest.mark.parametrize("before", ["not-a-cursor", "-1", "１２", "zzzzzzzzzzzzzzzzzzzzzzzz"])
async def test_a_bad_cursor_is_400(ws: Any, auth: Auth, before: str) -> None:
    await say(ws, "note", "c1")
    body = await search(auth, "note", 400, before=before)
    assert "before" in body["error"]


MALFORMED = [
    "",
    " ",
    '"unbalanced quote',
    '"',
    '""',
    '" "',
    "-",
    "-note",
    '-"note"',
    "from:",
    "in:",
    "from:alice",
    "in:general",
    "*",
    "**",
    "note**",
    "*note",
    "-deplo*",
    "note AND OR NOT",
    "NEAR(note other)",
    "note:",
    ":note",
    "^note",
    "note OR",
    "(note",
    "note)",
    "{note}",
    "'note'",
    "\\",
    "\x00",
    "%",
    "note" * 250,  # 1,000 characters, one word
    "note " * 200,  # 1,000 characters, 200 words
    "東" * 300,  # 299 pairs (1,000 would pass 8 KiB of URL: aiohttp answers 400 itself)
    "x" * 1001,
    "🙂🙂",
    "e\u0301",
]


@pytest.mark.parametrize("q", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_queries_get_results_or_a_clear_400(ws: Any, auth: Auth, q: str) -> None:
    await say(ws, "note with (brackets) and 'quotes'", "c1")
    resp = await auth.client.get("/search/messages", params={"q": q})
    body = await resp.json()
    assert resp.status in (200, 400), (q, resp.status)
    if resp.status == 400:
        assert isinstance(body["error"], str) and body["error"]
    else:
        assert isinstance(body["results"], list) and body["has_more"] in (True, False)


async def test_a_query_of_operators_alone_is_400_and_says_why(ws: Any, auth: Auth) -> None:
    body = await search(auth, "-note from:alice", 400)
    assert body["error"] == "Give at least one word to look for."
    assert (await search(auth, "x" * 1001, 400))["error"] == "Use at most 1000 characters."


async def test_nobody_sees_results_from_rooms_they_cannot_see(make_user: Any, connect: Any) -> None:
    alice, bob, carol = [await make_user(n) for n in ("alice", "bob", "carol")]
    secret = await make_private_room(alice, "Secret")
    resp = await alice.client.get("/dm/bob", allow_redirects=False)
    dm = resp.headers["Location"].rsplit("/", 1)[1]
    await say(await connect(alice, f"?room={secret}"), "launch code zebra", "s1")
    await say(await connect(alice, f"?room={dm}"), "direct zebra", "d1")
    await say(await connect(alice), "open zebra", "o1")
    assert await texts(alice, "zebra") == ["open zebra", "direct zebra", "launch code zebra"]
    assert await texts(bob, "zebra") == ["open zebra", "direct zebra"]
    assert await texts(carol, "zebra") == ["open zebra"]
    assert await texts(carol, "zebra from:alice") == ["open zebra"]
    assert await texts(carol, f"zebra in:{secret}") == []
    assert await texts(carol, f"zebra in:{dm}") == []
    for room in (secret, dm, "no-such-room"):
        body = await search(carol, "zebra", 404, room=room)
        assert body == {"error": "No such room."}
    assert (await search(bob, "zebra", 404, room=secret)) == {"error": "No such room."}
    assert (await search(bob, "zebra", room=dm))["results"][0]["room_name"] == "alice"
    # Added, bob finds it; gone again, he does not.
    resp = await alice.post(f"/rooms/{secret}/members", {"login": "bob"}, csrf_path="/")
    assert resp.status == 302
    assert await texts(bob, "launch") == ["launch code zebra"]
    resp = await bob.post(f"/rooms/{secret}/leave", {}, csrf_path="/")
    assert resp.status == 302
    assert await texts(bob, "launch") == []
    await search(bob, "launch", 404, room=secret)


async def test_logged_out_search_is_401_and_the_page_asks_to_log_in(
    client: Any, auth: Auth
) -> None:
    resp = await client.get("/search/messages", params={"q": "x"})
    assert resp.status == 401
    resp = await client.get("/search", params={"q": "x"}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")


async def test_the_search_page_has_its_form_and_every_page_links_to_it(ws: Any, auth: Auth) -> None:
    resp = await auth.client.get("/search", params={"q": '<b>"x"</b>'})
    page = await resp.text()
    assert resp.status == 200
    assert 'id="search-q"' in page and "&lt;b&gt;&#34;x&#34;&lt;/b&gt;" in page
    assert "js/search-page.js" in page
    assert (await auth.client.head("/search")).status == 200
    for path in ("/", "/rooms/general", "/account", "/search"):
        page = await (await auth.client.get(path)).text()
        assert 'id="search-link" href="/search"' in page, path
        assert "js/shortcuts.js" in page, path


async def test_the_index_follows_edits_and_deletes(ws: Any, auth: Auth) -> None:
    said = await say(ws, "original wording here", "c1")
    assert await texts(auth, "original") == ["original wording here"]
    await ws.send_str(json.dumps({"type": "edit", "seq": said["seq"], "text": "changed wording"}))
    await receive_until(ws, "change")
    assert await texts(auth, "original") == []
    assert await texts(auth, "here") == []
    assert await texts(auth, "changed") == ["changed wording"]
    assert await texts(auth, '"changed wording"') == ["changed wording"]
    await ws.send_str(json.dumps({"type": "delete", "seq": said["seq"]}))
    await receive_until(ws, "change")
    for q in ("changed", "wording", "original"):
        assert await texts(auth, q) == []


async def test_a_message_is_found_as_soon_as_it_is_acknowledged(ws: Any, auth: Auth) -> None:
    for i in range(5):
        said = await say(ws, f"fresh{i} news", f"c{i}")
        (hit,) = (await search(auth, f"fresh{i}"))["results"]
        assert hit["seq"] == said["seq"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_existing_sqlite_store_is_indexed_on_upgrade(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    monkeypatch.setattr("storage.sqlite_search.BACKFILL_BATCH", 2)
    path = settings.data_dir / "chat.sqlite3"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:  # the store as the release before search left it
        conn.executescript(SCHEMA)
        before_search = MIGRATIONS.index(SEARCH_MIGRATION)
        for migration in MIGRATIONS[:before_search]:
            conn.executescript(migration)
        conn.execute(f"PRAGMA user_version = {before_search}")
        conn.execute("INSERT INTO rooms (slug, name, created_at) VALUES ('general', 'General', 0)")
        rows = [(i, f"old message {i}", int(i == 3)) for i in range(1, 6)]
        conn.executemany(
            "INSERT INTO messages (room, seq, user, text, created_at, client_id, deleted)"
            " VALUES ('general', ?1, 'alice', ?2, 0, 'c' || ?1, ?3)",
            rows,
        )
    caplog.set_level(logging.INFO, "storage.sqlite_search")
    store = open_store(settings)
    await store.setup()
    try:
        found = await store.search.messages("bob", parse("old"), None, None, 10)
        assert [m.seq for m in found.messages] == [5, 4, 2, 1]  # 3 was deleted
        progress = [r.getMessage() for r in caplog.records if "indexed" in r.getMessage()]
        assert len(progress) == 3 and progress[-1].startswith("search: indexed 5 of 5 messages")
        new, _ = await store.messages.add("general", "bob", "old and new", "c9")
        found = await store.search.messages("bob", parse("old"), None, None, 10)
        assert [m.seq for m in found.messages] == [new.seq, 5, 4, 2, 1]
    finally:
        await store.close()
    caplog.clear()
    again = open_store(settings)  # a second start indexes nothing twice
    await again.setup()
    try:
        found = await again.search.messages("bob", parse("old"), None, None, 10)
        assert len(found.messages) == 5
        assert not [r for r in caplog.records if "indexed" in r.getMessage()]
    finally:
        await again.close()


@pytest.mark.parametrize("backend", ["secantus"])
async def test_an_existing_mongo_store_is_indexed_on_upgrade(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    monkeypatch.setattr("storage.mongo_search.BACKFILL_BATCH", 2)
    with MongoClient(settings.mongodb_uri, tz_aware=True) as client:  # as before search
        db = client[settings.mongodb_db]
        db["rooms"].insert_one({"_id": "general", "name": "General", "created_at": now()})
        db["messages"].insert_many(
            [
                {
                    "room": "general",
                    "seq": i,
                    "user": "alice",
                    "text": "" if i == 3 else f"Старое сообщение {i}",
                    "created_at": now(),
                    "client_id": f"c{i}",
                    "deleted": i == 3,
                }
                for i in range(1, 6)
            ]
        )
    caplog.set_level(logging.INFO, "storage.mongo_search")
    store = open_store(settings)
    await store.setup()
    try:
        found = await store.search.messages("bob", parse("старое"), None, None, 10)
        assert [m.seq for m in found.messages] == [5, 4, 2, 1]
        progress = [r.getMessage() for r in caplog.records if "indexed" in r.getMessage()]
        assert len(progress) == 3 and progress[-1].startswith("search: indexed 5 messages")
    finally:
        await store.close()


async def test_history_pages_forward_with_after(ws: Any, auth: Auth) -> None:
    for i in range(1, 8):
        await say(ws, f"m{i}", f"c{i}")
    resp = await auth.client.get("/rooms/general/messages", params={"after": "2", "limit": "3"})
    page = await resp.json()
    assert [m["seq"] for m in page["messages"]] == [3, 4, 5] and page["has_more"] is True
    resp = await auth.client.get("/rooms/general/messages", params={"after": "5", "limit": "3"})
    page = await resp.json()
    assert [m["seq"] for m in page["messages"]] == [6, 7] and page["has_more"] is False
    resp = await auth.client.get("/rooms/general/messages", params={"after": "7"})
    assert (await resp.json())["messages"] == []
    for params in ({"after": "x"}, {"after": "-1"}, {"after": "1", "before": "5"}):
        resp = await auth.client.get("/rooms/general/messages", params=params)
        assert resp.status == 400, params


def seqs(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'<li class="message[^"]*" data-seq="(\d+)"', page)]


async def test_the_chat_page_opens_at_a_message_with_the_ones_around_it(
    ws: Any, auth: Auth, make_user: Any
) -> None:
    for i in range(1, 121):
        await say(ws, f"m{i}", f"c{i}")
    page = await (await auth.client.get("/rooms/general", params={"at": "30"})).text()
    shown = seqs(page)
    assert 30 in shown and shown == list(range(shown[0], shown[-1] + 1))
    assert shown[0] < 30 < shown[-1] < 120
    assert 'data-at="30"' in page and 'data-at-end="0"' in page
    assert f'data-last-seq="{shown[-1]}"' in page and f'data-first-seq="{shown[0]}"' in page
    page = await (await auth.client.get("/rooms/general", params={"at": "118"})).text()
    assert seqs(page)[-1] == 120 and 'data-at="118"' in page and 'data-at-end="1"' in page
    page = await (await auth.client.get("/rooms/general", params={"at": "1"})).text()
    assert seqs(page)[0] == 1 and 'data-at="1"' in page
    page = await (await auth.client.get("/rooms/general", params={"at": "999"})).text()
    assert seqs(page)[-1] == 120 and 'data-at="0"' in page and 'data-at-end="1"' in page
    page = await (await auth.client.get("/rooms/general")).text()
    assert 'data-at="0"' in page and 'data-at-end="1"' in page
    for at in ("x", "-1", "1e3", ""):
        resp = await auth.client.get("/rooms/general", params={"at": at})
        assert resp.status == 400, at
    secret = await make_private_room(auth, "Hidden")
    carol = await make_user("carol")
    resp = await carol.client.get(f"/rooms/{secret}", params={"at": "1"})
    assert resp.status == 404


@pytest.mark.parametrize("backend", ["secantus"])
async def test_mongo_pages_on_past_candidates_that_only_look_like_matches(
    ws: Any, auth: Auth, monkeypatch: Any
) -> None:
    # MongoDB narrows by every term, then checks phrases on each candidate, at most SCAN_MAX per
    # page: past that the page ends early, with a cursor that goes on from the last one checked.
    monkeypatch.setattr("storage.mongo_search.SCAN_MAX", 3)
    await say(ws, "green apple", "c0")
    for i in range(7):
        await say(ws, f"apple {i} green", f"c{i + 1}")  # both words, not side by side
    found: list[str] = []
    before: str | None = None
    for _ in range(10):  # bounded: 3 pages of candidates
        params = {"before": before} if before else {}
        body = await search(auth, '"green apple"', **params)
        found += [r["text"] for r in body["results"]]
        if not body["has_more"]:
            break
        before = body["before"]
    assert found == ["green apple"]


async def test_a_page_checks_a_bounded_number_of_hits_and_goes_on(
    ws: Any, auth: Auth, connect: Any, monkeypatch: Any
) -> None:
    # A phrase in a quiet room: what only looks like it (SQLite: its hits in a busy room;
    # MongoDB: candidates with both words apart) is checked a bounded amount per page (SQLite:
    # hits; MongoDB: characters), the pages going on past them to the end.
    monkeypatch.setattr("storage.sqlite_search.SCAN_MAX", 3)
    monkeypatch.setattr("storage.mongo_search.CHECK_CHARS_MAX", 30)
    resp = await auth.post("/rooms", {"name": "Quiet"}, csrf_path="/")
    assert resp.status == 302
    quiet, busy = await connect(auth, "?room=quiet"), ws
    await say(quiet, "apple pie", "q0")
    for i in range(8):
        await say(busy, f"apple pie {i}", f"b{i}")  # SQLite's hits, in another room
        await say(quiet, f"pie, apple {i}", f"q{i + 1}")  # MongoDB's candidates, no phrase
    found: list[str] = []
    pages = 0
    before: str | None = None
    for _ in range(20):  # bounded
        params = {"room": "quiet", **({"before": before} if before else {})}
        body = await search(auth, '"apple pie"', **params)
        pages += 1
        found += [r["text"] for r in body["results"]]
        if not body["has_more"]:
            break
        before = body["before"]
    assert found == ["apple pie"] and pages > 1
