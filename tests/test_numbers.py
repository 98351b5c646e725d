"""Integer parameters and frame fields: whatever number-like text a client sends, no 5xx."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.numbers import MAX_WHOLE, whole_number
from conftest import Auth

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
HOSTILE = [
    "9223372036854775808",
    "9223372036854775807",
    "-9223372036854775809",
    str(2**53),
    str(MAX_WHOLE),
    "1" * 4000,  # two of them still fit in aiohttp's 8190-byte request line
    "١٢٣",
    "１２",
    "",
    " ",
    " 7",
    "7 ",
    "+7",
    "-0",
    "1e9",
    "1.0",
    "0x10",
    "1_000",
    "inf",
    "NaN",
]
# Number-like text: huge and negative ints, floats, other scripts' digits, junk around digits.
number_text = (
    st.sampled_from(HOSTILE)
    | st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.floats(allow_nan=True, allow_infinity=True).map(str)
    | st.text(st.characters(categories=["Nd", "Zs"]), max_size=8)
    | st.text(alphabet="0123456789 +-_.eEx", max_size=24)
)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("0", 0), ("42", 42), (str(MAX_WHOLE), MAX_WHOLE), (str(2**53), None), ("١٢٣", None)]
    + [(raw, None) for raw in ("", " 7", "+7", "-1", "1_000", "0x10", "1e9", "1.0")],
)
def test_whole_number_takes_only_ascii_digits_in_range(raw: str, value: int | None) -> None:
    assert whole_number(raw) == value


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", ["before", "limit"])
@pytest.mark.parametrize("raw", ["9223372036854775808", str(2**63 - 1), "١٢٣", str(2**53)])
async def test_history_refuses_overflowing_numbers_with_400(
    auth: Auth, name: str, raw: str
) -> None:
    await auth.signup("alice")
    resp = await auth.client.get("/rooms/general/messages", params={name: raw})
    assert resp.status == 400
    assert "error" in await resp.json()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", ["after", "rev"])
@pytest.mark.parametrize("raw", ["9223372036854775808", "١٢٣", str(2**53)])
async def test_socket_refuses_overflowing_numbers_with_400(auth: Auth, name: str, raw: str) -> None:
    await auth.signup("alice")
    resp = await auth.upgrade(f"?{name}={raw}")
    assert resp.status == 400
    await resp.read()  # and so release the connection


@HYPOTHESIS
@given(name=st.sampled_from(["before", "limit"]), raw=number_text, other=number_text)
async def test_history_parameters_never_answer_5xx(
    auth: Auth, name: str, raw: str, other: str
) -> None:
    if "chat_session" not in {c.key for c in auth.client.session.cookie_jar}:
        await auth.signup("alice")
    params = {name: raw, ("limit" if name == "before" else "before"): other}
    resp = await auth.client.get("/rooms/general/messages", params=params)
    assert resp.status in (200, 400), (params, resp.status)
    body = await resp.json()
    ok = all(whole_number(v) is not None for v in params.values())
    assert resp.status == 400 or ok, params
    assert ("messages" in body) if resp.status == 200 else ("error" in body)


@HYPOTHESIS
@given(name=st.sampled_from(["after", "rev"]), raw=number_text)
async def test_socket_parameters_never_answer_5xx(auth: Auth, name: str, raw: str) -> None:
    if "chat_session" not in {c.key for c in auth.client.session.cookie_jar}:
        await auth.signup("alice")
    if whole_number(raw) is None:
        resp = await auth.upgrade("?" + urlencode({name: raw}))
        assert resp.status == 400, (raw, resp.status)
        await resp.read()
        return
    ws = await auth.client.ws_connect(
        "/ws", params={name: raw}, headers={"Origin": str(auth.client.make_url("/"))[:-1]}
    )
    try:
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "hello"
    finally:
        await ws.close()


frame_numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | number_text
    | st.booleans()
    | st.none()
)


@HYPOTHESIS
@given(kind=st.sampled_from(["edit", "delete", "read"]), seq=frame_numbers)
async def test_frame_seq_fields_get_an_error_frame_not_a_close(
    ws: Any, kind: str, seq: Any
) -> None:
    await ws.send_str(json.dumps({"type": kind, "seq": seq, "client_id": "c1", "text": "new"}))
    # `read` gets no reply: an unknown frame after it, refused by name, shows the socket is open.
    await ws.send_str(json.dumps({"type": "marker", "client_id": "m"}))
    replies = []
    while (reply := await ws.receive_json(timeout=5)).get("client_id") != "m":
        replies.append(reply)
    assert reply["type"] == "error" and reply["code"] == "bad_frame"
    if type(seq) is int and (0 if kind == "read" else 1) <= seq <= MAX_WHOLE:
        codes = [] if kind == "read" else ["not_found"]  # there is no message to change
    else:
        codes = ["bad_frame"]
    assert [r["code"] for r in replies if r["code"] != "rate_limited"] == codes, (seq, replies)
