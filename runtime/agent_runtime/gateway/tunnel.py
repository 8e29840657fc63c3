"""WebSocket and any other `Upgrade`: after the agent's 101 the gateway relays bytes both ways.

The tunnel owns nothing but the relay: each side's protocol hands it the bytes it reads, and when
one side's socket buffer is full the other side stops being read (backpressure). It ends when
either side closes, or after `idle_seconds` without a byte in either direction.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from .timers import Sweeper

if TYPE_CHECKING:
    from .http1 import ServerConnection
    from .upstream import Connection

__all__ = ["Tunnel"]


class Tunnel:
    """A byte relay between one client connection and one agent connection."""

    def __init__(self, client: ServerConnection, upstream: Connection, idle_seconds: float, sweeper: Sweeper) -> None:
        self.client = client
        self.upstream = upstream
        self.idle = idle_seconds
        self.sweeper = sweeper
        self.deadline = math.inf
        self.bytes_up = 0
        self.bytes_down = 0
        self.reason = ""
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        self.deadline = self.sweeper.clock() + self.idle
        self.sweeper.watch(self)
        self.upstream.attach_tunnel(self)
        self.client.attach_tunnel(self)

    def from_client(self, data: bytes) -> None:
        t = self.upstream.transport
        if t is not None and not t.is_closing():
            self.bytes_up += len(data)
            t.write(data)
            self.deadline = self.sweeper.clock() + self.idle

    def from_upstream(self, data: bytes) -> None:
        t = self.client.transport
        if t is not None and not t.is_closing():
            self.bytes_down += len(data)
            t.write(data)
            self.deadline = self.sweeper.clock() + self.idle

    def client_full(self, full: bool) -> None:
        """The client's socket buffer is full (or drained again): stop (or resume) reading the agent."""
        t = self.upstream.transport
        if t is not None and not t.is_closing():
            t.pause_reading() if full else t.resume_reading()

    def upstream_full(self, full: bool) -> None:
        t = self.client.transport
        if t is not None and not t.is_closing():
            t.pause_reading() if full else t.resume_reading()

    def expire(self) -> None:
        self.close("idle")

    def close(self, reason: str) -> None:
        """End both sides; `close()` on a transport still sends what is buffered."""
        if self.done.done():
            return
        self.reason = reason
        self.sweeper.unwatch(self)
        for t in (self.client.transport, self.upstream.transport):
            if t is not None and not t.is_closing():
                t.close()
        self.done.set_result(reason)
