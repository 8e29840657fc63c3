"""The request path: route, admit, then try endpoints until one answers or the deadline ends.

Each request is routed by the longest matching prefix of its normalised path, then balanced over
the route's endpoints that offer the required capabilities (the route's, plus any in the
`x-agent-capabilities` header), through a circuit breaker per endpoint, with retries bounded by
a retry budget and the request's deadline. Each try is one `Attempt`; the answer goes to the
client through `relay`.

A request body up to `RETRY_BUFFER_BYTES` with a known length is read first so a retry can send
it again; a bigger or chunked body is streamed and only retried when the connection was refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .. import metrics as m
from ..access_log import AccessLog
from ..balancer import Endpoint
from ..config import GatewayConfig
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
from .http1 import Request, ServerConnection
from .paths import BadTarget, normalise_path, split_target
from .relay import relay, tunnel
from .routes import RouteState
from .timers import Sweeper
from .upstream import Pool, UpstreamError

__all__ = ["Proxy", "RETRY_BUFFER_BYTES"]

log = logging.getLogger("agent_runtime.gateway")

# Request bodies up to this size (with a Content-Length) are buffered so they can be retried.
RETRY_BUFFER_BYTES = 64 * 1024
_RETRY_AFTER = [("Retry-After", "1")]


class _Done(Exception):
    """The request was answered (or abandoned) inside the try loop; carries what to log."""

    def __init__(self, status: int, endpoint: str) -> None:
        self.status = status
        self.endpoint = endpoint


class Proxy:
    """The proxy listener's handler: one `handle()` per request, over the routes it was given."""

    def __init__(
        self, gw: GatewayConfig, pool: Pool, sweeper: Sweeper, clock: Callable[[], float],
        access_log: AccessLog | None,
    ) -> None:
        self.gw = gw
        self.pool = pool
        self.sweeper = sweeper
        self.clock = clock
        self.access_log = access_log
        self._table: list[RouteState] = []
        self.in_flight = 0

    def configure(self, gw: GatewayConfig, routes: list[RouteState]) -> None:
        """A new config: its gateway settings and routes (longest prefix first wins)."""
        self.gw = gw
        self._table = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def match(self, path: str) -> RouteState | None:
        for rs in self._table:
            p = rs.prefix
            if path.startswith(p):
                return rs
        return None

    async def handle(self, req: Request, conn: ServerConnection) -> None:
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
                return await tunnel(conn, rs, resp, self.sweeper), ep.key
            return await relay(req, conn, rs, resp, clock), ep.key
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

