"""The gateway's real metric declarations, one fresh set per simulated gateway replica.

Alert tests feed the evaluator through the collectors the gateway itself declares
(`agent_runtime.metrics`: same names, labels and buckets as what runs), never through a copy.
Today those are per-route recorders and module-level collectors on one `CollectorRegistry`; a replica here is a fresh
execution of that module, i.e. what a second gateway process would have. This is the only place
tests reach into `agent_runtime.metrics`, so when the gateway changes how it builds its metrics
only this helper changes.
"""

from __future__ import annotations

import bisect
import importlib.util
from types import ModuleType
from typing import Any


class GatewayReplica:
    """One gateway process's metrics: the real collectors on a registry of their own."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("agent_runtime.metrics")
        assert spec is not None and spec.loader is not None
        module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self._m = module
        self.registry: Any = module.REGISTRY
        self.breaker_state = module.breaker_state
        self.ejected = module.ejected

    def render(self) -> bytes:
        """The /metrics page this replica would serve."""
        return self._m.render()

    def request(self, route: str, code: int, *, endpoint: str = "e1", seconds: float | None = None, n: int = 1) -> None:
        """Record `n` finished requests as the gateway does: status code and, if given, duration."""
        recorder = self._m.route_recorder(route)
        for _ in range(n):
            if seconds is None:
                self.count(route, code, endpoint=endpoint)
            else:
                recorder.record(endpoint, code, seconds)

    def count(self, route: str, code: int, *, endpoint: str = "e1", n: int = 1) -> None:
        """Status-code counts without latency samples (alert tests on error ratios)."""
        counts = self._m.route_recorder(route).counts
        counts[(endpoint, code)] = counts.get((endpoint, code), 0) + n

    def observe(self, route: str, seconds: float) -> None:
        """One latency sample without a status count (alert tests on quantiles)."""
        recorder = self._m.route_recorder(route)
        recorder.buckets[bisect.bisect_left(self._m.LATENCY_BUCKETS, seconds)] += 1
        recorder.total += seconds
        recorder.count += 1
