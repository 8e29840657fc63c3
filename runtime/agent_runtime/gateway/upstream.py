"""The upstream side: keep-alive HTTP/1.1 connections to agents, pooled per endpoint.

`Pool.exchange()` sends one request (head and body) on an idle connection of the endpoint, or a
new one, and returns the `Response` as soon as its head is parsed; the body follows in
`Response.body` with backpressure (the agent's socket stops being read while the client is slow).
A connection goes back to the pool when its response has been parsed whole and both sides said
keep-alive; anything else closes it.

A reused connection that the agent closed while it was idle fails before a byte of response:
that is retried once on a fresh connection when the body can be sent again, as nginx and Envoy do,
and never counted against the agent.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import httptools

from .body import Body, BodyError
from .timers import Sweeper

if TYPE_CHECKING:
    from .tunnel import Tunnel

__all__ = ["Pool", "Response", "UpstreamError"]

_NEVER = math.inf


class UpstreamError(Exception):
    """A try failed in transport: `kind` is connect | reset | timeout; `sent` whether bytes left."""

    def __init__(self, kind: str, sent: bool, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.sent = sent


class Response:
    """An agent's answer: status, headers as received, and the body still arriving."""

    __slots__ = ("status", "headers", "keep_alive", "content_length", "body", "conn")

    def __init__(self, status: int, headers: list[tuple[str, str]], keep_alive: bool, body: Body, conn: Connection):
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive
        cl = None
        for k, v in headers:
            if k.lower() == "content-length":
                try:
                    cl = int(v)
                except ValueError:
                    cl = None
        self.content_length = cl
        self.body = body
        self.conn = conn

    def discard(self) -> None:
        """Not relaying this answer (a retry follows): the connection cannot be reused."""
        self.conn.close()

    def finish(self) -> None:
        """The caller is done with this answer: the connection goes back to the pool if it can.

        Only now, never when the parser reaches the end: until the caller is done, the connection
        still belongs to this exchange (its deadline, its futures)."""
        self.conn.done_with()


