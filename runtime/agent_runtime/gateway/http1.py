"""The client side of the gateway: an HTTP/1.1 server as an `asyncio.Protocol`, parsed by httptools.

One `ServerConnection` per client connection. Requests are parsed as bytes arrive and handled one
at a time in arrival order (pipelined requests wait their turn, and reading pauses when too many
wait). A response is written as one transport write when it is complete, or as a stream that
waits while the client's socket buffer is above its high-water mark.

Client timeouts follow nginx: the whole head within `client_header_timeout_seconds` (slowloris),
no pause longer than `client_body_timeout_seconds` within a body and an average rate of at least
`client_body_min_bytes_per_second` after that first period, idle keep-alive connections closed
after `client_keepalive_seconds`. All of them are checked by the process's one `Sweeper`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httptools

from ..config import GatewayConfig
from .body import Body, BodyError
from .headers import response_head
from .timers import Sweeper

if TYPE_CHECKING:
    from .tunnel import Tunnel

__all__ = ["Request", "ServerConnection", "Server"]

log = logging.getLogger("agent_runtime.gateway")

# Pipelined requests waiting beyond this many pause reading from the client.
MAX_PIPELINED = 8
_NEVER = math.inf


class _TooLarge(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Request:
    """One parsed request: method, target, headers (lower-case name -> value) and its body."""

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "raw_headers",
        "keep_alive",
        "body",
        "content_length",
        "peer",
        "upgrade",
        "continue_sent",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = "1.1"
        self.headers: dict[str, str] = {}
        self.raw_headers: list[tuple[str, str]] = []
        self.keep_alive = True
        self.body: Body | None = None
        self.content_length: int | None = None
        self.peer = ""
        self.upgrade = False
        self.continue_sent = False


Handler = Callable[[Request, "ServerConnection"], Awaitable[None]]


class Server:
    """What every connection of one listener shares: handler, limits, sweeper, open connections."""

    def __init__(self, handler: Handler, config: GatewayConfig, sweeper: Sweeper) -> None:
        self.handler = handler
        self.config = config
        self.sweeper = sweeper
        self.clock = sweeper.clock
        self.connections: set[ServerConnection] = set()
        self.malformed = 0

    def __call__(self) -> ServerConnection:
        return ServerConnection(self)

    async def drain(self, timeout: float) -> None:
        """Close idle connections now, wait up to `timeout` for busy ones, then close the rest."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for c in list(self.connections):
                if c.idle():
                    c.close()
            if not self.connections or loop.time() >= end:
                break
            await asyncio.sleep(0.02)
        for c in list(self.connections):
            c.close()


