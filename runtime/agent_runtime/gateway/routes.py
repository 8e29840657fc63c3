"""Run-time state of one route: endpoints (static or from DNS), balancer, breakers, retries, health."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from .. import metrics as m
from ..balancer import Balancer, Endpoint
from ..breaker import CircuitBreaker
from ..config import ConfigError, Route
from ..health import HealthChecker, OutlierDetector
from ..retry import RetryBudget, RetryPolicy
from .paths import normalise_prefix

__all__ = ["Resolver", "RouteState", "getaddrinfo_resolver"]

log = logging.getLogger("agent_runtime.gateway")

Resolver = Callable[[str, int], Awaitable[list[str]]]
Probe = Callable[[Endpoint, str, float], Awaitable[bool]]


async def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM), timeout=5.0
    )
    return sorted({info[4][0] for info in infos})


class RouteState:
    """Everything one route needs at run time: endpoints, balancer, breakers, retries, health."""

    def __init__(self, route: Route, clock: Callable[[], float]) -> None:
        self.route = route
        self.name = route.name
        self.prefix = normalise_prefix(route.path_prefix)
        self.rewrite = normalise_prefix(route.prefix_rewrite) if route.prefix_rewrite is not None else None
        self.required = frozenset(route.required_capabilities)
        self.clock = clock
        self.balancer = Balancer(route.balancer, clock=clock)
        self.hash_header = route.balancer.hash_header if route.balancer.strategy == "consistent_hash" else None
        self.retry = RetryPolicy(route.retry, RetryBudget.from_config(route.retry, clock), clock=clock)
        self.outlier = OutlierDetector(
            route.outlier, self.balancer, clock=clock, on_eject=self._ejected,
            on_refused=lambda ep, reason: m.ejections_refused.labels(self.name, reason).inc(),
        )
        # Breakers per endpoint key: the route owns them, the Endpoint knows nothing of them.
        self.breakers: dict[str, CircuitBreaker] = {}
        self.health: HealthChecker | None = None
        self.tasks: list[asyncio.Task] = []
        self.resolved = route.discovery.kind == "static"
        self.recorder = m.route_recorder(self.name)
        self.retries = m.retries.labels(self.name)
        self.exhausted = m.retry_budget_exhausted.labels(self.name)
        self._errors: dict[str, Any] = {}
        if route.discovery.kind == "static":
            self.set_endpoints(
                [Endpoint(e.host, e.port, e.weight, e.capabilities) for e in route.discovery.endpoints]
            )

    def upstream_path(self, path: str) -> str:
        """The (normalised, matched) path as the agent gets it: the prefix rewritten, if asked."""
        if self.rewrite is None:
            return path
        return self.rewrite + path[len(self.prefix):]

    # -- endpoints -----------------------------------------------------------------------

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        before = set(self.balancer.endpoints)
        self.balancer.set_endpoints(endpoints)
        after = self.balancer.endpoints
        for key in after:
            if key not in self.breakers and self.route.breaker.enabled:
                self.breakers[key] = CircuitBreaker(
                    self.route.breaker, name=f"{self.name}/{key}", route=self.name, endpoint=key, clock=self.clock
                )
        for key in before - set(after):
            self._forget(key)
        m.endpoints.labels(self.name).set(len(after))

    def _forget(self, key: str) -> None:
        """A removed endpoint's series go from /metrics, or an open breaker would alert forever."""
        self.breakers.pop(key, None)
        m.forget_endpoint(self.name, key)

    def _ejected(self, ep: Endpoint, reason: str) -> None:
        m.ejections.labels(self.name, ep.key, reason).inc()
        m.ejected.labels(self.name).set(self.outlier.ejected_count())

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

    async def discover_once(self, resolver: Resolver, *, strict: bool = False) -> None:
        """Resolve once. `strict` (a config being applied): a name the resolver cannot even
        encode is a `ConfigError`, so the config is refused; a failed lookup never is."""
        d = self.route.discovery
        assert d.service is not None
        try:
            addresses = await resolver(d.service, d.port)
        except (OSError, asyncio.TimeoutError) as exc:
            # Keep the last known endpoints: a DNS hiccup must not empty a route.
            log.warning("route %s: cannot resolve %s: %s", self.name, d.service, exc or type(exc).__name__)
            return
        except Exception as exc:  # noqa: BLE001 - UnicodeError from the IDNA codec, and the like
            if strict:
                raise ConfigError(
                    f"routes.{self.name}.discovery.service: cannot resolve {d.service!r}: {exc}"
                ) from None
            log.warning("route %s: cannot resolve %s: %s", self.name, d.service, exc or type(exc).__name__)
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

    def start(self, probe: Probe, resolver: Resolver) -> None:
        if self.route.discovery.kind == "dns":
            self.tasks.append(asyncio.create_task(self.discover_forever(resolver), name=f"discover-{self.name}"))
        self.health = HealthChecker(
            self.route.health_check,
            self.balancer,
            probe=probe,
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
