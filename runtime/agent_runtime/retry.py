"""Retries: full-jitter exponential backoff, a retry budget and a deadline that is never overshot.

- Backoff is "full jitter" (AWS architecture blog): sleep uniform(0, min(max, base x 2^n)).
- The budget is Finagle's RetryBudget: each request deposits, each retry withdraws
  1 / ratio of a deposit, deposits expire after `budget_ttl_seconds`, and a reserve of
  `budget_min_per_second` x ttl retries lets low-traffic clients retry at all. So retries stay
  under `budget_ratio` x requests + `budget_min_per_second` per second, whatever fails.
- A deadline (absolute time on the clock) bounds everything: no try starts and no backoff sleep
  is begun unless it can end before the deadline.
- Only safe retries: idempotent methods, or statuses/errors that prove the work was refused or
  never sent (a refused connection is safe for any method).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from .config import RetryConfig

__all__ = ["DeadlineExceededError", "RetryBudget", "RetryPolicy", "WindowedAdder", "is_not_sent"]

T = TypeVar("T")

_SCALE = 1000  # Finagle's scale factor: integer tokens with a fractional ratio


class DeadlineExceededError(TimeoutError):
    """The request's deadline passed (or would pass) before another try could be made."""


class WindowedAdder:
    """A sum over the last `window` seconds, kept in `slices` buckets (Finagle's WindowedAdder)."""

    __slots__ = ("_clock", "_slice", "_n", "_buckets", "_i", "_end", "sum")

    def __init__(self, window: float, slices: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slice = window / slices
        self._n = slices
        self._buckets = [0] * slices
        self._i = 0
        self._end = clock() + self._slice
        self.sum = 0

    def _roll(self, now: float) -> None:
        steps = int((now - self._end) / self._slice) + 1
        if steps >= self._n:
            self._buckets = [0] * self._n
            self.sum = 0
            self._end = now + self._slice
            return
        b = self._buckets
        i = self._i
        for _ in range(steps):
            i = i + 1 if i + 1 < self._n else 0
            self.sum -= b[i]
            b[i] = 0
        self._i = i
        self._end += steps * self._slice

    def add(self, x: int) -> None:
        if self._clock() >= self._end:
            self._roll(self._clock())
        self._buckets[self._i] += x
        self.sum += x

    def value(self) -> int:
        now = self._clock()
        if now >= self._end:
            self._roll(now)
        return self.sum


class RetryBudget:
    """Finagle's TokenRetryBudget: how many retries are allowed now, across all requests."""

    def __init__(
        self,
        ttl_seconds: float = 10.0,
        min_retries_per_second: float = 10.0,
        percent_can_retry: float = 0.2,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deposit_amount = _SCALE if percent_can_retry > 0 else 0
        self.withdrawal_amount = int(_SCALE / percent_can_retry) if percent_can_retry > 0 else 1
        self.reserve = int(min_retries_per_second * ttl_seconds * self.withdrawal_amount)
        self._window = WindowedAdder(ttl_seconds, 10, clock)
        self._clock = clock

    @classmethod
    def from_config(cls, config: RetryConfig, clock: Callable[[], float] = time.monotonic) -> RetryBudget:
        return cls(config.budget_ttl_seconds, config.budget_min_per_second, config.budget_ratio, clock=clock)

    def deposit(self) -> None:
        """Count one request (call once per request, not per try)."""
        w = self._window
        if self._clock() >= w._end:
            w._roll(self._clock())
        w._buckets[w._i] += self.deposit_amount
        w.sum += self.deposit_amount

    def try_withdraw(self) -> bool:
        """Take the tokens for one retry; False (and nothing taken) when the budget is empty."""
        if self._window.value() + self.reserve >= self.withdrawal_amount:
            self._window.add(-self.withdrawal_amount)
            return True
        return False

    def balance(self) -> int:
        """Retries that could be made now."""
        return (self._window.value() + self.reserve) // self.withdrawal_amount


def is_not_sent(exc: BaseException) -> bool:
    """True when the request provably never reached the server: the connection was refused."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    if getattr(exc, "request_sent", None) is False:
        return True
    # aiohttp: ClientConnectorError wraps the OSError raised by connect().
    return type(exc).__name__ in ("ClientConnectorError", "ClientConnectorDNSError")


class RetryPolicy:
    """Decides whether, when and how often to retry; `call`/`acall` wrap a function with it."""

    def __init__(
        self,
        config: RetryConfig | None = None,
        budget: RetryBudget | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    ) -> None:
        self.config = config or RetryConfig()
        self.budget = budget if budget is not None else RetryBudget.from_config(self.config, clock)
        self._clock = clock
        self._rng = rng
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._retry_on = retry_on
        self._idempotent = frozenset(m.upper() for m in self.config.idempotent_methods)
        self._statuses = frozenset(self.config.retryable_statuses)
        self.retries = 0
        self.exhausted = 0

    # -- decisions -----------------------------------------------------------------------

    def is_idempotent(self, method: str) -> bool:
        return method.upper() in self._idempotent

    def should_retry_status(self, method: str, status: int) -> bool:
        """A 5xx is retried for idempotent methods; `retryable_statuses` for any method."""
        if status in self._statuses:
            return True
        return status >= 500 and method.upper() in self._idempotent

    def should_retry_error(self, method: str, exc: BaseException, *, sent: bool | None = None) -> bool:
        """A transport error is retried if the request was never sent, or the method is idempotent."""
        if sent is None:
            sent = not is_not_sent(exc)
        return not sent or method.upper() in self._idempotent

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform(0, min(max_delay, base x 2^retry_number)), retry_number from 0."""
        cap = self.config.base_delay_seconds * (2.0 ** min(retry_number, 62))
        return self._rng() * min(self.config.max_delay_seconds, cap)

    def plan_retry(self, retry_number: int, deadline: float | None) -> float | None:
        """The backoff before retry `retry_number` (from 0), or None if no retry may be made:
        no attempts left, the sleep would reach the deadline, or the budget is empty."""
        if retry_number + 1 >= self.config.max_attempts:
            return None
        delay = self.backoff(retry_number)
        if deadline is not None and self._clock() + delay >= deadline:
            return None
        if not self.budget.try_withdraw():
            self.exhausted += 1
            return None
        self.retries += 1
        return delay

    # -- wrapping ------------------------------------------------------------------------

    def _retryable(self, exc: BaseException, idempotent: bool) -> bool:
        if not isinstance(exc, self._retry_on) or isinstance(exc, DeadlineExceededError):
            return False
        return idempotent or is_not_sent(exc)

    def call(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        deadline: float | None = None,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> T:
        """Call `fn`, retrying retryable errors within attempts, budget and `deadline`."""
        self.budget.deposit()
        if deadline is not None and self._clock() >= deadline:
            raise DeadlineExceededError("deadline passed before the first try")
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            return self._call_retrying(exc, fn, args, kwargs, deadline, idempotent)

    def _call_retrying(
        self, exc: Exception, fn: Callable[..., T], args: Iterable[Any], kwargs: dict, deadline: float | None,
        idempotent: bool,
    ) -> T:
        n = 0
        while True:
            if not self._retryable(exc, idempotent):
                raise exc
            delay = self.plan_retry(n, deadline)
            if delay is None:
                raise exc
            self._sleep(delay)
            if deadline is not None and self._clock() >= deadline:
                raise DeadlineExceededError("deadline passed during backoff") from exc
            n += 1
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                exc = e

    async def acall(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        deadline: float | None = None,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> T:
        """Await `fn`, retrying retryable errors; with a deadline each try is cut off at it."""
        self.budget.deposit()
        if deadline is None:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                first = exc
        else:
            try:
                return await self._bounded(fn, args, kwargs, deadline)
            except Exception as exc:
                first = exc
        n = 0
        error = first
        while True:
            if not self._retryable(error, idempotent):
                raise error
            delay = self.plan_retry(n, deadline)
            if delay is None:
                raise error
            await self._async_sleep(delay)
            n += 1
            try:
                if deadline is None:
                    return await fn(*args, **kwargs)
                return await self._bounded(fn, args, kwargs, deadline)
            except Exception as exc:
                error = exc

    async def _bounded(self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: dict, deadline: float) -> T:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceededError("deadline passed before the try")
        try:
            async with asyncio.timeout(remaining):
                return await fn(*args, **kwargs)
        except TimeoutError as exc:
            if self._clock() >= deadline - 1e-3:
                raise DeadlineExceededError("deadline passed during the try") from exc
            raise
