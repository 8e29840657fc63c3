"""WebSocket (and any Upgrade) through the gateway: a byte tunnel after the agent's 101."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web

from agent_runtime import metrics

from .conftest import route

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def ws_agent():
    """An agent with /ws (echo; "bye" makes the agent close) and /plain (refuses to upgrade)."""
    state = {"closed_by_client": 0}

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "bye":
                    await sock.close(code=4000, message=b"agent done")
                    break
                await sock.send_str("echo:" + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
        if sock.close_code == 1000:
            state["closed_by_client"] += 1
        return sock

    async def plain(request: web.Request) -> web.Response:
        return web.Response(status=400, text="no upgrade here")

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_get("/plain", plain)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


def ws_config(port: int, **overrides) -> dict:
    r = route("ws", "/", [], **overrides)
    r["discovery"] = {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": port}]}
    return {"gateway": {"host": "127.0.0.1", "port": 8080}, "routes": [r]}


async def test_websocket_messages_flow_both_ways_and_the_client_closes_cleanly(ws_agent, make_gateway):
    gw = await make_gateway(ws_config(ws_agent["port"]))
    before = metrics.REGISTRY.get_sample_value("agent_gateway_tunnels_total", {"route": "ws"}) or 0
    async with gw.session.ws_connect(gw.url + "/ws") as sock:
        for i in range(20):
            await sock.send_str(f"m{i}")
            assert (await sock.receive(timeout=2)).data == f"echo:m{i}"
        await sock.send_bytes(b"\x00\x01big" * 10000)
        assert (await sock.receive(timeout=2)).data == (b"\x00\x01big" * 10000)[::-1]
        assert metrics.REGISTRY.get_sample_value("agent_gateway_tunnels_open", {"route": "ws"}) == 1
    await asyncio.sleep(0.1)
    assert ws_agent["closed_by_client"] == 1  # the close frame went through
    assert metrics.REGISTRY.get_sample_value("agent_gateway_tunnels_total", {"route": "ws"}) == before + 1
    assert metrics.REGISTRY.get_sample_value("agent_gateway_tunnels_open", {"route": "ws"}) == 0


async def test_the_agent_closing_reaches_the_client(ws_agent, make_gateway):
    gw = await make_gateway(ws_config(ws_agent["port"]))
    async with gw.session.ws_connect(gw.url + "/ws") as sock:
        await sock.send_str("bye")
        msg = await sock.receive(timeout=2)
        assert msg.type == WSMsgType.CLOSE and msg.data == 4000


async def test_an_idle_tunnel_is_closed_after_the_stream_idle_timeout(ws_agent, make_gateway):
    gw = await make_gateway(ws_config(ws_agent["port"], stream_idle_timeout_seconds=0.3))
    async with gw.session.ws_connect(gw.url + "/ws", autoping=False, heartbeat=None) as sock:
        await sock.send_str("hi")
        assert (await sock.receive(timeout=2)).data == "echo:hi"
        t0 = time.monotonic()
        msg = await sock.receive(timeout=3)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
        assert 0.25 <= time.monotonic() - t0 < 1.0


async def test_an_agent_that_refuses_the_upgrade_answers_as_itself(ws_agent, make_gateway):
    gw = await make_gateway(ws_config(ws_agent["port"]))
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await gw.session.ws_connect(gw.url + "/plain")
    assert caught.value.status == 400
