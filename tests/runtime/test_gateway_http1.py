"""HTTP/1.1 through the gateway, byte for byte: a raw client on one side, real agents on the other."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from .conftest import RawClient, route

pytestmark = pytest.mark.asyncio


def config(*routes: dict, **gateway: object) -> dict:
    return {"gateway": {"host": "127.0.0.1", "port": 8080, **gateway}, "routes": list(routes)}


async def raw(gw) -> RawClient:
    return await RawClient.open(gw.gateway.port)


async def test_keep_alive_then_connection_close(agents, make_gateway):
    gw = await make_gateway(config(route("ka", "/", agents[:1])))
    c = await raw(gw)
    for i in range(3):
        await c.send(f"GET /k{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        r = await c.response()
        assert r.status == 200 and json.loads(r.body)["path"] == f"/k{i}"
        assert r.header("connection") is None
    await c.send(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    r = await c.response()
    assert r.status == 200 and r.header("connection") == "close"
    assert await c.closed()


async def test_pipelined_requests_are_answered_in_order(agents, make_gateway):
    a = agents[0]
    a.delay = 0.02
    gw = await make_gateway(config(route("pipe", "/", [a])))
    c = await raw(gw)
    await c.send(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5)))
    seen = b""
    async with asyncio.timeout(5):
        while seen.count(b"HTTP/1.1 200") < 5 or not seen.endswith(b"}"):
            seen += await c.reader.read(65536)
    paths = [json.loads(part.split(b"\r\n\r\n", 1)[1])["path"] for part in seen.split(b"HTTP/1.1 ")[1:]]
    assert paths == [f"/p{i}" for i in range(5)]
    c.close()


async def test_chunked_request_body_is_relayed_whole(agents, make_gateway):
    a = agents[0]
    gw = await make_gateway(config(route("chunk", "/", [a])))
    c = await raw(gw)
    await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    await c.send(b"5\r\nhello\r\n")
    await asyncio.sleep(0.05)
    await c.send(b"6\r\n world\r\n0\r\n\r\n")
    r = await c.response()
    assert r.status == 200 and json.loads(r.body)["size"] == 11
    c.close()


async def test_streamed_response_without_length_is_chunked_to_the_client(agents, make_gateway):
    gw = await make_gateway(config(route("rechunk", "/", agents[:1])))
    c = await raw(gw)
    await c.send(b"GET /stream?chunks=3&pause=0.01&size=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
    r = await c.response()
    assert r.status == 200 and r.chunked and r.body == b"A" * 1000 + b"B" * 1000 + b"C" * 1000
    # HTTP/1.0 has no chunked coding: the body ends with the connection instead.
    c10 = await raw(gw)
    await c10.send(b"GET /stream?chunks=2&pause=0.01&size=10 HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    async with asyncio.timeout(5):
        while chunk := await c10.reader.read(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head.lower() and body == b"A" * 10 + b"B" * 10


async def test_expect_100_continue_is_answered_before_the_body(agents, make_gateway):
    gw = await make_gateway(config(route("cont", "/", agents[:1])))
    c = await raw(gw)
    await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = await c.response(head_request=True)
    assert interim.status == 100
    await c.send(b"ping")
    r = await c.response()
    assert r.status == 200 and json.loads(r.body)["size"] == 4
    c.close()


async def test_head_gets_headers_and_length_but_no_body(agents, make_gateway):
    gw = await make_gateway(config(route("head", "/", agents[:1])))
    c = await raw(gw)
    await c.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
    r = await c.response(head_request=True)
    assert r.status == 200 and int(r.header("content-length") or 0) > 0 and r.body == b""
    # The connection is still in step: the next request gets its own answer.
    await c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    r = await c.response()
    assert json.loads(r.body)["path"] == "/after"
    c.close()


async def test_absolute_form_target_is_routed_by_its_path(agents, make_gateway):
    a, b = agents[:2]
    gw = await make_gateway(config(route("abs", "/v1", [a]), route("rest", "/", [b])))
    c = await raw(gw)
    await c.send(b"GET http://elsewhere.example/v1/x?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n")
    r = await c.response()
    assert r.status == 200 and json.loads(r.body) == {"agent": "a", "path": "/v1/x?q=1", "method": "GET"}
    c.close()


@pytest.mark.parametrize(
    "head",
    [
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET /x HTTP/9.9\r\nHost: x\r\n\r\n",
    ],
    ids=["cl-and-te", "two-lengths", "te-not-chunked-last", "space-in-name", "bad-version"],
)
async def test_ambiguous_framing_is_refused_with_400_and_never_forwarded(agents, make_gateway, head):
    a = agents[0]
    gw = await make_gateway(config(route("smuggle", "/", [a])))
    c = await raw(gw)
    await c.send(head)
    r = await c.response()
    assert r.status == 400
    assert await c.closed()
    assert a.hits == 0


async def test_header_and_body_limits_answer_431_and_413(agents, make_gateway):
    a = agents[0]
    gw = await make_gateway(config(route("limits", "/", [a]), max_header_bytes=2048, max_body_bytes=1000))
    c = await raw(gw)
    await c.send(b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
    assert (await c.response()).status == 431
    c = await raw(gw)
    await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert (await c.response()).status == 413
    assert a.hits == 0
    # A chunked body streams as it comes: past the limit it is cut, and the agent never sees it whole.
    c = await raw(gw)
    await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    await c.send(b"400\r\n" + b"z" * 1024 + b"\r\n")
    assert (await c.response()).status == 413
    assert a.bodies == []


async def test_interim_1xx_from_the_agent_does_not_end_the_exchange(make_gateway):
    async def agent(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(agent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r = route("hints", "/", [])
    r["discovery"] = {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": port}]}
    gw = await make_gateway(config(r))
    c = await raw(gw)
    await c.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = await c.response()
    assert resp.status == 200 and resp.body == b"final"
    srv.close()


async def test_a_slow_client_never_makes_the_gateway_buffer_the_whole_response(make_gateway):
    """Backpressure: the agent streams 64 MiB; a client that does not read stops the agent too."""
    sent = 0
    stalled = asyncio.Event()

    async def big(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse()
        await resp.prepare(request)
        block = b"x" * 65536
        try:
            for _ in range(1024):
                await asyncio.wait_for(resp.write(block), 1.0)
                sent += len(block)
        except (TimeoutError, ConnectionResetError):
            stalled.set()
        return resp

    app = web.Application()
    app.router.add_get("/big", big)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    r = route("bp", "/", [])
    r["discovery"] = {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": port}]}
    gw = await make_gateway(config(r))
    c = await raw(gw)
    await c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(1.5)  # the client reads nothing
    # Socket buffers on both sides hold a few MiB at most; the gateway holds ~256 KiB.
    assert sent < 16 * 1024 * 1024, sent
    c.close()
    await runner.cleanup()


async def test_a_slow_agent_makes_the_gateway_stop_reading_a_big_upload(make_gateway):
    """Backpressure the other way: an agent that does not read its body stops the client's upload."""
    received = asyncio.Event()

    async def agent(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        received.set()
        await asyncio.sleep(3)  # never reads the body
        writer.close()

    srv = await asyncio.start_server(agent, "127.0.0.1", 0, limit=65536)
    port = srv.sockets[0].getsockname()[1]
    r = route("bpup", "/", [], timeout_seconds=10)
    r["discovery"] = {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": port}]}
    gw = await make_gateway(config(r))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.gateway.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n")
    block = b"u" * 65536
    pushed = 0
    try:
        async with asyncio.timeout(1.5):
            while pushed < 64 * 1024 * 1024:
                writer.write(block)
                await writer.drain()
                pushed += len(block)
    except TimeoutError:
        pass
    assert received.is_set()
    assert pushed < 24 * 1024 * 1024, pushed
    writer.close()
    srv.close()


async def test_concurrent_clients_over_pooled_connections_each_get_their_own_answer(agents, make_gateway):
    """A pooled connection is reused only once its previous caller is done with it."""
    gw = await make_gateway(config(route("conc", "/", agents[:2])))

    async def client(n: int) -> list[bool]:
        c = await raw(gw)
        ok = []
        for i in range(30):
            await c.send(f"GET /c{n}-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            r = await c.response(timeout=5)
            ok.append(r.status == 200 and json.loads(r.body)["path"] == f"/c{n}-{i}")
        c.close()
        return ok

    results = await asyncio.gather(*(client(n) for n in range(16)))
    assert all(all(r) for r in results)
    assert gw.gateway.pool.opened <= 2 * 16  # connections are reused, not one per request
