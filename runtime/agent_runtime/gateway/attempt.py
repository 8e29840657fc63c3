"""One try of one request on one endpoint, recorded once into balancer, breaker and outlier detector.

Every way a try can end maps to one `Outcome`, so the bookkeeping lives in one place:

- SUCCESS: an answer below 500.
- STATUS: an answer of 500 or more from the agent (`status`).
- TRANSPORT: connect error, reset or per-try timeout: the agent's (or its network's) fault.
- ABANDONED: the client went away, broke off its upload or its own deadline ran out: nothing is
  learnt about the agent (Envoy keeps local-origin failures apart for the same reason).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..balancer import Endpoint
    from .routes import RouteState

__all__ = ["Attempt", "Outcome"]


class Outcome(enum.Enum):
    SUCCESS = "success"
    STATUS = "status"
    TRANSPORT = "transport"
    ABANDONED = "abandoned"


class Attempt:
    """In flight on `ep` from construction until `record()`; a second `record()` is ignored."""

    __slots__ = ("route", "ep", "permit", "started", "done")

    def __init__(self, route: RouteState, ep: Endpoint, permit: int | None) -> None:
        self.route = route
        self.ep = ep
        self.permit = permit
        self.started = route.balancer.start(ep)
        self.done = False

    def record(self, outcome: Outcome, status: int = 0, kind: str = "") -> None:
        if self.done:
            return
        self.done = True
        rs = self.route
        ep = self.ep
        breaker = rs.breakers.get(ep.key)
        if outcome is Outcome.ABANDONED:
            rs.balancer.abandon(ep, self.started)
            if breaker is not None:
                breaker.release(self.permit)
            return
        ok = outcome is Outcome.SUCCESS
        rtt = rs.balancer.finish(ep, self.started, ok=ok)
        if breaker is not None:
            if ok:
                breaker.on_success(rtt, self.permit)
            else:
                breaker.on_error(rtt, self.permit)
        if outcome is Outcome.TRANSPORT:
            rs.outlier.failure(ep, gateway_failure=True)
            rs.error(kind)
        elif outcome is Outcome.STATUS:
            rs.outlier.failure(ep, status=status)
        else:
            rs.outlier.success(ep)
