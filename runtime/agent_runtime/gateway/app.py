"""The gateway process's state: listeners, routes, config reload, admin endpoints, the proxy.

Each request is routed by the longest matching prefix of its normalised path, then balanced over
the route's endpoints that offer the required capabilities (the route's, plus any in the
`x-agent-capabilities` header), through a circuit breaker per endpoint, with retries bounded by
a retry budget and the request's deadline. Each try is one `Attempt`.

A request body up to `RETRY_BUFFER_BYTES` with a known length is read first so a retry can send
it again; a bigger or chunked body is streamed and only retried when the connection was refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from .. import metrics as m
from ..access_log import AccessLog
from ..alerts import AlertEvaluator, RegistrySource
from ..balancer import Endpoint
from ..config import AlertingConfig, ConfigError, GatewayConfig, RuntimeConfig, load_runtime_config
from .attempt import Attempt, Outcome
from .body import Body, BodyError
from .headers import (
    CAPABILITIES_HEADER,
    CONVERSATION_HEADER,
    HOP_BY_HOP,
    REQUEST_ID_HEADER,
    connection_tokens,
    new_id,
    traceparent,
)
from .http1 import Request, Server, ServerConnection
from .paths import BadTarget, normalise_path, split_target
from .routes import Resolver, RouteState, getaddrinfo_resolver
from .timers import Sweeper
from .tunnel import Tunnel
from .upstream import Pool, Response, UpstreamError

__all__ = ["Gateway", "RETRY_BUFFER_BYTES", "SMALL_RESPONSE_BYTES"]

log = logging.getLogger("agent_runtime.gateway")

# Request bodies up to this size (with a Content-Length) are buffered so they can be retried.
RETRY_BUFFER_BYTES = 64 * 1024
# Responses up to this size (with a Content-Length) are read whole and sent in one write.
SMALL_RESPONSE_BYTES = 256 * 1024
_TEXT = [("Content-Type", "text/plain; charset=utf-8")]
_RETRY_AFTER = [("Retry-After", "1")]


class _Done(Exception):
    """The request was answered (or abandoned) inside the try loop; carries what to log."""

    def __init__(self, status: int, endpoint: str) -> None:
        self.status = status
        self.endpoint = endpoint


class Gateway:
    """The gateway: a proxy listener, an admin listener, routes, and the upstream pool."""

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
        self.resolver = resolver or getaddrinfo_resolver
        self.reload_interval = reload_interval
        self.routes: dict[str, RouteState] = {}
        self._table: list[RouteState] = []
        self.in_flight = 0
        self._tasks: list[asyncio.Task] = []
        self._config_stamp: tuple[int, int] | None = None
        self._bad_stamp: tuple[int, int] | None = None
        self.reloads = 0
        # Stacks without Prometheus: the same alert rules, evaluated on this process's metrics.
        self.alert_evaluator: AlertEvaluator | None = None
        self._alerts_task: asyncio.Task | None = None
        self.sweeper: Sweeper | None = None
        self.pool: Pool | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._proxy_server: Server | None = None
        self._admin_server: Server | None = None
        self.port: int | None = None
        self.admin_port: int | None = None
        m.in_flight.set_function(lambda: self.in_flight)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(
        self, host: str | None = None, port: int | None = None, *, admin_port: int | None = None,
        reuse_port: bool = False,
    ) -> None:
        """Start routes, discovery, health checks and config polling; open both listeners.

        `port=0` picks a free port; the admin listener then picks one too unless `admin_port` says.
        """
        loop = asyncio.get_running_loop()
        self.sweeper = Sweeper(self.clock)
        self.pool = Pool(self.sweeper)
        await self._apply_routes(self.config)
        await self._apply_alerts(self.config.alerts)
        if self.config_path is not None:
            self._config_stamp = self._stamp()
            self._tasks.append(asyncio.create_task(self._watch_config(), name="config-watch"))
        bind = host if host is not None else self.gw.host
        self._proxy_server = Server(self._proxy, self.gw, self.sweeper)
        srv = await loop.create_server(
            self._proxy_server, bind, self.gw.port if port is None else port, backlog=1024,
            reuse_address=True, reuse_port=reuse_port or None,
        )
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if admin_port is None:
            admin_port = 0 if port == 0 else self.gw.admin_port
        admin_bind = host if host is not None else self.gw.admin_host
        self._admin_server = Server(self._admin, self.gw, self.sweeper)
        asrv = await loop.create_server(
            self._admin_server, admin_bind, admin_port, reuse_address=True, reuse_port=reuse_port or None
        )
        self._servers.append(asrv)
        self.admin_port = asrv.sockets[0].getsockname()[1]
        log.info("gateway listening on %s:%s (admin %s:%s) with %d routes",
                 bind, self.port, admin_bind, self.admin_port, len(self.routes))

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

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish (up to `drain_seconds`), close everything."""
        await self._apply_alerts(AlertingConfig())
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        for s in self._servers:
            s.close()
        for srv in (self._proxy_server, self._admin_server):
            if srv is not None:
                await srv.drain(drain_seconds)
        for s in self._servers:
            await s.wait_closed()
        self._servers.clear()
        for rs in self.routes.values():
            await rs.stop()
        if self.pool is not None:
            self.pool.close()
        if self.sweeper is not None:
            self.sweeper.close()
        if self.access_log is not None:
            self.access_log.close()

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
                await rs.discover_once(self.resolver, strict=True)
            new[route.name] = rs
            started.append(rs)
        for rs in started:
            rs.start(self.probe, self.resolver)
        self.config = config
        self.gw = config.gateway
        self.routes = new
        # Longest prefix first: the first match is the most specific route.
        self._table = sorted(new.values(), key=lambda r: len(r.prefix), reverse=True)
        for name, rs in old.items():
            if new.get(name) is not rs:
                # Requests in flight hold their RouteState; only its background tasks stop.
                await rs.stop()
                if name not in new:
                    for key in list(rs.breakers):
                        m.forget_endpoint(name, key)
                    m.forget_route(name)

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
            try:
                await self.check_reload()
            except Exception:  # noqa: BLE001 - the watcher must outlive any bad config
                log.exception("config reload failed, keeping the running config")

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
        try:
            await self._apply_routes(config)
        except ConfigError as exc:
            self._bad_stamp = stamp
            m.config_reloads.labels("error").inc()
            log.error("config reload rejected, keeping the running config: %s", exc)
            return False
        await self._apply_alerts(config.alerts)
        self.reloads += 1
        m.config_reloads.labels("ok").inc()
        log.info("config reloaded from %s: %d routes", self.config_path, len(self.routes))
        return True

    # -- health probes over the pool -----------------------------------------------------

    async def probe(self, ep: Endpoint, path: str, timeout: float) -> bool:
        assert self.pool is not None
        head = (
            f"GET {path} HTTP/1.1\r\nHost: {ep.key}\r\nUser-Agent: agent-gateway-health\r\n\r\n"
        ).encode("latin-1")
        try:
            resp = await self.pool.exchange(ep.host, ep.port, ep.key, head, None, self.clock() + timeout)
            resp.conn.set_deadline(self.clock() + timeout)
            try:
                await resp.body.read_all()
            finally:
                resp.finish()
            return 200 <= resp.status < 300
        except (UpstreamError, BodyError, OSError):
            return False

    # -- admin listener ------------------------------------------------------------------

    def ready(self) -> tuple[bool, list[str]]:
        """Ready when at least one route can serve; routes without endpoints are listed."""
        missing = [name for name, rs in self.routes.items() if not rs.balancer.endpoints]
        return (not self.routes or len(missing) < len(self.routes)), missing

    async def _admin(self, req: Request, conn: ServerConnection) -> None:
        try:
            path, _ = split_target(req.target)
        except BadTarget as exc:
            conn.reply(400, str(exc))
            return
        if req.method not in ("GET", "HEAD"):
            conn.reply(405, "method not allowed", [("Allow", "GET, HEAD")])
        elif path == "/healthz":
            conn.reply(200, "ok")
        elif path == "/readyz":
            ok, missing = self.ready()
            lines = ["ready" if ok else "not ready"]
            lines += [f"route {name}: no endpoints" for name in missing]
            conn.reply(200 if ok else 503, "\n".join(lines))
        elif path == "/metrics":
            for name, rs in self.routes.items():
                m.route_ready.labels(name).set(1 if rs.balancer.endpoints else 0)
            conn.respond(200, [("Content-Type", m.CONTENT_TYPE_LATEST)], m.render())
        else:
            conn.reply(404, "not found")

    # -- proxy ---------------------------------------------------------------------------

    def match(self, path: str) -> RouteState | None:
        for rs in self._table:
            p = rs.prefix
            if path.startswith(p):
                return rs
        return None

    async def _proxy(self, req: Request, conn: ServerConnection) -> None:
        clock = self.clock
        t0 = clock()
        headers = req.headers
        rid = headers.get(REQUEST_ID_HEADER) or new_id(8)
        trace_id, tp = traceparent(headers.get("traceparent"))
        rs: RouteState | None = None
        status = 0
        endpoint = "-"
        attempts = [0]
        path = req.target
        admitted = False
        try:
            try:
                raw_path, query = split_target(req.target)
                path = normalise_path(raw_path)
            except BadTarget as exc:
                status = 400
                conn.reply(400, f"bad request target: {exc}")
                return
            rs = self.match(path)
            if rs is None:
                status = 404
                conn.reply(404, f"no route for {path}")
                return
            data: bytes | Body | None = None
            body = req.body
            if body is not None:
                conn.send_continue(req)
                if req.content_length is not None and req.content_length <= RETRY_BUFFER_BYTES:
                    # Read before admission (nginx's request buffering): a client trickling its
                    # body holds a connection, bounded by the body timeouts, never a proxy slot.
                    try:
                        data = await body.read_all()
                    except BodyError as exc:
                        status = exc.status
                        rs.error("client_body")
                        conn.reply(status, f"request body: {exc}")
                        return
                else:
                    data = body
            if self.in_flight >= self.gw.max_in_flight:
                m.shed.inc()
                status = 503
                conn.reply(503, "overloaded", _RETRY_AFTER)
                return
            self.in_flight += 1
            admitted = True
            status, endpoint = await self._forward(
                req, conn, rs, t0, rid, tp, rs.upstream_path(path) + query, data, attempts
            )
        except _Done as done:
            status, endpoint = done.status, done.endpoint
        except asyncio.CancelledError:
            status = 499  # the client closed the connection first (nginx's code)
            raise
        except Exception:
            # A bug must cost one request a 502, never the process or a silent hang.
            log.exception("request %s failed in the gateway", rid)
            if rs is not None:
                rs.error("internal")
            status = 502
            if not conn.started:
                conn.reply(502, "gateway error")
            else:
                conn.abort()
        finally:
            if admitted:
                self.in_flight -= 1
            elapsed = clock() - t0
            if rs is not None:
                rs.recorder.record(endpoint, status or 499, elapsed)
            if self.access_log is not None:
                self.access_log.write({
                    "ts": round(time.time(), 3),
                    "request_id": rid,
                    "conversation_id": headers.get(CONVERSATION_HEADER),
                    "trace_id": trace_id,
                    "method": req.method,
                    "path": path,
                    "route": rs.name if rs is not None else None,
                    "endpoint": endpoint,
                    "status": status or 499,
                    "attempts": attempts[0],
                    "duration_ms": round(elapsed * 1000.0, 2),
                })

    def _deadline(self, req: Request, rs: RouteState, now: float) -> tuple[float, bool]:
        """(deadline, whether the client's header set it below the route's own limit)."""
        limit = rs.route.deadline_seconds or self.gw.default_deadline_seconds
        raw = req.headers.get(self.gw.deadline_header)
        if raw:
            try:
                ms = float(raw)
            except ValueError:
                ms = None
            if ms is not None and ms == ms:  # NaN never bounds anything
                seconds = max(ms, 0.0) / 1000.0
                if seconds < limit:
                    return now + seconds, True
        return now + limit, False

    def _upstream_head(self, req: Request, target: str, rid: str, tp: str) -> list[str]:
        """The request head without its framing and deadline lines (those change per try)."""
        drop = connection_tokens(req.headers.get("connection"))
        dh = self.gw.deadline_header
        lines = [f"{req.method} {target} HTTP/1.1"]
        have_host = False
        for k, v in req.raw_headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in drop or lk == "traceparent" or lk == dh or lk == "x-forwarded-for":
                continue
            if lk == "host":
                have_host = True
            lines.append(f"{k}: {v}")
        if not have_host:
            lines.append("Host: gateway")
        if req.upgrade:
            # The one hop-by-hop header the agent must see: it is asked to switch protocols.
            lines.append(f"Upgrade: {req.headers['upgrade']}")
            lines.append("Connection: upgrade")
        lines.append(f"traceparent: {tp}")
        if REQUEST_ID_HEADER not in req.headers:
            lines.append(f"{REQUEST_ID_HEADER}: {rid}")
        peer = req.peer
        if peer:
            prior = req.headers.get("x-forwarded-for")
            lines.append(f"X-Forwarded-For: {prior}, {peer}" if prior else f"X-Forwarded-For: {peer}")
        return lines

    async def _forward(
        self, req: Request, conn: ServerConnection, rs: RouteState, t0: float, rid: str, tp: str,
        target: str, data: bytes | Body | None, attempts: list[int],
    ) -> tuple[int, str]:
        clock = self.clock
        deadline, client_deadline = self._deadline(req, rs, t0)
        if deadline <= t0:
            rs.error("deadline")
            conn.reply(504, "deadline exceeded")
            return 504, "-"
        required = rs.required
        caps = req.headers.get(CAPABILITIES_HEADER)
        if caps:
            required = required | {c.strip() for c in caps.split(",") if c.strip()}
        key = req.headers.get(rs.hash_header) if rs.hash_header else None
        method = req.method
        # A small body was read whole (replayable); a bigger or chunked one streams, once.
        replayable = not isinstance(data, Body)
        head_lines = self._upstream_head(req, target, rid, tp)
        if isinstance(data, Body):
            framing = "Transfer-Encoding: chunked"  # re-chunked as it streams, whatever its framing
        elif data:
            framing = f"Content-Length: {len(data)}"
        elif method in ("POST", "PUT", "PATCH"):
            framing = "Content-Length: 0"
        else:
            framing = ""
        if framing:
            head_lines.append(framing)
        retry = rs.retry
        retry.budget.deposit()
        balancer = rs.balancer
        rs.outlier.maybe_sweep()
        tried: list[Endpoint] = []
        retry_no = 0
        last_error: UpstreamError | None = None
        dh = self.gw.deadline_header
        per_try = rs.route.timeout_seconds
        pool = self.pool
        assert pool is not None
        head_request = method == "HEAD"
        while True:
            now = clock()
            if now >= deadline:
                rs.error("deadline")
                conn.reply(504, "deadline exceeded")
                return 504, tried[-1].key if tried else "-"
            ep, permit = self._choose(rs, required, key, tried)
            if ep is None:
                if last_error is not None:
                    break
                if caps and not any(required <= e.capabilities for e in balancer.endpoints.values()):
                    # No endpoint offers these capabilities at all: the client asked for something
                    # this route does not have (a 4xx), not an outage of the route (a 503).
                    conn.reply(422, f"no endpoint offers capabilities: {', '.join(sorted(required))}")
                    return 422, "-"
                rs.error("no_endpoint")
                conn.reply(503, "no endpoint available", _RETRY_AFTER)
                return 503, "-"
            tried.append(ep)
            attempts[0] += 1
            remaining = deadline - now
            try_deadline = now + min(per_try, remaining)
            head = ("\r\n".join(head_lines) + f"\r\n{dh}: {max(1, int(remaining * 1000))}\r\n\r\n").encode("latin-1")
            att = Attempt(rs, ep, permit)
            try:
                resp = await pool.exchange(ep.host, ep.port, ep.key, head, data, try_deadline, head_request, req.upgrade)
            except UpstreamError as up:
                if up.kind == "timeout" and client_deadline and clock() >= deadline - 0.001 and per_try > remaining:
                    # The client's own deadline ran out, not the agent's per-try time: not its fault.
                    att.record(Outcome.ABANDONED)
                    rs.error("deadline")
                    conn.reply(504, "deadline exceeded")
                    return 504, ep.key
                att.record(Outcome.TRANSPORT, kind=up.kind)
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
            except BodyError as exc:
                att.record(Outcome.ABANDONED)
                rs.error("client_body")
                code = exc.status
                conn.reply(code, f"request body: {exc}")
                return code, ep.key
            except BaseException:
                # The client went away (cancelled): forget the try, count nothing against the agent.
                att.record(Outcome.ABANDONED)
                raise
            status = resp.status
            if status >= 500:
                att.record(Outcome.STATUS, status=status)
                if replayable and retry.should_retry_status(method, status):
                    delay = self._plan(rs, retry_no, deadline)
                    if delay is not None:
                        resp.discard()
                        retry_no += 1
                        if delay > 0:
                            await asyncio.sleep(delay)
                        continue
            else:
                att.record(Outcome.SUCCESS)
            if status == 101:
                return await self._tunnel(req, conn, rs, resp), ep.key
            return await self._relay(req, conn, rs, resp, deadline), ep.key
        # Every try failed in transport.
        assert last_error is not None
        code = 504 if last_error.kind == "timeout" else 502
        conn.reply(code, f"upstream {last_error.kind}: {last_error}")
        return code, tried[-1].key if tried else "-"

    def _choose(
        self, rs: RouteState, required: frozenset[str], key: str | None, tried: list[Endpoint]
    ) -> tuple[Endpoint | None, int | None]:
        """An endpoint whose breaker admits the call, preferring one not tried yet."""
        balancer = rs.balancer
        breakers = rs.breakers
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
                    b = breakers.get(e.key)
                    permit = b.try_acquire() if b is not None else None
                    if b is None or permit is not None:
                        return e, permit
                    refused.append(e)
                return None, None
            b = breakers.get(ep.key)
            if b is None:
                return ep, None
            permit = b.try_acquire()
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
                rs.exhausted.inc()
            return None
        rs.retries.inc()
        return delay

    async def _tunnel(self, req: Request, conn: ServerConnection, rs: RouteState, resp: Response) -> int:
        """Relay the 101, then bytes both ways until either side closes or the tunnel idles out."""
        headers = [(k, v) for k, v in resp.headers if k.lower() not in ("content-length", "transfer-encoding", "server")]
        conn.switch_protocols(headers)
        assert self.sweeper is not None
        tunnel = Tunnel(conn, resp.conn, rs.route.stream_idle_timeout_seconds, self.sweeper)
        m.tunnels.labels(rs.name).inc()
        open_ = m.tunnels_open.labels(rs.name)
        open_.inc()
        try:
            tunnel.start()
            await asyncio.shield(tunnel.done)
        finally:
            open_.dec()
            tunnel.close("gateway")
        return 101

    async def _relay(self, req: Request, conn: ServerConnection, rs: RouteState, resp: Response, deadline: float) -> int:
        """Send the agent's answer to the client; returns the status to count."""
        drop = None
        out: list[tuple[str, str]] = []
        for k, v in resp.headers:
            if k.lower() == "connection":
                drop = connection_tokens(v)
        for k, v in resp.headers:
            lk = k.lower()
            if lk in HOP_BY_HOP or (drop and lk in drop) or lk == "server":
                continue
            out.append((k, v))
        status = resp.status
        length = resp.content_length
        body = resp.body
        if req.method == "HEAD" or status in (204, 304) or status < 200:
            conn.respond_head(status, out, length)
            resp.finish()
            return status
        up = resp.conn
        idle = rs.route.stream_idle_timeout_seconds
        clock = self.clock
        up.set_deadline(clock() + idle)
        try:
            if length is not None and length <= SMALL_RESPONSE_BYTES:
                data = body.take_buffered() if body.done else await body.read_all()
                if len(data) != length:
                    raise BodyError("upstream", "reset", "short body")
                conn.respond(status, out, data)
                return status
            conn.start(status, out, length)
            while True:
                chunk = await body.read()
                if not chunk:
                    break
                up.set_deadline(clock() + idle)
                await conn.write(chunk)
            conn.end()
            return status
        except BodyError as exc:
            rs.error("upstream_body" if exc.kind != "timeout" else "timeout")
            if not conn.started:
                code = 504 if exc.kind == "timeout" else 502
                conn.reply(code, f"upstream body: {exc}")
                return code
            # Headers are gone already: cut the stream so the client sees it incomplete, and count
            # it as the error it is, not as the 2xx its head said.
            log.warning("stream from upstream cut short: %s", exc)
            conn.abort()
            return 502
        except ConnectionResetError:
            return 499  # the client went away mid-stream (nginx's code)
        finally:
            resp.finish()
