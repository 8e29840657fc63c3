"""Balancer properties a user would notice: fair shares, stickiness, caps, filters, panic, ramp."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from agent_runtime.balancer import Balancer, Endpoint, hash_key
from agent_runtime.config import BalancerConfig

from .conftest import FakeClock


def eps(n: int, weights: list[int] | None = None, caps: dict[int, tuple[str, ...]] | None = None) -> list[Endpoint]:
    caps = caps or {}
    return [Endpoint(f"10.0.0.{i}", 8080, (weights or [1] * n)[i], caps.get(i, ())) for i in range(n)]


def nginx_swrr(weights: list[int], picks: int) -> list[int]:
    """NGINX's ngx_http_upstream_get_peer, literally: the reference sequence."""
    current = [0] * len(weights)
    out = []
    for _ in range(picks):
        best = -1
        for i, w in enumerate(weights):
            current[i] += w
            if best == -1 or current[i] > current[best]:
                best = i
        current[best] -= sum(weights)
        out.append(best)
    return out


def test_swrr_shares_match_weights_exactly_over_a_cycle():
    weights = [5, 3, 1, 1]
    b = Balancer(BalancerConfig(strategy="weighted_round_robin", slow_start_seconds=0), eps(4, weights))
    cycle = [b.pick() for _ in range(sum(weights))]
    counts = Counter(e.host for e in cycle)
    assert [counts[f"10.0.0.{i}"] for i in range(4)] == weights


def test_swrr_is_smooth_and_equals_nginx_sequence():
    b = Balancer(BalancerConfig(strategy="weighted_round_robin"), eps(3, [5, 1, 1]))
    assert "".join("abc"[int(b.pick().host.rsplit(".", 1)[1])] for _ in range(7)) == "aabacaa"
    rng = random.Random(7)
    for _ in range(100):
        weights = [rng.randint(1, 9) for _ in range(rng.randint(1, 9))]
        b = Balancer(BalancerConfig(strategy="weighted_round_robin"), eps(len(weights), weights))
        got = [int(b.pick().host.rsplit(".", 1)[1]) for _ in range(2 * sum(weights) + 3)]
        assert got == nginx_swrr(weights, len(got))


def test_round_robin_visits_each_once_per_round():
    b = Balancer(BalancerConfig(strategy="round_robin"), eps(5))
    first = [b.pick().key for _ in range(5)]
    assert len(set(first)) == 5
    assert [b.pick().key for _ in range(5)] == first


def test_consistent_hash_is_sticky_and_stable_across_instances():
    cfg = BalancerConfig(strategy="consistent_hash")
    b1, b2 = Balancer(cfg, eps(8)), Balancer(cfg, eps(8))
    for k in range(200):
        key = f"conv-{k}"
        assert b1.pick(key=key).key == b1.pick(key=key).key == b2.pick(key=key).key
    # The hash is the same in every process (Python's str hash is not).
    assert hash_key("conv-1") == 0x99e53292fbf53cb0


