"""Reactions and replies (#23 points 1-2): the `react` frame, `reactions` and `reply_to`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import unicodedata
from typing import Any

import pytest

from chat.emoji import normalize_reaction, reaction_problem
from conftest import Auth, hello, receive, receive_until
from storage.base import REACTIONS_MAX, ChangeRefused, Store


async def send(ws: Any, **frame: Any) -> None:
    await ws.send_str(json.dumps(frame))


async def post(ws: Any, text: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """Send a message and return its acknowledgement (the stored message)."""
    await send(ws, type="message", text=text, client_id=client_id, **extra)
    return await receive_until(ws, "message")


async def react(ws: Any, seq: int, emoji: str, client_id: str = "r") -> dict[str, Any]:
    """Toggle a reaction and return the next change or error frame."""
    await send(ws, type="react", seq=seq, emoji=emoji, client_id=client_id)
    while True:
        frame = await receive(ws)
        if frame["type"] in ("change", "error"):
            return frame


def chips(frame: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(r["emoji"], r["users"]) for r in frame["reactions"]]


@pytest.fixture
async def alice(make_user: Any) -> Auth:
    """Alice, signed up with a client of her own."""
    return await make_user("alice")


@pytest.fixture
async def bob(make_user: Any) -> Auth:
    """Bob, signed up with a client of his own."""
    return await make_user("bob")


# Reactions over the socket


async def test_a_reaction_toggles_and_reaches_everyone(
    alice: Auth, bob: Auth, make_user: Any, connect: Any
) -> None:
    carl = await make_user("carl")
    a, b, c = await connect(alice), await connect(bob), await connect(carl)
    sent = await post(a, "lunch?", "m1")
    assert sent["reactions"] == [] and sent["reply_to"] is None
    await receive_until(b, "message")
    await receive_until(c, "message")

    sockets = (a, b, c)

    async def toggle(ws: Any, emoji: str) -> dict[str, Any]:
        """React on one socket; every socket, this one included, gets the same change."""
        got = await react(ws, 1, emoji)
        for other in sockets:
            if other is not ws:
                assert await receive_until(other, "change") == got
        return got

    first = await toggle(b, "👍")
    assert first["type"] == "change" and first["seq"] == 1 and first["rev"] == 1
    assert chips(first) == [("👍", ["bob"])]
    assert first["text"] == "lunch?" and first["edited_at"] is None  # a reaction is no edit
    assert chips(await toggle(a, "❤️")) == [("👍", ["bob"]), ("❤️", ["alice"])]
    assert chips(await toggle(c, "👍")) == [("👍", ["bob", "carl"]), ("❤️", ["alice"])]
    # Bob takes his back: 👍 keeps its place, first reacted, though carl came after ❤️.
    undone = await toggle(b, "👍")
    assert chips(undone) == [("👍", ["carl"]), ("❤️", ["alice"])] and undone["rev"] == 4
    assert chips(await toggle(c, "👍")) == [("❤️", ["alice"])]
    # The history carries the reactions too.
    resp = await alice.client.get("/rooms/general/messages")
    (m,) = (await resp.json())["messages"]
    assert m["reactions"] == [{"emoji": "❤️", "users": ["alice"]}] and "rev" not in m


async def test_anyone_reacts_to_any_message_short_texts_too(alice: Auth, connect: Any) -> None:
    a = await connect(alice)
    await post(a, "one", "m1")
    # One's own message, and a short text as a reaction (NFC: a decomposed é is stored composed).
    done = await react(a, 1, " nice one\u0301 ")
    assert chips(done) == [(unicodedata.normalize("NFC", "nice one\u0301"), ["alice"])]
    again = await react(a, 1, unicodedata.normalize("NFC", "nice oné"))
    assert chips(again) == []  # the same reaction: toggled off


@pytest.mark.parametrize(
    ("emoji", "code"),
    [
        ("", "bad_emoji"),
        ("   ", "bad_emoji"),
        ("x" * 17, "bad_emoji"),
        ("ok\u202eko", "bad_emoji"),  # right-to-left override
        ("\u2066x\u2069", "bad_emoji"),  # isolate
        ("\u200b", "bad_emoji"),  # zero-width space
        ("a\u200db", "bad_emoji"),  # a joiner outside an emoji sequence
        ("\ufe0f", "bad_emoji"),  # a lone selector
        ("x\ny", "bad_emoji"),
        ("\u3164", "bad_emoji"),  # Hangul filler: draws nothing
        (5, "bad_frame"),
        (None, "bad_frame"),
    ],
)
async def test_bad_reactions_are_refused_clearly(
    alice: Auth, connect: Any, emoji: Any, code: str
) -> None:
    a = await connect(alice)
    await post(a, "one", "m1")
    refused = await react(a, 1, emoji, client_id="bad-1")
    assert refused["type"] == "error" and refused["code"] == code, refused
    assert refused["client_id"] == "bad-1" and refused["seq"] == 1 and refused["message"]
    resp = await alice.client.get("/rooms/general/messages")
    assert (await resp.json())["messages"][0]["reactions"] == []


@pytest.mark.parametrize(
    "emoji",
    ["👍", "👩‍💻", "❤️", "❤️‍🔥", "1️⃣", "🏳️‍🌈", "🇫🇷", "👍🏽", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👩🏻‍❤️‍💋‍👨🏼", "+1", "ok", "مرحبا"],
)
def test_emoji_sequences_and_short_texts_are_reactions(emoji: str) -> None:
    assert reaction_problem(normalize_reaction(emoji)) is None


@pytest.mark.parametrize(
    "emoji", ["\u200d👍", "👍\u200d", "a\ufe0f", "1\ufe0f", "x\U000e0067\U000e007f", "\ufe0e"]
)
def test_joiners_and_selectors_outside_emoji_are_refused(emoji: str) -> None:
    assert reaction_problem(normalize_reaction(emoji)) is not None


async def test_a_missing_or_deleted_message_takes_no_reaction(alice: Auth, connect: Any) -> None:
    a = await connect(alice)
    await post(a, "one", "m1")
    missing = await react(a, 9, "👍", "r-9")
    assert (missing["code"], missing["seq"], missing["client_id"]) == ("not_found", 9, "r-9")
    await react(a, 1, "👍")
    await send(a, type="delete", seq=1)
    gone = await receive_until(a, "change")
    assert gone["deleted"] is True and gone["reactions"] == []  # a tombstone shows none
    refused = await react(a, 1, "❤️", "r-1")
    assert (refused["code"], refused["seq"], refused["client_id"]) == ("deleted", 1, "r-1")


async def test_a_message_takes_at_most_20_different_reactions(
    alice: Auth, bob: Auth, connect: Any
) -> None:
    a = await connect(alice)
    await post(a, "vote", "m1")
    emoji = [chr(0x1F600 + i) for i in range(REACTIONS_MAX)]
    for e in emoji:
        last = await react(a, 1, e)
    assert [e for e, _ in chips(last)] == emoji
    refused = await react(a, 1, "🎉", "r-21")
    assert refused["code"] == "too_many_reactions" and refused["client_id"] == "r-21"
    # One already there still takes more people.
    joined = await react(await connect(bob), 1, emoji[0])
    assert chips(joined)[0] == (emoji[0], ["alice", "bob"]) and len(chips(joined)) == 20


async def test_reactions_spend_the_signal_budget(alice: Auth, connect: Any) -> None:
    a = await connect(alice)
    await post(a, "one", "m1")
    for i in range(40):
        await send(a, type="react", seq=1, emoji="👍", client_id=f"r{i}")
    refused = await receive_until(a, "error")
    assert refused["code"] == "rate_limited" and refused["retry_after"] > 0
    assert refused["seq"] == 1 and refused["client_id"].startswith("r")  # names what it refused
    assert refused["client_id"].startswith("r")
    # Messages have a budget of their own: posting still works.
    await send(a, type="message", text="still here", client_id="m2")
    assert (await receive_until(a, "message"))["seq"] == 2


async def test_nobody_outside_a_private_room_reacts_in_it(
    alice: Auth, bob: Auth, connect: Any
) -> None:
    resp = await alice.post("/rooms", {"name": "Plans", "private": "on"}, csrf_path="/")
    slug = resp.headers["Location"].removeprefix("/rooms/")
    a = await connect(alice, f"?room={slug}")
    await post(a, "secret", "p1")
    # Bob cannot open the room's socket; on his own room's socket the seq names nothing.
    assert (await bob.upgrade(f"?room={slug}")).status == 404
    b = await connect(bob)
    refused = await react(b, 1, "👍")
    assert refused["code"] == "not_found"
    history = await (await alice.client.get(f"/rooms/{slug}/messages")).json()
    assert history["messages"][0]["reactions"] == []
    await send(a, type="message", text="next", client_id="p2")
    nxt = await receive(a)
    assert (nxt["type"], nxt["seq"]) == ("message", 2)  # no change frame reached the room


async def test_resume_replays_reaction_changes(alice: Auth, bob: Auth, connect: Any) -> None:
    a = await connect(alice)
    for i in range(3):
        await post(a, f"m{i}", f"c{i}")
    b = await bob.ws()
    seen = await hello(b)
    await b.close()
    await react(a, 1, "👍")
    await react(a, 3, "🎉")
    await react(a, 1, "❤️")  # message 1 changed twice: replayed once, in its current state
    b = await bob.ws(f"?after={seen['last_seq']}&rev={seen['last_rev']}")
    again = await hello(b)
    assert again["last_rev"] == 3
    replay = [await receive(b), await receive(b)]
    assert [(f["type"], f["seq"], f["rev"]) for f in replay] == [("change", 3, 2), ("change", 1, 3)]
    assert chips(replay[1]) == [("👍", ["alice"]), ("❤️", ["alice"])]
    await send(b, type="message", text="live", client_id="b1")
    live = await receive(b)
    assert (live["type"], live["seq"]) == ("message", 4)  # nothing more was replayed
    await b.close()


class TestOldMessages:
    """With no edit window at all, nobody may edit; anyone may still react."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"edit_window": 0}

    async def test_an_old_message_takes_reactions(self, alice: Auth, connect: Any) -> None:
        a = await connect(alice)
        await post(a, "old", "m1")
        await send(a, type="edit", seq=1, text="new")
        assert (await receive_until(a, "error"))["code"] == "too_late"
        assert chips(await react(a, 1, "👍")) == [("👍", ["alice"])]


