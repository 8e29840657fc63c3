"""The gateway end to end: real agent servers on 127.0.0.1 with injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import time

import pytest

from agent_runtime import metrics
from agent_runtime.access_log import AccessLog
from agent_runtime.breaker import State

from .conftest import route

pytestmark = pytest.mark.asyncio


def config(*routes: dict, **gateway: object) -> dict:
    return {"gateway": {"host": "127.0.0.1", "port": 8080, **gateway}, "routes": list(routes)}


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def get_json(gw, path: str, **kw) -> tuple[int, dict | str]:
    async with gw.get(path, **kw) as r:
        body = await r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body.decode()


async def test_proxies_and_propagates_trace_deadline_and_ids(agents, make_gateway):
    a = agents[0]
    stream = io.StringIO()
    gw = await make_gateway(config(route("basic", "/agents/", [a]), default_deadline_seconds=20),
                            access_log=AccessLog(stream))
    status, body = await get_json(gw, "/agents/x?q=1", headers={"x-conversation-id": "conv-42"})
    assert status == 200 and body == {"agent": "a", "path": "/agents/x?q=1", "method": "GET"}
    h = a.last_headers
    version, trace_id, span, flags = h["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and len(span) == 16 and flags == "01"
    assert 19_000 < int(h["x-request-deadline-ms"]) <= 20_000
    assert h["x-request-id"] and h["x-conversation-id"] == "conv-42"
    # A caller's trace is continued, with the gateway as the parent span.
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await get_json(gw, "/agents/y", headers={"traceparent": incoming, "x-request-deadline-ms": "1500"})
    assert a.last_headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert not a.last_headers["traceparent"].endswith("00f067aa0ba902b7-01")
    assert int(a.last_headers["x-request-deadline-ms"]) <= 1500
    gw.gateway.access_log.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["conversation_id"] == "conv-42" and lines[0]["status"] == 200 and lines[0]["route"] == "basic"
    assert lines[1]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert all(line["request_id"] for line in lines)


async def test_longest_prefix_wins_and_unknown_path_is_404(agents, make_gateway):
    a, b = agents[:2]
    gw = await make_gateway(config(route("outer", "/agents", [a]), route("inner", "/agents/special", [b])))
    assert (await get_json(gw, "/agents/special/1"))[1]["agent"] == "b"
    assert (await get_json(gw, "/agents/other"))[1]["agent"] == "a"
    assert (await get_json(gw, "/nowhere"))[0] == 404


async def test_prefix_rewrite_replaces_the_matched_prefix_only_on_its_route(agents, make_gateway):
    a, b = agents[:2]
    gw = await make_gateway(config(
        route("rewritten", "/v1/chat/", [a], prefix_rewrite="/api/"),
        route("plain", "/v1/tools/", [b]),
    ))
    # Matched on the normalised path, then rewritten; the query string goes along unchanged.
    assert (await get_json(gw, "/v1/chat/run?x=1"))[1] == {"agent": "a", "path": "/api/run?x=1", "method": "GET"}
    assert (await get_json(gw, "/v1//chat/./deep/../run"))[1]["path"] == "/api/run"
    assert (await get_json(gw, "/v1/tools/list"))[1]["path"] == "/v1/tools/list"


async def test_capabilities_from_route_and_header(agents, make_gateway):
    gw = await make_gateway(
        config(route("caps", "/", agents, caps={"b": ("gpu",), "c": ("gpu", "tools")}, required_capabilities=[]))
    )
    seen = {(await get_json(gw, "/x", headers={"x-agent-capabilities": "gpu"}))[1]["agent"] for _ in range(10)}
    assert seen == {"b", "c"}
    seen = {(await get_json(gw, "/x", headers={"x-agent-capabilities": "gpu, tools"}))[1]["agent"] for _ in range(5)}
    assert seen == {"c"}
    # No endpoint offers it at all: the client's mistake (a 4xx), not an outage of the route.
    status, _ = await get_json(gw, "/x", headers={"x-agent-capabilities": "quantum"})
    assert status == 422


async def test_fast_failing_agent_is_retried_around_within_budget(agents, make_gateway):
    a, b, c, d = agents
    d.mode = "fail"  # 500 in 5 ms
    gw = await make_gateway(config(route("fastfail", "/", agents, retry={"budget_min_per_second": 1})))
    results = [(await get_json(gw, f"/r{i}"))[0] for i in range(60)]
    assert results == [200] * 60
    retries = sample("agent_retries_total", {"route": "fastfail"})
    assert 0 < retries == d.hits  # one retry per failed try, no more
    assert retries <= 0.2 * 60 + 1 * 10
    assert sample("agent_gateway_requests_total", {"route": "fastfail", "endpoint": "-", "code": "200"}) == 0


async def test_retry_budget_caps_retries_when_everything_fails(agents, make_gateway):
    for a in agents:
        a.mode = "unavailable"
    gw = await make_gateway(
        config(route("budget", "/", agents, retry={"max_attempts": 4, "budget_ratio": 0.1, "budget_min_per_second": 0}))
    )
    n = 80
    statuses = [(await get_json(gw, f"/r{i}"))[0] for i in range(n)]
    assert statuses == [503] * n
    hits = sum(a.hits for a in agents)
    assert hits - n <= 0.1 * n  # tries beyond the first are retries, bounded by the budget
    assert sample("agent_retry_budget_exhausted_total", {"route": "budget"}) > 0


async def test_killed_mid_request_is_retried_only_when_safe(agents, make_gateway):
    a, b = agents[:2]
    a.mode = "kill"
    gw = await make_gateway(
        config(route("kill", "/k", [a, b]), route("killpost", "/p", [a], retry={"max_attempts": 3}))
    )
    assert [(await get_json(gw, f"/k{i}"))[0] for i in range(6)] == [200] * 6
    hits = a.hits
    async with gw.request("POST", "/p", data=b"do-not-repeat") as r:
        assert r.status == 502
    assert a.hits == hits + 1  # the agent may have done the work: a POST is not retried


async def test_refused_connection_is_retried_for_any_method(agents, make_gateway):
    a, b = agents[:2]
    gw = await make_gateway(config(route("refused", "/", [a, b], balancer={"strategy": "round_robin"})))
    await a.stop()  # its port now refuses connections
    for i in range(4):
        async with gw.request("POST", f"/x{i}", data=b"body") as r:
            assert r.status == 200 and (await r.json())["agent"] == "b"


async def test_deadline_is_never_overshot(agents, make_gateway):
    a, b = agents[:2]
    a.mode = b.mode = "stall"
    gw = await make_gateway(config(route("deadline", "/", [a, b], timeout_seconds=0.3, retry={"max_attempts": 5})))
    for deadline_ms in (250, 700):
        t0 = time.monotonic()
        status, _ = await get_json(gw, "/x", headers={"x-request-deadline-ms": str(deadline_ms)})
        took = time.monotonic() - t0
        assert status == 504
        assert took <= deadline_ms / 1000 + 0.1, took
    # The gateway's default deadline bounds requests that bring none.
    gw2 = await make_gateway(config(route("deadline2", "/", [a]), default_deadline_seconds=0.4))
    t0 = time.monotonic()
    assert (await get_json(gw2, "/x"))[0] == 504
    assert time.monotonic() - t0 <= 0.5


async def test_slow_agent_per_try_timeout_then_retry_elsewhere(agents, make_gateway):
    a, b = agents[:2]
    a.mode = "stall"
    gw = await make_gateway(config(route("slow", "/", [a, b], timeout_seconds=0.2)))
    t0 = time.monotonic()
    for i in range(4):
        status, body = await get_json(gw, f"/s{i}")
        assert status == 200 and body["agent"] == "b"
    assert time.monotonic() - t0 < 4 * 0.2 + 0.5


async def test_breaker_opens_and_recovers(agents, make_gateway):
    a = agents[0]
    a.mode = "fail"
    gw = await make_gateway(
        config(
            route(
                "brk",
                "/",
                [a],
                retry={"max_attempts": 1},
                breaker={
                    "minimum_number_of_calls": 4,
                    "sliding_window_size": 4,
                    "wait_duration_in_open_state": 0.3,
                    "permitted_number_of_calls_in_half_open_state": 2,
                },
            )
        )
    )
    rs = gw.gateway.routes["brk"]
    ep = next(iter(rs.balancer.endpoints.values()))
    breaker = rs.breakers[ep.key]
    assert [(await get_json(gw, "/x"))[0] for _ in range(4)] == [500] * 4
    assert breaker.state is State.OPEN
    assert sample("agent_breaker_state", {"route": "brk", "endpoint": ep.key}) == 1
    hits = a.hits
    assert [(await get_json(gw, "/x"))[0] for _ in range(3)] == [503] * 3
    assert a.hits == hits  # rejected without reaching the agent
    assert sample("agent_breaker_calls_not_permitted_total", {"route": "brk", "endpoint": ep.key}) >= 3
    a.mode = "ok"
    await asyncio.sleep(0.35)
    assert [(await get_json(gw, "/x"))[0] for _ in range(2)] == [200, 200]  # the two probes
    assert breaker.state is State.CLOSED
    assert sample("agent_breaker_state", {"route": "brk", "endpoint": ep.key}) == 0


async def test_flapping_agent_is_ejected_and_requests_still_succeed(agents, make_gateway):
    a, b, c, _ = agents
    a.mode = "flap"
    a.flap_every = 4
    gw = await make_gateway(
        config(
            route(
                "flap",
                "/",
                [a, b, c],
                outlier={"consecutive_5xx": 2, "base_ejection_time_seconds": 0.2, "max_ejection_percent": 34},
            )
        )
    )
    statuses = []
    for i in range(60):
        statuses.append((await get_json(gw, f"/f{i}"))[0])
        await asyncio.sleep(0.01)
    assert statuses == [200] * 60
    ep = gw.gateway.routes["flap"].balancer.endpoints[f"127.0.0.1:{a.port}"]
    assert gw.gateway.routes["flap"].outlier.monitor(ep).times_ejected >= 1 or sample(
        "agent_gateway_ejections_total", {"route": "flap", "endpoint": ep.key, "reason": "consecutive_5xx"}
    ) >= 1


async def test_big_bodies_stream_both_ways(agents, make_gateway):
    a = agents[0]
    gw = await make_gateway(config(route("stream", "/", [a])))
    payload = os.urandom(3 * 1024 * 1024)

    async def chunks():
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i : i + 256 * 1024]

    async with gw.request("POST", "/echo", data=chunks()) as r:  # chunked: no Content-Length
        assert r.status == 200
        body = await r.json()
    assert body["size"] == len(payload) and body["sha256"] == hashlib.sha256(payload).hexdigest()
    # Response: the first chunk must arrive long before the agent has finished (5 x 0.3 s).
    t0 = time.monotonic()
    async with gw.get("/stream?chunks=5&pause=0.3&size=100000") as r:
        first = await r.content.readexactly(100000)
        first_at = time.monotonic() - t0
        rest = await r.read()
    assert first == b"A" * 100000 and len(rest) == 4 * 100000
    assert first_at < 0.6


async def test_small_post_body_is_replayed_on_retry(agents, make_gateway):
    a, b = agents[:2]
    a.mode = "unavailable"  # 503: the agent refused the work, safe to retry a POST
    gw = await make_gateway(config(route("replay", "/", [a, b])))
    payload = b"x" * 10_000
    for _ in range(4):
        async with gw.request("POST", "/echo", data=payload) as r:
            assert r.status == 200
            assert (await r.json())["size"] == len(payload)


async def test_overload_sheds_with_503_and_retry_after(agents, make_gateway):
    a = agents[0]
    a.delay = 0.3
    gw = await make_gateway(config(route("shed", "/", [a]), max_in_flight=3))

    async def one():
        async with gw.get("/x") as r:
            await r.read()
            return r.status, r.headers.get("Retry-After")

    results = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(s for s, _ in results).count(200) == 3
    assert all(ra == "1" for s, ra in results if s == 503) and len([s for s, _ in results if s == 503]) == 5


async def test_admin_endpoints(agents, make_gateway):
    async def resolve_nothing(host: str, port: int) -> list[str]:
        return []

    dns_route = route("dnsr", "/d", agents[:1])
    dns_route["discovery"] = {"kind": "dns", "service": "agents-headless.ns.svc", "port": agents[0].port}
    gw = await make_gateway(config(route("adm", "/", agents[:1]), dns_route), resolver=resolve_nothing)
    async with gw.admin("/healthz") as r:
        assert r.status == 200
    async with gw.admin("/readyz") as r:
        # One route without endpoints is reported, but the gateway still serves the other.
        text = await r.text()
        assert r.status == 200 and "route dnsr: no endpoints" in text
    await get_json(gw, "/x")
    async with gw.admin("/metrics") as r:
        text = await r.text()
        assert "Server" not in r.headers
    assert 'agent_gateway_route_ready{route="dnsr"} 0.0' in text
    assert 'agent_gateway_route_ready{route="adm"} 1.0' in text
    # The proxy listener does not answer for them: a route's own /metrics is the agent's.
    assert (await get_json(gw, "/metrics"))[1]["agent"] == "a"
    for name in (
        "agent_gateway_requests_total",
        "agent_gateway_request_duration_seconds_bucket",
        "agent_gateway_in_flight",
        "agent_breaker_state",
        "agent_retries_total",
    ):
        assert name in text


async def test_dns_discovery_follows_the_records(agents, make_gateway):
    a = agents[0]
    records = {"svc": ["127.0.0.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        return records[host]

    r = route("dns", "/", [a])
    r["discovery"] = {"kind": "dns", "service": "svc", "port": a.port, "refresh_seconds": 0.05}
    gw = await make_gateway(config(r), resolver=resolver)
    assert (await get_json(gw, "/x"))[1]["agent"] == "a"
    async with gw.admin("/readyz") as r:
        assert r.status == 200
    records["svc"] = ["127.0.0.1", "127.0.0.2"]
    await asyncio.sleep(0.15)
    assert set(gw.gateway.routes["dns"].balancer.endpoints) == {f"127.0.0.1:{a.port}", f"127.0.0.2:{a.port}"}
    records["svc"] = []  # an empty answer never empties a route
    await asyncio.sleep(0.15)
    assert len(gw.gateway.routes["dns"].balancer.endpoints) == 2


async def test_real_resolver_uses_getaddrinfo():
    from agent_runtime.gateway import _getaddrinfo_resolver

    assert "127.0.0.1" in await _getaddrinfo_resolver("localhost", 80)


async def test_config_reload_keeps_requests_in_flight_and_rejects_bad_config(agents, make_gateway, caplog):
    a, b = agents[:2]
    a.delay = 0.4
    cfg = config(route("reload", "/", [a]))
    gw = await make_gateway(cfg)
    in_flight = asyncio.create_task(get_json(gw, "/slow"))
    await asyncio.sleep(0.1)
    cfg["routes"] = [route("reload", "/", [b])]
    gw.path.write_text(json.dumps(cfg))
    assert await gw.gateway.check_reload()
    assert (await in_flight) == (200, {"agent": "a", "path": "/slow", "method": "GET"})
    assert (await get_json(gw, "/x"))[1]["agent"] == "b"
    caplog.set_level(logging.ERROR, logger="agent_runtime.gateway")
    cfg["routes"][0]["breaker"] = {"failure_rate_threshold": 500}
    gw.path.write_text(json.dumps(cfg) + " ")
    assert not await gw.gateway.check_reload()
    assert not await gw.gateway.check_reload()  # the same bad file is reported once
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "routes[0].breaker.failure_rate_threshold" in errors[0]
    assert (await get_json(gw, "/x"))[1]["agent"] == "b"


async def test_gateway_exports_every_signal_the_alert_rules_read():
    """The rules (components/promql.py) and this exporter share names from metrics_signals."""
    from agent_runtime import metrics_signals as s

    exported = {family.name for family in metrics.REGISTRY.collect()}
    for name in (s.REQUESTS_TOTAL, s.REQUEST_DURATION, s.BREAKER_STATE, s.ENDPOINTS_EJECTED,
                 s.RETRIES_TOTAL, s.RETRY_BUDGET_EXHAUSTED_TOTAL):
        assert name.removesuffix("_total") in exported, name


async def test_a_retry_sends_the_deadline_that_remains(agents, make_gateway):
    a, b = agents[:2]
    a.mode = "stall"
    gw = await make_gateway(config(route("remain", "/", [a, b], timeout_seconds=0.3)))
    status, body = await get_json(gw, "/x", headers={"x-request-deadline-ms": "2000"})
    assert status == 200 and body["agent"] == "b"
    first = int(a.last_headers["x-request-deadline-ms"])
    second = int(b.last_headers["x-request-deadline-ms"])
    assert 1900 < first <= 2000
    # The stalled try used 300 ms of the budget: the retry must not promise the agent the whole 2 s.
    assert second <= first - 280