class ServerConnection(asyncio.Protocol):
    """One client connection: parses requests, runs the handler for each, writes responses."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cfg = server.config
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.deadline = _NEVER
        self._req: Request | None = None  # the request being parsed
        self._url: list[bytes] = []
        self._head_bytes = 0
        self._body_start = 0.0
        self._queue: deque[Request] = deque()
        self._current: Request | None = None  # the request being handled
        self._task: asyncio.Task | None = None
        self._parsing = False
        self._closed = False
        self._write_paused = False
        self._drain: asyncio.Future | None = None
        self._read_paused = False
        # Response state of the current request.
        self._started = False
        self._chunked = False
        self._close_after = False
        self._head_only = False
        # After a 101: bytes go to the tunnel, not the parser (kept here until it is attached).
        self._tunnel: Tunnel | None = None
        self._upgraded = b""
        self._upgrading = False

    # -- transport callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if peer else ""
        self.server.connections.add(self)
        self._set_deadline(self.cfg.client_header_timeout_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server.connections.discard(self)
        self.server.sweeper.unwatch(self)
        for r in (self._req, self._current, *self._queue):
            if r is not None and r.body is not None:
                r.body.fail(BodyError("client", "aborted", "client closed the connection"))
        if self._tunnel is not None:
            self._tunnel.close("client closed")
        if self._task is not None and not self._task.done():
            # The client is gone: the handler stops and records the try as abandoned.
            self._task.cancel()
        d = self._drain
        if d is not None and not d.done():
            d.set_exception(ConnectionResetError("client closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._tunnel is not None:
            self._tunnel.client_full(True)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._tunnel is not None:
            self._tunnel.client_full(False)
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.from_client(data)
            return
        if self._upgrading:
            self._upgraded += data
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # Bytes after the head belong to the tunnel, if the agent agrees to one; until the
            # handler knows, nothing more is read.
            self._upgrading = True
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self._upgraded = data[offset:]
            if self.transport is not None:
                self.transport.pause_reading()
        except _TooLarge as exc:
            self._refuse(exc.status, str(exc))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _TooLarge):
                self._refuse(cause.status, str(cause))
            else:
                self._refuse(400, f"malformed request: {exc}")

    def _refuse(self, status: int, text: str) -> None:
        """A request we cannot parse or accept: one log line, one answer, and the connection ends."""
        self.server.malformed += 1
        log.info("refused request from %s: %d %s", self._peer, status, text)
        if self._req is not None and self._req.body is not None:
            kind = {413: "too_large", 408: "body_timeout"}.get(status, "malformed")
            self._req.body.fail(BodyError("client", kind, text))
        if self._started or self.transport is None:
            self.close()
            return
        if self._task is not None and not self._task.done():
            # A response is due for the request being handled; answer the bad one after it.
            self._close_after = True
            self.transport.pause_reading()
            return
        body = (text + "\n").encode()
        head = response_head(status, [("Content-Type", "text/plain; charset=utf-8")], f"Content-Length: {len(body)}", True)
        self.transport.write(head + body)
        self.close()

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._req = Request()
        self._req.peer = self._peer
        self._url = []
        self._head_bytes = 0
        self._parsing = True
        if self._current is None:
            self._set_deadline(self.cfg.client_header_timeout_seconds)

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_bytes += len(url)
        if self._head_bytes > self.cfg.max_header_bytes:
            raise _TooLarge(414 if len(self._url) else 431, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.cfg.max_header_bytes:
            raise _TooLarge(431, "request header fields too large")
        req = self._req
        assert req is not None
        k = name.decode("latin-1")
        v = value.decode("latin-1")
        req.raw_headers.append((k, v))
        lk = k.lower()
        prior = req.headers.get(lk)
        req.headers[lk] = v if prior is None else f"{prior}, {v}"

    def on_headers_complete(self) -> None:
        req = self._req
        assert req is not None
        p = self.parser
        req.method = p.get_method().decode("latin-1")
        req.target = b"".join(self._url).decode("latin-1")
        req.version = p.get_http_version()
        req.keep_alive = p.should_keep_alive()
        req.upgrade = p.should_upgrade() and "upgrade" in req.headers
        h = req.headers
        cl = h.get("content-length")
        if cl is not None:
            # llhttp refused a malformed or duplicated-and-different Content-Length already.
            req.content_length = int(cl.split(",")[0])
            if req.content_length > self.cfg.max_body_bytes:
                raise _TooLarge(413, f"request body over {self.cfg.max_body_bytes} bytes")
        if (req.content_length or 0) > 0 or "transfer-encoding" in h:
            req.body = Body(self.transport)
            self._body_start = self.server.clock()
            self._set_deadline(self.cfg.client_body_timeout_seconds)
        else:
            self._set_deadline(None)
        self._queue.append(req)
        if len(self._queue) >= MAX_PIPELINED and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        if self._task is None:
            self._next()

    def on_body(self, data: bytes) -> None:
        req = self._req
        if req is None or req.body is None:
            return
        body = req.body
        if body.received + len(data) > self.cfg.max_body_bytes:
            raise _TooLarge(413, f"request body over {self.cfg.max_body_bytes} bytes")
        body.feed(data)
        cfg = self.cfg
        now = self.server.clock()
        deadline = now + cfg.client_body_timeout_seconds
        rate = cfg.client_body_min_bytes_per_second
        if rate:
            # After a first timeout period the body must keep an average of `rate` bytes a second.
            by_rate = self._body_start + cfg.client_body_timeout_seconds + body.received / rate
            deadline = min(deadline, max(by_rate, now + 0.001))
        self.deadline = deadline
        self.server.sweeper.watch(self)

    def on_message_complete(self) -> None:
        self._message_done()

    def _message_done(self) -> None:
        req = self._req
        self._parsing = False
        self._req = None
        if req is not None and req.body is not None:
            req.body.finish()
        if self._current is None and not self._queue:
            self._set_deadline(self.cfg.client_keepalive_seconds)
        elif self._current is not None:
            self._set_deadline(None)

    # -- timeouts ----------------------------------------------------------------------

    def _set_deadline(self, seconds: float | None) -> None:
        if seconds is None:
            self.deadline = _NEVER
            self.server.sweeper.unwatch(self)
        else:
            self.deadline = self.server.clock() + seconds
            self.server.sweeper.watch(self)

    def expire(self) -> None:
        """Called by the sweeper when the client took too long for the phase it is in."""
        if self._closed:
            return
        req = self._req
        if req is not None and req.body is not None and not req.body.done:
            req.body.fail(BodyError("client", "body_timeout", "client sent the body too slowly"))
            log.info("client %s: request body too slow, closing", self._peer)
            if not self._started and (self._task is None or self._task.done()):
                self._refuse(408, "request body timeout")
            else:
                self._close_after = True
            return
        if self._parsing and self._current is None:
            log.info("client %s: request head not complete in time, closing", self._peer)
            self._refuse(408, "request header timeout")
            return
        if self._current is None and not self._queue:
            self.close()  # idle keep-alive connection

    def attach_tunnel(self, tunnel: Tunnel) -> None:
        """From now on this connection is one end of `tunnel` (after a 101 was sent)."""
        self._tunnel = tunnel
        self.server.sweeper.unwatch(self)
        self.deadline = _NEVER
        pending, self._upgraded = self._upgraded, b""
        if pending:
            tunnel.from_client(pending)
        if self.transport is not None:
            self.transport.resume_reading()

    def idle(self) -> bool:
        return self._current is None and not self._queue and not self._parsing

    # -- running handlers --------------------------------------------------------------

    def _next(self) -> None:
        if self._closed or not self._queue:
            self._task = None
            self._current = None
            return
        req = self._queue.popleft()
        if self._read_paused and len(self._queue) < MAX_PIPELINED // 2 and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        self._current = req
        self._started = False
        self._chunked = False
        self._head_only = req.method == "HEAD"
        self._task = asyncio.get_running_loop().create_task(self._run(req))

    async def _run(self, req: Request) -> None:
        try:
            await self.server.handler(req, self)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("handler failed")
            if not self._started:
                self.reply(500, "gateway error")
            self.close()
            return
        if self._closed:
            return
        if not self._started:
            self.reply(500, "gateway error")
        body = req.body
        if self._close_after or not req.keep_alive or req.upgrade:
            self.close()
            return
        if body is not None and not body.done:
            # The handler answered without reading the body: drop the rest and keep the connection.
            body.fail(BodyError("client", "discarded"))
            self._close_after = True
            self.close()
            return
        self._current = None
        if not self._queue and not self._parsing:
            self._set_deadline(self.cfg.client_keepalive_seconds)
        self._next()

    # -- responses ---------------------------------------------------------------------

    def send_continue(self, req: Request) -> None:
        """Answer `Expect: 100-continue` once, when the gateway starts to read the body."""
        if not req.continue_sent and self.transport is not None and not self._closed:
            req.continue_sent = True
            if req.headers.get("expect", "").lower() == "100-continue" and req.body is not None:
                if not req.body.received and not req.body.done:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _must_close(self, req: Request | None) -> bool:
        return self._close_after or req is None or not req.keep_alive

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        """A whole response in one transport write."""
        if self._started or self._closed or self.transport is None:
            return
        self._started = True
        req = self._current
        close = self._must_close(req)
        if status < 200 or status in (204, 304):
            framing = ""
            body = b""
        else:
            framing = f"Content-Length: {len(body)}"
        head = response_head(status, headers, framing, close)
        self.transport.write(head if self._head_only else head + body)

    def switch_protocols(self, headers: list[tuple[str, str]]) -> None:
        """Send the agent's 101 (with its Upgrade and Connection: upgrade) and nothing else."""
        if self._started or self._closed or self.transport is None:
            return
        self._started = True
        self._close_after = True
        self.transport.write(response_head(101, headers, "", False))

    def respond_head(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        """A response to HEAD, or one without a body, advertising `length` as the upstream did."""
        if self._started or self._closed or self.transport is None:
            return
        self._started = True
        framing = f"Content-Length: {length}" if length is not None and status not in (204, 304) else ""
        self.transport.write(response_head(status, headers, framing, self._must_close(self._current)))

    def reply(self, status: int, text: str, extra: list[tuple[str, str]] | None = None) -> None:
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if extra:
            headers.extend(extra)
        self.respond(status, headers, (text + "\n").encode())

    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        """Send the head of a streamed response; chunked when the length is unknown (HTTP/1.1)."""
        if self._started or self._closed or self.transport is None:
            return
        self._started = True
        req = self._current
        close = self._must_close(req)
        if length is not None:
            framing = f"Content-Length: {length}"
        elif req is not None and req.version == "1.0":
            framing = ""
            close = self._close_after = True  # HTTP/1.0: the body ends when the connection does
        else:
            framing = "Transfer-Encoding: chunked"
            self._chunked = True
        self.transport.write(response_head(status, headers, framing, close))

    async def write(self, data: bytes) -> None:
        """One piece of a streamed body; waits while the client's buffer is above its high water."""
        if self._closed or self.transport is None:
            raise ConnectionResetError("client closed the connection")
        if data and not self._head_only:
            if self._chunked:
                self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                self.transport.write(data)
        if self._write_paused:
            self._drain = asyncio.get_running_loop().create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def end(self) -> None:
        if self._chunked and not self._closed and self.transport is not None and not self._head_only:
            self.transport.write(b"0\r\n\r\n")
        self._chunked = False

    def abort(self) -> None:
        """Cut a response short: the client must see a truncated body, never a complete one."""
        self._closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._closed = True
        self.server.sweeper.unwatch(self)

    @property
    def started(self) -> bool:
        return self._started

    @property
    def socket_transport(self) -> asyncio.Transport | None:
        return self.transport
