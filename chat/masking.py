"""Refuse unmasked client frames (RFC 6455 5.1), which aiohttp's reader accepts."""

from __future__ import annotations

from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.http_websocket import WebSocketError
from aiohttp.web_request import BaseRequest

UNMASKED = "unmasked client frame"


class MaskedFrames:
    """Sit before aiohttp's WebSocket reader and pass it only masked frames.

    It reads each frame's header (at most 10 bytes) to find the mask bit and where the next
    frame starts, and skips the payload without copying it. The first byte of a header is
    held back until the second arrives; an unmasked frame never reaches the reader: the queue gets
    a protocol error instead, and the socket is closed with 1002 as for any other.
    """

    __slots__ = ("_reader", "_queue", "_head", "_skip", "_held", "_broken")

    def __init__(self, reader: Any, queue: Any) -> None:
        self._reader = reader
        self._queue = queue
        self._head = bytearray()  # the header read so far of the frame that starts next
        self._skip = 0  # bytes of the current frame (mask key and payload) still to pass
        self._held = b""  # a header's first byte, kept until the second shows the mask bit
        self._broken = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """Pass the bytes up to any unmasked frame on to the reader; the reader's answer."""
        if self._broken:
            return True, b""
        held, self._held = self._held, b""
        head, pos, end = self._head, 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            head.append(data[pos])
            pos += 1
            if len(head) < 2:
                continue
            if len(head) == 2 and not head[1] & 0x80:
                start = pos - 2  # where the unmasked frame began; -1: in the held byte
                return self._refuse(held + data[:start] if start >= 0 else b"")
            flag = head[1] & 0x7F
            need = 4 if flag == 126 else 10 if flag == 127 else 2
            if len(head) == need:
                self._skip = 4 + (flag if need == 2 else int.from_bytes(head[2:need], "big"))
                head.clear()
        if len(head) == 1:  # the data ends with a header's first byte: hold it back
            self._held = data[-1:]
            data = data[:-1]
        return self._forward(held + data if held else data)

    def feed_eof(self) -> None:
        """Pass the end of the stream on."""
        self._reader.feed_eof()

    def _forward(self, data: bytes) -> tuple[bool, bytes]:
        if not data:
            return False, b""
        result: tuple[bool, bytes] = self._reader.feed_data(data)
        return result

    def _refuse(self, before: bytes) -> tuple[bool, bytes]:
        eof, tail = self._forward(before)
        if eof:
            return eof, tail
        self._broken = True
        self._queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, UNMASKED))
        return True, b""


class MaskedWebSocketResponse(web.WebSocketResponse):
    """A server WebSocket whose client frames must be masked, else it closes with 1002.

    aiohttp 3.14 has no switch for it, so this wraps the reader it installs on the
    connection (private attributes, checked by tests/test_bad_input.py). The bytes that came
    before the reader was installed go through the check too.
    """

    def _post_start(self, request: BaseRequest, protocol: str | None, writer: Any) -> None:
        handler: Any = request.protocol
        early, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        guard = MaskedFrames(handler._payload_parser, self._reader)
        handler._payload_parser = guard
        if early and guard.feed_data(early)[0]:
            handler.close()
