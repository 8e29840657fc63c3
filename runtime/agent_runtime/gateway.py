"""The gateway: an async HTTP reverse proxy in front of the agent clusters.

One aiohttp server and ONE pooled aiohttp ClientSession. Each request is routed by the longest
matching path prefix, then balanced over the route's endpoints that offer the required
capabilities (the route's, plus any in the `x-agent-capabilities` header), through a circuit
breaker per endpoint, with retries bounded by a retry budget and the request's deadline, and
passive plus active health checks feeding the balancer.

Bodies stream both ways. A request body up to `RETRY_BUFFER_BYTES` with a known length is read
first so a retry can send it again; a bigger or chunked body is streamed and only retried when
the connection was refused (then not a byte of it was read).

Endpoints come from the headless Service's DNS A records (re-resolved every `refresh_seconds`)
or from the static list. The config file is polled for changes; a valid new config replaces the
routes without dropping requests in flight (they keep their route objects), an invalid one is
logged once and ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from . import metrics as m
from .access_log import AccessLog
from .alerts import AlertEvaluator, RegistrySource
from .balancer import Balancer, Endpoint
from .breaker import CircuitBreaker
from .config import AlertingConfig, ConfigError, GatewayConfig, Route, RuntimeConfig, load_runtime_config
from .health import HealthChecker, OutlierDetector
from .retry import RetryBudget, RetryPolicy

__all__ = ["Gateway", "RETRY_BUFFER_BYTES", "RouteState", "main", "register", "run"]

log = logging.getLogger("agent_runtime.gateway")

# Request bodies up to this size (with a Content-Length) are buffered so they can be retried.
RETRY_BUFFER_BYTES = 64 * 1024
# Responses up to this size (with a Content-Length) are read whole: cheaper than streaming.
SMALL_RESPONSE_BYTES = 256 * 1024
CAPABILITIES_HEADER = "x-agent-capabilities"
CONVERSATION_HEADER = "x-conversation-id"
REQUEST_ID_HEADER = "x-request-id"

# RFC 9110 section 7.6.1 hop-by-hop headers, plus ones the proxy recomputes itself.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    )
)
_RESP_SKIP = _HOP_BY_HOP | {"content-length"}

Resolver = Callable[[str, int], Awaitable[list[str]]]


_rand = random.Random(os.urandom(16)).getrandbits


def _hex(nbytes: int) -> str:
    # Ids need to be unique, not secret: a seeded PRNG is much cheaper than a urandom syscall.
    return f"{_rand(nbytes * 8):0{nbytes * 2}x}"


def _traceparent(incoming: str | None) -> tuple[str, str]:
    """(trace id, traceparent to send): keep the caller's trace, with the gateway as parent span."""
    if incoming:
        parts = incoming.strip().split("-")
        if (
            len(parts) >= 4
            and len(parts[0]) == 2
            and parts[0] != "ff"
            and len(parts[1]) == 32
            and len(parts[2]) == 16
            and len(parts[3]) == 2
            and parts[1] != "0" * 32
        ):
            try:
                int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
            except ValueError:
                pass
            else:
                return parts[1], f"00-{parts[1]}-{_hex(8)}-{parts[3]}"
    trace_id = _hex(16)
    return trace_id, f"00-{trace_id}-{_hex(8)}-01"


