"""A message body in flight between two sockets, with backpressure on the side that produces it.

The parser side calls `feed()`; above `HIGH_WATER` buffered bytes the producing transport stops
reading until the consumer has taken the buffer below `LOW_WATER`. So a slow reader (a slow
client for a response, a slow agent for an upload) never makes the gateway buffer a whole body.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["Body", "BodyError", "HIGH_WATER", "LOW_WATER"]

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class BodyError(Exception):
    """The body could not be read whole: `who` is "client" or "upstream", `kind` says why."""

    def __init__(self, who: str, kind: str, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.who = who
        self.kind = kind

    @property
    def status(self) -> int:
        """The answer a client's body fault gets: 413 too large, 408 too slow, else 400."""
        return {"too_large": 413, "body_timeout": 408}.get(self.kind, 400)


class Body:
    """Chunks of one body, read in order by one consumer."""

    __slots__ = ("_chunks", "_buffered", "done", "error", "_waiter", "_transport", "_paused", "received")

    def __init__(self, transport: Any) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.done = False
        self.error: BodyError | None = None
        self._waiter: asyncio.Future | None = None
        self._transport = transport
        self._paused = False
        self.received = 0

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        n = len(data)
        self._buffered += n
        self.received += n
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, error: BodyError) -> None:
        if not self.done:
            self.error = error
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _resume(self) -> None:
        if self._paused and self._buffered < LOW_WATER:
            self._paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    async def read(self) -> bytes:
        """The next chunk, or b'' at the end; raises `BodyError` when the body was cut."""
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                self._resume()
                return data
            if self.error is not None:
                raise self.error
            if self.done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read_all(self) -> bytes:
        parts = []
        while True:
            data = await self.read()
            if not data:
                return b"".join(parts)
            parts.append(data)

    def take_buffered(self) -> bytes:
        """Everything buffered now (for a body already complete): no await, no copy for one chunk."""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._resume()
        return data
