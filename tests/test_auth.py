"""Sign-up, login, logout, sessions and CSRF, through the real forms."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from conftest import PASSWORD, Auth, origin
from storage import STORE_KEY


async def test_signup_logs_in_and_redirects_home(client: TestClient[Any, Any], auth: Auth) -> None:
    resp = await auth.signup("alice")
    assert resp.status == 302
    assert resp.headers["Location"] == "/"
    page = await client.get("/")
    assert page.status == 200
    assert "alice" in await page.text()


async def test_password_stored_as_argon2id(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    user = await client.app[STORE_KEY].users.find_by_login("alice")
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    ("field", "data", "message"),
    [
        ("login", {"login": "ab"}, "3 to 32"),
        ("login", {"login": "bad name!"}, "3 to 32"),
        ("login", {"login": "x" * 33}, "3 to 32"),
        ("email", {"email": "not-an-email"}, "email address"),
        ("password", {"password": "Qz7-tiny", "password_confirm": "Qz7-tiny"}, "at least 10"),
        ("password", {"password": "p" * 257, "password_confirm": "p" * 257}, "at most 256"),
        ("password_confirm", {"password_confirm": "something else"}, "differ"),
    ],
)
async def test_signup_errors_per_field_keep_input(
    auth: Auth, field: str, data: dict[str, str], message: str
) -> None:
    form = {
        "login": "alice",
        "email": "alice@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        **data,
    }
    resp = await auth.post("/signup", form, csrf_path="/signup")
    body = await resp.text()
    assert resp.status == 400
    assert f'id="{field}-error"' in body and message in body
    assert 'value="alice@example.com"' in body or field == "email"
    assert form["password"] not in body  # the password is never echoed
    assert "aria-invalid" in body


@pytest.fixture
async def person(auth: Auth, make_client: Any) -> Auth:
    """Someone on a client of their own, not logged in, once alice has signed up."""
    await auth.signup("alice")
    return Auth(await make_client())


async def test_taken_login_says_so_case_insensitively(person: Auth) -> None:
    resp = await person.signup("ALICE")
    body = await resp.text()
    assert resp.status == 409
    assert "This login is taken" in body
    assert 'value="ALICE"' in body


async def test_login_refuses_a_wrong_password(person: Auth) -> None:
    wrong = await person.login("alice", "wrong password!!")
    assert wrong.status == 401
    assert "Wrong login or password." in await wrong.text()
    assert (await person.client.get("/", allow_redirects=False)).status == 302


async def test_login_refuses_an_unknown_login(person: Auth) -> None:
    unknown = await person.login("nobody", PASSWORD)
    assert unknown.status == 401
    assert "Wrong login or password." in await unknown.text()


async def test_login_with_the_password_logs_in_case_insensitively(person: Auth) -> None:
    right = await person.login("Alice", PASSWORD)
    assert right.status == 302 and right.headers["Location"] == "/"
    assert (await person.client.get("/", allow_redirects=False)).status == 200


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/?x=1", "/?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
async def test_login_honours_only_local_next(person: Auth, next_url: str, expected: str) -> None:
    resp = await person.login("alice", PASSWORD, next=next_url)
    assert resp.status == 302
    assert resp.headers["Location"] == expected


async def test_home_requires_login(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/login?next=/"


async def test_login_form_carries_next(client: TestClient[Any, Any]) -> None:
    body = await (await client.get("/login?next=/")).text()
    assert 'name="next" value="/"' in body


async def test_new_session_on_login_no_fixation(person: Auth, make_client: Any) -> None:
    victim = person
    await victim.csrf()  # the victim has an anonymous session, as an attacker could plant
    planted_value = victim.cookie()
    await victim.login("alice", PASSWORD)
    assert victim.cookie() != planted_value
    # The planted (pre-login) cookie does not carry the login.
    attacker: TestClient[Any, Any] = await make_client()
    attacker.session.cookie_jar.update_cookies({"chat_session": planted_value})
    assert (await attacker.get("/", allow_redirects=False)).status == 302


async def test_logout_is_post_only(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    resp = await client.get("/logout", allow_redirects=False)
    assert resp.status == 405
    assert (await client.get("/", allow_redirects=False)).status == 200


async def test_logout_ends_the_session(client: TestClient[Any, Any], auth: Auth) -> None:
    await auth.signup("alice")
    resp = await auth.logout()
    assert resp.status == 302 and resp.headers["Location"] == "/login"
    assert (await client.get("/", allow_redirects=False)).status == 302


async def test_a_copied_cookie_is_refused_after_logout(auth: Auth, make_client: Any) -> None:
    await auth.signup("alice")
    cookie = auth.cookie()
    await auth.logout()
    replay: TestClient[Any, Any] = await make_client()
    replay.session.cookie_jar.update_cookies({"chat_session": cookie})
    resp = await replay.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    ws_resp = await replay.get("/ws", headers={"Origin": origin(replay)})
    assert ws_resp.status == 401


async def test_session_cookie_flags(client: TestClient[Any, Any], auth: Auth) -> None:
    resp = await auth.signup("alice")
    cookie = resp.cookies["chat_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]
    assert int(cookie["max-age"]) == 14 * 24 * 3600


@pytest.mark.parametrize("settings_overrides", [{"cookie_secure": True}])
async def test_secure_cookie_when_configured(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/signup")
    # Secure, so it carries the __Host- prefix: Secure, path=/ and no Domain (RFC 6265bis 4.1.3.2).
    assert "chat_session" not in resp.cookies
    cookie = resp.cookies["__Host-chat_session"]
    assert cookie["secure"]
    assert cookie["path"] == "/" and not cookie["domain"]
    assert "Strict-Transport-Security" in resp.headers


@pytest.mark.parametrize("token", ["", "forged-token"])
async def test_csrf_token_required(client: TestClient[Any, Any], auth: Auth, token: str) -> None:
    await auth.csrf("/signup")
    form = {
        "login": "alice",
        "email": "alice@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    resp = await client.post(
        "/signup",
        data={**form, "csrf_token": token},
        headers={"Origin": origin(client), "Accept": "text/html"},
        allow_redirects=False,
    )
    assert resp.status == 403
    assert "refused" in await resp.text()
    assert await client.app[STORE_KEY].users.find_by_login("alice") is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_origin_post_refused(
    client: TestClient[Any, Any], auth: Auth, headers: dict[str, str]
) -> None:
    await auth.signup("alice")
    token = await auth.csrf("/")
    resp = await client.post(
        "/logout", data={"csrf_token": token}, headers=headers, allow_redirects=False
    )
    assert resp.status == 403
    assert (await client.get("/", allow_redirects=False)).status == 200  # still logged in


async def test_same_origin_by_fetch_metadata_accepted(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    await auth.signup("alice")
    token = await auth.csrf("/")
    resp = await client.post(
        "/logout",
        data={"csrf_token": token},
        headers={"Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert resp.status == 302


async def test_oversized_form_is_refused(client: TestClient[Any, Any], auth: Auth) -> None:
    token = await auth.csrf("/signup")
    resp = await client.post(
        "/signup",
        data={"login": "a" * 100_000, "csrf_token": token},
        headers={"Origin": origin(client)},
    )
    assert resp.status == 413


async def test_login_rehashes_a_hash_made_under_older_argon2_costs(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    users = client.app[STORE_KEY].users
    old = PasswordHasher(time_cost=2, memory_cost=32).hash(PASSWORD)  # not the app's costs
    await users.create("alice", "alice@example.com", old)
    assert (await auth.login("alice", "wrong password")).status == 401
    assert (await users.find_by_login("alice")).password_hash == old  # only a success rehashes
    assert (await auth.login("alice", PASSWORD)).status == 302
    new = (await users.find_by_login("alice")).password_hash
    assert new != old and "m=64,t=1" in new  # the test settings' ARGON2_MEMORY_KIB/TIME_COST
    assert PasswordHasher(time_cost=1, memory_cost=64).verify(new, PASSWORD)
    assert (await client.get("/", allow_redirects=False)).status == 200  # the session lives
    await auth.logout()
    assert (await auth.login("alice", PASSWORD)).status == 302
    assert (await users.find_by_login("alice")).password_hash == new  # current: left alone


@pytest.mark.parametrize("twin", ["al1ce", "AIice", "aIice", "a1ice"])
async def test_a_login_that_looks_like_a_taken_one_is_refused(person: Auth, twin: str) -> None:
    resp = await person.signup(twin)
    assert resp.status == 409
    assert "This login looks like one that is taken; choose another." in await resp.text()
    assert await person.client.app[STORE_KEY].users.find_by_login(twin) is None


async def test_the_look_alike_check_works_both_ways(auth: Auth, make_client: Any) -> None:
    assert (await auth.signup("w0rm")).status == 302
    other = Auth(await make_client())
    for twin in ("worm", "WORM", "w0rrn", "vvorm"):
        resp = await other.signup(twin)
        assert resp.status == 409, twin
    assert (await other.signup("warm")).status == 302  # not a look-alike


@pytest.mark.parametrize(
    "login", ["ali\u200bce", "ali\u202ece", "al\u0456ce", "alice\ufeff", "\u0430lice"]
)
async def test_logins_with_hidden_or_non_latin_characters_are_refused(
    auth: Auth, login: str
) -> None:
    resp = await auth.signup(login)
    assert resp.status == 400
    assert "Use 3 to 32 letters, digits" in await resp.text()


async def test_a_fullwidth_login_is_nfkc_normalised(auth: Auth, make_client: Any) -> None:
    resp = await auth.signup("ａｌｉｃｅ")
    assert resp.status == 302
    user = await auth.client.app[STORE_KEY].users.find_by_login("alice")
    assert user is not None and user.login == "alice"
    other = Auth(await make_client())
    assert (await other.login("ａｌｉｃｅ")).status == 302
