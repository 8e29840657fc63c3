"""The strategy objects: one per configured name, each picking and re-picking (retries) by its rule."""

from __future__ import annotations

import typing

import pytest

from agent_runtime.balancer import Balancer, Endpoint
from agent_runtime.balancer_strategies import STRATEGIES, ConsistentHash, LeastResponseTime, RoundRobin
from agent_runtime.config import BalancerConfig, Strategy

from .conftest import FakeClock


def eps(n: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}", 8080) for i in range(n)]


def test_every_configurable_strategy_name_has_its_object():
    assert set(STRATEGIES) == set(typing.get_args(Strategy))
    for name in typing.get_args(Strategy):
        b = Balancer(BalancerConfig(strategy=name), eps(2))
        assert b.strategy.name == name and b.strategy.balancer is b


@pytest.mark.parametrize("name", typing.get_args(Strategy))
def test_a_retry_with_every_endpoint_tried_still_gets_one(name: str):
    e = eps(3)
    b = Balancer(BalancerConfig(strategy=name), e)
    for _ in range(20):
        assert b.pick(key="conv-1", exclude=e) in e


@pytest.mark.parametrize("name", typing.get_args(Strategy))
def test_pick_excluding_never_returns_a_tried_endpoint_while_others_are_left(name: str):
    e = eps(5)
    b = Balancer(BalancerConfig(strategy=name), e)
    for i in range(50):
        tried = [e[i % 5], e[(i + 2) % 5]]
        assert b.pick(key=f"conv-{i}", exclude=tried) not in tried


def test_least_response_time_retry_picks_the_lowest_cost(clock: FakeClock):
    e = eps(3)
    b = Balancer(BalancerConfig(strategy="least_response_time"), e, clock=clock)
    assert isinstance(b.strategy, LeastResponseTime)
    for ep, seconds in ((e[0], 0.001), (e[1], 0.5), (e[2], 0.01)):
        t = b.start(ep)
        clock.advance(seconds)
        b.finish(ep, t)
    assert all(b.pick(exclude=[e[0]]) is e[2] for _ in range(10))


def test_round_robin_retry_takes_the_next_turn_when_it_is_untried():
    e = eps(3)
    b = Balancer(BalancerConfig(strategy="round_robin", slow_start_seconds=0), e)
    assert isinstance(b.strategy, RoundRobin)
    first = b.pick()
    # The turn after `first` is e[1]: not tried, so the retry goes there, and the turns go on.
    assert first is e[0]
    assert b.pick(exclude=[first]) is e[1]
    assert b.pick() is e[2]


def test_consistent_hash_without_a_key_spreads_retries_over_the_untried():
    e = eps(4)
    b = Balancer(BalancerConfig(strategy="consistent_hash"), e)
    assert isinstance(b.strategy, ConsistentHash)
    seen = {b.pick(key=None, exclude=[e[0]]) for _ in range(200)}
    assert seen == {e[1], e[2], e[3]}