# Replies


async def test_a_reply_quotes_the_current_text_of_the_original(
    alice: Auth, bob: Auth, connect: Any
) -> None:
    a, b = await connect(alice), await connect(bob)
    long = "x" * 150
    await post(a, long, "m1")
    await receive_until(b, "message")
    reply = await post(b, "agreed", "b1", reply_to=1)
    assert reply["reply_to"] == {"seq": 1, "user": "alice", "excerpt": "x" * 140}
    assert await receive_until(a, "message") == reply
    # Idempotent: a re-send is acknowledged with the stored reply, nothing new is stored.
    assert await post(b, "agreed", "b1", reply_to=1) == reply
    await send(a, type="edit", seq=1, text="short now")
    await receive_until(a, "change")
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert [m["seq"] for m in history["messages"]] == [1, 2]
    assert history["messages"][1]["reply_to"]["excerpt"] == "short now"
    await send(a, type="delete", seq=1)
    await receive_until(a, "change")
    history = await (await alice.client.get("/rooms/general/messages?before=3&limit=1")).json()
    assert history["messages"][0]["reply_to"] == {
        "seq": 1,
        "user": "alice",
        "excerpt": "message deleted",
    }
    # The page shows the quote too, escaped like any text.
    page = await (await bob.client.get("/rooms/general")).text()
    assert 'data-reply-to="1"' in page and "message deleted" in page