@pytest.mark.parametrize("n", [5, 10, 20])
def test_consistent_hash_removing_one_endpoint_moves_about_one_nth_of_keys(n):
    cfg = BalancerConfig(strategy="consistent_hash")
    keys = [f"conv-{k}" for k in range(5000)]
    full = Balancer(cfg, eps(n))
    before = {k: full.pick(key=k).key for k in keys}
    fewer = Balancer(cfg, eps(n)[:-1])
    after = {k: fewer.pick(key=k).key for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    removed = f"10.0.0.{n - 1}:8080"
    # Only the removed endpoint's keys move, and they are about 1/n of all keys.
    assert all(before[k] == removed for k in moved)
    assert abs(len(moved) / len(keys) - 1 / n) < 0.5 / n


def test_consistent_hash_bounded_load_caps_every_endpoint():
    eps_ = eps(10)
    b = Balancer(BalancerConfig(strategy="consistent_hash", bounded_load_epsilon=0.25), eps_)
    for i in range(300):
        # The same hot key over and over: without the bound it would all go to one endpoint.
        ep = b.pick(key="hot-conversation" if i % 2 else f"k{i % 7}")
        b.start(ep)
        total = sum(e.in_flight for e in eps_)
        cap = math.ceil(1.25 * total / len(eps_))
        assert max(e.in_flight for e in eps_) <= cap
    assert max(e.in_flight for e in eps_) <= math.ceil(1.25 * 300 / 10)


def test_capability_filter_only_offers_capable_endpoints():
    e = eps(6, caps={1: ("gpu",), 3: ("gpu", "tools"), 4: ("tools",)})
    for strategy in ("round_robin", "weighted_round_robin", "least_connections", "p2c_ewma", "consistent_hash"):
        b = Balancer(BalancerConfig(strategy=strategy), e)
        assert {b.pick(frozenset({"gpu"}), key=f"k{i}").key for i in range(50)} == {e[1].key, e[3].key}
        assert {b.pick(frozenset({"gpu", "tools"}), key=f"k{i}").key for i in range(20)} == {e[3].key}
        assert b.pick(frozenset({"quantum"})) is None


def test_panic_threshold_spreads_over_all_when_too_few_are_healthy():
    e = eps(10)
    b = Balancer(BalancerConfig(strategy="round_robin", panic_threshold_percent=50), e)
    for ep in e[:5]:
        ep.available = False
    b.invalidate()
    assert not b.in_panic()
    assert {b.pick().key for _ in range(20)} == {ep.key for ep in e[5:]}
    e[5].available = False
    b.invalidate()
    assert b.in_panic()  # 40 % healthy < 50 %
    assert {b.pick().key for _ in range(20)} == {ep.key for ep in e}


def test_no_panic_threshold_means_no_healthy_means_no_endpoint():
    e = eps(3)
    b = Balancer(BalancerConfig(panic_threshold_percent=0), e)
    for ep in e:
        ep.available = False
    b.invalidate()
    assert b.pick() is None


def test_slow_start_ramps_a_new_endpoints_share(clock: FakeClock):
    old = eps(4)
    b = Balancer(BalancerConfig(strategy="weighted_round_robin", slow_start_seconds=30), old, clock=clock)
    new = Endpoint("10.0.1.1", 8080)
    b.set_endpoints([*old, new])

    def share() -> float:
        picks = [b.pick() for _ in range(2000)]
        return sum(p is new for p in picks) / len(picks)

    at_start = share()
    clock.advance(15)
    half = share()
    clock.advance(20)
    full = share()
    assert at_start == pytest.approx(0.1 / 4.1, abs=0.01)  # Envoy's 10 % floor
    assert half == pytest.approx(0.5 / 4.5, abs=0.015)
    assert full == pytest.approx(1 / 5, abs=0.01)
    # Endpoints present from the start are never ramped.
    assert all(e.ramp_until == 0 for e in old)


def test_least_connections_prefers_fewest_in_flight():
    e = eps(4)
    b = Balancer(BalancerConfig(strategy="least_connections"), e)
    for ep, n in zip(e, (3, 1, 0, 2), strict=True):
        for _ in range(n):
            b.start(ep)
    assert b.pick() is e[2]
    b.start(e[2])
    b.start(e[2])
    assert b.pick() is e[1]


@pytest.mark.parametrize("strategy", ["least_response_time", "p2c_ewma"])
def test_ewma_strategies_avoid_a_slow_endpoint_and_a_stalled_one(strategy, clock: FakeClock):
    e = eps(3)
    b = Balancer(BalancerConfig(strategy=strategy), e, clock=clock, rng=random.Random(1))
    for ep, rtt in zip(e, (0.010, 0.010, 0.500), strict=True):
        t = b.start(ep)
        clock.advance(rtt)
        b.finish(ep, t)
    picks = Counter(b.pick().key for _ in range(300))
    assert picks[e[2].key] == 0 if strategy == "least_response_time" else picks[e[2].key] < 120
    # A stall: e[0] holds a request for 200 ms; its age alone makes it costlier than the rest.
    b.start(e[0])
    clock.advance(0.2)
    picks = Counter(b.pick().key for _ in range(300))
    assert picks[e[0].key] < picks[e[1].key]


def test_exclude_skips_tried_endpoints():
    for strategy in ("round_robin", "weighted_round_robin", "least_connections", "p2c_ewma", "consistent_hash"):
        e = eps(3)
        b = Balancer(BalancerConfig(strategy=strategy), e)
        for _ in range(20):
            assert b.pick(key="k", exclude=[e[0], e[1]]) is e[2]


def test_set_endpoints_keeps_state_of_endpoints_that_stay():
    e = eps(3)
    b = Balancer(BalancerConfig(), e)
    b.start(e[0])
    b.set_endpoints([Endpoint("10.0.0.0", 8080), Endpoint("10.0.0.9", 8080)])
    assert b.endpoints["10.0.0.0:8080"] is e[0] and e[0].in_flight == 1
    assert set(b.endpoints) == {"10.0.0.0:8080", "10.0.0.9:8080"}


def test_consistent_hash_retry_goes_to_the_keys_next_endpoint_on_the_ring():
    e = eps(3)
    b = Balancer(BalancerConfig(strategy="consistent_hash", bounded_load_epsilon=10.0), e)
    for i in range(50):
        key = f"conv-{i}"
        first = b.pick(key=key)
        g_hashes = sorted((hash_key(f"{ep.key}#{v}"), ep) for ep in e for v in range(100))
        start = next((j for j, (h, _) in enumerate(g_hashes) if h >= hash_key(key)), 0)
        ring_next = next(ep for _, ep in g_hashes[start:] + g_hashes[:start] if ep is not first)
        # Deterministic, not random: every retry of this key lands on the same next endpoint.
        assert {b.pick(key=key, exclude=[first]) for _ in range(5)} == {ring_next}


def test_least_connections_retry_picks_by_connections_not_by_latency(clock: FakeClock):
    e = eps(3)
    b = Balancer(BalancerConfig(strategy="least_connections"), e, clock=clock)
    # e[1] is slow but idle; e[2] is fast but busy: by connections e[1] wins, by EWMA e[2] would.
    t = b.start(e[1])
    clock.advance(2.0)
    b.finish(e[1], t)
    t = b.start(e[2])
    clock.advance(0.001)
    b.finish(e[2], t)
    for _ in range(3):
        b.start(e[2])
    assert all(b.pick(exclude=[e[0]]) is e[1] for _ in range(10))


def test_peak_ewma_cost_decays_while_an_endpoint_is_idle(clock: FakeClock):
    e = eps(1)
    b = Balancer(BalancerConfig(strategy="least_response_time", ewma_decay_seconds=10.0), e, clock=clock)
    t = b.start(e[0])
    clock.advance(1.0)
    b.finish(e[0], t)
    assert b.load(e[0], clock()) == pytest.approx(1.0)
    clock.advance(10.0)  # one decay time constant with no traffic
    assert b.load(e[0], clock()) == pytest.approx(math.exp(-1.0))
    clock.advance(30.0)
    assert b.load(e[0], clock()) < 0.02
    # A faster answer after idling pulls the cost down, weighted by the time since the last one.
    t = b.start(e[0])
    clock.advance(0.1)
    b.finish(e[0], t)
    assert 0.1 <= e[0].cost < 0.2
