"""Passive outlier ejection (fake clock) and active checks against real agent servers."""

from __future__ import annotations

import aiohttp
import pytest

from agent_runtime.balancer import Balancer, Endpoint
from agent_runtime.config import BalancerConfig, HealthCheckConfig, OutlierConfig
from agent_runtime.health import HealthChecker, OutlierDetector

from .conftest import Agent, FakeClock


def setup(clock: FakeClock, n: int = 4, **kw) -> tuple[Balancer, OutlierDetector, list[Endpoint]]:
    eps = [Endpoint(f"10.0.0.{i}", 80) for i in range(n)]
    b = Balancer(BalancerConfig(strategy="round_robin", slow_start_seconds=0), eps, clock=clock)
    cfg = dict(consecutive_5xx=3, consecutive_gateway_failure=2, base_ejection_time_seconds=10,
               max_ejection_time_seconds=25, max_ejection_percent=50)
    cfg.update(kw)
    return b, OutlierDetector(OutlierConfig(**cfg), b, clock=clock), eps


def test_consecutive_5xx_ejects_and_success_resets(clock: FakeClock):
    b, od, eps = setup(clock)
    od.failure(eps[0], status=500)
    od.failure(eps[0], status=500)
    od.success(eps[0])
    od.failure(eps[0], status=500)
    od.failure(eps[0], status=500)
    assert not eps[0].ejected
    assert od.failure(eps[0], status=500)
    assert eps[0].ejected and eps[0] not in b.candidates()


def test_gateway_failures_eject_sooner(clock: FakeClock):
    b, od, eps = setup(clock)
    od.failure(eps[1], gateway_failure=True)
    assert od.failure(eps[1], status=503)
    assert eps[1].ejected


def test_ejection_time_grows_with_each_ejection_and_is_capped(clock: FakeClock):
    b, od, eps = setup(clock)
    durations = []
    for _ in range(4):
        od.failure(eps[0], gateway_failure=True)
        od.failure(eps[0], gateway_failure=True)
        start = clock()
        assert eps[0].ejected
        while eps[0].ejected:
            clock.advance(1)
            od.sweep()
        durations.append(clock() - start)
    assert durations == [10, 20, 25, 25]  # base x times ejected, capped at max
    assert eps[0] in b.candidates()


def test_never_more_than_max_ejection_percent(clock: FakeClock):
    b, od, eps = setup(clock, n=4, max_ejection_percent=50)
    for ep in eps:
        for _ in range(2):
            od.failure(ep, gateway_failure=True)
    assert sum(e.ejected for e in eps) == 2


def test_multiplier_decays_while_healthy(clock: FakeClock):
    b, od, eps = setup(clock)
    for _ in range(2):
        od.failure(eps[0], gateway_failure=True)
    clock.advance(10)
    od.sweep()
    assert not eps[0].ejected and od.monitor(eps[0]).times_ejected == 1
    clock.advance(10)
    od.sweep()
    assert od.monitor(eps[0]).times_ejected == 0


@pytest.mark.asyncio
async def test_active_checks_flip_health_at_thresholds(agents: list[Agent]):
    a, b_ = agents[0], agents[1]
    eps = [Endpoint("127.0.0.1", a.port), Endpoint("127.0.0.1", b_.port)]
    bal = Balancer(BalancerConfig(strategy="round_robin"), eps)
    changes = []
    async with aiohttp.ClientSession() as session:
        hc = HealthChecker(
            HealthCheckConfig(unhealthy_threshold=2, healthy_threshold=2, timeout_seconds=0.5),
            bal,
            session,
            on_change=lambda ep, ok: changes.append((ep.port, ok)),
        )
        a.healthy = False
        await hc.check_once()
        assert eps[0].healthy  # one failure is below the threshold
        await hc.check_once()
        assert not eps[0].healthy and bal.candidates() == [eps[1]]
        a.healthy = True
        await hc.check_once()
        assert not eps[0].healthy
        await hc.check_once()
        assert eps[0].healthy and eps[0] in bal.candidates()
        await b_.stop()  # a dead endpoint fails its checks too
        await hc.check_once()
        await hc.check_once()
        assert not eps[1].healthy
    assert changes == [(a.port, False), (a.port, True), (b_.port, False)]


def test_ejection_time_jitter_spreads_returns_within_the_bound(clock: FakeClock):
    import random

    returns = []
    for seed in range(20):
        eps = [Endpoint(f"10.0.0.{i}", 80) for i in range(4)]
        b = Balancer(BalancerConfig(strategy="round_robin", slow_start_seconds=0), eps, clock=clock)
        od = OutlierDetector(OutlierConfig(consecutive_5xx=1, base_ejection_time_seconds=10,
                                           max_ejection_time_jitter_seconds=5), b, clock=clock,
                             rng=random.Random(seed))
        assert od.eject(eps[0], "consecutive_5xx")
        returns.append(od.monitor(eps[0]).ejected_until - clock())
    assert all(10 <= r <= 15 for r in returns)
    assert len({round(r, 3) for r in returns}) > 10  # not all back in the same instant


def test_refused_ejections_are_counted(clock: FakeClock):
    refused = []
    eps = [Endpoint(f"10.0.0.{i}", 80) for i in range(4)]
    b = Balancer(BalancerConfig(strategy="round_robin", slow_start_seconds=0), eps, clock=clock)
    od = OutlierDetector(OutlierConfig(consecutive_5xx=1, max_ejection_percent=25), b, clock=clock,
                         on_refused=lambda ep, reason: refused.append((ep.key, reason)))
    assert od.failure(eps[0], status=500)
    assert not od.failure(eps[1], status=500)  # a second ejection would be 50% > 25%
    assert od.refused == 1 and refused == [("10.0.0.1:80", "consecutive_5xx")]
