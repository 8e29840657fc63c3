"""The gateway's access log: one JSON line per request, written in batches.

Going through `logging` costs a LogRecord, a formatter call and a handler lock per request, a
quarter of the gateway's CPU at load (bench/runtime.py, with and without `--no-access-log`).
Here a request costs one `json.dumps` and a list append; lines reach the stream at most
`flush_seconds` later, or as soon as `max_lines` are waiting, and on `close()`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class AccessLog:
    """Buffered JSON-lines writer; use from the event loop thread."""

    def __init__(self, stream: TextIO | None = None, flush_seconds: float = 0.05, max_lines: int = 512) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._flush_seconds = flush_seconds
        self._max_lines = max_lines
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def write(self, entry: dict[str, Any]) -> None:
        self._lines.append(_encode(entry))
        if len(self._lines) >= self._max_lines:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_seconds, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()

    def close(self) -> None:
        self.flush()
