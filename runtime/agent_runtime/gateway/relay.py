"""Relaying an agent's answer to the client: one write when small, a stream with backpressure
otherwise, and a byte tunnel after a 101.

A streamed answer is bounded by the route's idle timeout, not by the request's deadline; a stream
the agent cuts mid-way is cut for the client too and counted as the 502 it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .. import metrics as m
from .body import BodyError
from .headers import HOP_BY_HOP, connection_tokens
from .http1 import Request, ServerConnection
from .routes import RouteState
from .timers import Sweeper
from .tunnel import Tunnel
from .upstream import Response

__all__ = ["SMALL_RESPONSE_BYTES", "relay", "tunnel"]

log = logging.getLogger("agent_runtime.gateway")

# Responses up to this size (with a Content-Length) are read whole and sent in one write.
SMALL_RESPONSE_BYTES = 256 * 1024


async def tunnel(conn: ServerConnection, rs: RouteState, resp: Response, sweeper: Sweeper) -> int:
    """Relay the 101, then bytes both ways until either side closes or the tunnel idles out."""
    headers = [(k, v) for k, v in resp.headers if k.lower() not in ("content-length", "transfer-encoding", "server")]
    conn.switch_protocols(headers)
    tunnel = Tunnel(conn, resp.conn, rs.route.stream_idle_timeout_seconds, sweeper)
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

async def relay(req: Request, conn: ServerConnection, rs: RouteState, resp: Response, clock: Callable[[], float]) -> int:
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
