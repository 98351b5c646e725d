"""The WebSocket frames of docs/PROTOCOL.md: decoding client frames, encoding server ones."""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

from chat.emoji import normalize_reaction, reaction_problem
from common.numbers import MAX_WHOLE
from storage.base import Message

TEXT_MAX = 2000
CLIENT_ID_MAX = 64


class FrameError(Exception):
    """A client frame was refused; becomes an `error` frame, the socket stays open."""

    def __init__(
        self, code: str, message: str, client_id: str | None = None, seq: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id
        self.seq = seq

    def to_frame(self) -> str:
        """Encode as the protocol's `error` frame."""
        return error_frame(self.code, self.message, self.client_id, seq=self.seq)


@dataclasses.dataclass(frozen=True)
class PostMessage:
    """A client's `message` frame, validated; text is trimmed."""

    text: str
    client_id: str
    reply_to: int | None = None  # the seq of the message it answers


@dataclasses.dataclass(frozen=True)
class ChangeMessage:
    """A client's `edit` (new trimmed text) or `delete` (text None) of its own message."""

    seq: int
    text: str | None
    client_id: str | None


@dataclasses.dataclass(frozen=True)
class Typing:
    """A client's `typing` frame: its person is writing a message."""


@dataclasses.dataclass(frozen=True)
class Read:
    """A client's `read` frame: its person has seen the room up to seq."""

    seq: int


@dataclasses.dataclass(frozen=True)
class React:
    """A client's `react` frame: toggle its person's reaction `emoji` on message `seq`."""

    seq: int
    emoji: str
    client_id: str | None


ClientFrame = PostMessage | ChangeMessage | Typing | Read | React
TYPES = ("message", "edit", "delete", "typing", "read", "react")


def _text(frame: dict[str, Any], client_id: str | None) -> str:
    text = frame.get("text")
    if not isinstance(text, str):
        raise FrameError("bad_frame", "text must be a string.", client_id)
    text = text.strip()
    if not text:
        raise FrameError("empty", "The message is empty.", client_id)
    if len(text) > TEXT_MAX:
        raise FrameError("too_long", f"Messages are at most {TEXT_MAX} characters.", client_id)
    return text


def _seq(frame: dict[str, Any], low: int, client_id: str | None, name: str = "seq") -> int:
    seq = frame.get(name)
    # bool is an int in Python, but `true` is not a seq.
    if not isinstance(seq, int) or isinstance(seq, bool) or not low <= seq <= MAX_WHOLE:
        raise FrameError(
            "bad_frame", f"{name} must be a whole number from {low} to {MAX_WHOLE}.", client_id
        )
    return seq


def _emoji(frame: dict[str, Any], client_id: str | None, seq: int) -> str:
    emoji = frame.get("emoji")
    if not isinstance(emoji, str):
        raise FrameError("bad_frame", "emoji must be a string.", client_id, seq)
    emoji = normalize_reaction(emoji)
    problem = reaction_problem(emoji)
    if problem is not None:
        raise FrameError("bad_emoji", problem, client_id, seq)
    return emoji


def parse_client_frame(data: str) -> ClientFrame:
    """Decode one text frame from a client, or raise FrameError with the protocol's code."""
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):
        raise FrameError("bad_frame", "Frames must be JSON objects.") from None
    if not isinstance(frame, dict):
        raise FrameError("bad_frame", "Frames must be JSON objects.")
    client_id = frame.get("client_id")
    valid_id = (
        client_id
        if isinstance(client_id, str) and client_id and len(client_id) <= CLIENT_ID_MAX
        else None
    )
    kind = frame.get("type")
    if kind not in TYPES:
        raise FrameError("bad_frame", "Unknown frame type.", valid_id)
    if kind == "typing":
        return Typing()
    if kind == "read":
        return Read(_seq(frame, 0, None))
    if valid_id is None and (client_id is not None or kind == "message"):
        raise FrameError(
            "bad_frame", f"client_id must be a string of 1 to {CLIENT_ID_MAX} characters."
        )
    if kind == "message":
        assert valid_id is not None
        reply_to = None
        if frame.get("reply_to") is not None:
            reply_to = _seq(frame, 1, valid_id, "reply_to")
        return PostMessage(_text(frame, valid_id), valid_id, reply_to)
    seq = _seq(frame, 1, valid_id)
    if kind == "react":
        return React(seq, _emoji(frame, valid_id, seq), valid_id)
    return ChangeMessage(seq, _text(frame, valid_id) if kind == "edit" else None, valid_id)


# Made once: json.dumps with options builds a new encoder for every frame.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(frame: dict[str, Any]) -> str:
    """Encode a server frame."""
    return _ENCODER.encode(frame)


def message_frame(message: Message, kind: str = "message") -> str:
    """Encode a stored message as a `message` frame, or as a `change` frame (an edit, a delete)."""
    return encode(message.to_json(kind))


def error_frame(
    code: str,
    message: str,
    client_id: str | None = None,
    retry_after: float | None = None,
    seq: int | None = None,
) -> str:
    """Encode an `error` frame; `seq` names the message an edit, delete or reaction was for."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_id is not None:
        frame["client_id"] = client_id
    if retry_after is not None:
        frame["retry_after"] = retry_after
    if seq is not None:
        frame["seq"] = seq
    return encode(frame)


def hello_frame(user: str, room: str, online: list[str], last_seq: int, last_rev: int) -> str:
    """Encode the `hello` frame."""
    return encode(
        {
            "type": "hello",
            "user": user,
            "room": room,
            "online": online,
            "last_seq": last_seq,
            "last_rev": last_rev,
        }
    )


def typing_frame(room: str, user: str) -> str:
    """Encode a `typing` frame."""
    return encode({"type": "typing", "room": room, "user": user})


def activity_frame(room: str, seq: int, user: str, mention: bool) -> str:
    """Encode an `activity` frame: a new message in another room the person belongs to."""
    return encode({"type": "activity", "room": room, "seq": seq, "user": user, "mention": mention})


def read_frame(room: str, seq: int) -> str:
    """Encode a server `read` frame: the person read the room up to seq on another socket."""
    return encode({"type": "read", "room": room, "seq": seq})


def presence_frame(event: str, user: str, online: list[str]) -> str:
    """Encode a `presence` frame."""
    return encode({"type": "presence", "event": event, "user": user, "online": online})


def reset_frame(last_seq: int) -> str:
    """Encode a `reset` frame."""
    return encode({"type": "reset", "last_seq": last_seq})


def ws_pong_frame(payload: bytes) -> bytes:
    """Encode the answer to a client's ping (its payload is at most 125 bytes, RFC 6455 5.5)."""
    return bytes((0x8A, len(payload))) + payload


def ws_text_frame(payload: str) -> bytes:
    """Encode a server-to-client WebSocket text frame (final, unmasked, uncompressed)."""
    data = payload.encode()
    n = len(data)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + data
