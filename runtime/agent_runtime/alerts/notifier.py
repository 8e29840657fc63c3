"""Alertmanager's grouping and deduplication, reduced to what one process needs.

Firing and resolved alerts are grouped by `group_by`, deduplicated by fingerprint and turned into
webhook payloads in Alertmanager's format (version "4"); an unchanged group is sent again only
after `repeat_interval_seconds`. Nothing is marked sent until the caller says it was, so a failed
POST is retried at the next evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .rules import FIRING, INACTIVE, Alert

__all__ = ["Notification", "Notifier"]


def _rfc3339(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    common = dict(dicts[0])
    for d in dicts[1:]:
        common = {k: v for k, v in common.items() if d.get(k) == v}
    return common


@dataclass
class Notification:
    """One webhook call: a group's firing alerts plus those resolved since the last call."""

    group_key: str
    payload: dict[str, Any]


@dataclass
class _GroupState:
    firing: frozenset[str] = frozenset()
    last_sent: float | None = None


class Notifier:
    """Alertmanager's grouping and deduplication, reduced to what one process needs."""

    def __init__(
        self,
        *,
        group_by: Sequence[str] = ("alertname",),
        receiver: str = "agent-runtime",
        external_url: str = "",
        repeat_interval_seconds: float = 4 * 3600.0,
    ) -> None:
        self.group_by = tuple(group_by)
        self.receiver = receiver
        self.external_url = external_url
        self.repeat_interval = repeat_interval_seconds
        self._groups: dict[str, _GroupState] = {}

    def _group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if "..." in self.group_by:  # Alertmanager: group by every label
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}

    def _group_key(self, group_labels: Mapping[str, str]) -> str:
        inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(group_labels.items()))
        return "{}:{" + inner + "}"

    def pending(self, alerts: Iterable[Alert], now: float) -> list[tuple[Notification, list[Alert], frozenset[str]]]:
        """What should be sent now, without marking anything as sent."""
        by_fp: dict[str, Alert] = {}
        for a in alerts:
            if a.state == FIRING or (a.state == INACTIVE and a.fired_at is not None and not a.resolved_notified):
                by_fp.setdefault(a.fingerprint, a)  # deduplicate identical label sets
        groups: dict[str, tuple[dict[str, str], list[Alert]]] = {}
        for a in by_fp.values():
            gl = self._group_labels(a.labels)
            groups.setdefault(self._group_key(gl), (gl, []))[1].append(a)
        out = []
        for key, (gl, members) in sorted(groups.items()):
            state = self._groups.get(key, _GroupState())
            firing = frozenset(a.fingerprint for a in members if a.state == FIRING)
            resolved = [a for a in members if a.state == INACTIVE]
            changed = firing != state.firing or bool(resolved)
            repeat = bool(firing) and state.last_sent is not None and now - state.last_sent >= self.repeat_interval
            if not (changed or repeat):
                continue
            members.sort(key=lambda a: (a.state != FIRING, sorted(a.labels.items())))
            payload = {
                "version": "4",
                "groupKey": key,
                "truncatedAlerts": 0,
                "status": "firing" if firing else "resolved",
                "receiver": self.receiver,
                "groupLabels": gl,
                "commonLabels": _common([a.labels for a in members]),
                "commonAnnotations": _common([a.annotations for a in members]),
                "externalURL": self.external_url,
                "alerts": [
                    {
                        "status": "firing" if a.state == FIRING else "resolved",
                        "labels": a.labels,
                        "annotations": a.annotations,
                        "startsAt": _rfc3339(a.fired_at),
                        "endsAt": _rfc3339(a.resolved_at if a.state == INACTIVE else None),
                        "generatorURL": self.external_url,
                        "fingerprint": a.fingerprint,
                    }
                    for a in members
                ],
            }
            out.append((Notification(key, payload), resolved, firing))
        return out

    def sent(self, group_key: str, resolved: Sequence[Alert], firing: frozenset[str], now: float) -> None:
        for a in resolved:
            a.resolved_notified = True
        self._groups[group_key] = _GroupState(firing=firing, last_sent=now)
        if not firing:
            self._groups.pop(group_key, None)
