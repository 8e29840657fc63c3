"""What a drill records: every request through the gateway and every pod event, on one clock."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

RequestKind = Literal["short", "stream", "burn"]


@dataclasses.dataclass
class RequestRecord:
    """One request as the client saw it. Times are seconds since the drill's start."""

    kind: RequestKind
    start: float
    end: float
    status: int  # 0: no response at all (connection refused or reset, client timeout)
    endpoint: str | None  # the agent pod that answered (its `x-agent-pod` header)
    conversation: str | None = None
    # A stream that ended before its `done` event is a failure even with status 200.
    complete: bool = True
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.complete

    @property
    def latency(self) -> float:
        return self.end - self.start


PodEventKind = Literal["added", "ready", "unready", "terminating", "deleted", "fault"]


@dataclasses.dataclass
class PodEvent:
    t: float
    pod: str
    kind: PodEventKind
    detail: str = ""


@dataclasses.dataclass
class DrillLog:
    """Everything one drill run produced; `checks` maps a promise to whether it held."""

    name: str
    requests: list[RequestRecord] = dataclasses.field(default_factory=list)
    events: list[PodEvent] = dataclasses.field(default_factory=list)
    checks: dict[str, bool] = dataclasses.field(default_factory=dict)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def check(self, promise: str, held: bool, detail: str = "") -> bool:
        self.checks[promise] = bool(held)
        if not held and detail:
            self.notes.append(f"{promise}: {detail}")
        return bool(held)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "checks": self.checks,
            "figures": self.figures,
            "notes": self.notes,
            "requests": [dataclasses.asdict(r) for r in self.requests],
            "events": [dataclasses.asdict(e) for e in self.events],
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def read(cls, path: Path) -> DrillLog:
        data = json.loads(path.read_text())
        return cls(
            name=data["name"],
            requests=[RequestRecord(**r) for r in data["requests"]],
            events=[PodEvent(**e) for e in data["events"]],
            checks=data["checks"],
            figures=data["figures"],
            notes=data["notes"],
        )
