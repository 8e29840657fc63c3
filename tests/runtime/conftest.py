"""Shared fixtures for the runtime tests: a fake clock, fault-injecting agent servers, a gateway, a webhook receiver.

Every server listens on 127.0.0.1 on a port the OS picks, so parallel runs never collide.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from agent_runtime.config import RuntimeConfig
from agent_runtime.gateway import Gateway


class FakeClock:
    """A clock the test moves by hand, so time-based logic is exact and never sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Agent:
    """An agent server on 127.0.0.1 whose behaviour a test switches at run time.

    mode: ok (answers after `delay`), stall (2 s, or `stall` s, then answers), fail (500 after
    5 ms), unavailable (503 after 5 ms), kill (closes the connection abruptly mid-request),
    flap (alternates ok / fail every `flap_every` requests).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "ok"
        self.delay = 0.0
        self.stall = 2.0
        self.flap_every = 3
        self.healthy = True
        self.hits = 0
        self.health_hits = 0
        self.last_headers: dict[str, str] = {}
        self.bodies: list[tuple[int, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _health(self, request: web.Request) -> web.Response:
        self.health_hits += 1
        return web.Response(status=200 if self.healthy else 503, text="ok" if self.healthy else "sick")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.last_headers = {k.lower(): v for k, v in request.headers.items()}
        mode = self.mode
        if mode == "flap":
            mode = "ok" if (self.hits // self.flap_every) % 2 == 0 else "fail"
        if mode == "kill":
            # Read the request, then drop the connection without a response (like a crash).
            await request.read()
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(0.05)
            return web.Response(text="unreachable")
        if mode == "stall":
            await asyncio.sleep(self.stall)
        elif mode in ("fail", "unavailable"):
            await asyncio.sleep(0.005)
            return web.Response(status=500 if mode == "fail" else 503, text=f"{self.name} failed")
        elif self.delay:
            await asyncio.sleep(self.delay)
        if request.path.startswith("/echo"):
            # Stream the body in, hash it, report its size: proves big bodies arrive whole.
            h = hashlib.sha256()
            size = 0
            async for chunk in request.content.iter_any():
                h.update(chunk)
                size += len(chunk)
            self.bodies.append((size, h.hexdigest()))
            return web.json_response({"agent": self.name, "size": size, "sha256": h.hexdigest()})
        if request.path.startswith("/stream"):
            # A slow streamed answer: the client must see the first chunk long before the last.
            resp = web.StreamResponse()
            resp.content_type = "application/octet-stream"
            await resp.prepare(request)
            for i in range(int(request.query.get("chunks", "5"))):
                await resp.write(bytes([65 + i % 26]) * int(request.query.get("size", "65536")))
                await asyncio.sleep(float(request.query.get("pause", "0.2")))
            await resp.write_eof()
            return resp
        return web.json_response(
            {"agent": self.name, "path": request.path_qs, "method": request.method},
            headers={"x-agent": self.name},
        )

    async def start(self) -> Agent:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest_asyncio.fixture
async def agents() -> AsyncIterator[list[Agent]]:
    """Four agent servers (a, b, c, d), stopped after the test so no port or task leaks."""
    started = [await Agent(n).start() for n in "abcd"]
    yield started
    for a in started:
        await a.stop()


def route(name: str, prefix: str, agents: list[Agent], **overrides: Any) -> dict[str, Any]:
    """A route dict for a static list of test agents; keyword args override route keys."""
    caps = overrides.pop("caps", {})
    r: dict[str, Any] = {
        "name": name,
        "path_prefix": prefix,
        "cluster": name,
        "timeout_seconds": 5.0,
        "discovery": {
            "kind": "static",
            "endpoints": [
                {"host": "127.0.0.1", "port": a.port, "capabilities": list(caps.get(a.name, ()))} for a in agents
            ],
        },
        "balancer": {"strategy": "round_robin", "slow_start_seconds": 0},
        "breaker": {"minimum_number_of_calls": 50, "sliding_window_size": 100, "wait_duration_in_open_state": 30},
        "retry": {"base_delay_seconds": 0.005, "max_delay_seconds": 0.02},
        "outlier": {"consecutive_5xx": 1000, "consecutive_gateway_failure": 1000},
        "health_check": {"interval_seconds": 30},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(r.get(key), dict):
            r[key] = {**r[key], **value}
        else:
            r[key] = value
    return r


class GatewayHarness:
    """A running gateway on 127.0.0.1 with its config file and an HTTP client.

    `get`/`request` go to the proxy listener, `admin` to the admin listener (/metrics, /readyz).
    """

    def __init__(self, gateway: Gateway, path: Path, session: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self.path = path
        self.session = session
        self.url = f"http://127.0.0.1:{gateway.port}"
        self.admin_url = f"http://127.0.0.1:{gateway.admin_port}"

    def admin(self, path: str, **kw: Any) -> Any:
        return self.session.get(self.admin_url + path, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.session.get(self.url + path, **kw)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        return self.session.request(method, self.url + path, **kw)


@pytest_asyncio.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Any]:
    """Start gateways from config dicts; all are stopped (and their sessions closed) afterwards."""
    made: list[GatewayHarness] = []

    async def _make(config: dict[str, Any], **kw: Any) -> GatewayHarness:
        path = tmp_path / f"runtime-{len(made)}.json"
        path.write_text(json.dumps(config))
        gw = Gateway(RuntimeConfig.model_validate(config), config_path=path, **kw)
        await gw.start("127.0.0.1", 0)
        h = GatewayHarness(gw, path, aiohttp.ClientSession())
        made.append(h)
        return h

    yield _make
    for h in made:
        await h.session.close()
        await h.gateway.stop()


class RawResponse:
    """One response as a raw HTTP/1.1 client saw it (parsed by httptools, not by the gateway)."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.complete = False
        self.chunked = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_chunk_header(self) -> None:
        self.chunked = True

    def on_message_complete(self) -> None:
        self.complete = True


