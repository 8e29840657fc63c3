"""Endpoint health: active HTTP checks and passive outlier ejection (Envoy's model).

Active: every `interval_seconds` each endpoint's `path` is fetched; `unhealthy_threshold`
consecutive failures mark it unhealthy, `healthy_threshold` consecutive 2xx mark it healthy again.

Passive (Envoy outlier detection): `consecutive_5xx` 5xx answers, or `consecutive_gateway_failure`
gateway failures (connect errors, resets, timeouts, 502/503/504), eject an endpoint for
`base_ejection_time_seconds` x the number of times it was ejected, capped at
`max_ejection_time_seconds`; never more than `max_ejection_percent` of a route's endpoints are
ejected at once. An endpoint that stays in for a base ejection time has its count decremented.

Either way the result is `Endpoint.available`, which the balancer reads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp

from .balancer import Balancer, Endpoint
from .config import HealthCheckConfig, OutlierConfig

__all__ = ["HealthChecker", "HostMonitor", "OutlierDetector"]

log = logging.getLogger("agent_runtime.health")


def _refresh(ep: Endpoint) -> bool:
    available = ep.healthy and not ep.ejected
    changed = available != ep.available
    ep.available = available
    return changed


class HostMonitor:
    """Outlier state of one endpoint, kept by the detector (Envoy's DetectorHostMonitorImpl);
    the endpoint itself only carries the resulting `ejected` flag."""

    __slots__ = ("consecutive_5xx", "consecutive_gateway_failure", "times_ejected", "ejected_until", "last_unejected_at")

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway_failure = 0
        self.times_ejected = 0
        self.ejected_until = 0.0
        self.last_unejected_at = 0.0


class OutlierDetector:
    """Passive health for one route: counts consecutive failures per endpoint and ejects."""

    def __init__(
        self,
        config: OutlierConfig,
        balancer: Balancer,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_eject: Callable[[Endpoint, str], None] | None = None,
        on_refused: Callable[[Endpoint, str], None] | None = None,
        sweep_interval: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.balancer = balancer
        self._clock = clock
        self._on_eject = on_eject
        self._on_refused = on_refused
        self._random = (rng or random.Random()).random
        # Ejections max_ejection_percent did not allow (Envoy's ejections_overflow).
        self.refused = 0
        self._sweep_interval = sweep_interval
        self._next_sweep = 0.0
        self.ejections = 0
        self._monitors: dict[str, HostMonitor] = {}

    def monitor(self, ep: Endpoint) -> HostMonitor:
        """The outlier state of `ep` (created on first use, dropped when `ep` leaves the route)."""
        mon = self._monitors.get(ep.key)
        if mon is None:
            if len(self._monitors) > 2 * len(self.balancer.endpoints) + 16:
                # Endpoints come and go with DNS: forget the state of those that left.
                live = self.balancer.endpoints
                self._monitors = {k: v for k, v in self._monitors.items() if k in live}
            mon = self._monitors[ep.key] = HostMonitor()
        return mon

    def success(self, ep: Endpoint) -> None:
        mon = self.monitor(ep)
        mon.consecutive_5xx = 0
        mon.consecutive_gateway_failure = 0

    def failure(self, ep: Endpoint, *, status: int | None = None, gateway_failure: bool = False) -> bool:
        """Record a 5xx (`status`) or a gateway failure; True if this ejected the endpoint."""
        if status is not None and status < 500:
            self.success(ep)
            return False
        gateway = gateway_failure or status in (502, 503, 504)
        mon = self.monitor(ep)
        mon.consecutive_5xx += 1
        if gateway:
            mon.consecutive_gateway_failure += 1
        else:
            mon.consecutive_gateway_failure = 0
        if ep.ejected:
            return False
        if mon.consecutive_gateway_failure >= self.config.consecutive_gateway_failure:
            return self.eject(ep, "consecutive_gateway_failure")
        if mon.consecutive_5xx >= self.config.consecutive_5xx:
            return self.eject(ep, "consecutive_5xx")
        return False

    def eject(self, ep: Endpoint, reason: str) -> bool:
        eps = self.balancer.endpoints.values()
        ejected = sum(1 for e in eps if e.ejected)
        if (ejected + 1) * 100.0 > self.config.max_ejection_percent * len(eps):
            self.refused += 1
            if self._on_refused is not None:
                self._on_refused(ep, reason)
            return False
        now = self._clock()
        mon = self.monitor(ep)
        mon.times_ejected += 1
        duration = min(
            self.config.base_ejection_time_seconds * mon.times_ejected, self.config.max_ejection_time_seconds
        ) + self.config.max_ejection_time_jitter_seconds * self._random()
        ep.ejected = True
        mon.ejected_until = now + duration
        mon.consecutive_5xx = mon.consecutive_gateway_failure = 0
        self.ejections += 1
        if _refresh(ep):
            self.balancer.invalidate()
        log.warning("ejected %s for %.1fs (%s, ejection #%d)", ep.key, duration, reason, mon.times_ejected)
        if self._on_eject is not None:
            self._on_eject(ep, reason)
        return True

    def maybe_sweep(self) -> None:
        """Cheap to call often: sweeps at most every `sweep_interval` seconds."""
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_interval
            self.sweep(now)

    def sweep(self, now: float | None = None) -> None:
        """Bring back endpoints whose ejection time is over; forgive ones that stayed in."""
        now = self._clock() if now is None else now
        changed = False
        for ep in self.balancer.endpoints.values():
            mon = self._monitors.get(ep.key)
            if mon is None:
                continue
            if ep.ejected:
                if now >= mon.ejected_until:
                    ep.ejected = False
                    mon.last_unejected_at = now
                    if _refresh(ep):
                        changed = True
                        self.balancer.start_ramp(ep, now)
            elif mon.times_ejected and now - max(mon.last_unejected_at, mon.ejected_until) >= (
                self.config.base_ejection_time_seconds
            ):
                mon.times_ejected -= 1
                mon.last_unejected_at = now
        if changed:
            self.balancer.invalidate()

    def ejected_count(self) -> int:
        return sum(1 for e in self.balancer.endpoints.values() if e.ejected)


class HealthChecker:
    """Active health checks of one route's endpoints.

    Probes go through `probe(endpoint, path, timeout)` (the gateway passes one over its own
    upstream pool) or, for standalone use, an aiohttp `session`.
    """

    def __init__(
        self,
        config: HealthCheckConfig,
        balancer: Balancer,
        session: aiohttp.ClientSession | None = None,
        *,
        probe: Callable[[Endpoint, str, float], Awaitable[bool]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Endpoint, bool], None] | None = None,
    ) -> None:
        if (session is None) == (probe is None):
            raise ValueError("HealthChecker needs exactly one of `session` or `probe`")
        self.config = config
        self.balancer = balancer
        self.session = session
        self._probe = probe
        self._clock = clock
        self._on_change = on_change
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        # Consecutive probe results per endpoint key: (successes, failures).
        self._streaks: dict[str, tuple[int, int]] = {}

    async def probe(self, ep: Endpoint) -> bool:
        if self._probe is not None:
            return await self._probe(ep, self.config.path, self.config.timeout_seconds)
        assert self.session is not None
        try:
            async with self.session.get(
                ep.url + self.config.path, timeout=self._timeout, headers={"user-agent": "agent-gateway-health"}
            ) as resp:
                await resp.read()
                return 200 <= resp.status < 300
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return False

    def observe(self, ep: Endpoint, ok: bool) -> bool:
        """Apply one probe result to `ep`; True if its health flipped."""
        cfg = self.config
        successes, failures = self._streaks.get(ep.key, (0, 0))
        if ok:
            successes, failures = successes + 1, 0
        else:
            successes, failures = 0, failures + 1
        self._streaks[ep.key] = (successes, failures)
        if ok:
            if not ep.healthy and successes >= cfg.healthy_threshold:
                ep.healthy = True
                self.balancer.start_ramp(ep)
                return self._flip(ep)
        elif ep.healthy and failures >= cfg.unhealthy_threshold:
            ep.healthy = False
            return self._flip(ep)
        return False

    def _flip(self, ep: Endpoint) -> bool:
        log.warning("endpoint %s is now %s", ep.key, "healthy" if ep.healthy else "unhealthy")
        if _refresh(ep):
            self.balancer.invalidate()
        if self._on_change is not None:
            self._on_change(ep, ep.healthy)
        return True

    async def check_once(self) -> None:
        eps = list(self.balancer.endpoints.values())
        live = {ep.key for ep in eps}
        self._streaks = {k: v for k, v in self._streaks.items() if k in live}
        results = await asyncio.gather(*(self.probe(ep) for ep in eps))
        for ep, ok in zip(eps, results):
            self.observe(ep, ok)