class _Upstream(Exception):
    """A try failed in transport: `kind` is connect | reset | timeout; `sent` whether bytes left."""

    def __init__(self, kind: str, sent: bool, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.sent = sent


class RouteState:
    """Everything one route needs at run time: endpoints, balancer, breakers, retries, health."""

    def __init__(self, route: Route, clock: Callable[[], float]) -> None:
        self.route = route
        self.name = route.name
        self.prefix = route.path_prefix
        self.required = frozenset(route.required_capabilities)
        self.clock = clock
        self.balancer = Balancer(route.balancer, clock=clock)
        self.hash_header = route.balancer.hash_header if route.balancer.strategy == "consistent_hash" else None
        self.retry = RetryPolicy(route.retry, RetryBudget.from_config(route.retry, clock), clock=clock)
        self.outlier = OutlierDetector(route.outlier, self.balancer, clock=clock, on_eject=self._ejected)
        self.health: HealthChecker | None = None
        self.tasks: list[asyncio.Task] = []
        self.resolved = route.discovery.kind == "static"
        self._latency = m.latency.labels(self.name)
        self._retries = m.retries.labels(self.name)
        self._exhausted = m.retry_budget_exhausted.labels(self.name)
        self._counters: dict[tuple[str, int], Any] = {}
        self._errors: dict[str, Any] = {}
        if route.discovery.kind == "static":
            self.set_endpoints(
                [Endpoint(e.host, e.port, e.weight, e.capabilities) for e in route.discovery.endpoints]
            )

    # -- endpoints -----------------------------------------------------------------------

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        self.balancer.set_endpoints(endpoints)
        for ep in self.balancer.endpoints.values():
            if ep.breaker is None and self.route.breaker.enabled:
                ep.breaker = CircuitBreaker(
                    self.route.breaker, name=f"{self.name}/{ep.key}", route=self.name, endpoint=ep.key, clock=self.clock
                )
        m.endpoints.labels(self.name).set(len(self.balancer.endpoints))

    def _ejected(self, ep: Endpoint, reason: str) -> None:
        m.ejections.labels(self.name, ep.key, reason).inc()
        m.ejected.labels(self.name).set(self.outlier.ejected_count())

    def count(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        c = self._counters.get(key)
        if c is None:
            c = self._counters[key] = m.requests.labels(self.name, endpoint, str(status))
        c.inc()

    def error(self, kind: str) -> None:
        c = self._errors.get(kind)
        if c is None:
            c = self._errors[kind] = m.errors.labels(self.name, kind)
        c.inc()

    async def discover_forever(self, resolver: Resolver) -> None:
        d = self.route.discovery
        while True:
            await self.discover_once(resolver)
            await asyncio.sleep(d.refresh_seconds)

    async def discover_once(self, resolver: Resolver) -> None:
        d = self.route.discovery
        assert d.service is not None
        try:
            addresses = await resolver(d.service, d.port)
        except (OSError, asyncio.TimeoutError) as exc:
            # Keep the last known endpoints: a DNS hiccup must not empty a route.
            log.warning("route %s: cannot resolve %s: %s", self.name, d.service, exc)
            return
        if not addresses and self.balancer.endpoints:
            log.warning("route %s: %s resolved to no address; keeping %d endpoints",
                        self.name, d.service, len(self.balancer.endpoints))
            return
        keys = {f"{a}:{d.port}" for a in addresses}
        if keys != set(self.balancer.endpoints):
            self.set_endpoints([Endpoint(a, d.port, 1, d.capabilities) for a in sorted(set(addresses))])
            log.info("route %s: %d endpoints from %s", self.name, len(keys), d.service)
        self.resolved = True

    def start(self, session: aiohttp.ClientSession, resolver: Resolver) -> None:
        if self.route.discovery.kind == "dns":
            self.tasks.append(asyncio.create_task(self.discover_forever(resolver), name=f"discover-{self.name}"))
        self.health = HealthChecker(
            self.route.health_check,
            self.balancer,
            session,
            clock=self.clock,
            on_change=lambda ep, ok: m.healthy_endpoints.labels(self.name).set(
                sum(1 for e in self.balancer.endpoints.values() if e.healthy)
            ),
        )
        self.tasks.append(asyncio.create_task(self._health_forever(), name=f"health-{self.name}"))

    async def _health_forever(self) -> None:
        assert self.health is not None
        interval = self.route.health_check.interval_seconds
        while True:
            # Outlier ejections end on time even when no request comes to notice.
            self.outlier.maybe_sweep()
            await self.health.check_once()
            m.ejected.labels(self.name).set(self.outlier.ejected_count())
            await asyncio.sleep(min(interval, 1.0) if interval > 1.0 and self._any_ejected() else interval)

    def _any_ejected(self) -> bool:
        return any(e.ejected for e in self.balancer.endpoints.values())

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.tasks.clear()


async def _getaddrinfo_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM), timeout=5.0
    )
    return sorted({info[4][0] for info in infos})