class Connection(asyncio.Protocol):
    """One keep-alive connection to one endpoint; one exchange at a time."""

    def __init__(self, pool: Pool, key: str) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.deadline = _NEVER
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._headers: list[tuple[str, str]] = []
        self._head: asyncio.Future | None = None
        self._body: Body | None = None
        self._got_bytes = False
        self._sent = False
        self._head_request = False
        self._complete = False
        self._keep_alive = False
        self._write_paused = False
        self._drain: asyncio.Future | None = None
        self._pump: asyncio.Task | None = None
        self._failed: UpstreamError | BodyError | None = None
        self._caller_done = True
        # A 101 answer: the connection becomes one end of a tunnel and never returns to the pool.
        self.upgrade_ok = False
        self.upgraded = False
        self._tunnel: Tunnel | None = None
        self._pending = b""

    # -- transport ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._tunnel is not None:
            self._tunnel.close("agent closed")
        self.pool.forget(self)
        self.pool.sweeper.unwatch(self)
        if not self._complete:
            self._fail(UpstreamError("reset", self._sent, str(exc) if exc else "agent closed the connection"))
        d = self._drain
        if d is not None and not d.done():
            d.set_exception(ConnectionResetError("agent closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._tunnel is not None:
            self._tunnel.upstream_full(True)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._tunnel is not None:
            self._tunnel.upstream_full(False)
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._tunnel is not None:
            self._tunnel.from_upstream(data)
            return
        if self.upgraded:
            self._pending += data
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if not self.upgraded:
                self._fail(UpstreamError("reset", True, "agent switched protocols unasked"))
                self.close()
                return
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self._pending = data[offset:]
            if self.transport is not None:
                self.transport.pause_reading()
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("reset", True, f"malformed response: {exc}"))
            self.close()

    # -- parser callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status == 101 and self.upgrade_ok:
            self.upgraded = True
            self.deadline = _NEVER
            self.pool.sweeper.unwatch(self)
            self._body = Body(None)
            resp = Response(status, self._headers, False, self._body, self)
            self._headers = []
            h = self._head
            if h is not None and not h.done():
                h.set_result(resp)
            return
        if 100 <= status < 200:
            # Interim answers (100 Continue, 103 Early Hints) are dropped, as nginx does; the gateway
            # answers the client's 100-continue itself.
            self._headers = []
            return
        self._keep_alive = self.parser.should_keep_alive()
        body = Body(self.transport)
        self._body = body
        resp = Response(status, self._headers, self._keep_alive, body, self)
        self._headers = []
        h = self._head
        if h is not None and not h.done():
            h.set_result(resp)
        if self._head_request or status in (204, 304):
            # httptools cannot be told a response is to HEAD: its body is empty by definition, and
            # the connection is not reused, so a stray Content-Length cannot desynchronise it.
            self._keep_alive = False
            self._finish()

    def on_body(self, data: bytes) -> None:
        if self._body is not None and not self._complete:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        if self._body is None or self.upgraded:
            return  # the end of an interim response
        self._finish()

    def _finish(self) -> None:
        if self._complete:
            return
        self._complete = True
        self.deadline = _NEVER
        self.pool.sweeper.unwatch(self)
        if self._body is not None:
            self._body.finish()
        if self._pump is not None and not self._pump.done():
            # The agent answered before taking the whole upload: the connection is spoilt.
            self._pump.cancel()
            self._keep_alive = False
        if self._caller_done:
            self.pool.release(self, self._keep_alive)

    def done_with(self) -> None:
        """The exchange's caller has finished with the response (see `Response.finish`)."""
        if self._caller_done:
            return
        self._caller_done = True
        if self.upgraded:
            return
        if self._complete:
            self.pool.release(self, self._keep_alive)
        else:
            self.close()  # a body left unread: the connection cannot be reused

    def _fail(self, error: UpstreamError | BodyError) -> None:
        if self._failed is None:
            self._failed = error
        h = self._head
        if h is not None and not h.done():
            h.set_exception(error)
        elif self._body is not None:
            kind = error.kind if isinstance(error, UpstreamError) else "reset"
            self._body.fail(BodyError("upstream", kind, str(error)))

    def expire(self) -> None:
        if not self._complete and not self.closed:
            self._fail(UpstreamError("timeout", self._sent, "timed out"))
            self.close()

    def set_deadline(self, deadline: float) -> None:
        self.deadline = deadline
        if deadline < _NEVER and not self._complete:
            self.pool.sweeper.watch(self)
        else:
            self.pool.sweeper.unwatch(self)

    def attach_tunnel(self, tunnel: Tunnel) -> None:
        self._tunnel = tunnel
        pending, self._pending = self._pending, b""
        if pending:
            tunnel.from_upstream(pending)
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- one exchange ------------------------------------------------------------------

    async def exchange(
        self, head: bytes, body: bytes | Body | None, deadline: float, head_request: bool, upgrade: bool = False
    ) -> Response:
        assert self.transport is not None
        self.upgrade_ok = upgrade
        loop = asyncio.get_running_loop()
        head_future = self._head = loop.create_future()
        self._caller_done = False
        self._body = None
        self._got_bytes = False
        self._complete = False
        self._failed = None
        self._head_request = head_request
        self.set_deadline(deadline)
        if isinstance(body, Body):
            self.transport.write(head)
            self._sent = True
            self._pump = loop.create_task(self._send_body(body))
        else:
            self.transport.write(head + body if body else head)
            self._sent = True
        try:
            return await head_future
        except BaseException:
            self._caller_done = True
            self.close()
            raise
        finally:
            if self._head is head_future:
                self._head = None

    async def _send_body(self, body: Body) -> None:
        """Relay a streamed upload chunked; wait while the agent's buffer is above its high water."""
        t = self.transport
        assert t is not None
        try:
            while True:
                data = await body.read()
                if t.is_closing():
                    return
                if not data:
                    t.write(b"0\r\n\r\n")
                    return
                t.write(b"%x\r\n%b\r\n" % (len(data), data))
                if self._write_paused:
                    self._drain = asyncio.get_running_loop().create_future()
                    try:
                        await self._drain
                    finally:
                        self._drain = None
        except BodyError as exc:
            # The client's upload broke off: its fault, and the agent must not see a complete body.
            self._fail(exc)
            self.close()
        except ConnectionResetError:
            pass


class Pool:
    """Idle keep-alive connections per endpoint key, opened on demand, closed after `idle_seconds`."""

    def __init__(
        self,
        sweeper: Sweeper,
        *,
        idle_seconds: float = 15.0,
        max_idle_per_endpoint: int = 128,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.sweeper = sweeper
        self.clock = clock or sweeper.clock
        # Below the agents' own keep-alive timeout, so the gateway rarely reuses a closing socket.
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle_per_endpoint
        self.connect_timeout = connect_timeout
        self._idle: dict[str, deque[Connection]] = {}
        self.opened = 0

    async def _connect(self, host: str, port: int, key: str, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        timeout = max(min(self.connect_timeout, deadline - self.clock()), 0.001)
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: Connection(self, key), host, port)
        except TimeoutError:
            raise UpstreamError("timeout", False, f"connect to {key} timed out") from None
        except OSError as exc:
            raise UpstreamError("connect", False, f"connect to {key}: {exc.strerror or exc}") from None
        self.opened += 1
        return conn

    def _take_idle(self, key: str) -> Connection | None:
        q = self._idle.get(key)
        if not q:
            return None
        now = self.clock()
        while q:
            conn = q.pop()  # the most recently used: the least likely to have been closed
            if conn.closed or now - conn.idle_since > self.idle_seconds:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    async def exchange(
        self, host: str, port: int, key: str, head: bytes, body: bytes | Body | None, deadline: float,
        head_request: bool = False, upgrade: bool = False,
    ) -> Response:
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await conn.exchange(head, body, deadline, head_request, upgrade)
            except UpstreamError as exc:
                if exc.kind != "reset" or conn._got_bytes or isinstance(body, Body):
                    raise
                # Closed by the agent while idle: nothing was processed, try a fresh connection.
        conn = await self._connect(host, port, key, deadline)
        return await conn.exchange(head, body, deadline, head_request, upgrade)

    def release(self, conn: Connection, keep_alive: bool) -> None:
        if not keep_alive or conn.closed:
            conn.close()
            return
        q = self._idle.setdefault(conn.key, deque())
        if len(q) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.clock()
        q.append(conn)

    def forget(self, conn: Connection) -> None:
        q = self._idle.get(conn.key)
        if q:
            try:
                q.remove(conn)
            except ValueError:
                pass

    def close(self) -> None:
        for q in self._idle.values():
            for c in list(q):
                c.close()
        self._idle.clear()
