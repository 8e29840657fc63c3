"""The generated rule groups, checked and unit-tested by the real promtool.

Each scenario feeds generated series to `promtool test rules` and states when one default rule
must be silent, firing (labels and rendered annotations included) and resolved again. Expected
annotations are rendered by `agent_runtime.alerts.templates.expand`, so these tests also hold the
in-process evaluator's templating to what Prometheus prints.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_runtime.alerts import alert_annotations, alert_labels, expand
from agent_runtime.config import AlertRule, BackupConfig, BackupSource, RestoreDrillConfig
from components.promql import RUNBOOK_BASE_URL, effective_rules, rule_groups

from .conftest import write_rules

BACKUP = BackupConfig(
    enabled=True,
    sources=(BackupSource(name="db", kind="files", claim_name="agent-state"),),
    drill=RestoreDrillConfig(enabled=True),
)
RULES = effective_rules(backup=BACKUP, slo_objective_percent=99.9)
BY_NAME = {r.name: r for r in RULES}
REQ = "agent_gateway_requests_total"
BUCKET = "agent_gateway_request_duration_seconds_bucket"


def counter(*phases: tuple[int, float], start: float = 0.0) -> str:
    """Explicit per-interval values of a counter growing `per_step` for `steps` steps per phase."""
    values, v = [start], start
    for steps, per_step in phases:
        for _ in range(steps):
            v += per_step
            values.append(v)
    return " ".join(f"{x:g}" for x in values)


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


@dataclass
class Expect:
    at: str
    # (series labels of the alert, value the annotations are rendered with)
    alerts: list[tuple[dict[str, str], float]] = field(default_factory=list)


@dataclass
class Scenario:
    alertname: str
    input_series: list[dict[str, str]]
    expects: list[Expect]
    interval: str = "1m"
    evaluation_interval: str = "1m"


def _exp_alerts(rule: AlertRule, alerts: list[tuple[dict[str, str], float]]) -> list[dict[str, Any]]:
    templates = alert_annotations(rule, RUNBOOK_BASE_URL)
    return [
        {
            "exp_labels": {**labels, **alert_labels(rule)},
            "exp_annotations": {k: expand(v, labels, value) for k, v in templates.items()},
        }
        for labels, value in alerts
    ]


CHAT = {"route": "chat"}

SCENARIOS = [
    Scenario(
        # 10% of requests fail from minute 11 to 30: pending at 13 (5m ratio 6.25%), firing
        # at 18 (`for: 5m`), resolved at 33 when the 5m ratio falls to 4.3%.
        "AgentHighErrorRate",
        [
            series(REQ, {"route": "chat", "endpoint": "e1", "code": "200"}, counter((60, 90))),
            series(REQ, {"route": "chat", "endpoint": "e1", "code": "500"}, counter((10, 0), (20, 10), (30, 0))),
            series(REQ, {"route": "search", "endpoint": "e2", "code": "200"}, counter((60, 100))),
        ],
        [Expect("12m"), Expect("17m"), Expect("18m", [(CHAT, 0.1)]), Expect("32m", [(CHAT, 0.0625)]), Expect("33m")],
    ),
    Scenario(
        # 5% of requests take 10-20 s from minute 11 to 40: p99 18 s; firing after `for: 10m`.
        "AgentHighLatencyP99",
        [
            series(BUCKET, {"route": "chat", "le": "1"}, counter((10, 100), (30, 95), (20, 100))),
            series(BUCKET, {"route": "chat", "le": "10"}, counter((10, 100), (30, 95), (20, 100))),
            series(BUCKET, {"route": "chat", "le": "20"}, counter((60, 100))),
            series(BUCKET, {"route": "chat", "le": "+Inf"}, counter((60, 100))),
        ],
        [Expect("21m"), Expect("25m", [(CHAT, 18.0)]), Expect("46m")],
    ),
    Scenario(
        # Two agents of `workers` hold 60 items each from minute 10 (sum 120 > 100) for 40 min.
        "AgentQueueBacklog",
        [
            series("agent_queue_length", {"cluster": "workers", "pod": "a"}, "10x9 60x40 0x10"),
            series("agent_queue_length", {"cluster": "workers", "pod": "b"}, "10x9 60x40 0x10"),
            series("agent_queue_length", {"cluster": "ingest", "pod": "c"}, "80x60"),
        ],
        [Expect("24m"), Expect("25m", [({"cluster": "workers"}, 120.0)]), Expect("52m")],
    ),
    Scenario(
        # The oldest item ages 60 s a minute, past 600 s at minute 11, until drained at 21.
        "AgentQueueStalled",
        [
            series("agent_queue_oldest_age_seconds", {"cluster": "workers", "pod": "a"}, "0+60x20 0x20"),
            series("agent_queue_oldest_age_seconds", {"cluster": "workers", "pod": "b"}, "0x40"),
        ],
        [Expect("15m"), Expect("16m", [({"cluster": "workers"}, 960.0)]), Expect("21m")],
    ),
    Scenario(
        # One gateway replica's breaker for chat/e1 opens at 5 (half-open 16-18 still counts)
        # and closes at 25; search's breaker opens for two minutes only.
        "AgentBreakerOpen",
        [
            series(
                "agent_breaker_state", {"route": "chat", "endpoint": "e1", "instance": "gw1"}, "0x4 1x10 2x2 1x5 0x20"
            ),
            series("agent_breaker_state", {"route": "chat", "endpoint": "e2", "instance": "gw1"}, "0x45"),
            series("agent_breaker_state", {"route": "chat", "endpoint": "e1", "instance": "gw2"}, "0x45"),
            series("agent_breaker_state", {"route": "search", "endpoint": "s1", "instance": "gw1"}, "0x5 1x2 0x38"),
        ],
        [Expect("9m"), Expect("10m", [(CHAT, 1.0)]), Expect("17m", [(CHAT, 1.0)]), Expect("25m")],
    ),
    Scenario(
        "AgentEndpointsEjected",
        [
            series("agent_endpoints_ejected", {"route": "chat", "instance": "gw1"}, "0x4 2x20 0x10"),
            series("agent_endpoints_ejected", {"route": "chat", "instance": "gw2"}, "0x4 1x20 0x10"),
        ],
        [Expect("14m"), Expect("15m", [(CHAT, 2.0)]), Expect("26m")],
    ),
    Scenario(
        # Daily backups: missed after 26.4 h (95040 s) without success; a backup at 30 h clears it.
        "AgentBackupMissed",
        [series("agent_backup_last_success_timestamp_seconds", {"source": "db"}, "0x359 108000x20")],
        [Expect("1580m"), Expect("1590m", [({"source": "db"}, 95400.0)]), Expect("1805m")],
        interval="5m",
        evaluation_interval="5m",
    ),
    Scenario(
        # Source db has never been backed up (only an unconfigured source has): absent() makes
        # the alert fire after `for: 5m` instead of staying silent forever.
        "AgentBackupMissed",
        [series("agent_backup_last_success_timestamp_seconds", {"source": "other"}, "0x20")],
        [Expect("4m"), Expect("5m", [({"source": "db"}, float("inf"))])],
    ),
    Scenario(
        "AgentRestoreDrillMissed",
        [series("agent_restore_drill_last_success_timestamp_seconds", {}, "0x359 108000x20")],
        [Expect("1580m"), Expect("1590m", [({}, 95400.0)]), Expect("1805m")],
        interval="5m",
        evaluation_interval="5m",
    ),
    Scenario(
        # RTO target 900 s: a 1200 s drill fires at once (`for: 0`), a 300 s one resolves it.
        "AgentRestoreDrillRTOMissed",
        [series("agent_restore_drill_rto_seconds", {}, "300x10 1200x10 300x10")],
        [Expect("10m"), Expect("11m", [({}, 1200.0)]), Expect("22m")],
    ),
    Scenario(
        "AgentRestoreDrillRPOMissed",
        [series("agent_restore_drill_rpo_seconds", {}, "3600x10 90000x10 3600x10")],
        [Expect("10m"), Expect("11m", [({}, 90000.0)]), Expect("22m")],
    ),
]


def _burn_series() -> list[dict[str, str]]:
    """Routes burning the 99.9% objective's budget at 30x, 10x, 3x and 0.5x for 6.5 hours."""
    out = []
    for route, per_min, errors in (("a", 1000, 30), ("b", 1000, 10), ("c", 1000, 3), ("d", 2000, 1)):
        out.append(series(REQ, {"route": route, "endpoint": "e", "code": "200"}, counter((390, per_min - errors))))
        out.append(series(REQ, {"route": route, "endpoint": "e", "code": "503"}, counter((390, errors))))
    return out


