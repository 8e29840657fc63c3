"""Hostile and faulty clients: none of them may take a route down or be charged to an agent."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest

from agent_runtime import metrics
from agent_runtime.breaker import State

from .conftest import RawClient, route

pytestmark = pytest.mark.asyncio


def config(*routes: dict, **gateway: object) -> dict:
    return {"gateway": {"host": "127.0.0.1", "port": 8080, **gateway}, "routes": list(routes)}


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_fifty_client_faults_open_no_breaker_and_eject_nothing(agents, make_gateway):
    a, b = agents[:2]
    a.delay = b.delay = 0.15
    strict = dict(
        breaker={"minimum_number_of_calls": 5, "sliding_window_size": 10, "failure_rate_threshold": 50},
        outlier={"consecutive_5xx": 3, "consecutive_gateway_failure": 3, "max_ejection_percent": 100},
        retry={"max_attempts": 1},
    )
    gw = await make_gateway(config(route("victim", "/", [a, b], caps={"a": ("chat",), "b": ("chat",)}, **strict)))
    port = gw.gateway.port
    faults = 0
    for i in range(10):
        # An upload that breaks off: small (buffered) and big (streamed).
        for length, sent in ((1000, 10), (10_000_000, 200_000)):
            c = await RawClient.open(port)
            await c.send(f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode() + b"u" * sent)
            await asyncio.sleep(0.02)
            c.writer.transport.abort()
            faults += 1
        # A client deadline shorter than the agent's work.
        async with gw.get(f"/d{i}", headers={"x-request-deadline-ms": "30"}) as r:
            assert r.status == 504
        # A malformed target, an unknown capability.
        c = await RawClient.open(port)
        await c.send(b"GET /a/%2F../secret HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await c.response()).status == 400
        async with gw.get("/x", headers={"x-agent-capabilities": "quantum"}) as r:
            assert 400 <= r.status < 500
        faults += 3
    assert faults == 50
    await asyncio.sleep(0.3)  # let aborted tries finish on the agents
    rs = gw.gateway.routes["victim"]
    assert all(br.state is State.CLOSED for br in rs.breakers.values())
    assert not any(e.ejected for e in rs.balancer.endpoints.values())
    async with gw.get("/ordinary") as r:
        assert r.status == 200
    # An unknown capability is the client's 4xx, never the 5xx the SLO signals count.
    for code in ("500", "502", "503"):
        assert sample("agent_gateway_requests_total", {"route": "victim", "endpoint": "-", "code": code}) == 0


async def test_slowloris_heads_are_cut_at_the_header_timeout(agents, make_gateway):
    gw = await make_gateway(config(route("slow", "/", agents[:1]), client_header_timeout_seconds=0.3))
    clients = [await RawClient.open(gw.gateway.port) for _ in range(20)]
    for c in clients:
        await c.send(b"GET /x HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    t0 = time.monotonic()
    results = await asyncio.gather(*(c.closed(timeout=2) for c in clients))
    assert all(results) and time.monotonic() - t0 < 1.0
    async with gw.get("/ok") as r:
        assert r.status == 200


async def test_trickling_bodies_never_hold_every_slot(agents, make_gateway):
    gw = await make_gateway(
        config(route("trickle", "/", agents[:1]), max_in_flight=5, client_body_timeout_seconds=0.3,
               client_body_min_bytes_per_second=1000)
    )
    clients = [await RawClient.open(gw.gateway.port) for _ in range(50)]
    for c in clients:
        await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc")

    async def trickle(c: RawClient) -> None:
        try:
            for _ in range(30):
                await asyncio.sleep(0.1)
                await c.send(b"z")
        except (ConnectionError, RuntimeError):
            pass

    tasks = [asyncio.create_task(trickle(c)) for c in clients]
    await asyncio.sleep(0.1)
    # While 50 clients trickle, ordinary requests are served, not shed.
    for i in range(5):
        async with gw.get(f"/while{i}") as r:
            assert r.status == 200
    # And the trickling ones are cut with 408 within the body timeout (plus the sweep interval).
    statuses = [(await c.response(timeout=2)).status for c in clients]
    assert set(statuses) == {408}
    for t in tasks:
        t.cancel()


async def test_paths_are_normalised_before_matching(agents, make_gateway):
    a, b = agents[:2]
    gw = await make_gateway(config(route("chat", "/v1/chat", [a]), route("rest", "/", [b])))
    port = gw.gateway.port
    for target, agent, forwarded in (
        ("/v1/chat/../../internal/secret", "b", "/internal/secret"),
        ("/v1/chat/%2e%2e/%2E%2E/internal", "b", "/internal"),
        ("/v1//chat///x", "a", "/v1/chat/x"),
        ("/v1/chat/./y/../z?q=1", "a", "/v1/chat/z?q=1"),
    ):
        c = await RawClient.open(port)
        await c.send(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        r = await c.response()
        body = json.loads(r.body)
        assert (body["agent"], body["path"]) == (agent, forwarded), target
        c.close()
    for target in ("/v1/chat/..%2F..%2Finternal", "/v1/chat/%5c..%5cx", "/v1/chat\\..\\x"):
        c = await RawClient.open(port)
        await c.send(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (await c.response()).status == 400, target
        c.close()


async def test_headers_named_by_connection_are_dropped_both_ways(make_gateway):
    seen: dict[str, str] = {}

    async def agent(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        for line in head.split("\r\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                seen[k.strip().lower()] = v.strip()
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: x-internal-token\r\nX-Internal-Token: t0ps3cret\r\n"
                     b"Server: agent/1.2.3\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(agent, "127.0.0.1", 0)
    r = route("hop", "/", [])
    r["discovery"] = {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": srv.sockets[0].getsockname()[1]}]}
    gw = await make_gateway(config(r))
    c = await RawClient.open(gw.gateway.port)
    await c.send(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-client-secret\r\nX-Client-Secret: s\r\n"
                 b"Keep-Alive: timeout=5\r\nUpgrade-Insecure-Requests: 1\r\n\r\n")
    resp = await c.response()
    assert resp.status == 200 and resp.body == b"ok"
    assert resp.header("x-internal-token") is None and resp.header("server") is None
    assert "x-client-secret" not in seen and "keep-alive" not in seen and "connection" not in seen
    assert seen["upgrade-insecure-requests"] == "1"  # an ordinary header that merely looks alike
    srv.close()


async def test_malformed_requests_are_one_log_line_each(agents, make_gateway, caplog):
    gw = await make_gateway(config(route("m", "/", agents[:1])))
    caplog.set_level(logging.INFO, logger="agent_runtime.gateway")
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"GET / HTTP/1.1\r\nHost x\r\n\r\n"):
        c = await RawClient.open(gw.gateway.port)
        await c.send(junk)
        assert (await c.response()).status == 400
    lines = [r for r in caplog.records if r.name == "agent_runtime.gateway" and "refused" in r.getMessage()]
    assert len(lines) == 2 and not any(r.exc_info for r in caplog.records)


async def test_removed_endpoints_leave_metrics(agents, make_gateway):
    a, b = agents[:2]
    a.mode = "fail"
    records = {"svc": ["127.0.0.1", "127.0.0.2"]}

    async def resolver(host: str, port: int) -> list[str]:
        return records[host]

    r = route("gone", "/", [a], retry={"max_attempts": 1},
              breaker={"minimum_number_of_calls": 2, "sliding_window_size": 2})
    r["discovery"] = {"kind": "dns", "service": "svc", "port": a.port, "refresh_seconds": 0.05}
    gw = await make_gateway(config(r), resolver=resolver)
    key = f"127.0.0.1:{a.port}"
    for _ in range(4):
        async with gw.get("/x") as resp:
            await resp.read()
    assert sample("agent_breaker_state", {"route": "gone", "endpoint": key}) == 1  # open
    records["svc"] = ["127.0.0.2"]
    await asyncio.sleep(0.2)
    async with gw.admin("/metrics") as resp:
        text = await resp.text()
    assert key not in text


async def test_a_dns_name_that_raises_unicode_error_never_stops_the_watcher(agents, make_gateway, caplog):
    a = agents[0]
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        if host.startswith("odd"):
            raise UnicodeError("encoding with 'idna' codec failed")
        return ["127.0.0.1"]

    r = route("uni", "/", [a])
    r["discovery"] = {"kind": "dns", "service": "good", "port": a.port, "refresh_seconds": 0.05}
    cfg = config(r)
    gw = await make_gateway(cfg, resolver=resolver, reload_interval=0.05)
    caplog.set_level(logging.ERROR, logger="agent_runtime.gateway")
    # A label over 63 characters: refused by the config itself, once, naming the key.
    cfg["routes"][0]["discovery"]["service"] = "bad" + "x" * 70 + ".svc"
    gw.path.write_text(json.dumps(cfg))
    await asyncio.sleep(0.3)
    errors = [x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR]
    assert len(errors) == 1 and "routes[0].discovery.service" in errors[0]
    async with gw.get("/still") as resp:
        assert resp.status == 200  # the old config keeps serving
    # A name the config accepts but the resolver raises on: the watcher lives, the route keeps
    # the endpoints it had.
    cfg["routes"][0]["timeout_seconds"] = 4.0
    cfg["routes"][0]["discovery"]["service"] = "good"
    gw.path.write_text(json.dumps(cfg))
    await asyncio.sleep(0.3)
    rs = gw.gateway.routes["uni"]
    assert rs.route.timeout_seconds == 4.0  # a later good config is still picked up
    cfg["routes"][0]["discovery"]["service"] = "odd"
    cfg["routes"][0]["discovery"]["refresh_seconds"] = 0.05
    gw.path.write_text(json.dumps(cfg))
    await asyncio.sleep(0.3)
    assert "odd" in lookups
    errors = [x.getMessage() for x in caplog.records if x.levelno >= logging.ERROR]
    assert len(errors) == 2 and "routes.uni.discovery.service" in errors[1]
    assert gw.gateway.routes["uni"].route.discovery.service == "good"  # the old config serves
    async with gw.get("/after") as resp:
        assert resp.status == 200
    cfg["routes"][0]["discovery"]["service"] = "good"
    cfg["routes"][0]["timeout_seconds"] = 3.0
    gw.path.write_text(json.dumps(cfg))
    await asyncio.sleep(0.3)
    assert gw.gateway.routes["uni"].route.timeout_seconds == 3.0  # still watching
    async with gw.get("/back") as resp:
        assert resp.status == 200


async def test_long_agent_runs_are_bounded_by_the_route_deadline_and_stream_idle_time(agents, make_gateway):
    a, b = agents[:2]
    a.delay = 0.7
    gw = await make_gateway(config(
        route("long", "/long", [a], deadline_seconds=2.0, timeout_seconds=2.0),
        route("stream", "/", [b], deadline_seconds=0.4, timeout_seconds=0.4, stream_idle_timeout_seconds=0.5),
        default_deadline_seconds=0.3,
    ))
    # The route's own deadline, not the gateway's global default, bounds a long run.
    async with gw.get("/long/run") as r:
        assert r.status == 200
    # A stream that lasts 1.2 s, far past the 0.4 s deadline, arrives whole: it never idles 0.5 s.
    async with gw.get("/stream?chunks=6&pause=0.2&size=1000") as r:
        assert r.status == 200 and len(await r.read()) == 6000
    # One that pauses longer than the idle timeout is cut, and counted as the error it is.
    cut = {"route": "stream", "endpoint": f"127.0.0.1:{b.port}", "code": "502"}
    before = sample("agent_gateway_requests_total", cut)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with gw.get("/stream?chunks=3&pause=0.9&size=1000") as r:
            await r.read()
    await asyncio.sleep(0.05)
    after = sample(
        "agent_gateway_requests_total", {"route": "stream", "endpoint": f"127.0.0.1:{b.port}", "code": "502"}
    )
    assert after == before + 1


async def test_a_stream_the_agent_cuts_counts_as_an_error_not_a_200(make_gateway):
    async def agent(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        writer.transport.abort()

    srv = await asyncio.start_server(agent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r = route("cut", "/", [])
    r["discovery"] = {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": port}]}
    gw = await make_gateway(config(r))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with gw.get("/x") as resp:
            assert resp.status == 200
            await resp.read()
    await asyncio.sleep(0.05)
    labels = {"route": "cut", "endpoint": f"127.0.0.1:{port}"}
    assert sample("agent_gateway_requests_total", {**labels, "code": "502"}) == 1
    assert sample("agent_gateway_requests_total", {**labels, "code": "200"}) == 0
    srv.close()
