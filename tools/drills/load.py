"""Constant, bounded, open-loop load through the gateway, every request recorded.

Open loop (requests start on a schedule, never waiting for earlier ones) so that a slow or
failing system is not hidden by a client that slows down with it: a stall shows up as requests in
flight, not as requests that were never sent. Short requests are idempotent GETs; streamed runs are
POSTs carrying a conversation id and end with an `event: done`; burns (POSTs keeping an agent's core
busy for a while) come only inside the workload's burn window, to make a load spike. Bounded in count, concurrency and
time, as every load loop here must be.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import time
from collections.abc import Callable

import aiohttp

from tools.drills.records import RequestKind, RequestRecord

POD_HEADER = "x-agent-pod"
CONVERSATION_HEADER = "x-conversation-id"


@dataclasses.dataclass(frozen=True)
class Workload:
    short_path: str = "/v1/chat/capabilities"
    stream_path: str = "/v1/plans/run"
    short_per_second: float = 20.0
    streams_per_second: float = 1.0
    stream_seconds: float = 3.0
    conversations: int = 8
    # A request still unanswered after this long is recorded as failed (status 0).
    timeout_seconds: float = 60.0
    max_in_flight: int = 200
    # A CPU spike: burns of `burn_seconds` each, at `burns_per_second`, started between the two
    # times of the window (seconds since the load started); none outside it.
    burn_path: str = "/v1/chat/burn"
    burns_per_second: float = 0.0
    burn_seconds: float = 1.0
    burn_window: tuple[float, float] = (0.0, 0.0)

    def stream_body(self) -> dict[str, float]:
        return {"duration_seconds": self.stream_seconds, "interval_seconds": 0.5}


class LoadRunner:
    """Runs a Workload against `base_url` until stopped or `max_seconds` pass."""

    def __init__(self, base_url: str, workload: Workload, *, max_seconds: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        self.workload = workload
        self.max_seconds = max_seconds
        self.clock = clock
        self.t0 = clock()
        self.records: list[RequestRecord] = []
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task] = set()
        self.dropped = 0  # requests not sent because max_in_flight were already waiting

    def now(self) -> float:
        return self.clock() - self.t0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> list[RequestRecord]:
        timeout = aiohttp.ClientTimeout(total=self.workload.timeout_seconds)
        # No pooling limit of the client's own: the gateway's behaviour is what is measured.
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(
                self._schedule(session, self.workload.short_per_second, self._short),
                self._schedule(session, self.workload.streams_per_second, self._stream),
                self._schedule(session, self.workload.burns_per_second, self._burn, *self.workload.burn_window),
            )
            if self._in_flight:
                await asyncio.wait(self._in_flight)
        return self.records

    async def _schedule(self, session: aiohttp.ClientSession, rate: float, send,
                        first: float = 0.0, last: float = math.inf) -> None:
        """Starts `send` at `rate` per second from `first` to `last` (seconds since the start)."""
        if rate <= 0 or last <= first:
            return
        interval = 1.0 / rate
        start = max(self.clock(), self.t0 + first)
        for n in itertools.count():
            due = start + n * interval
            if self._stop.is_set() or due - self.t0 > min(self.max_seconds, last):
                return
            delay = due - self.clock()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            if len(self._in_flight) >= self.workload.max_in_flight:
                self.dropped += 1
                continue
            task = asyncio.create_task(send(session, n))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _short(self, session: aiohttp.ClientSession, n: int) -> None:
        await self._answered(session, "short", "GET", self.workload.short_path)

    async def _burn(self, session: aiohttp.ClientSession, n: int) -> None:
        await self._answered(session, "burn", "POST", self.workload.burn_path, {"seconds": self.workload.burn_seconds})

    async def _answered(self, session: aiohttp.ClientSession, kind: RequestKind, method: str, path: str,
                        body: dict | None = None) -> None:
        """One request whose whole answer is read; recorded with its status and endpoint."""
        record = RequestRecord(kind=kind, start=self.now(), end=0.0, status=0, endpoint=None)
        try:
            async with session.request(method, self.base_url + path, json=body) as response:
                await response.read()
                record.status = response.status
                record.endpoint = response.headers.get(POD_HEADER)
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.end = self.now()
        self.records.append(record)

    async def _stream(self, session: aiohttp.ClientSession, n: int) -> None:
        conversation = f"conversation-{n % self.workload.conversations}"
        record = RequestRecord(kind="stream", start=self.now(), end=0.0, status=0, endpoint=None,
                               conversation=conversation, complete=False)
        try:
            async with session.post(self.base_url + self.workload.stream_path, json=self.workload.stream_body(),
                                    headers={CONVERSATION_HEADER: conversation}) as response:
                record.status = response.status
                record.endpoint = response.headers.get(POD_HEADER)
                body = await response.read()
                record.complete = response.status == 200 and b"event: done" in body
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.end = self.now()
        self.records.append(record)