def _burn_stop_series() -> list[dict[str, str]]:
    """Route e burns at 30x for two hours, then serves cleanly."""
    return [
        series(REQ, {"route": "e", "endpoint": "e", "code": "200"}, counter((120, 970), (120, 1000))),
        series(REQ, {"route": "e", "endpoint": "e", "code": "500"}, counter((120, 30), (120, 0))),
    ]


BURN = [
    # Only the burn each alert is tuned for trips it: 14.4x pages, 6x pages, 1x opens a ticket.
    Scenario(
        "AgentErrorBudgetBurnFast",
        _burn_series(),
        [Expect("390m", [({"route": "a"}, 0.97)])],
    ),
    Scenario(
        "AgentErrorBudgetBurnMedium",
        _burn_series(),
        [Expect("390m", [({"route": "a"}, 0.97), ({"route": "b"}, 0.99)])],
    ),
    Scenario(
        "AgentErrorBudgetBurnSlow",
        _burn_series(),
        [Expect("390m", [({"route": "a"}, 0.97), ({"route": "b"}, 0.99), ({"route": "c"}, 0.997)])],
    ),
    # The short window resolves a page minutes after the burn stops, while the long one is still high.
    Scenario(
        "AgentErrorBudgetBurnFast",
        _burn_stop_series(),
        [Expect("119m", [({"route": "e"}, 0.97)]), Expect("126m")],
    ),
    Scenario(
        "AgentErrorBudgetBurnMedium",
        _burn_stop_series(),
        [Expect("126m", [({"route": "e"}, 1 - 3600 / 126000)]), Expect("151m")],
    ),
]


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rules(tmp_path_factory.mktemp("rules") / "rules.yaml", rule_groups(RULES))


