"""Retries: backoff bounds, the budget's limits, deadlines never overshot, only safe retries."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent_runtime.config import RetryConfig
from agent_runtime.retry import DeadlineExceededError, RetryBudget, RetryPolicy

from .conftest import FakeClock


def test_full_jitter_backoff_bounds():
    cfg = RetryConfig(base_delay_seconds=0.1, max_delay_seconds=1.0)
    top = RetryPolicy(cfg, rng=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert RetryPolicy(cfg, rng=lambda: 0.0).backoff(3) == 0.0


def test_budget_ratio_without_reserve(clock: FakeClock):
    budget = RetryBudget(ttl_seconds=10, min_retries_per_second=0, percent_can_retry=0.2, clock=clock)
    for _ in range(100):
        budget.deposit()
    allowed = sum(budget.try_withdraw() for _ in range(50))
    assert allowed == 20
    clock.advance(10.5)  # deposits and withdrawals expire after the ttl
    assert budget.balance() == 0 and not budget.try_withdraw()


def test_budget_reserve_allows_min_retries_per_second(clock: FakeClock):
    budget = RetryBudget(ttl_seconds=10, min_retries_per_second=2, percent_can_retry=0.5, clock=clock)
    assert budget.balance() == 20
    assert sum(budget.try_withdraw() for _ in range(30)) == 20
    clock.advance(11)
    assert budget.balance() == 20


def test_retries_never_exceed_the_budget_when_everything_fails(clock: FakeClock):
    cfg = RetryConfig(max_attempts=5, budget_ratio=0.1, budget_min_per_second=1, budget_ttl_seconds=10)
    policy = RetryPolicy(cfg, clock=clock, sleep=clock.advance, rng=lambda: 0.0)
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError

    requests = 200
    for _ in range(requests):
        with pytest.raises(ConnectionRefusedError):
            policy.call(down)
        clock.advance(0.01)  # 200 requests in 2 s: one ttl window
    retries = calls - requests
    assert retries <= 0.1 * requests + 1 * 10
    assert retries == policy.retries and policy.exhausted > 0


def test_deadline_is_never_overshot_by_tries_or_sleeps(clock: FakeClock):
    cfg = RetryConfig(max_attempts=10, base_delay_seconds=0.2, max_delay_seconds=1.0)
    starts: list[float] = []
    sleeps: list[tuple[float, float]] = []

    def sleep(d: float) -> None:
        sleeps.append((clock(), d))
        clock.advance(d)

    policy = RetryPolicy(cfg, clock=clock, sleep=sleep, rng=lambda: 0.999)

    def flaky() -> None:
        starts.append(clock())
        clock.advance(0.1)
        raise TimeoutError

    deadline = clock() + 1.0
    with pytest.raises(TimeoutError):
        policy.call(flaky, deadline=deadline)
    assert all(s < deadline for s in starts)
    assert all(at + d < deadline for at, d in sleeps)
    assert len(starts) >= 2
    with pytest.raises(DeadlineExceededError):
        policy.call(flaky, deadline=clock() - 0.001)


def test_only_safe_retries_for_non_idempotent_calls(clock: FakeClock):
    policy = RetryPolicy(RetryConfig(max_attempts=3), clock=clock, sleep=clock.advance)
    calls = []

    def timeout_after_send() -> None:
        calls.append("t")
        raise TimeoutError

    with pytest.raises(TimeoutError):
        policy.call(timeout_after_send, idempotent=False)
    assert calls == ["t"]  # the work may have been done: not retried

    def refused() -> None:
        calls.append("r")
        raise ConnectionRefusedError

    with pytest.raises(ConnectionRefusedError):
        policy.call(refused, idempotent=False)
    assert calls.count("r") == 3  # never sent: safe for any method

    assert policy.should_retry_status("POST", 503) and not policy.should_retry_status("POST", 500)
    assert policy.should_retry_status("GET", 500) and not policy.should_retry_status("GET", 404)
    assert policy.should_retry_error("POST", ConnectionRefusedError())
    assert not policy.should_retry_error("POST", ConnectionResetError())
    assert policy.should_retry_error("PUT", ConnectionResetError())


def test_success_after_retries_returns_the_value(clock: FakeClock):
    policy = RetryPolicy(RetryConfig(max_attempts=3), clock=clock, sleep=clock.advance)
    attempts = iter([ConnectionResetError(), ConnectionResetError(), "done"])

    def sometimes() -> str:
        r = next(attempts)
        if isinstance(r, Exception):
            raise r
        return r

    assert policy.call(sometimes) == "done"
    assert policy.retries == 2


def test_async_deadline_cuts_off_a_stalled_try():
    policy = RetryPolicy(RetryConfig(max_attempts=5, base_delay_seconds=0.01, max_delay_seconds=0.02))

    async def stall() -> None:
        await asyncio.sleep(2)

    async def scenario() -> float:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await policy.acall(stall, deadline=time.monotonic() + 0.15)
        return time.monotonic() - t0

    assert asyncio.run(scenario()) < 0.15 + 0.05


def test_async_retries_until_success():
    policy = RetryPolicy(RetryConfig(max_attempts=3, base_delay_seconds=0.001, max_delay_seconds=0.002))
    state = {"n": 0}

    async def flaky() -> int:
        state["n"] += 1
        if state["n"] < 3:
            raise ConnectionResetError
        return state["n"]

    assert asyncio.run(policy.acall(flaky)) == 3
