"""The Grafana dashboard renders to valid JSON, with panels for every route and cluster whose
queries Prometheus can parse."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from agent_runtime.config import BackupConfig, RestoreDrillConfig
from components.monitoring_rules import dashboard_json, render_dashboard

from .conftest import write_rules

ROUTES = ["chat", "search", "weird-route-9"]
CLUSTERS = ["workers", "ingest"]


def _dashboard() -> dict:
    return dashboard_json(
        routes=ROUTES,
        clusters=CLUSTERS,
        stack="prod",
        matchers={"namespace": 'agents "prod"'},  # a quote in a label value must not break anything
        backup=BackupConfig(enabled=True, drill=RestoreDrillConfig(enabled=True, rto_target_seconds=600)),
    )


def test_renders_valid_json_with_panels_per_route_and_cluster() -> None:
    text = render_dashboard(routes=ROUTES, clusters=CLUSTERS, stack="prod")
    dashboard = json.loads(text)
    assert dashboard["uid"] == "agent-platform-prod"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    for route in ROUTES:
        mine = [p for p in panels if p["title"].startswith(f"{route}:")]
        assert {p["title"] for p in mine} == {
            f"{route}: requests/s by status",
            f"{route}: availability",
            f"{route}: p99 latency",
            f"{route}: resilience",
        }
        for p in mine:
            assert all(f'route="{route}"' in t["expr"] for t in p["targets"]), p
    for cluster in CLUSTERS:
        assert any(p["title"] == f"{cluster}: queue length" for p in panels)
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [f"Route {r}" for r in ROUTES] + [f"Cluster {c}" for c in CLUSTERS] + ["Backups and restore drills"]


def test_ids_unique_and_panels_never_overlap() -> None:
    dashboard = _dashboard()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))


def test_objective_and_targets_become_thresholds() -> None:
    dashboard = _dashboard()
    by_title = {p["title"]: p for p in dashboard["panels"]}
    steps = by_title["chat: availability"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "red", "value": None}, {"color": "green", "value": 0.999}]
    steps = by_title["restore drill RTO"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "green", "value": None}, {"color": "red", "value": 600}]


def test_every_query_parses_in_promtool(promtool: str, tmp_path: Path) -> None:
    """Each panel query, wrapped as a recording rule, passes promtool's PromQL parser."""
    exprs = [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    rules = [{"record": f"dashboard:query:{i}", "expr": e} for i, e in enumerate(exprs)]
    path = write_rules(tmp_path / "dashboard-queries.yaml", [{"name": "dashboard", "rules": rules}])
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
