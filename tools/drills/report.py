"""The drills' report: report.json, report.md and one PNG timeline per drill.

The reliability summary puts each drill's figures next to the stack's targets: availability
against the SLO, error budget spent, MTTR per fault, RTO and RPO where a drill measures them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI machine
import matplotlib.pyplot as plt  # noqa: E402

from tools.drills import analysis  # noqa: E402
from tools.drills.records import DrillLog  # noqa: E402

EVENT_COLOURS = {"fault": "red", "terminating": "orange", "deleted": "grey", "ready": "green",
                 "unready": "purple", "added": "blue"}


def timeline(log: DrillLog, path: Path) -> Path:
    """Success rate and p99 per second, pod events as vertical lines."""
    rows = analysis.per_second(log.requests)
    seconds = [r["second"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 5.5))
    top.plot(seconds, [r["success_rate"] * 100 for r in rows], color="black", linewidth=1.2)
    top.set_ylabel("success %")
    top.set_ylim(-2, 102)
    bottom.plot(seconds, [r["p99_seconds"] * 1000 for r in rows], color="steelblue", linewidth=1.2)
    bottom.set_ylabel("p99 of short requests (ms)")
    bottom.set_xlabel("seconds since the drill started")
    labelled: set[str] = set()
    for event in log.events:
        colour = EVENT_COLOURS.get(event.kind, "black")
        for axis in (top, bottom):
            axis.axvline(event.t, color=colour, linestyle="--", linewidth=0.8, alpha=0.8,
                         label=event.kind if axis is top and event.kind not in labelled else None)
        labelled.add(event.kind)
    if labelled:
        top.legend(loc="lower left", fontsize=7, ncol=len(labelled))
    verdict = "passed" if log.passed else "FAILED"
    top.set_title(f"{log.name}: {verdict}, availability {analysis.availability(log.requests) * 100:.2f}%")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary(log: DrillLog, objective_percent: float) -> dict[str, Any]:
    requests = log.requests
    avail = analysis.availability(requests)
    return {
        "drill": log.name,
        "passed": log.passed,
        "requests": len(requests),
        "failed": len(analysis.failures(requests)),
        "availability_percent": None if math.isnan(avail) else round(avail * 100, 3),
        "error_budget_spent": None if math.isnan(avail) else round(
            analysis.error_budget_spent(requests, objective_percent), 4),
        **log.figures,
    }


def write_report(logs: list[DrillLog], out_dir: Path, *, objective_percent: float,
                 targets: dict[str, float] | None = None) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for log in logs:
        log.write(out_dir / f"{log.name}.json")
        png = timeline(log, out_dir / f"{log.name}.png")
        summaries.append({**summary(log, objective_percent), "timeline": png.name})
    report = {
        "slo_availability_percent": objective_percent,
        "targets": targets or {},
        "passed": all(s["passed"] for s in summaries),
        "drills": summaries,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(markdown(report, logs))
    return report


def markdown(report: dict[str, Any], logs: list[DrillLog]) -> str:
    lines = ["# Reliability report", "",
             f"SLO: {report['slo_availability_percent']}% availability. "
             f"Overall: **{'pass' if report['passed'] else 'FAIL'}**.", ""]
    if report["targets"]:
        lines += ["Targets: " + ", ".join(f"{k} {v}" for k, v in report["targets"].items()), ""]
    keys = sorted({k for s in report["drills"] for k in s} - {"drill", "passed", "timeline"})
    lines.append("| drill | result | " + " | ".join(keys) + " |")
    lines.append("|---|---|" + "---|" * len(keys))
    for s in report["drills"]:
        cells = [str(s.get(k, "")) for k in keys]
        lines.append(f"| {s['drill']} | {'pass' if s['passed'] else 'FAIL'} | " + " | ".join(cells) + " |")
    for log in logs:
        lines += ["", f"## {log.name}", "", f"![timeline]({log.name}.png)", ""]
        lines += [f"- {'held' if held else 'BROKEN'}: {promise}" for promise, held in log.checks.items()]
        lines += [f"- note: {note}" for note in log.notes]
    return "\n".join(lines) + "\n"