async def test_a_reply_must_name_a_message_of_the_room(alice: Auth, connect: Any) -> None:
    a = await connect(alice)
    resp = await alice.post("/rooms", {"name": "Other"}, csrf_path="/")
    assert resp.status == 302
    other = await connect(alice, "?room=other")
    for i in range(3):
        await post(other, f"o{i}", f"o{i}")
    await post(a, "here", "m1")
    await send(a, type="message", text="answer", client_id="x1", reply_to=3)
    refused = await receive_until(a, "error")
    assert (refused["code"], refused["client_id"]) == ("reply_not_found", "x1")
    for bad in ("1", 0, -1, 1.5, True, [1]):
        await send(a, type="message", text="answer", client_id="x2", reply_to=bad)
        refused = await receive_until(a, "error")
        assert (refused["code"], refused["client_id"]) == ("bad_frame", "x2"), bad
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert [m["text"] for m in history["messages"]] == ["here"]  # nothing else was stored
    # null is no reply.
    plain = await post(a, "plain", "x3", reply_to=None)
    assert plain["reply_to"] is None and plain["seq"] == 2


async def test_the_page_renders_reactions_and_quotes_escaped(alice: Auth, connect: Any) -> None:
    a = await connect(alice)
    xss = "<img src=x onerror=alert(1)>"
    await post(a, xss, "m1")
    await post(a, "reply", "m2", reply_to=1)
    await react(a, 1, "<b>")
    page = await (await alice.client.get("/rooms/general")).text()
    assert xss not in page and "&lt;img src=x" in page
    assert "<b>" not in page.split("<template")[0].split('id="messages"')[1]
    assert 'aria-pressed="true"' in page and "&lt;b&gt; 1: alice" in page


