"""The reference agent: a small real HTTP server standing in for a user's agent in demos, the node
tier and the drills. It behaves the way the platform expects an agent to (the contract
`components/agent_cluster.py` deploys against):

- `GET /healthz` is 200 while the process lives; `GET /readyz` is 503 once it drains.
- `GET /metrics`: Prometheus text (requests by path kind and code, runs in flight, draining).
- `GET <any prefix>/capabilities`: JSON naming the cluster, its capabilities and the pod.
- `POST <any prefix>/run` with `{"duration_seconds": D, "interval_seconds": I}`: a streamed run
  (Server-Sent Events `accepted`, `start`, one `progress` every I seconds, `done`), D at most
  AGENT_MAX_RUN_SECONDS. Past AGENT_MAX_CONCURRENT runs in flight it answers 429 with Retry-After,
  as an overloaded agent should, so the gateway can go elsewhere.
- `POST <any prefix>/burn` with `{"seconds": S}`: keeps one core busy for S seconds (bounded like
  a run), for autoscaling drills.
- With AGENT_DATABASE_DSN set (agent_runtime.agent_state), state in the agent database:
  `POST <any prefix>/remember` with `{"conversation": C, "text": T}` stores a message (201), and
  `GET <any prefix>/history?conversation=C` lists that conversation's messages. Without it both
  are 404; with the database down, 503 and Retry-After.
- Every answer carries `x-agent-pod` (POD_NAME), so a client can tell which replica served it.
- SIGTERM (after the pod's preStop pause): readiness goes to 503, requests still in flight finish
  (new ones are still served, the gateway may not have seen the pod go yet), and the process exits
  once none is left, or after AGENT_MAX_RUN_SECONDS plus a margin at the latest, within the grace
  period `components/workload.py` sizes from the same number.

Any prefix: the gateway forwards the client's path as it is (`/v1/chat/run`), so the agent answers
the last path segment whatever comes before it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field

from aiohttp import web

from agent_runtime.agent_state import ConversationStore, StateUnavailable

POD_HEADER = "x-agent-pod"
MAX_BODY_BYTES = 64 * 1024
MAX_CONVERSATION_CHARS = 200
MAX_TEXT_CHARS = 4096
DRAIN_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class AgentSettings:
    cluster: str = "reference"
    capabilities: tuple[str, ...] = ()
    max_run_seconds: float = 30.0
    max_concurrent: int = 64
    pod: str = "local"
    port: int = 8080
    database_dsn: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> AgentSettings:
        def number(key: str, default: float, kind=float):
            raw = env.get(key, "")
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise SystemExit(f"{key}: not a number: {raw!r}") from None
            if not math.isfinite(value) or value <= 0:
                raise SystemExit(f"{key}: must be a positive number, got {raw!r}")
            return value

        return cls(
            cluster=env.get("AGENT_CLUSTER", "reference"),
            capabilities=tuple(c for c in env.get("AGENT_CAPABILITIES", "").split(",") if c),
            max_run_seconds=number("AGENT_MAX_RUN_SECONDS", 30.0),
            max_concurrent=int(number("AGENT_MAX_CONCURRENT", 64, int)),
            pod=env.get("POD_NAME") or env.get("HOSTNAME") or "local",
            port=int(number("AGENT_PORT", 8080, int)),
            database_dsn=env.get("AGENT_DATABASE_DSN", ""),
        )


@dataclass
class AgentState:
    settings: AgentSettings
    in_flight: int = 0
    draining: bool = False
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, kind: str, status: int) -> None:
        self.requests[(kind, status)] = self.requests.get((kind, status), 0) + 1


class BadRequest(Exception):
    pass


KINDS = ("run", "burn", "capabilities", "remember", "history", "healthz", "readyz", "metrics")


def _kind(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if last in KINDS else "other"


async def _json_body(request: web.Request) -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(raw))
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body: not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object")
    return body


def _seconds(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{key}: must be a number")
    if not low <= value <= high:
        raise BadRequest(f"{key}: must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _text(value: object, key: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadRequest(f"{key}: must be a string of 1 to {limit} characters")
    return value


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def make_app(settings: AgentSettings) -> web.Application:
    state = AgentState(settings)
    state.idle.set()
    store = ConversationStore(settings.database_dsn, settings.pod) if settings.database_dsn else None

    @web.middleware
    async def stamp(request: web.Request, handler):
        kind = _kind(request.path)
        try:
            response = await handler(request)
        except BadRequest as err:
            response = web.json_response({"error": str(err)}, status=400)
        except web.HTTPException as err:
            err.headers[POD_HEADER] = settings.pod
            state.count(kind, err.status)
            raise
        if not response.prepared:
            response.headers[POD_HEADER] = settings.pod
        state.count(kind, response.status)
        return response

    def identity() -> dict:
        return {"cluster": settings.cluster, "capabilities": list(settings.capabilities),
                "pod": settings.pod}

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **identity()})

    async def readyz(_: web.Request) -> web.Response:
        if state.draining:
            return web.json_response({"status": "draining", **identity()}, status=503)
        return web.json_response({"status": "ready", **identity()})

    async def metrics(_: web.Request) -> web.Response:
        lines = ["# HELP agent_requests_total Requests answered, by kind of path and status code.",
                 "# TYPE agent_requests_total counter"]
        for (kind, code), value in sorted(state.requests.items()):
            lines.append(f'agent_requests_total{{kind="{kind}",code="{code}"}} {value}')
        lines += ["# HELP agent_runs_in_flight Runs and burns being served now.",
                  "# TYPE agent_runs_in_flight gauge", f"agent_runs_in_flight {state.in_flight}",
                  "# HELP agent_draining 1 once SIGTERM arrived.", "# TYPE agent_draining gauge",
                  f"agent_draining {int(state.draining)}",
                  "# HELP agent_state_errors_total Calls to the agent database that failed.",
                  "# TYPE agent_state_errors_total counter", f"agent_state_errors_total {store.errors if store else 0}"]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    def admit() -> web.Response | None:
        if state.in_flight >= settings.max_concurrent:
            return web.json_response({"error": "too many runs in flight", **identity()}, status=429,
                                     headers={"Retry-After": "1"})
        return None

    def begin() -> None:
        state.in_flight += 1
        state.idle.clear()

    def end() -> None:
        state.in_flight -= 1
        if state.in_flight == 0:
            state.idle.set()

    async def run(request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        duration = _seconds(body, "duration_seconds", 1.0, 0, settings.max_run_seconds)
        interval = _seconds(body, "interval_seconds", 0.5, 0.01, 60)
        refused = admit()
        if refused is not None:
            return refused
        begin()
        try:
            response = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache", POD_HEADER: settings.pod})
            await response.prepare(request)
            conversation = request.headers.get("x-conversation-id", "")
            await response.write(_sse("accepted", {**identity(), "conversation": conversation}))
            started = time.monotonic()
            await response.write(_sse("start", {"duration_seconds": duration}))
            step = 0
            while (elapsed := time.monotonic() - started) < duration:
                await asyncio.sleep(min(interval, duration - elapsed))
                step += 1
                await response.write(_sse("progress", {"step": step,
                                                       "elapsed": round(time.monotonic() - started, 3)}))
            await response.write(_sse("done", {"steps": step, "pod": settings.pod}))
            await response.write_eof()
            return response
        finally:
            end()

    async def burn(request: web.Request) -> web.Response:
        body = await _json_body(request)
        seconds = _seconds(body, "seconds", 1.0, 0, settings.max_run_seconds)
        refused = admit()
        if refused is not None:
            return refused
        begin()
        try:
            # In a thread, so the event loop (probes, other requests) stays responsive.
            spins = await asyncio.to_thread(_spin, seconds)
        finally:
            end()
        return web.json_response({"burned_seconds": seconds, "spins": spins, **identity()})

    async def capabilities(_: web.Request) -> web.Response:
        return web.json_response(identity())

    def unavailable(err: StateUnavailable) -> web.Response:
        return web.json_response({"error": f"agent database unavailable: {err}", **identity()}, status=503,
                                 headers={"Retry-After": "1"})

    async def remember(request: web.Request) -> web.Response:
        body = await _json_body(request)
        conversation = _text(body.get("conversation"), "conversation", MAX_CONVERSATION_CHARS)
        text = _text(body.get("text"), "text", MAX_TEXT_CHARS)
        assert store is not None
        try:
            message = await store.remember(conversation, text)
        except StateUnavailable as err:
            return unavailable(err)
        return web.json_response(message.to_json(), status=201)

    async def history(request: web.Request) -> web.Response:
        conversation = _text(request.query.get("conversation"), "conversation", MAX_CONVERSATION_CHARS)
        assert store is not None
        try:
            messages = await store.history(conversation)
        except StateUnavailable as err:
            return unavailable(err)
        return web.json_response({"conversation": conversation, "messages": [m.to_json() for m in messages],
                                  **identity()})

    async def by_last_segment(request: web.Request) -> web.StreamResponse:
        kind = _kind(request.path)
        if kind == "capabilities" and request.method in ("GET", "HEAD"):
            return await capabilities(request)
        if kind == "run" and request.method == "POST":
            return await run(request)
        if kind == "burn" and request.method == "POST":
            return await burn(request)
        if kind in ("remember", "history") and store is None:
            raise web.HTTPNotFound(text=json.dumps({"error": "this agent keeps no state (no AGENT_DATABASE_DSN)"}),
                                   content_type="application/json")
        if kind == "remember" and request.method == "POST":
            return await remember(request)
        if kind == "history" and request.method in ("GET", "HEAD"):
            return await history(request)
        if kind in ("capabilities", "run", "burn", "remember", "history"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET"] if kind in ("capabilities", "history") else ["POST"])
        raise web.HTTPNotFound(text=json.dumps({"error": f"no such path: {request.path}"}),
                               content_type="application/json")

    async def close_store(_: web.Application) -> None:
        if store is not None:
            await store.close()

    app = web.Application(middlewares=[stamp], client_max_size=MAX_BODY_BYTES)
    app["state"] = state
    app.on_cleanup.append(close_store)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", by_last_segment)
    return app


def _spin(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < deadline:
        for _ in range(10_000):
            spins += 1
    return spins


async def serve(settings: AgentSettings, host: str = "0.0.0.0") -> None:
    app = make_app(settings)
    state: AgentState = app["state"]
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, settings.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "listening", "port": settings.port, "pod": settings.pod}), flush=True)
    await stop.wait()
    state.draining = True
    print(json.dumps({"event": "draining", "in_flight": state.in_flight}), flush=True)
    try:
        await asyncio.wait_for(state.idle.wait(), settings.max_run_seconds + DRAIN_MARGIN_SECONDS)
    except TimeoutError:
        print(json.dumps({"event": "drain-timeout", "in_flight": state.in_flight}), flush=True)
    await runner.cleanup()
    print(json.dumps({"event": "stopped"}), flush=True)


def _command(args: argparse.Namespace) -> int:
    settings = AgentSettings.from_env(dict(os.environ))
    if args.port:
        settings = AgentSettings(**{**settings.__dict__, "port": args.port})
    asyncio.run(serve(settings, args.host))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("agent", help="run the reference agent (demos, node tier, drills)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=0, help="overrides AGENT_PORT")
    parser.set_defaults(func=_command)
