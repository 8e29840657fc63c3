"""Circuit breaker with resilience4j's states, sliding windows and settings.

CLOSED: calls pass; outcomes go into a sliding window (the last N calls, or the last N seconds).
Once the window holds `minimum_number_of_calls`, a failure rate or slow-call rate at or above its
threshold opens the breaker.
OPEN: calls are rejected (`CallNotPermittedError`) for `wait_duration_in_open_state`; the first call
after that moves to HALF_OPEN.
HALF_OPEN: exactly `permitted_number_of_calls_in_half_open_state` probe calls are let through;
when all have finished, their failure and slow-call rates decide CLOSED or OPEN again.

The closed-state hot path is a ring buffer with running totals: O(1) per call, no allocation.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .config import BreakerConfig

__all__ = ["CallNotPermittedError", "CircuitBreaker", "State"]

T = TypeVar("T")


class State(enum.IntEnum):
    """Breaker states; the values are those of the `agent_breaker_state` gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


CLOSED, OPEN, HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN

_FAILED = 1
_SLOW = 2

Listener = Callable[["CircuitBreaker", State, State], None]


class CallNotPermittedError(Exception):
    """The breaker is open (or half-open with all probes taken): the call was not made."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(f"circuit breaker {breaker.name!r} is {breaker.state.name}")
        self.breaker = breaker


def _always(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


class CircuitBreaker:
    """One circuit breaker: wrap calls with `call`/`acall`, or use the low-level permit API.

    Low-level use (the gateway's): ``permit = cb.try_acquire()``; if it is None the call is not
    permitted; otherwise make the call and report ``cb.on_success(seconds, permit)`` or
    ``cb.on_error(seconds, permit)``, or ``cb.release(permit)`` when it was abandoned unfinished.
    """

    # Set by _reset_window: a count-based window is a ring of outcomes (`_ring`, `_pos`), a
    # time-based one per-second buckets starting at `_cur_sec` (and `_ring` None).
    _ring: list[int] | None
    _pos: int
    _cur_sec: int

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        name: str = "breaker",
        route: str | None = None,
        endpoint: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        is_failure: Callable[[BaseException], bool] = _always,
        metrics: bool = True,
    ) -> None:
        cfg = config or BreakerConfig()
        self.config = cfg
        self.name = name
        self._clock = clock
        self._is_failure = is_failure
        self._time_based = cfg.sliding_window_type == "time_based"
        self._size = cfg.sliding_window_size
        self._min_calls = min(cfg.minimum_number_of_calls, cfg.sliding_window_size) if not self._time_based else (
            cfg.minimum_number_of_calls
        )
        self._failure_threshold = cfg.failure_rate_threshold
        self._slow_rate_threshold = cfg.slow_call_rate_threshold
        self._slow = cfg.slow_call_duration_threshold
        self._wait = cfg.wait_duration_in_open_state
        self._permitted = cfg.permitted_number_of_calls_in_half_open_state
        self._lock = threading.RLock()  # listeners may look at the breaker
        self._listeners: list[Listener] = []
        self._state = CLOSED
        self._gen = 0
        self._closed_gen = 0
        self._opened_at = 0.0
        self._permits = 0
        self._probe_calls = 0
        self._probe_fails = 0
        self._probe_slows = 0
        self._reset_window()
        self._gauge = self._rejected = None
        if metrics and route is not None:
            from . import metrics as m

            self._gauge = m.breaker_state.labels(route, endpoint or name)
            self._rejected = m.breaker_not_permitted.labels(route, endpoint or name)
            self._transitions = m.breaker_transitions
            self._labels = (route, endpoint or name)
            self._gauge.set(0)

    # -- public state --------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state; an OPEN breaker whose wait is over still reads OPEN until a call."""
        return self._state

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(breaker, old_state, new_state)` on every transition."""
        self._listeners.append(listener)

    def metrics(self) -> dict[str, float]:
        """Counts in the current window: calls, failed, slow and the two rates (percent)."""
        if self._time_based:
            self._advance(int(self._clock()))
        n = self._n
        return {
            "calls": n,
            "failed": self._fails,
            "slow": self._slows,
            "failure_rate": self._fails * 100.0 / n if n else -1.0,
            "slow_call_rate": self._slows * 100.0 / n if n else -1.0,
        }

    # -- wrapping ------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call `fn(*args, **kwargs)` through the breaker; raises CallNotPermittedError if open."""
        permit = self._gen if self._state is CLOSED else self._acquire_slow()
        if permit is None:
            raise CallNotPermittedError(self)
        clock = self._clock
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(clock() - start, self._is_failure(exc), permit)
            raise
        ring = self._ring
        if clock() - start < self._slow and permit == self._closed_gen and ring is not None:
            # Hot path, inlined: a fast success in a count-based window, still in the same
            # CLOSED period (`_closed_gen` is -1 outside CLOSED).
            i = self._pos
            old = ring[i]
            ring[i] = 0
            i += 1
            self._pos = 0 if i == self._size else i
            if old:
                self._evict(old)
            return result
        d = clock() - start
        self._finish(d, False, permit)
        return result

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await `fn(*args, **kwargs)` through the breaker; a cancelled call counts for nothing."""
        permit = self._gen if self._state is CLOSED else self._acquire_slow()
        if permit is None:
            raise CallNotPermittedError(self)
        clock = self._clock
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._finish(clock() - start, self._is_failure(exc), permit)
            raise
        except BaseException:
            # Cancellation says nothing about the callee; give a half-open probe back.
            self.release(permit)
            raise
        ring = self._ring
        if clock() - start < self._slow and permit == self._closed_gen and ring is not None:
            i = self._pos
            old = ring[i]
            ring[i] = 0
            i += 1
            self._pos = 0 if i == self._size else i
            if old:
                self._evict(old)
            return result
        self._finish(clock() - start, False, permit)
        return result

    def _evict(self, old: int) -> None:
        # A success replaced `old` in the ring (-1: an empty slot, else failed/slow flags).
        if old < 0:
            self._n += 1
            if self._n == self._min_calls:
                self._evaluate()
            return
        if old & _FAILED:
            self._fails -= 1
        if old & _SLOW:
            self._slows -= 1

    # -- low-level permit API ------------------------------------------------------------

    def try_acquire(self) -> int | None:
        """A permit (an int) if a call may go ahead now, else None (and the rejection is counted)."""
        if self._state is CLOSED:
            return self._gen
        return self._acquire_slow()

    def on_success(self, duration: float, permit: int | None = None) -> None:
        """Report a call that succeeded after `duration` seconds."""
        self._finish(duration, False, self._gen if permit is None else permit)

    def on_error(self, duration: float, permit: int | None = None) -> None:
        """Report a call that failed after `duration` seconds."""
        self._finish(duration, True, self._gen if permit is None else permit)

    def release(self, permit: int | None) -> None:
        """Give back a permit whose call was abandoned (e.g. the client went away)."""
        if permit is None or self._state is not HALF_OPEN:
            return
        with self._lock:
            if permit == self._gen and self._state is HALF_OPEN:
                self._permits += 1

    # -- state machine -------------------------------------------------------------------

    def transition_to_open(self) -> None:
        with self._lock:
            self._transition(OPEN)

    def transition_to_closed(self) -> None:
        with self._lock:
            self._transition(CLOSED)

    def transition_to_half_open(self) -> None:
        with self._lock:
            self._transition(HALF_OPEN)

    def _acquire_slow(self) -> int | None:
        with self._lock:
            state = self._state
            if state is CLOSED:
                return self._gen
            if state is OPEN:
                if self._clock() - self._opened_at < self._wait:
                    self._reject()
                    return None
                self._transition(HALF_OPEN)
            # HALF_OPEN: exactly `permitted` probes, counted under the lock.
            if self._permits > 0:
                self._permits -= 1
                return self._gen
            self._reject()
            return None

    def _reject(self) -> None:
        if self._rejected is not None:
            self._rejected.inc()

    def _finish(self, duration: float, failed: bool, permit: int) -> None:
        if permit != self._gen:
            return  # started under an earlier state: it says nothing about this one
        code = (_FAILED if failed else 0) | (_SLOW if duration >= self._slow else 0)
        state = self._state
        if state is CLOSED:
            if self._time_based:
                self._record_time(code)
            else:
                # Ring buffer with running totals: replace the oldest outcome.
                ring = self._ring
                assert ring is not None, "a count-based window always has its ring"
                i = self._pos
                old = ring[i]
                ring[i] = code
                i += 1
                self._pos = 0 if i == self._size else i
                if old < 0:
                    self._n += 1
                elif old:
                    if old & _FAILED:
                        self._fails -= 1
                    if old & _SLOW:
                        self._slows -= 1
                if code:
                    if code & _FAILED:
                        self._fails += 1
                    if code & _SLOW:
                        self._slows += 1
                    self._evaluate()
                elif self._n == self._min_calls and old < 0:
                    # A success never raises a rate, but reaching the minimum makes it count.
                    self._evaluate()
        elif state is HALF_OPEN:
            with self._lock:
                if permit != self._gen or self._state is not HALF_OPEN:
                    return
                self._probe_calls += 1
                if code & _FAILED:
                    self._probe_fails += 1
                if code & _SLOW:
                    self._probe_slows += 1
                if self._probe_calls >= self._permitted:
                    n = self._probe_calls
                    if (
                        self._probe_fails * 100.0 >= self._failure_threshold * n
                        or self._probe_slows * 100.0 >= self._slow_rate_threshold * n
                    ):
                        self._transition(OPEN)
                    else:
                        self._transition(CLOSED)
        # OPEN: results of calls let through earlier are ignored (the permit check above).

    def _record_time(self, code: int) -> None:
        sec = int(self._clock())
        if sec != self._cur_sec:
            self._advance(sec)
        i = sec % self._size
        self._b_calls[i] += 1
        self._n += 1
        if code:
            if code & _FAILED:
                self._b_fails[i] += 1
                self._fails += 1
            if code & _SLOW:
                self._b_slows[i] += 1
                self._slows += 1
            self._evaluate()
        elif self._n == self._min_calls:
            self._evaluate()

    def _advance(self, sec: int) -> None:
        # Drop the buckets of seconds that left the window.
        cur = self._cur_sec
        if sec <= cur:
            return
        size = self._size
        for s in range(max(cur + 1, sec - size + 1), sec + 1):
            i = s % size
            self._n -= self._b_calls[i]
            self._fails -= self._b_fails[i]
            self._slows -= self._b_slows[i]
            self._b_calls[i] = self._b_fails[i] = self._b_slows[i] = 0
        self._cur_sec = sec

    def _evaluate(self) -> None:
        n = self._n
        if n < self._min_calls:
            return
        if self._fails * 100.0 >= self._failure_threshold * n or self._slows * 100.0 >= self._slow_rate_threshold * n:
            with self._lock:
                if self._state is CLOSED:
                    self._transition(OPEN)

    def _reset_window(self) -> None:
        self._n = self._fails = self._slows = 0
        if self._time_based:
            self._b_calls = [0] * self._size
            self._b_fails = [0] * self._size
            self._b_slows = [0] * self._size
            self._cur_sec = int(self._clock())
            self._ring = None
        else:
            self._ring = [-1] * self._size
            self._pos = 0

    def _transition(self, new: State) -> None:
        # Caller holds the lock.
        old = self._state
        if old is new:
            return
        self._gen += 1
        if new is OPEN:
            self._opened_at = self._clock()
        elif new is HALF_OPEN:
            self._permits = self._permitted
            self._probe_calls = self._probe_fails = self._probe_slows = 0
        else:
            self._reset_window()
        self._state = new
        self._closed_gen = self._gen if new is CLOSED else -1
        if self._gauge is not None:
            self._gauge.set(int(new))
            self._transitions.labels(*self._labels, new.name.lower()).inc()
        for listener in list(self._listeners):
            listener(self, old, new)