# The store's contract, on both backends


async def test_store_reactions_and_quotes(store: Store) -> None:
    messages = store.messages
    await messages.add("general", "ann", "hello", "c1")
    reply, created = await messages.add("general", "bob", "hi", "c2", reply_to=1)
    assert created and reply.reply_to == 1 and reply.quote is not None
    assert (reply.quote.user, reply.quote.excerpt) == ("ann", "hello")
    m = await messages.react("general", 1, "bob", "👍")
    m = await messages.react("general", 1, "ann", "👍")
    assert [(r.emoji, r.users) for r in m.reactions] == [("👍", ("bob", "ann"))]
    assert m.rev == 2 and await messages.last_rev("general") == 2
    changed = await messages.changes("general", 0, 10)
    assert [(c.seq, c.rev) for c in changed] == [(1, 2)]
    m = await messages.react("general", 1, "bob", "👍")
    assert [(r.emoji, r.users) for r in m.reactions] == [("👍", ("ann",))]
    page = await messages.before("general", None, 10)
    assert [len(p.reactions) for p in page] == [1, 0]
    assert page[1].quote is not None and page[1].quote.seq == 1
    with pytest.raises(ChangeRefused) as refused:
        await messages.react("general", 5, "bob", "👍")
    assert refused.value.code == "not_found"
    assert [f.seq for f in await messages.find_many("general", [2, 1, 7])] in ([1, 2], [2, 1])


async def test_the_highest_rev_read_holds_every_change_made_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes made together: every state read with the highest rev shows all of them.

    A client shows the state with the highest rev it got, so that state must not miss a
    change that took a lower rev. On MongoDB (processes share no lock) the first reaction is
    held up in the middle, so the others finish while it is under way.
    """
    messages = store.messages
    await messages.add("general", "ann", "first", "c1")
    reactions = getattr(messages, "reactions", None)
    if reactions is not None:
        delete_one = reactions.delete_one

        async def slow_for_p0(key: dict[str, Any]) -> Any:
            if key.get("user") == "p0":
                await asyncio.sleep(0.3)
            return await delete_one(key)

        monkeypatch.setattr(reactions, "delete_one", slow_for_p0)
    since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    people = [f"p{i}" for i in range(12)]
    results = await asyncio.gather(
        *(messages.react("general", 1, p, "👍") for p in people),
        messages.change("general", 1, "ann", "edited", since),
    )
    top = max(m.rev for m in results)
    assert top == await messages.last_rev("general") == len(people) + 1
    for newest in (m for m in results if m.rev == top):
        assert newest.text == "edited"
        assert [(r.emoji, sorted(r.users)) for r in newest.reactions] == [("👍", sorted(people))]
