"""One object per balancing strategy, each with `pick` and `pick_excluding`.

A strategy decides only which candidate of a group gets the next request. The `Balancer` owns
what every strategy reads: the candidate groups (capability filter, panic threshold), slow-start
weights, the peak-EWMA load and the clock; a strategy keeps only its own cursor state, on the
group it picks from (it is rebuilt whenever membership or health changes).

`pick_excluding` serves retries: another endpoint than those already tried, if there is one,
chosen by the strategy's own rule (connections for least connections, the ring for consistent
hashing, cost for the EWMA strategies).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Collection
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .balancer import Balancer, Endpoint, Group

__all__ = [
    "ConsistentHash",
    "EXACT_SCAN_LIMIT",
    "LeastConnections",
    "LeastResponseTime",
    "P2CEwma",
    "RoundRobin",
    "STRATEGIES",
    "SmoothWeightedRoundRobin",
    "Strategy",
    "VIRTUAL_NODES",
    "hash_key",
]

# Up to this many candidates least_connections / least_response_time scan them all.
EXACT_SCAN_LIMIT = 32
# Virtual nodes per unit of weight on the consistent-hash ring (ketama uses 40 x 4 points).
VIRTUAL_NODES = 100


def hash_key(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's str hash is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Strategy:
    """The rule one route's balancer picks by; subclasses set `name` and implement `pick`."""

    name: ClassVar[str]

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer

    def pick(self, g: Group, key: str | None) -> Endpoint:
        """The candidate of `g` for the next request (`g.cands` is never empty here)."""
        raise NotImplementedError

    def pick_excluding(self, g: Group, key: str | None, exclude: Collection[Endpoint]) -> Endpoint:
        """A retry: the best candidate not in `exclude`, or the best of all when none is left."""
        rest = _rest(g, exclude)
        if len(rest) == 1:
            return rest[0]
        return self._best_of(rest)

    def _best_of(self, rest: list[Endpoint]) -> Endpoint:
        b = self.balancer
        now = b.now()
        return min(rest, key=lambda e: b.load(e, now))


def _rest(g: Group, exclude: Collection[Endpoint]) -> list[Endpoint]:
    # Retries are rare: a plain filter is cheap enough.
    return [e for e in g.cands if e not in exclude] or g.cands


class _Cyclic(Strategy):
    """Round-robin kinds: a retry takes the next turn, or a random untried endpoint."""

    def pick_excluding(self, g: Group, key: str | None, exclude: Collection[Endpoint]) -> Endpoint:
        rest = _rest(g, exclude)
        if len(rest) == 1:
            return rest[0]
        ep = self.pick(g, key)
        if ep not in exclude:
            return ep
        return rest[int(self.balancer.random() * len(rest))]

    def _pick_ramp(self, g: Group) -> Endpoint:
        # During slow start weights are fractional and change each pick: run NGINX's loop as is.
        b = self.balancer
        now = b.now()
        cands = g.cands
        cur = g.current
        if cur is None:
            cur = g.current = [0.0] * len(cands)
        total = 0.0
        best_i = 0
        best_v = -math.inf
        for i, ep in enumerate(cands):
            w = b.effective_weight(ep, now)
            total += w
            v = cur[i] + w
            cur[i] = v
            if v > best_v:
                best_v, best_i = v, i
        cur[best_i] -= total
        return cands[best_i]


class SmoothWeightedRoundRobin(_Cyclic):
    """NGINX's smooth weighted round robin, computed exactly in O(distinct weights) per pick."""

    name = "weighted_round_robin"

    def pick(self, g: Group, key: str | None) -> Endpoint:
        if g.ramp_until and g.ramp_until > self.balancer.now():
            return self._pick_ramp(g)
        # NGINX smooth WRR after `step` picks: current_i = step x w_i - total x picks_i. Endpoints
        # of one weight are picked in list order, so per weight class only the class's pointer can
        # hold the maximum: compare classes, ties to the lowest list index (NGINX keeps the first).
        step = g.step + 1
        total = g.total_weight
        best = None
        best_val = 0
        best_idx = 0
        for c in g.classes:
            val = step * c[0] - total * c[3]
            idx = c[1][c[2]]
            if best is None or val > best_val or (val == best_val and idx < best_idx):
                best, best_val, best_idx = c, val, idx
        assert best is not None
        p = best[2] + 1
        if p == len(best[1]):
            best[2] = 0
            best[3] += 1
        else:
            best[2] = p
        if step == total:
            # One full cycle: every current value is back to zero.
            step = 0
            for c in g.classes:
                c[2] = 0
                c[3] = 0
        g.step = step
        return g.cands[best_idx]

class RoundRobin(_Cyclic):
    """Each candidate in turn; during slow start, smooth weighted round robin on ramped weights."""

    name = "round_robin"

    def pick(self, g: Group, key: str | None) -> Endpoint:
        if g.ramp_until and g.ramp_until > self.balancer.now():
            return self._pick_ramp(g)
        cands = g.cands
        i = g.rr
        g.rr = i + 1
        return cands[i % len(cands)]