def test_generated_rules_pass_promtool_check(promtool: str, rules_file: Path) -> None:
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES) + 5} rules found" in result.stdout  # + 5 recorded error ratios


def test_every_default_rule_has_a_scenario() -> None:
    covered = {s.alertname for s in SCENARIOS + BURN}
    assert covered == set(BY_NAME), set(BY_NAME) ^ covered


def test_every_alert_is_labelled_and_annotated() -> None:
    for rule in rule_groups(RULES)[0]["rules"]:
        if "alert" not in rule:
            continue
        assert rule["labels"]["signal"] == BY_NAME[rule["alert"]].signal
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
    for name in ("AgentErrorBudgetBurnFast", "AgentErrorBudgetBurnMedium", "AgentErrorBudgetBurnSlow"):
        assert BY_NAME[name].signal == "availability"
    assert BY_NAME["AgentErrorBudgetBurnFast"].severity == "critical"
    assert BY_NAME["AgentErrorBudgetBurnSlow"].severity == "warning"


def _run(promtool: str, tmp_path: Path, rules_file: Path, scenario: Scenario) -> None:
    rule = BY_NAME[scenario.alertname]
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": scenario.evaluation_interval,
        "tests": [
            {
                "interval": scenario.interval,
                "input_series": scenario.input_series,
                "alert_rule_test": [
                    {"eval_time": e.at, "alertname": scenario.alertname, "exp_alerts": _exp_alerts(rule, e.alerts)}
                    for e in scenario.expects
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{s.alertname}-{i}" for i, s in enumerate(SCENARIOS)])
def test_default_rule_fires_and_resolves(promtool: str, tmp_path: Path, rules_file: Path, scenario: Scenario) -> None:
    _run(promtool, tmp_path, rules_file, scenario)


@pytest.mark.parametrize(
    "scenario", BURN, ids=[f"{s.alertname}-{'stop' if len(s.input_series) == 2 else 'burns'}" for s in BURN]
)
def test_burn_rate_alert_fires_at_its_burn(promtool: str, tmp_path: Path, rules_file: Path, scenario: Scenario) -> None:
    _run(promtool, tmp_path, rules_file, scenario)


def test_route_specific_rule_replaces_the_generic_one_for_that_route(promtool: str, tmp_path: Path) -> None:
    """A stricter AgentHighErrorRate for `chat` fires for chat alone; the default covers the rest."""
    strict = AlertRule(name="AgentHighErrorRate", signal="error_rate", threshold=0.01, route="chat", **{"for": 0})
    rules = effective_rules([strict], slo_objective_percent=None)
    generic = AlertRule(name="AgentHighErrorRate", signal="error_rate", threshold=0.05, **{"for": 300.0})
    rules = (generic, *rules)
    rules_file = write_rules(tmp_path / "rules.yaml", rule_groups(rules))
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # 2% errors on both routes: above chat's 1%, below the default 5%.
                    series(REQ, {"route": "chat", "endpoint": "e", "code": "200"}, counter((30, 98))),
                    series(REQ, {"route": "chat", "endpoint": "e", "code": "500"}, counter((30, 2))),
                    series(REQ, {"route": "search", "endpoint": "e", "code": "200"}, counter((30, 98))),
                    series(REQ, {"route": "search", "endpoint": "e", "code": "500"}, counter((30, 2))),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "AgentHighErrorRate",
                        "exp_alerts": _exp_alerts(strict, [(CHAT, 0.02)]),
                    }
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
