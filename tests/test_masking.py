"""MaskedFrames, the guard before aiohttp's WebSocket reader, fed in every possible split."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import WSCloseCode

from chat.masking import MaskedFrames
from conftest import client_frame


class Reader:
    """Stands in for aiohttp's reader: keeps what it is fed."""

    def __init__(self) -> None:
        self.fed = b""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """Keep the data."""
        self.fed += data
        return False, b""


class Queue:
    """Stands in for the reader's queue: keeps the exception."""

    exc: Any = None

    def set_exception(self, exc: BaseException) -> None:
        """Keep the exception."""
        self.exc = exc


def binary(n: int, *, mask: bool = True) -> bytes:
    """A binary frame with an n-byte payload (7-, 16- or 64-bit length)."""
    return client_frame(0x2, os.urandom(n), mask=mask)


def feed(data: bytes, cuts: list[int]) -> tuple[Reader, Queue, bool]:
    """Feed data in the pieces the cuts make; return the reader, queue and the last eof."""
    reader, queue = Reader(), Queue()
    guard = MaskedFrames(reader, queue)
    eof = False
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        eof, _ = guard.feed_data(data[a:b])
    return reader, queue, eof


def test_masked_frames_pass_whole_in_any_split() -> None:
    data = binary(0) + binary(5) + binary(300) + binary(70000)
    for cut in range(1, 40):
        reader, queue, eof = feed(data, [cut, cut + 1, cut + 7])
        assert reader.fed == data and queue.exc is None and not eof, cut
    reader, queue, _ = feed(data, list(range(1, 400)))  # a byte at a time, the headers too
    assert reader.fed == data and queue.exc is None


def test_an_unmasked_frame_stops_the_stream_before_it() -> None:
    good = binary(3) + binary(200)
    data = good + binary(4, mask=False) + binary(3)
    for cuts in ([], [len(good) + 1], list(range(1, len(data)))):
        reader, queue, eof = feed(data, cuts)
        assert reader.fed == good, cuts
        assert queue.exc.code == WSCloseCode.PROTOCOL_ERROR and eof, cuts
