"""One timeout sweep for the whole process instead of a timer per request.

A timer per request costs a heap push and pop and a TimerHandle; at tens of thousands of requests
a second that is a visible share of the budget. Here every watched object carries a `deadline`
(monotonic seconds, `inf` when none) and an `expire()` method; one callback every `interval`
seconds expires what is due. Deadlines are therefore honoured to within `interval`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Sweeper", "Timed"]


class Timed(Protocol):
    deadline: float

    def expire(self) -> None: ...


class Sweeper:
    """Expires watched objects whose deadline has passed, checked every `interval` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval: float = 0.05) -> None:
        self.clock = clock
        self.interval = interval
        self._watched: set[Timed] = set()
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, obj: Timed) -> None:
        self._watched.add(obj)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.interval, self._sweep)

    def unwatch(self, obj: Timed) -> None:
        self._watched.discard(obj)

    def _sweep(self) -> None:
        now = self.clock()
        due = [o for o in self._watched if o.deadline <= now]
        for o in due:
            self._watched.discard(o)
            try:
                o.expire()
            except Exception:  # one broken watcher must not stop the sweep for the others
                pass
        self._handle = (
            asyncio.get_running_loop().call_later(self.interval, self._sweep) if self._watched else None
        )

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._watched.clear()


NEVER = math.inf
