"""The gateway process's lifecycle: listeners, routes, config reload, in-process alerting.

The request path itself is `proxy.Proxy`; the admin endpoints are `admin.Admin`. A config reload
builds new `RouteState`s only for routes that changed and hands the new table to the proxy, so
requests in flight finish on the state they started with.
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
from .admin import Admin
from .proxy import RETRY_BUFFER_BYTES, Proxy
from .relay import SMALL_RESPONSE_BYTES
from .routes import Resolver, RouteState, getaddrinfo_resolver
from .timers import Sweeper
from .upstream import Pool, UpstreamError
from .body import BodyError
from .http1 import Server

__all__ = ["Gateway", "RETRY_BUFFER_BYTES", "SMALL_RESPONSE_BYTES"]

log = logging.getLogger("agent_runtime.gateway")

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
        self.proxy: Proxy | None = None
        self.admin = Admin(lambda: self.routes)
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

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet answered."""
        return self.proxy.in_flight if self.proxy is not None else 0

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
        self.proxy = Proxy(self.gw, self.pool, self.sweeper, self.clock, self.access_log)
        await self._apply_routes(self.config)
        await self._apply_alerts(self.config.alerts)
        if self.config_path is not None:
            self._config_stamp = self._stamp()
            self._tasks.append(asyncio.create_task(self._watch_config(), name="config-watch"))
        bind = host if host is not None else self.gw.host
        self._proxy_server = Server(self.proxy.handle, self.gw, self.sweeper)
        srv = await loop.create_server(
            self._proxy_server, bind, self.gw.port if port is None else port, backlog=1024,
            reuse_address=True, reuse_port=reuse_port or None,
        )
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if admin_port is None:
            admin_port = 0 if port == 0 else self.gw.admin_port
        admin_bind = host if host is not None else self.gw.admin_host
        self._admin_server = Server(self.admin.handle, self.gw, self.sweeper)
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
        if self.proxy is not None:
            self.proxy.configure(config.gateway, list(new.values()))
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

    def ready(self) -> tuple[bool, list[str]]:
        """Ready when at least one route can serve; routes without endpoints are listed."""
        return self.admin.ready()
