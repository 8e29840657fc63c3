"""The batched access log loses no line and keeps them in order."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from agent_runtime.access_log import AccessLog

pytestmark = pytest.mark.asyncio


async def test_lines_arrive_after_the_flush_interval_in_order():
    stream = io.StringIO()
    log = AccessLog(stream, flush_seconds=0.01, max_lines=1000)
    for i in range(5):
        log.write({"request_id": str(i), "status": 200})
    assert stream.getvalue() == "", "batched, not written per request"
    await asyncio.sleep(0.05)
    assert [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()] == ["0", "1", "2", "3", "4"]


async def test_a_full_buffer_is_written_at_once_and_close_writes_the_rest():
    stream = io.StringIO()
    log = AccessLog(stream, flush_seconds=60, max_lines=3)
    for i in range(4):
        log.write({"n": i})
    assert len(stream.getvalue().splitlines()) == 3
    log.close()
    assert [json.loads(line)["n"] for line in stream.getvalue().splitlines()] == [0, 1, 2, 3]
