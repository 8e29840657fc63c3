"""Load balancing over one route's endpoints.

Strategies (config.BalancerConfig.strategy), one object each in `balancer_strategies`:

- ``round_robin``: each candidate in turn.
- ``weighted_round_robin``: NGINX's smooth weighted round robin (each pick adds every weight to its
  endpoint's current value, picks the largest, subtracts the total from it). Computed exactly in
  O(number of distinct weights) per pick, since endpoints of equal weight take turns.
- ``least_connections``: fewest in-flight requests per unit of weight. Exact scan up to
  ``EXACT_SCAN_LIMIT`` candidates; above that, Envoy's LEAST_REQUEST O(1) rule: the better of two
  random candidates (power of two choices, Mitzenmacher).
- ``least_response_time``: lowest peak-EWMA cost (Finagle's PeakEwma), same scan rule.
- ``p2c_ewma`` (default): the lower peak-EWMA cost of two random candidates (Finagle, Linkerd).
- ``consistent_hash``: a hash ring with virtual nodes on the ``hash_header`` value, with bounded
  loads (Mirrokni et al. 2017): no endpoint takes more than ceil((1 + epsilon) x average) in flight.

Around every strategy: required capabilities filter the endpoints, slow start ramps new endpoints'
weights (Envoy's ``slow_start_window``), and below ``panic_threshold_percent`` healthy endpoints the
balancer spreads over all of them (Envoy's panic threshold).

The cost model adds one thing to Finagle's peak EWMA: the mean age of the requests still in flight
on an endpoint is a lower bound on its latency, so an endpoint that stalls is avoided after a few
milliseconds instead of after its first stalled response comes back.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from .balancer_strategies import EXACT_SCAN_LIMIT, STRATEGIES, VIRTUAL_NODES, Strategy, hash_key
from .config import BalancerConfig

__all__ = ["Balancer", "Endpoint", "EXACT_SCAN_LIMIT", "Group", "VIRTUAL_NODES", "hash_key"]

# Slow start never starts below this share of the full weight (Envoy's min_weight_percent = 10).
SLOW_START_MIN_FACTOR = 0.1
# Finagle's PeakEwma: an endpoint with requests in flight but no latency yet is avoided.
_PENALTY = 1e9
_EMPTY: frozenset[str] = frozenset()
_MAX_GROUPS = 256


class Endpoint:
    """One backend address: what every strategy reads (load, weight, ramp) and its health flags."""

    __slots__ = (
        "host",
        "port",
        "key",
        "url",
        "weight",
        "capabilities",
        "in_flight",
        "pending_start_sum",
        "cost",
        "stamp",
        "ramp_start",
        "ramp_until",
        # Health flags only: `healthy` is set by active checks, `ejected` by outlier detection
        # (whose counters live in its own per-endpoint monitor), `available` is what picks read.
        "healthy",
        "ejected",
        "available",
    )

    def __init__(self, host: str, port: int, weight: int = 1, capabilities: Iterable[str] = ()) -> None:
        self.host = host
        self.port = port
        self.key = f"{host}:{port}"
        self.url = f"http://{host}:{port}"
        self.weight = weight
        self.capabilities = frozenset(capabilities)
        self.in_flight = 0
        self.pending_start_sum = 0.0
        self.cost = 0.0
        self.stamp = 0.0
        self.ramp_start = 0.0
        self.ramp_until = 0.0
        self.healthy = True
        self.ejected = False
        self.available = True

    def __repr__(self) -> str:
        return f"Endpoint({self.key}, w={self.weight}, in_flight={self.in_flight}, available={self.available})"


class Group:
    """Candidates for one set of required capabilities, rebuilt when endpoints or health change."""

    __slots__ = (
        "matched",
        "cands",
        "panic",
        "ramp_until",
        "rr",
        "classes",
        "step",
        "total_weight",
        "ring_hashes",
        "ring_eps",
        "whole",
        "current",
    )

    def __init__(self, matched: list[Endpoint], cands: list[Endpoint], panic: bool, whole: bool) -> None:
        self.matched = matched
        self.cands = cands
        self.panic = panic
        self.whole = whole
        self.ramp_until = max((e.ramp_until for e in cands), default=0.0)
        self.rr = 0
        self.step = 0
        self.total_weight = sum(e.weight for e in cands)
        # Smooth WRR: endpoints grouped by weight, in list order: [weight, members, pointer, rounds]
        by_weight: dict[int, list[int]] = {}
        for i, e in enumerate(cands):
            by_weight.setdefault(e.weight, []).append(i)
        self.classes: list[list[Any]] = [[w, idx, 0, 0] for w, idx in by_weight.items()]
        self.ring_hashes: list[int] | None = None
        self.ring_eps: list[Endpoint] | None = None
        self.current: list[float] | None = None


class Balancer:
    """Picks an endpoint for each request of one route (see the module docstring for strategies).

    The caller brackets each request with `start(ep)` and `finish(ep, started, ok)`; health code
    changes `Endpoint.available` and then calls `invalidate()`.
    """

    def __init__(
        self,
        config: BalancerConfig | None = None,
        endpoints: Iterable[Endpoint] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or BalancerConfig()
        self._clock = clock
        # What strategies read: the clock, a random source, the bounded-load epsilon.
        self.now = clock
        self._rng = rng or random.Random()
        self.random = self._rng.random
        self.epsilon = self.config.bounded_load_epsilon
        self._tau = self.config.ewma_decay_seconds
        self._slow_start = self.config.slow_start_seconds
        self._panic = self.config.panic_threshold_percent
        self.endpoints: dict[str, Endpoint] = {}
        self._groups: dict[frozenset[str], Group] = {}
        self._initialized = False
        self.total_in_flight = 0
        self.strategy: Strategy = STRATEGIES[self.config.strategy](self)
        self.set_endpoints(endpoints)

    # -- membership and health ------------------------------------------------------------

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoint set, keeping the state of endpoints that stay (matched by address)."""
        now = self._clock()
        new: dict[str, Endpoint] = {}
        for ep in endpoints:
            old = self.endpoints.get(ep.key)
            if old is not None:
                old.weight = ep.weight
                old.capabilities = ep.capabilities
                new[ep.key] = old
            else:
                # Endpoints present at start are not ramped: there is nothing to protect them from.
                if self._initialized:
                    self.start_ramp(ep, now)
                new[ep.key] = ep
        self.endpoints = new
        self._initialized = True
        self.invalidate()

    def start_ramp(self, ep: Endpoint, now: float | None = None) -> None:
        """Begin slow start for `ep` (a new endpoint, or one back from being unhealthy)."""
        if self._slow_start > 0:
            now = self._clock() if now is None else now
            ep.ramp_start = now
            ep.ramp_until = now + self._slow_start

    def invalidate(self) -> None:
        """Forget cached candidate lists; call after any change of membership or availability."""
        self._groups = {}

    def _group(self, required: frozenset[str]) -> Group:
        if required:
            matched = [e for e in self.endpoints.values() if required <= e.capabilities]
        else:
            matched = list(self.endpoints.values())
        if len(self._groups) >= _MAX_GROUPS:
            # Capability sets come from a request header: never let them grow the cache unbounded.
            self._groups = {}
        healthy = [e for e in matched if e.available]
        panic = bool(matched) and len(healthy) * 100.0 < self._panic * len(matched)
        g = Group(matched, matched if panic else healthy, panic, not required)
        self._groups[required] = g
        return g

    def candidates(self, required: frozenset[str] = _EMPTY) -> list[Endpoint]:
        g = self._groups.get(required) or self._group(required)
        return g.cands

    def in_panic(self, required: frozenset[str] = _EMPTY) -> bool:
        g = self._groups.get(required) or self._group(required)
        return g.panic

    # -- picking ------------------------------------------------------------------------

    def pick(
        self,
        required: frozenset[str] = _EMPTY,
        key: str | None = None,
        exclude: Collection[Endpoint] | None = None,
    ) -> Endpoint | None:
        """The endpoint for the next request, or None when no candidate offers `required`.

        `key` feeds consistent hashing; `exclude` (endpoints already tried) is for retries.
        """
        g = self._groups.get(required)
        if g is None:
            g = self._group(required)
        if not g.cands:
            return None
        if exclude:
            return self.strategy.pick_excluding(g, key, exclude)
        return self.strategy.pick(g, key)

    def choice(self, seq: Sequence[Endpoint]) -> Endpoint:
        """A random member of `seq`, from this balancer's random source (seeded in tests)."""
        return self._rng.choice(seq)

    def effective_weight(self, ep: Endpoint, now: float) -> float:
        """The weight slow start allows `ep` at `now` (Envoy: weight x max(10%, elapsed / window))."""
        if now >= ep.ramp_until:
            return ep.weight
        return ep.weight * max(SLOW_START_MIN_FACTOR, (now - ep.ramp_start) / self._slow_start)

    def load(self, ep: Endpoint, now: float) -> float:
        """Peak-EWMA cost x (in flight + 1), Finagle's PeakEwma load, per unit of weight."""
        cost = ep.cost
        if cost:
            dt = now - ep.stamp
            if dt > 0:
                cost *= math.exp(-dt / self._tau)
        n = ep.in_flight
        if n:
            # Requests still in flight have taken at least their age so far.
            age = now - ep.pending_start_sum / n
            if age > cost:
                cost = age
            elif cost == 0.0:
                return _PENALTY + n
        return cost * (n + 1) / ep.weight

    # -- request bookkeeping -------------------------------------------------------------

    def start(self, ep: Endpoint) -> float:
        """Count a request as in flight on `ep`; returns its start time for `finish`."""
        now = self._clock()
        ep.in_flight += 1
        ep.pending_start_sum += now
        self.total_in_flight += 1
        return now

    def abandon(self, ep: Endpoint, started: float) -> None:
        """End a request that was cut short by its client: it says nothing about the endpoint."""
        ep.in_flight -= 1
        ep.pending_start_sum -= started
        if not ep.in_flight:
            ep.pending_start_sum = 0.0
        self.total_in_flight -= 1

    def finish(self, ep: Endpoint, started: float, ok: bool = True) -> float:
        """End a request started at `started`; feeds its latency to the peak EWMA. Returns rtt."""
        now = self._clock()
        ep.in_flight -= 1
        ep.pending_start_sum -= started
        if not ep.in_flight:
            ep.pending_start_sum = 0.0
        self.total_in_flight -= 1
        rtt = now - started
        if not ok:
            # A failure is worth more than a slow answer: make the endpoint look much slower.
            rtt = max(rtt, 4.0 * ep.cost, 0.05)
        # Finagle PeakEwma.observe: jump to a higher latency at once, decay towards lower ones.
        cost = ep.cost
        if rtt > cost:
            ep.cost = rtt
        else:
            w = math.exp(-max(now - ep.stamp, 0.0) / self._tau)
            ep.cost = cost * w + rtt * (1.0 - w)
        ep.stamp = now
        return rtt