class RawClient:
    """A hand-driven HTTP/1.1 connection to 127.0.0.1: sends exact bytes, reads exact responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._pending = b""

    @classmethod
    async def open(cls, port: int) -> RawClient:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, head_request: bool = False, timeout: float = 5.0) -> RawResponse:
        """The next response (interim 1xx ones are returned too, as their own responses)."""
        import httptools

        resp = RawResponse()
        parser = httptools.HttpResponseParser(resp)
        done = asyncio.get_running_loop().time() + timeout

        def feed(data: bytes) -> None:
            parser.feed_data(data)
            if resp.status == 0:
                try:
                    resp.status = parser.get_status_code()
                except Exception:  # noqa: BLE001 - not parsed far enough yet
                    pass

        data, self._pending = self._pending, b""
        while True:
            if data:
                try:
                    feed(data)
                except httptools.HttpParserUpgrade as exc:
                    resp.status = parser.get_status_code()
                    self._pending = data[exc.args[0]:] if exc.args and isinstance(exc.args[0], int) else b""
                    resp.complete = True
                    return resp
                if resp.complete:
                    return resp
                if head_request and resp.headers and b"\r\n\r\n" in data:
                    resp.status = parser.get_status_code()
                    return resp
            left = done - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("no complete response in time")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                if resp.status and not resp.complete:
                    try:
                        parser.feed_eof() if hasattr(parser, "feed_eof") else None
                    except Exception:  # noqa: BLE001
                        pass
                return resp

    async def closed(self, timeout: float = 3.0) -> bool:
        """True when the gateway closes the connection within `timeout` (reading whatever is left)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()


class Receiver:
    """An Alertmanager-webhook receiver: records every POST, can be told to fail."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.fail_next = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="down")
        self.payloads.append(body)
        return web.Response(text="ok")

    def take(self) -> list[dict]:
        out, self.payloads = self.payloads, []
        return out


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()
