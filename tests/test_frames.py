"""Property tests: whatever a client sends, the decoder gives a valid frame or a typed error."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chat.frames import (
    CLIENT_ID_MAX,
    TEXT_MAX,
    ChangeMessage,
    FrameError,
    PostMessage,
    Read,
    Typing,
    parse_client_frame,
)
from storage.base import iso

CODES = {"bad_frame", "empty", "too_long"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

message_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "Message", "typing", "edit", "delete", "read", ""])
        | json_values,
        "text": st.text(max_size=2100) | json_values,
        "seq": st.integers(min_value=-3, max_value=2**60) | json_values,
        "client_id": st.text(max_size=70) | json_values,
        "extra": json_values,
    },
)


def check(raw: str) -> None:
    try:
        post = parse_client_frame(raw)
    except FrameError as exc:
        assert exc.code in CODES
        assert exc.message
        assert exc.client_id is None or (isinstance(exc.client_id, str) and exc.client_id)
        error: dict[str, Any] = json.loads(exc.to_frame())
        assert error["type"] == "error" and error["code"] == exc.code
        return
    frame = json.loads(raw)
    if isinstance(post, Typing):
        assert frame["type"] == "typing"
        return
    if isinstance(post, Read):
        assert frame["type"] == "read"
        assert type(post.seq) is int and 0 <= post.seq < 2**53
        return
    if isinstance(post, ChangeMessage):
        assert frame["type"] in ("edit", "delete")
        assert type(post.seq) is int and 1 <= post.seq < 2**53
        assert (post.text is None) == (frame["type"] == "delete")
        assert post.client_id is None or 1 <= len(post.client_id) <= CLIENT_ID_MAX
    else:
        assert isinstance(post, PostMessage) and frame["type"] == "message"
        assert 1 <= len(post.client_id) <= CLIENT_ID_MAX
    if post.text is not None:
        assert post.text == post.text.strip() and 1 <= len(post.text) <= TEXT_MAX


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_value(value: object) -> None:
    check(json.dumps(value))


@settings(max_examples=400, deadline=None)
@given(message_like)
def test_message_shaped_objects(frame: dict[str, object]) -> None:
    check(json.dumps(frame))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text(raw: str) -> None:
    check(raw)


def test_deeply_nested_json_is_a_bad_frame() -> None:
    check("[" * 100_000 + "]" * 100_000)


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-9.5))]),
    )
)
def test_times_are_utc_iso_with_milliseconds(t: dt.datetime) -> None:
    text = iso(t)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    back = dt.datetime.fromisoformat(text)
    assert back == t.replace(microsecond=t.microsecond // 1000 * 1000)