class LeastConnections(Strategy):
    """Fewest in-flight requests per unit of weight: an exact scan up to `EXACT_SCAN_LIMIT`
    candidates, above that Envoy's LEAST_REQUEST rule (the better of two random candidates)."""

    name = "least_connections"

    def pick(self, g: Group, key: str | None) -> Endpoint:
        b = self.balancer
        cands = g.cands
        n = len(cands)
        ramp = g.ramp_until and g.ramp_until > b.now()
        if n > EXACT_SCAN_LIMIT:
            r = b.random
            i = int(r() * n)
            j = int(r() * (n - 1))
            if j >= i:
                j += 1
            a = cands[i]
            c = cands[j]
            if ramp:
                now = b.now()
                sa = (a.in_flight + 1) / b.effective_weight(a, now)
                sc = (c.in_flight + 1) / b.effective_weight(c, now)
            else:
                sa = (a.in_flight + 1) / a.weight
                sc = (c.in_flight + 1) / c.weight
            return a if sa <= sc else c
        # Exact scan from a rotating start, so ties spread instead of piling on the first.
        off = g.rr
        g.rr = off + 1
        now = b.now() if ramp else 0.0
        best = cands[0]
        best_s = math.inf
        for i in range(n):
            ep = cands[(off + i) % n]
            w = b.effective_weight(ep, now) if ramp else ep.weight
            s = (ep.in_flight + 1) / w
            if s < best_s:
                best, best_s = ep, s
        return best

    def _best_of(self, rest: list[Endpoint]) -> Endpoint:
        b = self.balancer
        now = b.now()
        return min(rest, key=lambda e: (e.in_flight + 1) / b.effective_weight(e, now))


class P2CEwma(Strategy):
    """The lower peak-EWMA load of two random candidates (Finagle, Linkerd)."""

    name = "p2c_ewma"

    def pick(self, g: Group, key: str | None) -> Endpoint:
        cands = g.cands
        n = len(cands)
        if n == 1:
            return cands[0]
        b = self.balancer
        r = b.random
        i = int(r() * n)
        j = int(r() * (n - 1))
        if j >= i:
            j += 1
        a = cands[i]
        c = cands[j]
        now = b.now()
        la = b.load(a, now)
        lc = b.load(c, now)
        if g.ramp_until > now:
            la = la * a.weight / b.effective_weight(a, now)
            lc = lc * c.weight / b.effective_weight(c, now)
        return a if la <= lc else c


class LeastResponseTime(Strategy):
    """The lowest peak-EWMA load by an exact scan; above `EXACT_SCAN_LIMIT` candidates, P2C."""

    name = "least_response_time"

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        self._many = P2CEwma(balancer)

    def pick(self, g: Group, key: str | None) -> Endpoint:
        cands = g.cands
        n = len(cands)
        if n > EXACT_SCAN_LIMIT:
            return self._many.pick(g, key)
        b = self.balancer
        now = b.now()
        ramp = g.ramp_until > now
        off = g.rr
        g.rr = off + 1
        load = b.load
        best = cands[0]
        best_s = math.inf
        for i in range(n):
            ep = cands[(off + i) % n]
            s = load(ep, now)
            if ramp:
                s = s * ep.weight / b.effective_weight(ep, now)
            if s < best_s:
                best, best_s = ep, s
        return best


class ConsistentHash(Strategy):
    """A hash ring with virtual nodes on the key, with bounded loads (Mirrokni et al. 2017): no
    endpoint takes more than ceil((1 + epsilon) x average) in flight. Without a key, P2C."""

    name = "consistent_hash"

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        self._keyless = P2CEwma(balancer)

    def pick(self, g: Group, key: str | None) -> Endpoint:
        if key is None:
            return self._keyless.pick(g, key)
        return self._walk(g, key, ())

    def pick_excluding(self, g: Group, key: str | None, exclude: Collection[Endpoint]) -> Endpoint:
        if key is None:
            return self.balancer.choice([e for e in g.cands if e not in exclude] or g.cands)
        # The key's next endpoint on the ring (within the load bound), so every retry of one
        # conversation lands on the same replica.
        return self._walk(g, key, exclude)

    def _walk(self, g: Group, key: str, exclude: Collection[Endpoint]) -> Endpoint:
        b = self.balancer
        hashes, eps = g.ring_hashes, g.ring_eps
        if hashes is None or eps is None:
            hashes, eps = self._ring(g)
        cands = g.cands
        n = len(cands)
        total = b.total_in_flight if g.whole else sum(e.in_flight for e in cands)
        # Bounded load: a new request may go where in_flight + 1 <= ceil((1 + eps) x mean).
        cap = math.ceil((1.0 + b.epsilon) * (total + 1) / n)
        panic = g.panic
        size = len(hashes)
        i = bisect.bisect_left(hashes, hash_key(key))
        fallback = None
        for step in range(size):
            ep = eps[(i + step) % size]
            if not (panic or ep.available) or (exclude and ep in exclude):
                continue
            if ep.in_flight + 1 <= cap:
                return ep
            if fallback is None:
                fallback = ep
        if fallback is not None:
            return fallback
        return cands[0]

    @staticmethod
    def _ring(g: Group) -> tuple[list[int], list[Endpoint]]:
        # The ring holds every capability-matched endpoint, healthy or not, so health changes
        # never move keys between the endpoints that stay healthy.
        points: list[tuple[int, Endpoint]] = []
        for ep in g.matched:
            for v in range(VIRTUAL_NODES * min(ep.weight, 10)):
                points.append((hash_key(f"{ep.key}#{v}"), ep))
        points.sort(key=lambda p: p[0])
        g.ring_hashes = [p[0] for p in points]
        g.ring_eps = [p[1] for p in points]
        return g.ring_hashes, g.ring_eps


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (RoundRobin, SmoothWeightedRoundRobin, LeastConnections, LeastResponseTime, P2CEwma, ConsistentHash)
}
