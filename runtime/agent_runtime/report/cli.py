"""`python -m agent_runtime report performance|capacity|reliability --prometheus URL --since 7d`.

Writes `<out>/<kind>.md` (the report), `<kind>.json` (its figures) and PNG plots, from range
queries against a real Prometheus that scrapes the gateway (and, for capacity, the kubelets'
cAdvisor and kube-state-metrics). Exit 0 on success, 2 on bad input or an unreachable
Prometheus, with one message naming the option.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from . import capacity, performance, reliability
from .data import Window
from .prometheus import Prometheus, ReportError, parse_duration

__all__ = ["register", "run", "window_for"]

KINDS = ("performance", "capacity", "reliability")
# Enough steps for percentiles and incidents to resolve, well under Prometheus' 11,000.
TARGET_STEPS = 5000


def window_for(since: float, end: float, scrape_interval: float, step: float | None) -> Window:
    """The report's period; by default a step of the scrape interval or since/5000, if coarser."""
    if step is None:
        step = float(math.ceil(max(scrape_interval, since / TARGET_STEPS)))
    # rate() needs at least two samples in its window: four scrape intervals, as Grafana suggests.
    return Window(start=end - since, end=end, step=step, rate_window=max(4 * scrape_interval, step))


def _end(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--until: {text!r} is neither Unix seconds nor an ISO 8601 time") from None
    if when.tzinfo is None:
        raise ReportError(f"--until: {text!r} has no time zone (add Z or +00:00)")
    return when.timestamp()


def _check(args: argparse.Namespace) -> None:
    if not 0 < args.slo_objective < 100:
        raise ReportError(f"--slo-objective: {args.slo_objective:g} must be a percentage between 0 and 100")
    if not 0 < args.incident_error_ratio <= 1:
        raise ReportError(f"--incident-error-ratio: {args.incident_error_ratio:g} must be in (0, 1]")
    for flag, value in (("--cpu-cost", args.cpu_cost), ("--memory-cost", args.memory_cost)):
        if not value >= 0:
            raise ReportError(f"{flag}: {value:g} must be >= 0")
    if not args.project_days > 0:
        raise ReportError(f"--project-days: {args.project_days:g} must be > 0")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Write the report; return its figures. Raises ReportError for anything the user can fix."""
    _check(args)
    since = parse_duration(args.since, "--since")
    scrape = parse_duration(args.scrape_interval, "--scrape-interval")
    step = parse_duration(args.step, "--step") if args.step else None
    w = window_for(since, _end(args.until), scrape, step)
    prom = Prometheus(args.prometheus)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--out: cannot create {out}: {exc.strerror}") from None
    matchers = {"namespace": args.namespace} if args.namespace else {}
    if args.kind == "performance":
        figures = performance.performance(prom, w, out, matchers)
        body = performance.markdown(figures)
    elif args.kind == "capacity":
        figures = capacity.capacity(
            prom, w, out, matchers, cpu_cost=args.cpu_cost, memory_cost=args.memory_cost,
            project_days=args.project_days,
        )
        body = capacity.markdown(figures)
    else:
        figures = reliability.reliability(
            prom, w, out, matchers, objective_percent=args.slo_objective,
            incident_error_ratio=args.incident_error_ratio,
        )
        body = reliability.markdown(figures)
    start = dt.datetime.fromtimestamp(w.start, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    end = dt.datetime.fromtimestamp(w.end, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"# {args.kind.capitalize()} report",
        "",
        f"{start} to {end} ({args.since}), step {w.step:g} s, rates over {w.rate_window:g} s, "
        f"from {args.prometheus}" + (f", namespace {args.namespace}" if args.namespace else "") + ".",
        "",
    ]
    (out / f"{args.kind}.md").write_text("\n".join(header + body) + "\n")
    figures = {"window": {"start": w.start, "end": w.end, "step": w.step}, **figures}
    (out / f"{args.kind}.json").write_text(json.dumps(figures, indent=2, default=_nan_safe, allow_nan=True))
    return figures


def _nan_safe(value: Any) -> Any:
    return str(value)


def _cmd(args: argparse.Namespace) -> int:
    try:
        run(args)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(Path(args.out) / f"{args.kind}.md")
    return 0


def register(subparsers: Any) -> None:
    """Add `report` to `python -m agent_runtime`'s subcommands."""
    p = subparsers.add_parser(
        "report", help="performance, capacity or reliability report (Markdown + PNG) from Prometheus",
        description=(__doc__ or "").split("\n\n")[1].strip(),
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus base URL (http://host:9090)")
    p.add_argument("--since", default="7d", help="period before --until (7d, 36h, 90m; default 7d)")
    p.add_argument("--until", help="end of the period: Unix seconds or ISO 8601 with a zone (default: now)")
    p.add_argument("--step", help="query step (default: the scrape interval or since/5000, if coarser)")
    p.add_argument("--scrape-interval", default="30s", help="Prometheus' scrape interval (default 30s)")
    p.add_argument("--namespace", help="only series with this namespace label")
    p.add_argument("--out", default="build/reports", help="output directory (default build/reports)")
    p.add_argument("--slo-objective", type=float, default=99.9, help="availability objective, %% (default 99.9)")
    p.add_argument(
        "--incident-error-ratio", type=float, default=0.05,
        help="a step whose 5xx ratio exceeds this is part of an incident (default 0.05)",
    )
    p.add_argument(
        "--cpu-cost", type=float, default=0.0316,
        help="price of one requested core for one hour (default 0.0316, an example on-demand price: set yours)",
    )
    p.add_argument(
        "--memory-cost", type=float, default=0.0042,
        help="price of one requested GiB for one hour (default 0.0042, an example: set yours)",
    )
    p.add_argument("--project-days", type=float, default=30, help="projection horizon in days (default 30)")
    p.set_defaults(func=_cmd)
