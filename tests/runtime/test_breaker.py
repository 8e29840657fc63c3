"""Circuit breaker state machine, with a fake clock: exact, and no test sleeps to pass time."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent_runtime import metrics
from agent_runtime.breaker import CallNotPermittedError, CircuitBreaker, State
from agent_runtime.config import BreakerConfig

from .conftest import FakeClock


def cfg(**kw) -> BreakerConfig:
    base = dict(
        sliding_window_size=10,
        minimum_number_of_calls=5,
        failure_rate_threshold=50,
        wait_duration_in_open_state=30,
        permitted_number_of_calls_in_half_open_state=3,
    )
    base.update(kw)
    return BreakerConfig(**base)


def ok() -> str:
    return "ok"


def boom() -> None:
    raise ConnectionError("down")


def fail(cb: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ConnectionError):
            cb.call(boom)


def gauge(route: str, endpoint: str) -> float:
    return metrics.REGISTRY.get_sample_value("agent_breaker_state", {"route": route, "endpoint": endpoint})


def rejected(route: str, endpoint: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "agent_breaker_calls_not_permitted_total", {"route": route, "endpoint": endpoint}
    ) or 0.0


def test_stays_closed_below_minimum_number_of_calls(clock: FakeClock):
    cb = CircuitBreaker(cfg(), clock=clock)
    fail(cb, 4)
    assert cb.state is State.CLOSED
    fail(cb, 1)
    assert cb.state is State.OPEN


def test_success_reaching_minimum_evaluates_earlier_failures(clock: FakeClock):
    cb = CircuitBreaker(cfg(), clock=clock)
    fail(cb, 3)
    cb.call(ok)
    assert cb.state is State.CLOSED
    cb.call(ok)  # 5th call: 3/5 = 60 % >= 50 %
    assert cb.state is State.OPEN


def test_failure_rate_below_threshold_stays_closed_and_window_slides(clock: FakeClock):
    cb = CircuitBreaker(cfg(sliding_window_size=10, minimum_number_of_calls=10), clock=clock)
    for _ in range(6):
        cb.call(ok)
    fail(cb, 4)  # 40 % < 50 %
    assert cb.state is State.CLOSED
    assert cb.metrics()["failure_rate"] == 40.0
    for _ in range(10):
        cb.call(ok)  # the failures slide out of the window
    assert cb.metrics()["failed"] == 0
    fail(cb, 5)  # 50 % of the last 10
    assert cb.state is State.OPEN


def test_open_rejects_then_half_open_probes_close_it(clock: FakeClock):
    cb = CircuitBreaker(cfg(), clock=clock, route="r-open", endpoint="e1")
    seen = []
    cb.add_listener(lambda b, old, new: seen.append((old, new)))
    fail(cb, 5)
    assert cb.state is State.OPEN and gauge("r-open", "e1") == 1.0
    calls = []
    with pytest.raises(CallNotPermittedError):
        cb.call(lambda: calls.append(1))
    assert calls == [] and rejected("r-open", "e1") == 1.0
    clock.advance(29.9)
    with pytest.raises(CallNotPermittedError):
        cb.call(ok)
    clock.advance(0.1)
    assert cb.call(ok) == "ok"
    assert cb.state is State.HALF_OPEN and gauge("r-open", "e1") == 2.0
    cb.call(ok)
    cb.call(ok)  # third permitted probe: 0 % failures
    assert cb.state is State.CLOSED and gauge("r-open", "e1") == 0.0
    assert seen == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_half_open_failures_reopen_for_another_wait(clock: FakeClock):
    cb = CircuitBreaker(cfg(), clock=clock)
    fail(cb, 5)
    clock.advance(30)
    cb.call(ok)
    fail(cb, 2)  # 2 of 3 probes failed
    assert cb.state is State.OPEN
    clock.advance(29)
    with pytest.raises(CallNotPermittedError):
        cb.call(ok)


def test_slow_calls_open_the_breaker(clock: FakeClock):
    cb = CircuitBreaker(cfg(slow_call_rate_threshold=60, slow_call_duration_threshold=1.0), clock=clock)

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    for _ in range(2):
        cb.call(ok)
    for _ in range(3):
        cb.call(slow)
    assert cb.state is State.OPEN  # 3 / 5 slow = 60 %


def test_time_based_window_forgets_old_failures(clock: FakeClock):
    config = cfg(sliding_window_type="time_based", sliding_window_size=10, minimum_number_of_calls=4)
    cb = CircuitBreaker(config, clock=clock)
    fail(cb, 3)
    clock.advance(11)  # those failures are now outside the 10 s window
    for _ in range(3):
        cb.call(ok)
    fail(cb, 1)
    assert cb.state is State.CLOSED
    assert cb.metrics()["calls"] == 4
    fail(cb, 2)
    assert cb.state is State.OPEN  # 3 failed of 6 in the last 10 s


def test_exactly_permitted_probes_under_async_concurrency(clock: FakeClock):
    cb = CircuitBreaker(cfg(permitted_number_of_calls_in_half_open_state=3), clock=clock)
    fail(cb, 5)
    clock.advance(30)

    async def scenario() -> tuple[int, int]:
        gate = asyncio.Event()
        started = 0

        async def probe() -> None:
            nonlocal started
            started += 1
            await gate.wait()

        tasks = [asyncio.create_task(cb.acall(probe)) for _ in range(20)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return started, sum(isinstance(r, CallNotPermittedError) for r in results)

    started, refused = asyncio.run(scenario())
    assert (started, refused) == (3, 17)
    assert cb.state is State.CLOSED


def test_exactly_permitted_probes_under_thread_concurrency(clock: FakeClock):
    cb = CircuitBreaker(cfg(permitted_number_of_calls_in_half_open_state=4), clock=clock)
    fail(cb, 5)
    clock.advance(30)
    barrier = threading.Barrier(16)
    release = threading.Event()
    admitted = []
    rejected = []

    def worker() -> None:
        barrier.wait()
        try:
            cb.call(lambda: (admitted.append(1), release.wait(5)))
        except CallNotPermittedError:
            rejected.append(1)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    # Every thread must have asked while the probes are still running: once they finish, the
    # breaker closes and a straggler would (rightly) be let through.
    while len(admitted) + len(rejected) < 16 and any(t.is_alive() for t in threads):
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join()
    assert (len(admitted), len(rejected)) == (4, 12)


def test_cancelled_probe_gives_its_permit_back(clock: FakeClock):
    cb = CircuitBreaker(cfg(permitted_number_of_calls_in_half_open_state=1), clock=clock)
    fail(cb, 5)
    clock.advance(30)

    async def scenario() -> None:
        t = asyncio.create_task(cb.acall(asyncio.sleep, 10))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

        async def fine() -> str:
            return "ok"

        assert await cb.acall(fine) == "ok"

    asyncio.run(scenario())
    assert cb.state is State.CLOSED


def test_async_failures_count_and_results_pass_through(clock: FakeClock):
    cb = CircuitBreaker(cfg(), clock=clock)

    async def bad() -> None:
        raise TimeoutError

    async def good(x: int) -> int:
        return x * 2

    async def scenario() -> None:
        assert await cb.acall(good, 21) == 42
        for _ in range(4):  # 4 of 5 calls failed: open
            with pytest.raises(TimeoutError):
                await cb.acall(bad)
        with pytest.raises(CallNotPermittedError):
            await cb.acall(good, 1)

    asyncio.run(scenario())


def test_is_failure_predicate_and_stale_permits(clock: FakeClock):
    cb = CircuitBreaker(cfg(), clock=clock, is_failure=lambda e: not isinstance(e, KeyError))

    def missing() -> None:
        raise KeyError("x")

    for _ in range(10):
        with pytest.raises(KeyError):
            cb.call(missing)
    assert cb.state is State.CLOSED  # a KeyError is the caller's problem, not the callee's
    stale = cb.try_acquire()
    fail(cb, 5)
    assert cb.state is State.OPEN
    clock.advance(30)
    probe = cb.try_acquire()
    assert probe is not None and cb.state is State.HALF_OPEN
    for _ in range(5):
        cb.on_error(0.01, stale)  # results from before the transition are ignored
    assert cb.state is State.HALF_OPEN


def test_low_level_api_and_manual_transitions(clock: FakeClock):
    cb = CircuitBreaker(cfg(), clock=clock)
    for _ in range(5):
        p = cb.try_acquire()
        cb.on_error(0.1, p)
    assert cb.try_acquire() is None
    cb.transition_to_closed()
    assert cb.state is State.CLOSED and cb.try_acquire() is not None
    cb.transition_to_open()
    assert cb.state is State.OPEN