class Gateway:
    """The gateway process's state: routes, the HTTP session and the aiohttp application."""

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        config_path: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        resolver: Resolver | None = None,
        reload_interval: float = 1.0,
        access_log: AccessLog | None = None,
    ) -> None:
        self.config = config
        self.access_log = access_log
        self.gw: GatewayConfig = config.gateway
        self.config_path = Path(config_path) if config_path else None
        self.clock = clock
        self.resolver = resolver or _getaddrinfo_resolver
        self.reload_interval = reload_interval
        self.routes: dict[str, RouteState] = {}
        self._table: list[RouteState] = []
        self.in_flight = 0
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._config_stamp: tuple[int, int] | None = None
        self._bad_stamp: tuple[int, int] | None = None
        self.reloads = 0
        # Stacks without Prometheus: the same alert rules, evaluated on this process's metrics.
        self.alert_evaluator: AlertEvaluator | None = None
        self._alerts_task: asyncio.Task | None = None
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.app = web.Application(handler_args={"auto_decompress": False})
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_route("*", "/{tail:.*}", self._proxy)
        m.in_flight.set_function(lambda: self.in_flight)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Open the session, start routes, discovery, health checks and config polling; listen."""
        connector = aiohttp.TCPConnector(
            limit=0,  # the gateway's own max_in_flight bounds concurrency
            keepalive_timeout=15.0,  # below the agents' keep-alive, so we never reuse a closing socket
            enable_cleanup_closed=False,
            ttl_dns_cache=10,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # pass bytes through untouched, with their Content-Encoding
            cookie_jar=aiohttp.DummyCookieJar(),  # a proxy must not keep one client's cookies
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )
        await self._apply_routes(self.config)
        await self._apply_alerts(self.config.alerts)
        if self.config_path is not None:
            self._config_stamp = self._stamp()
            self._tasks.append(asyncio.create_task(self._watch_config(), name="config-watch"))
        self.runner = web.AppRunner(self.app, access_log=None, auto_decompress=False, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, host if host is not None else self.gw.host, self.gw.port if port is None else port,
            backlog=1024, reuse_address=True,
        )
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("gateway listening on %s:%s with %d routes", host or self.gw.host, self.port, len(self.routes))

    async def _apply_alerts(self, alerts: AlertingConfig) -> None:
        """(Re)start in-process alert evaluation when the config has rules; stop it otherwise."""
        if self.alert_evaluator is not None and self.alert_evaluator.config == alerts:
            return
        if self._alerts_task is not None:
            self._alerts_task.cancel()
            try:
                await self._alerts_task
            except (asyncio.CancelledError, Exception):
                pass
            self._alerts_task = None
        if self.alert_evaluator is not None:
            await self.alert_evaluator.close()
            self.alert_evaluator = None
        if alerts.rules:
            self.alert_evaluator = AlertEvaluator(alerts, sources=[RegistrySource(m.REGISTRY)])
            self._alerts_task = asyncio.create_task(self.alert_evaluator.run(), name="alerts")

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (aiohttp's shutdown), close everything."""
        await self._apply_alerts(AlertingConfig())
        if self.access_log is not None:
            self.access_log.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.runner is not None:
            await self.runner.cleanup()
        for rs in self.routes.values():
            await rs.stop()
        if self.session is not None:
            await self.session.close()

    async def _apply_routes(self, config: RuntimeConfig) -> None:
        old = self.routes
        new: dict[str, RouteState] = {}
        started: list[RouteState] = []
        for route in config.routes:
            prev = old.get(route.name)
            if prev is not None and prev.route == route:
                new[route.name] = prev
                continue
            rs = RouteState(route, self.clock)
            if route.discovery.kind == "dns":
                await rs.discover_once(self.resolver)
            new[route.name] = rs
            started.append(rs)
        assert self.session is not None
        for rs in started:
            rs.start(self.session, self.resolver)
        self.config = config
        self.gw = config.gateway
        self.routes = new
        # Longest prefix first: the first match is the most specific route.
        self._table = sorted(new.values(), key=lambda r: len(r.prefix), reverse=True)
        for name, rs in old.items():
            if new.get(name) is not rs:
                # Requests in flight hold their RouteState; only its background tasks stop.
                await rs.stop()

    def _stamp(self) -> tuple[int, int] | None:
        assert self.config_path is not None
        try:
            st = self.config_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            await self.check_reload()

    async def check_reload(self) -> bool:
        """Reload the config file if it changed; True if a new config was applied."""
        stamp = self._stamp()
        if stamp is None or stamp == self._config_stamp or stamp == self._bad_stamp:
            return False
        try:
            config = load_runtime_config(self.config_path)  # type: ignore[arg-type]
        except ConfigError as exc:
            self._bad_stamp = stamp
            m.config_reloads.labels("error").inc()
            log.error("config reload rejected, keeping the running config: %s", exc)
            return False
        self._config_stamp = stamp
        self._bad_stamp = None
        if config.gateway.host != self.gw.host or config.gateway.port != self.gw.port:
            log.warning("gateway.host/port changed in %s: takes effect on restart", self.config_path)
        await self._apply_routes(config)
        await self._apply_alerts(config.alerts)
        self.reloads += 1
        m.config_reloads.labels("ok").inc()
        log.info("config reloaded from %s: %d routes", self.config_path, len(self.routes))
        return True

    # -- admin endpoints -----------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    def ready(self) -> tuple[bool, list[str]]:
        missing = [name for name, rs in self.routes.items() if not rs.balancer.endpoints]
        return not missing, missing

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, missing = self.ready()
        if ok:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"no endpoints for routes: {', '.join(missing)}\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=m.render(), headers={"Content-Type": m.CONTENT_TYPE_LATEST})

    # -- proxy ---------------------------------------------------------------------------

    def match(self, path: str) -> RouteState | None:
        for rs in self._table:
            if path.startswith(rs.prefix):
                return rs
        return None

    def _reply(self, status: int, text: str, extra: dict[str, str] | None = None) -> web.Response:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if extra:
            headers.update(extra)
        return web.Response(status=status, text=text + "\n", headers=headers)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        clock = self.clock
        t0 = clock()
        gw = self.gw
        if self.in_flight >= gw.max_in_flight:
            m.shed.inc()
            return self._reply(503, "overloaded", {"Retry-After": "1"})
        self.in_flight += 1
        headers_in = request.headers
        rid = headers_in.get(REQUEST_ID_HEADER) or _hex(8)
        trace_id, traceparent = _traceparent(headers_in.get("traceparent"))
        rs = self.match(request.path)
        status = 0
        endpoint = "-"
        attempts = 0
        try:
            if rs is None:
                status = 404
                return self._reply(404, f"no route for {request.path}")
            status, endpoint, attempts, resp = await self._forward(request, rs, t0, rid, traceparent)
            return resp
        except Exception:
            # A bug must cost one request a 502, never the process or a silent hang.
            log.exception("request %s failed in the gateway", rid)
            rs.error("internal")
            status = 502
            return self._reply(502, "gateway error")
        finally:
            self.in_flight -= 1
            elapsed = clock() - t0
            if rs is not None:
                rs._latency.observe(elapsed)
                rs.count(endpoint, status or 499)
            if self.access_log is not None:
                self.access_log.write({
                    "ts": round(time.time(), 3),
                    "request_id": rid,
                    "conversation_id": headers_in.get(CONVERSATION_HEADER),
                    "trace_id": trace_id,
                    "method": request.method,
                    "path": request.path,
                    "route": rs.name if rs is not None else None,
                    "endpoint": endpoint,
                    "status": status or 499,
                    "attempts": attempts,
                    "duration_ms": round(elapsed * 1000.0, 2),
                })

    def _deadline(self, request: web.Request, now: float) -> float:
        limit = self.gw.default_deadline_seconds
        raw = request.headers.get(self.gw.deadline_header)
        if raw:
            try:
                ms = float(raw)
            except ValueError:
                ms = None
            if ms is not None:
                return now + min(limit, max(ms, 0.0) / 1000.0)
        return now + limit

    def _upstream_headers(self, request: web.Request, rid: str, traceparent: str, buffered: bool) -> CIMultiDict:
        out: CIMultiDict = CIMultiDict()
        conn_tokens = request.headers.get("connection")
        extra_hop = {t.strip().lower() for t in conn_tokens.split(",")} if conn_tokens else ()
        for k, v in request.headers.items():
            lk = k.lower()
            if lk in _HOP_BY_HOP or lk in extra_hop or lk == "traceparent":
                continue
            if buffered and lk == "content-length":
                continue  # aiohttp sets it from the buffered body
            out.add(k, v)
        out["traceparent"] = traceparent
        out[REQUEST_ID_HEADER] = rid
        peer = request.remote
        if peer:
            prior = request.headers.get("x-forwarded-for")
            out["x-forwarded-for"] = f"{prior}, {peer}" if prior else peer
        return out

    async def _forward(
        self, request: web.Request, rs: RouteState, t0: float, rid: str, traceparent: str
    ) -> tuple[int, str, int, web.StreamResponse]:
        clock = self.clock
        deadline = self._deadline(request, t0)
        if deadline <= t0:
            rs.error("deadline")
            return 504, "-", 0, self._reply(504, "deadline exceeded")
        required = rs.required
        caps = request.headers.get(CAPABILITIES_HEADER)
        if caps:
            required = required | {c.strip() for c in caps.split(",") if c.strip()}
        key = request.headers.get(rs.hash_header) if rs.hash_header else None
        method = request.method
        # Body: buffer small ones (replayable), stream the rest.
        data: Any = None
        replayable = True
        if request.body_exists:
            length = request.content_length
            if length is not None and length <= RETRY_BUFFER_BYTES:
                data = await request.read()
            else:
                data = request.content
                replayable = False
        headers = self._upstream_headers(request, rid, traceparent, buffered=data is None or replayable)
        url_tail = request.raw_path  # path and query, as the client sent them
        retry = rs.retry
        retry.budget.deposit()
        balancer = rs.balancer
        outlier = rs.outlier
        outlier.maybe_sweep()
        tried: list[Endpoint] = []
        attempts = 0
        retry_no = 0
        last_error: _Upstream | None = None
        dh = self.gw.deadline_header
        per_try = rs.route.timeout_seconds
        while True:
            now = clock()
            if now >= deadline:
                rs.error("deadline")
                return 504, tried[-1].key if tried else "-", attempts, self._reply(504, "deadline exceeded")
            ep, permit = self._choose(rs, required, key, tried)
            if ep is None:
                if last_error is not None:
                    break
                rs.error("no_endpoint")
                return 503, "-", attempts, self._reply(503, "no endpoint available", {"Retry-After": "1"})
            tried.append(ep)
            attempts += 1
            remaining = deadline - now
            headers[dh] = str(max(1, int(remaining * 1000)))
            started = balancer.start(ep)
            resp = None
            try:
                try:
                    async with asyncio.timeout(min(per_try, remaining)):
                        resp = await self.session.request(  # type: ignore[union-attr]
                            method,
                            ep.url + url_tail,
                            headers=headers,
                            data=data,
                            allow_redirects=False,
                            compress=None,
                        )
                except aiohttp.ClientConnectorError as exc:
                    raise _Upstream("connect", False, str(exc)) from None
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
                    raise _Upstream("reset", True, str(exc) or type(exc).__name__) from None
                except TimeoutError:
                    raise _Upstream("timeout", True, "timed out") from None
                except aiohttp.ClientError as exc:
                    raise _Upstream("reset", True, str(exc) or type(exc).__name__) from None
            except _Upstream as up:
                rtt = balancer.finish(ep, started, ok=False)
                if ep.breaker is not None:
                    ep.breaker.on_error(rtt, permit)
                outlier.failure(ep, gateway_failure=True)
                rs.error(up.kind)
                last_error = up
                if up.sent and not replayable:
                    break
                if not (retry.should_retry_error(method, up, sent=up.sent) and (replayable or not up.sent)):
                    break
                delay = self._plan(rs, retry_no, deadline)
                if delay is None:
                    break
                retry_no += 1
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            except BaseException:
                # The client went away (cancelled): forget the try, count nothing against the agent.
                balancer.abandon(ep, started)
                if ep.breaker is not None:
                    ep.breaker.release(permit)
                raise
            status = resp.status
            failed = status >= 500
            rtt = balancer.finish(ep, started, ok=not failed)
            if ep.breaker is not None:
                if failed:
                    ep.breaker.on_error(rtt, permit)
                else:
                    ep.breaker.on_success(rtt, permit)
            if failed:
                outlier.failure(ep, status=status)
                if replayable and retry.should_retry_status(method, status):
                    delay = self._plan(rs, retry_no, deadline)
                    if delay is not None:
                        resp.release()
                        retry_no += 1
                        if delay > 0:
                            await asyncio.sleep(delay)
                        continue
            else:
                outlier.success(ep)
            out = await self._respond(request, resp, deadline)
            return status, ep.key, attempts, out
        # Every try failed in transport.
        assert last_error is not None
        code = 504 if last_error.kind == "timeout" else 502
        return code, tried[-1].key if tried else "-", attempts, self._reply(code, f"upstream {last_error.kind}: {last_error}")

    def _choose(
        self, rs: RouteState, required: frozenset[str], key: str | None, tried: list[Endpoint]
    ) -> tuple[Endpoint | None, int | None]:
        """An endpoint whose breaker admits the call, preferring one not tried yet."""
        balancer = rs.balancer
        refused: list[Endpoint] = []
        for _ in range(len(balancer.endpoints) + 1):
            skip = tried + refused
            ep = balancer.pick(required, key, skip)
            if ep is None:
                return None, None
            if ep in skip:
                # Nothing new is left: a tried endpoint may take another try, a refusing one not.
                for e in balancer.candidates(required):
                    if e in refused:
                        continue
                    permit = e.breaker.try_acquire() if e.breaker is not None else None
                    if e.breaker is None or permit is not None:
                        return e, permit
                    refused.append(e)
                return None, None
            if ep.breaker is None:
                return ep, None
            permit = ep.breaker.try_acquire()
            if permit is not None:
                return ep, permit
            refused.append(ep)
        return None, None

    def _plan(self, rs: RouteState, retry_no: int, deadline: float) -> float | None:
        retry = rs.retry
        before = retry.exhausted
        delay = retry.plan_retry(retry_no, deadline)
        if delay is None:
            if retry.exhausted != before:
                rs._exhausted.inc()
            return None
        rs._retries.inc()
        return delay

    async def _respond(
        self, request: web.Request, resp: aiohttp.ClientResponse, deadline: float
    ) -> web.StreamResponse:
        headers = CIMultiDict()
        for k, v in resp.headers.items():
            if k.lower() not in _RESP_SKIP:
                headers.add(k, v)
        length = resp.content_length
        status = resp.status
        try:
            if request.method == "HEAD" or status in (204, 304) or status < 200:
                resp.release()
                out = web.Response(status=status, headers=headers)
                if length is not None and request.method == "HEAD":
                    out.content_length = length
                return out
            if length is not None and length <= SMALL_RESPONSE_BYTES:
                async with asyncio.timeout(max(deadline - self.clock(), 0.001)):
                    body = await resp.read()
                return web.Response(status=status, headers=headers, body=body)
            out = web.StreamResponse(status=status, headers=headers)
            if length is not None:
                out.content_length = length
            await out.prepare(request)
            try:
                async with asyncio.timeout(max(deadline - self.clock(), 0.001)):
                    async for chunk in resp.content.iter_any():
                        await out.write(chunk)
                await out.write_eof()
            except (TimeoutError, aiohttp.ClientError, ConnectionResetError) as exc:
                # Headers are gone already: all we can do is cut the stream short.
                log.warning("stream from upstream cut short: %s", exc or type(exc).__name__)
                if request.transport is not None:
                    request.transport.close()
            return out
        except (TimeoutError, aiohttp.ClientError) as exc:
            return self._reply(504 if isinstance(exc, TimeoutError) else 502, f"upstream body: {exc or type(exc).__name__}")
        finally:
            resp.release()


