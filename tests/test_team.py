"""A team's own chat over HTTP and the socket: roles, sign-up modes, invitations, the admin page,
moderation, private rooms, direct messages and the account page (both stores)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp import WSMsgType

from chat.hub import HUB_KEY
from conftest import PASSWORD, Auth, hello, receive_until
from storage import STORE_KEY
from storage.base import ADMIN, MEMBER

INVITE_LINK = re.compile(r'value="(http://[^"]+/join/([A-Za-z0-9_-]+))"')


async def send(ws: Any, **frame: Any) -> None:
    await ws.send_str(json.dumps(frame))


async def post_message(ws: Any, text: str, client_id: str) -> dict[str, Any]:
    await send(ws, type="message", text=text, client_id=client_id)
    return await receive_until(ws, "message")


async def users(auth: Auth) -> dict[str, tuple[str, bool]]:
    store = auth.client.app[STORE_KEY]
    return {u.login: (u.role, u.active) for u in await store.users.list(100)}


async def new_invite(admin: Auth) -> tuple[str, str]:
    """Create an invitation on /admin; return its link and token as the page shows them."""
    resp = await admin.post("/admin/invites", {}, csrf_path="/admin")
    assert (resp.status, resp.headers["Location"]) == (302, "/admin")
    page = await (await admin.client.get("/admin")).text()
    match = INVITE_LINK.search(page)
    assert match, page
    return match.group(1), match.group(2)


async def refused_signup(person: Auth, login: str) -> Any:
    """Post the sign-up form as if it had been shown (the page shows none when refused)."""
    data = {
        "login": login,
        "email": f"{login}@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    return await person.post("/signup", data, csrf_path="/login")


async def join(person: Auth, token: str, login: str) -> Any:
    data = {
        "login": login,
        "email": f"{login}@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    return await person.post(f"/join/{token}", data, csrf_path=f"/join/{token}")


# Roles


async def test_the_first_account_is_admin_the_next_a_member(make_user: Any) -> None:
    alice = await make_user("alice")
    await make_user("bob")
    assert await users(alice) == {"alice": (ADMIN, True), "bob": (MEMBER, True)}


async def test_an_admin_promotes_and_demotes_but_never_the_last_admin(make_user: Any) -> None:
    alice = await make_user("alice")
    await make_user("bob")
    resp = await alice.post("/admin/users/bob/role", {"role": "admin"}, csrf_path="/admin")
    assert resp.status == 302
    resp = await alice.post("/admin/users/alice/role", {"role": "member"}, csrf_path="/admin")
    assert resp.status == 302
    assert await users(alice) == {"alice": (MEMBER, True), "bob": (ADMIN, True)}


async def test_an_admin_who_demotes_themselves_goes_to_the_room_list(make_user: Any) -> None:
    alice = await make_user("alice")
    await make_user("bob")
    await alice.post("/admin/users/bob/role", {"role": "admin"}, csrf_path="/admin")
    resp = await alice.post("/admin/users/alice/role", {"role": "member"}, csrf_path="/admin")
    assert (resp.status, resp.headers["Location"]) == (302, "/")


async def test_an_admin_cannot_deactivate_themselves(make_user: Any) -> None:
    alice = await make_user("alice")
    await make_user("bob")
    await alice.post("/admin/users/bob/role", {"role": "admin"}, csrf_path="/admin")
    resp = await alice.post("/admin/users/alice/deactivate", {}, csrf_path="/admin")
    assert resp.status == 409 and "your own account" in await resp.text()
    assert (await users(alice))["alice"] == (ADMIN, True)


async def test_demoting_the_last_admin_is_refused(make_user: Any) -> None:
    alice = await make_user("alice")
    await make_user("bob")
    resp = await alice.post("/admin/users/alice/role", {"role": "member"}, csrf_path="/admin")
    assert resp.status == 409
    assert "at least one active admin" in await resp.text()
    assert (await users(alice))["alice"] == (ADMIN, True)


async def test_members_cannot_use_the_admin_page(make_user: Any) -> None:
    await make_user("alice")
    bob = await make_user("bob")
    page = await bob.client.get("/admin", headers={"Accept": "text/html"})
    assert page.status == 403 and "Only an admin" in await page.text()
    token = await bob.csrf("/")
    for path, data in [
        ("/admin/invites", {}),
        ("/admin/signup-mode", {"mode": "open"}),
        ("/admin/users/bob/role", {"role": "admin"}),
        ("/admin/users/alice/deactivate", {}),
    ]:
        resp = await bob.post(path, {**data, "csrf_token": token})
        assert resp.status == 403, path
    assert await users(bob) == {"alice": (ADMIN, True), "bob": (MEMBER, True)}
    assert await bob.client.app[STORE_KEY].invites.live(10) == []


async def test_admin_forms_need_the_csrf_token(make_user: Any) -> None:
    alice = await make_user("alice")
    resp = await alice.post("/admin/invites", {"csrf_token": "forged"})
    assert resp.status == 403
    assert await alice.client.app[STORE_KEY].invites.live(10) == []


# Who may sign up


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "invite"}])
async def test_on_an_empty_store_the_first_sign_up_is_allowed(auth: Auth) -> None:
    page = await auth.client.get("/signup")
    assert 'name="password_confirm"' in await page.text()
    assert (await auth.signup("alice")).status == 302
    assert await users(auth) == {"alice": (ADMIN, True)}


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "invite"}])
async def test_under_invite_signup_says_how_to_get_in_and_refuses(
    auth: Auth, make_client: Any
) -> None:
    await auth.signup("alice")
    stranger = Auth(await make_client())
    page = await stranger.client.get("/signup")
    text = await page.text()
    assert page.status == 200 and "by invitation only" in text and "Ask an admin" in text
    assert 'name="password"' not in text
    resp = await refused_signup(stranger, "mallory")
    assert resp.status == 403 and "by invitation only" in await resp.text()
    assert set(await users(auth)) == {"alice"}


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "closed"}])
async def test_under_closed_nobody_signs_up_not_even_with_an_invitation(
    auth: Auth, make_client: Any
) -> None:
    await auth.signup("alice")
    _, token = await new_invite(auth)
    stranger = Auth(await make_client())
    assert (await refused_signup(stranger, "mallory")).status == 403
    assert "closed" in await (await stranger.client.get(f"/join/{token}")).text()
    csrf = await stranger.csrf("/login")
    data = {"login": "mallory", "email": "m@example.com", "password": PASSWORD}
    resp = await stranger.post(
        f"/join/{token}", {**data, "password_confirm": PASSWORD, "csrf_token": csrf}
    )
    assert resp.status == 403
    assert set(await users(auth)) == {"alice"}


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "invite"}])
async def test_an_admin_opens_sign_up_at_run_time_over_the_setting(
    auth: Auth, make_client: Any
) -> None:
    await auth.signup("alice")
    resp = await auth.post("/admin/signup-mode", {"mode": "open"}, csrf_path="/admin")
    assert resp.status == 302
    assert 'value="open" checked' in await (await auth.client.get("/admin")).text()
    bob = Auth(await make_client())
    assert (await bob.signup("bob")).status == 302
    resp = await auth.post("/admin/signup-mode", {"mode": "closed"}, csrf_path="/admin")
    assert resp.status == 302
    carol = Auth(await make_client())
    assert (await refused_signup(carol, "carol")).status == 403
    bad = await auth.post("/admin/signup-mode", {"mode": "everyone"}, csrf_path="/admin")
    assert bad.status == 400
    assert await auth.client.app[STORE_KEY].config.get("signup_mode") == "closed"


# Invitations


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "invite"}])
async def test_an_invitation_link_signs_up_and_counts_its_uses(
    auth: Auth, make_client: Any
) -> None:
    await auth.signup("alice")
    link, token = await new_invite(auth)
    assert link.endswith(f"/join/{token}") and len(token) >= 22  # >= 128 bits
    page = await (await auth.client.get("/admin")).text()
    assert "alice" in page and "UTC" in page  # who made it, when it expires
    bob = Auth(await make_client())
    form = await bob.client.get(f"/join/{token}")
    assert form.status == 200 and "invited by alice" in await form.text()
    resp = await join(bob, token, "bob")
    assert (resp.status, resp.headers["Location"]) == (302, "/")
    (invite,) = await auth.client.app[STORE_KEY].invites.live(10)
    assert invite.uses == 1
    assert (await users(auth))["bob"] == (MEMBER, True)
    assert (await bob.client.get("/")).status == 200  # logged in


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "invite", "invite_ttl": 3600}])
async def test_invitations_expire_after_invite_ttl(auth: Auth) -> None:
    await auth.signup("alice")
    await new_invite(auth)
    (invite,) = await auth.client.app[STORE_KEY].invites.live(10)
    assert 3590 <= (invite.expires_at - invite.created_at).total_seconds() <= 3600


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "invite"}])
async def test_a_revoked_or_unknown_invitation_is_a_clear_404(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    _, token = await new_invite(auth)
    resp = await auth.post(f"/admin/invites/{token}/revoke", {}, csrf_path="/admin")
    assert resp.status == 302
    stranger = Auth(await make_client())
    for path in (f"/join/{token}", "/join/no-such-token"):
        page = await stranger.client.get(path, headers={"Accept": "text/html"})
        text = await page.text()
        assert page.status == 404 and "expired or been revoked" in text, path
    csrf = await stranger.csrf("/login")
    data = {"login": "mallory", "email": "m@example.com", "password": PASSWORD}
    resp = await stranger.post(
        f"/join/{token}", {**data, "password_confirm": PASSWORD, "csrf_token": csrf}
    )
    assert resp.status == 404
    assert set(await users(auth)) == {"alice"}


@pytest.mark.parametrize("settings_overrides", [{"signup_mode": "invite", "invite_ttl": 60}])
async def test_an_expired_invitation_is_a_404(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    store = auth.client.app[STORE_KEY]
    expired = await store.invites.create("alice", 0)
    stranger = Auth(await make_client())
    resp = await stranger.client.get(f"/join/{expired.token}")
    assert resp.status == 404


# People: deactivation


async def test_deactivating_someone_ends_their_sessions_and_sockets(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    ws = await connect(bob)
    said = await post_message(ws, "before", "c1")
    resp = await alice.post("/admin/users/bob/deactivate", {}, csrf_path="/admin")
    assert resp.status == 302
    closing = await ws.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
    page = await bob.client.get("/", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/login")
    assert (await users(alice))["bob"] == (MEMBER, False)
    history = await (await alice.client.get("/rooms/general/messages")).json()
    assert [m["seq"] for m in history["messages"]] == [said["seq"]]  # messages are kept
    assert history["deactivated"] == ["bob"]
    chat = await (await alice.client.get("/rooms/general")).text()
    assert "(deactivated)" in chat


async def test_a_deactivated_account_gets_the_generic_login_failure(make_user: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    await alice.post("/admin/users/bob/deactivate", {}, csrf_path="/admin")
    wrong = await bob.login("bob", "not the password")
    refused = await bob.login("bob")
    assert refused.status == wrong.status == 401
    assert "Wrong login or password." in await refused.text()
    await alice.post("/admin/users/bob/reactivate", {}, csrf_path="/admin")
    assert (await bob.login("bob")).status == 302
    assert (await users(alice))["bob"] == (MEMBER, True)


async def test_the_last_admin_cannot_be_deactivated(make_user: Any) -> None:
    alice = await make_user("alice")
    resp = await alice.post("/admin/users/alice/deactivate", {}, csrf_path="/admin")
    assert resp.status == 409
    assert (await users(alice))["alice"] == (ADMIN, True)


async def test_the_admin_page_lists_people_with_role_state_and_last_seen(
    make_user: Any,
) -> None:
    alice = await make_user("alice")
    await make_user("bob")
    await alice.post("/admin/users/bob/deactivate", {}, csrf_path="/admin")
    page = await (await alice.client.get("/admin")).text()
    rows = re.findall(r'<tr class="person" data-login="([^"]+)">(.*?)</tr>', page, re.S)
    assert [login for login, _ in rows] == ["alice", "bob"]
    alice_row, bob_row = (row for _, row in rows)
    assert '"role">admin<' in alice_row and '"state">active<' in alice_row
    assert '"role">member<' in bob_row and '"state">deactivated<' in bob_row
    assert "Reactivate" in bob_row
    assert alice_row.count("UTC") == 2  # created, last seen


async def test_unknown_logins_on_admin_actions_are_404(make_user: Any) -> None:
    alice = await make_user("alice")
    for action in ("deactivate", "reactivate"):
        resp = await alice.post(f"/admin/users/nobody/{action}", {}, csrf_path="/admin")
        assert resp.status == 404


# Moderation


async def test_an_admin_deletes_anyone_s_message_and_everyone_sees_it(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    carol = await make_user("carol")
    a, b, c = await connect(alice), await connect(bob), await connect(carol)
    said = await post_message(b, "spam", "c1")
    await send(a, type="delete", seq=said["seq"])
    for ws in (a, b, c):  # the author is told by the same change frame
        change = await receive_until(ws, "change")
        assert (change["seq"], change["deleted"], change["text"], change["user"]) == (
            said["seq"],
            True,
            "",
            "bob",
        )
    (kept,) = (await (await carol.client.get("/rooms/general/messages")).json())["messages"]
    assert kept["deleted"] is True


async def test_members_still_cannot_delete_others_messages(make_user: Any, connect: Any) -> None:
    await make_user("alice")
    bob = await make_user("bob")
    carol = await make_user("carol")
    b, c = await connect(bob), await connect(carol)
    said = await post_message(b, "mine", "c1")
    await send(c, type="delete", seq=said["seq"])
    error = await receive_until(c, "error")
    assert error["code"] == "forbidden"


@pytest.mark.parametrize("settings_overrides", [{"edit_window": 1}])
async def test_an_admin_deletes_past_the_edit_window_but_never_edits_others(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    a, b = await connect(alice), await connect(bob)
    said = await post_message(b, "old", "c1")
    await send(a, type="edit", seq=said["seq"], text="rewritten")
    assert (await receive_until(a, "error"))["code"] == "forbidden"
    store = alice.client.app[STORE_KEY]
    await store.users.set_role("bob", ADMIN)
    await store.users.set_role("alice", MEMBER)
    await send(a, type="delete", seq=said["seq"])  # the role is read afresh: no longer admin
    assert (await receive_until(a, "error"))["code"] == "forbidden"
    await send(b, type="edit", seq=said["seq"], text="late")
    await receive_until(b, "change")  # still within the window for bob's own edit


# Private rooms


async def make_private_room(owner: Auth, name: str = "Plans") -> str:
    resp = await owner.post("/rooms", {"name": name, "private": "on"}, csrf_path="/")
    assert resp.status == 302, await resp.text()
    slug = resp.headers["Location"].removeprefix("/rooms/")
    assert slug.startswith("plans-") and len(slug) == len("plans-") + 8
    return slug


async def assert_invisible(person: Auth, slug: str) -> None:
    """Every way in answers as for a room that does not exist."""
    for path in (f"/rooms/{slug}", f"/rooms/{slug}/messages", f"/rooms/no-such-{slug}"):
        resp = await person.client.get(path)
        assert resp.status == 404, path
    known = await person.client.get(f"/rooms/{slug}/messages")
    unknown = await person.client.get("/rooms/no-such-room/messages")
    assert await known.json() == await unknown.json()
    for query in (f"?room={slug}", f"?room={slug}&after=0", f"?room={slug}&after=0&rev=0"):
        assert (await person.upgrade(query)).status == 404, query
    assert slug not in await (await person.client.get("/")).text()
    token = await person.csrf("/")
    for path, data in ((f"/rooms/{slug}/members", {"login": "x"}), (f"/rooms/{slug}/leave", {})):
        resp = await person.post(path, {**data, "csrf_token": token})
        assert resp.status == 404, path


async def test_a_private_room_does_not_exist_for_others(make_user: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    slug = await make_private_room(alice)
    page = await (await alice.client.get(f"/rooms/{slug}")).text()
    assert "#Plans" in page and 'class="members"' in page
    assert slug in await (await alice.client.get("/")).text()
    await assert_invisible(bob, slug)


async def test_members_add_others_who_then_see_it_live(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    carol = await make_user("carol")
    slug = await make_private_room(alice)
    resp = await alice.post(f"/rooms/{slug}/members", {"login": "BOB"}, csrf_path="/")
    assert resp.status == 302
    assert (await bob.client.get(f"/rooms/{slug}")).status == 200
    members = await alice.client.app[STORE_KEY].rooms.members(slug, 10)
    assert members == ["alice", "bob"]
    a = await connect(alice, f"?room={slug}")
    b = await bob.ws(f"?room={slug}")
    assert (await hello(b))["online"] == ["alice", "bob"]
    g = await connect(carol, "?room=general")
    said = await post_message(a, "secret", "c1")
    assert (await receive_until(b, "message"))["text"] == "secret"
    with pytest.raises(TimeoutError):
        await receive_until(g, "message", timeout=0.5)
    assert said["room"] == slug
    unknown = await alice.post(f"/rooms/{slug}/members", {"login": "nobody"}, csrf_path="/")
    assert unknown.status == 404
    for ws in (a, b, g):
        await ws.close()


async def test_leaving_a_private_room_closes_its_sockets_and_hides_it(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    slug = await make_private_room(alice)
    await alice.post(f"/rooms/{slug}/members", {"login": "bob"}, csrf_path="/")
    b = await connect(bob, f"?room={slug}")
    general = await connect(bob)
    resp = await bob.post(f"/rooms/{slug}/leave", {}, csrf_path="/")
    assert (resp.status, resp.headers["Location"]) == (302, "/")
    closing = await b.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
    await assert_invisible(bob, slug)
    await send(general, type="typing")  # bob's other sockets stay open
    assert not general.closed
    await general.close()


async def test_open_rooms_cannot_be_left_or_given_members(make_user: Any) -> None:
    alice = await make_user("alice")
    for path in ("/rooms/general/leave", "/rooms/general/members"):
        resp = await alice.post(path, {"login": "alice"}, csrf_path="/")
        assert resp.status == 400, path


# Direct messages


async def test_a_direct_message_opens_one_room_for_both(make_user: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    carol = await make_user("carol")
    first = await alice.client.get("/dm/bob", allow_redirects=False)
    again = await alice.client.get("/dm/BOB", allow_redirects=False)
    theirs = await bob.client.get("/dm/alice", allow_redirects=False)
    assert first.status == again.status == theirs.status == 302
    location = first.headers["Location"]
    assert location.startswith("/rooms/dm-")
    assert again.headers["Location"] == theirs.headers["Location"] == location
    slug = location.removeprefix("/rooms/")
    page = await (await alice.client.get(location)).text()
    assert "<title>bob" in page
    rooms = await (await bob.client.get("/")).text()
    directs = rooms[rooms.index('id="directs"') :]
    assert f'href="{location}">alice</a>' in directs
    await assert_invisible(carol, slug)
    for path in (f"/rooms/{slug}/members", f"/rooms/{slug}/leave"):
        resp = await alice.post(path, {"login": "carol"}, csrf_path="/")
        assert resp.status == 400, path


async def test_a_direct_message_with_oneself_is_a_notes_room(make_user: Any) -> None:
    alice = await make_user("alice")
    resp = await alice.client.get("/dm/alice", allow_redirects=False)
    assert resp.status == 302
    page = await (await alice.client.get(resp.headers["Location"])).text()
    assert "notes to self" in page


async def test_a_direct_message_to_nobody_is_a_404(make_user: Any) -> None:
    alice = await make_user("alice")
    assert (await alice.client.get("/dm/nobody")).status == 404


async def test_direct_messages_have_unread_counts(make_user: Any, connect: Any) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    location = (await alice.client.get("/dm/bob", allow_redirects=False)).headers["Location"]
    a = await connect(alice, f"?room={location.removeprefix('/rooms/')}")
    await post_message(a, "one", "c1")
    await post_message(a, "two", "c2")
    rooms = await (await bob.client.get("/")).text()
    directs = rooms[rooms.index('id="directs"') :]
    assert 'title="2 unread"' in directs


# The account page


async def test_changing_the_password_ends_the_other_sessions_only(
    make_user: Any, make_client: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    other = Auth(await make_client())
    assert (await other.login("alice")).status == 302
    other_ws = await connect(other)
    new = "a brand new password"
    data = {"current_password": PASSWORD, "password": new, "password_confirm": new}
    resp = await alice.post("/account/password", data, csrf_path="/account")
    assert (resp.status, resp.headers["Location"]) == (302, "/account?changed=password")
    closing = await other_ws.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
    assert (await alice.client.get("/account")).status == 200  # this session stays
    gone = await other.client.get("/", allow_redirects=False)
    assert gone.status == 302
    assert (await other.login("alice")).status == 401
    assert (await other.login("alice", new)).status == 302


async def test_a_wrong_current_password_changes_nothing(make_user: Any) -> None:
    alice = await make_user("alice")
    data = {"current_password": "wrong", "password": "x" * 12, "password_confirm": "x" * 12}
    resp = await alice.post("/account/password", data, csrf_path="/account")
    assert resp.status == 400 and "not your current password" in await resp.text()
    short = {"current_password": PASSWORD, "password": "short", "password_confirm": "short"}
    resp = await alice.post("/account/password", short, csrf_path="/account")
    assert resp.status == 400
    assert (await alice.logout()).status == 302
    assert (await alice.login("alice")).status == 302  # the old password still works


async def test_the_account_page_lists_sessions_and_ends_one(
    make_user: Any, make_client: Any
) -> None:
    alice = await make_user("alice")
    phone = Auth(await make_client())
    ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile Safari/604.1"
    resp = await phone.post(
        "/login", {"login": "alice", "password": PASSWORD}, headers={"User-Agent": ua}
    )
    assert resp.status == 302
    page = await (await alice.client.get("/account")).text()
    rows = re.findall(
        r'<tr class="session( current)?" data-id="([0-9a-f]{16})">(.*?)</tr>', page, re.S
    )
    assert len(rows) == 2
    (mine,) = [r for r in rows if r[0]]
    (theirs,) = [r for r in rows if not r[0]]
    assert "(this one)" in mine[2] and "Safari on iPhone" in theirs[2]
    store = alice.client.app[STORE_KEY]
    assert all(
        s.id not in page
        for s in await store.sessions.of_user(
            await store.users.find_by_login("alice")  # type: ignore[arg-type]
        )
    )  # ids never shown, only their handles
    resp = await alice.post(f"/account/sessions/{theirs[1]}/end", {}, csrf_path="/account")
    assert (resp.status, resp.headers["Location"]) == (302, "/account")
    assert (await phone.client.get("/", allow_redirects=False)).status == 302
    assert (await alice.client.get("/account")).status == 200
    again = await alice.post(f"/account/sessions/{theirs[1]}/end", {}, csrf_path="/account")
    assert again.status == 404


async def test_log_out_everywhere_ends_every_session(
    make_user: Any, make_client: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    other = Auth(await make_client())
    await other.login("alice")
    ws = await connect(other)
    resp = await alice.post("/account/logout-everywhere", {}, csrf_path="/account")
    assert (resp.status, resp.headers["Location"]) == (302, "/login")
    closing = await ws.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
    for person in (alice, other):
        assert (await person.client.get("/", allow_redirects=False)).status == 302
    user = await alice.client.app[STORE_KEY].users.find_by_login("alice")
    assert user is not None and await alice.client.app[STORE_KEY].sessions.of_user(user) == []


async def test_the_account_page_needs_a_login(client: Any) -> None:
    resp = await client.get("/account", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")


async def test_a_socket_whose_session_was_ended_elsewhere_is_closed_by_the_sweep(
    make_user: Any,
    connect: Any,
) -> None:
    alice = await make_user("alice")
    ws = await connect(alice)
    store = alice.client.app[STORE_KEY]
    user = await store.users.find_by_login("alice")
    assert user is not None
    await store.sessions.delete_of_user(user)  # as the command line does, without a word
    await alice.client.app[HUB_KEY].close_ended(store.sessions)
    closing = await ws.receive(timeout=5)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)


async def test_a_socket_left_in_a_private_room_by_a_lost_leave_is_closed_by_the_sweep(
    make_user: Any, connect: Any
) -> None:
    alice = await make_user("alice")
    bob = await make_user("bob")
    slug = await make_private_room(alice)
    await alice.post(f"/rooms/{slug}/members", {"login": "bob"}, csrf_path="/")
    a = await connect(alice, f"?room={slug}")
    b = await connect(bob, f"?room={slug}")
    store = alice.client.app[STORE_KEY]
    await store.rooms.remove_member(slug, "bob")  # no word to the hub, as with Redis down
    await alice.client.app[HUB_KEY].close_strangers(store.rooms)
    closing = await b.receive(timeout=5)
    assert (closing.type, closing.data, closing.extra) == (WSMsgType.CLOSE, 1008, "left the room")
    await send(a, type="typing")
    assert not a.closed  # the members stay
