"""Figures from a drill's records: availability, error budget, per-second timelines, recoveries."""

from __future__ import annotations

import math
from collections import defaultdict

from tools.drills.records import PodEvent, RequestRecord


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (what a reader can recompute by hand from the JSON)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def availability(records: list[RequestRecord]) -> float:
    return sum(r.ok for r in records) / len(records) if records else math.nan


def error_budget_spent(records: list[RequestRecord], objective_percent: float) -> float:
    """The fraction of the SLO's error budget these requests used (1.0: all of it)."""
    allowed = 1.0 - objective_percent / 100.0
    return (1.0 - availability(records)) / allowed


def per_second(records: list[RequestRecord]) -> list[dict[str, float]]:
    """Per second of start time: requests, success rate, p99 latency of the short requests."""
    buckets: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        buckets[int(r.start)].append(r)
    rows = []
    for second in range(0, max(buckets) + 1 if buckets else 0):
        rs = buckets.get(second, [])
        short = [r.latency for r in rs if r.kind == "short" and r.ok]
        rows.append({
            "second": float(second),
            "requests": float(len(rs)),
            "success_rate": sum(r.ok for r in rs) / len(rs) if rs else math.nan,
            "p99_seconds": quantile(short, 0.99),
        })
    return rows


def failures(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if not r.ok]


def ready_pods_at(events: list[PodEvent], t: float) -> set[str]:
    ready: set[str] = set()
    for e in sorted(events, key=lambda e: e.t):
        if e.t > t:
            break
        if e.kind == "ready":
            ready.add(e.pod)
        elif e.kind in ("unready", "terminating", "deleted"):
            ready.discard(e.pod)
    return ready


def recovery_seconds(events: list[PodEvent], fault_t: float, expected_ready: int) -> float | None:
    """Time from a fault to the first moment `expected_ready` pods are Ready again (MTTR)."""
    ready_times = sorted(e.t for e in events if e.t > fault_t)
    for t in ready_times:
        if len(ready_pods_at(events, t)) >= expected_ready:
            # Only a time after some pod went away counts as a recovery.
            return t - fault_t
    return None


def streams_started_before(records: list[RequestRecord], t: float) -> list[RequestRecord]:
    return [r for r in records if r.kind == "stream" and r.start < t]


def requests_to(records: list[RequestRecord], pod: str, after: float) -> list[RequestRecord]:
    """Requests that started after `after` and were answered by `pod`."""
    return [r for r in records if r.endpoint == pod and r.start > after]


def moved_conversations(records: list[RequestRecord], surviving: set[str]) -> list[str]:
    """Conversations that jumped from one endpoint that stayed up the whole time to another.

    A consistent-hash ring hands some keys to a pod that joins (a rollout's new pods); that is
    the ring working. Leaving a surviving endpoint for another survivor is affinity broken."""
    moved = []
    by_conversation: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.start):
        if r.conversation and r.ok and r.endpoint:
            by_conversation[r.conversation].append(r)
    for conversation, rs in by_conversation.items():
        first = rs[0].endpoint
        if first in surviving and any(r.endpoint != first and r.endpoint in surviving for r in rs):
            moved.append(conversation)
    return sorted(moved)


def first_ready(events: list[PodEvent], pod: str) -> float | None:
    return next((e.t for e in sorted(events, key=lambda e: e.t) if e.pod == pod and e.kind == "ready"), None)


def affinity_breaks(records: list[RequestRecord], events: list[PodEvent]) -> list[tuple[str, str, str, float]]:
    """Conversations a consistent-hash ring moved when nothing allowed it: from endpoint X, still
    Ready, to an endpoint Y that was already Ready when the conversation last went to X, while X
    had no other stream in flight (a ring moves a key only to a pod that joins or away from one
    that leaves, and bounded load never turns away a pod with nothing in flight). Each break is
    (conversation, X, Y, when)."""
    streams = sorted((r for r in records if r.kind == "stream" and r.ok and r.endpoint), key=lambda r: r.start)
    by_conversation: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in streams:
        if r.conversation:
            by_conversation[r.conversation].append(r)
    breaks = []
    for conversation, rs in by_conversation.items():
        for before, after in zip(rs, rs[1:], strict=False):
            x, y = before.endpoint, after.endpoint
            if x == y or x is None or y is None:
                continue
            y_ready = first_ready(events, y)
            joined_since = y_ready is None or y_ready > before.start
            busy = any(r.endpoint == x and r.start < after.start < r.end for r in streams if r is not after)
            if x in ready_pods_at(events, after.start) and not joined_since and not busy:
                breaks.append((conversation, x, y, after.start))
    return breaks