# -- process entry point ---------------------------------------------------------------------


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == "agent_runtime.access":
            return record.getMessage()
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("agent_runtime")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(config: RuntimeConfig, path: str, host: str | None, port: int | None, access: bool) -> None:
    gateway = Gateway(config, config_path=path, access_log=AccessLog() if access else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await gateway.start(host, port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await gateway.stop()


def run(path: str, host: str | None = None, port: int | None = None, access_log_enabled: bool = True) -> int:
    """Load the config (one clear message and exit code 2 when it is bad) and serve."""
    try:
        config = load_runtime_config(path)
    except ConfigError as exc:
        print(f"agent_runtime gateway: invalid config: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(config, path, host, port, access_log_enabled))
    return 0


def register(subparsers: Any) -> None:
    """Add the `gateway` command to the CLI (see agent_runtime.__main__)."""
    p = subparsers.add_parser("gateway", help="run the HTTP gateway")
    p.add_argument("--config", required=True, help="runtime config file (JSON)")
    p.add_argument("--host", default=None, help="override gateway.host")
    p.add_argument("--port", type=int, default=None, help="override gateway.port")
    p.add_argument("--no-access-log", action="store_true", help="do not write access log lines")
    p.set_defaults(func=lambda a: run(a.config, a.host, a.port, not a.no_access_log))


def main(argv: list[str] | None = None) -> int:
    from .__main__ import main as cli_main

    return cli_main(["gateway", *(argv or [])])
