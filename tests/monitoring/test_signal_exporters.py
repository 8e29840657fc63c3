"""Every signal a default alert reads has a real exporter, so no default rule is silent forever.

The exporters are the real ones: the gateway's metric declarations (`tests/gateway_metrics.py`),
the queue gauges agents export (`agent_runtime.metrics_signals.AgentQueueMetrics`), and the
`backup` and `drill` commands writing their textfile. After each has run once, every signal of the
default rule set (backups and drills on, SLO on) must have a value in-process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from agent_runtime.alerts import FileSource, RegistrySource, SignalComputer
from agent_runtime.config import BackupConfig, BackupSource, RestoreDrillConfig
from agent_runtime.metrics_signals import AgentQueueMetrics
from components.promql import effective_rules
from tests.gateway_metrics import GatewayReplica


def _run(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "agent_runtime", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_default_signal_is_exported(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "state.json").write_text('{"conversations": 3}')
    source = BackupSource(name="docs", kind="files", claim_name="docs-pvc", mount_path=str(volume))
    backup = BackupConfig(
        enabled=True,
        sources=(source,),
        target={"mount_path": str(tmp_path / "backups")},
        drill=RestoreDrillConfig(enabled=True),
    )
    rules = effective_rules(backup=backup, slo_objective_percent=99.9)

    gateway = GatewayReplica()
    gateway.request("chat", 200, seconds=0.3)
    gateway.breaker_state.labels("chat", "e1").set(0)
    gateway.ejected.labels("chat").set(0)
    agents = AgentQueueMetrics()
    agents.length.labels("workers").set(0)
    agents.oldest_age.labels("workers").set(0)
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({"backup": backup.model_dump(mode="json")}))
    prom = tmp_path / "recovery.prom"
    _run("backup", "--config", str(config), "--textfile", str(prom))
    _run("drill", "--config", str(config), "--textfile", str(prom))

    async def snapshot() -> list:
        out = []
        for s in (RegistrySource(gateway.registry), RegistrySource(agents.registry), FileSource(prom)):
            out += await s.collect()
        return out

    signals = SignalComputer()
    signals.ingest(0.0, asyncio.run(snapshot()))
    gateway.request("chat", 200, seconds=0.3)
    samples = asyncio.run(snapshot())
    signals.ingest(60.0, samples)
    names = {s.name for s in samples}
    for rule in rules:
        value = signals.compute(rule.signal, window_seconds=rule.window_seconds, route=rule.route)
        assert value, f"{rule.name}: nothing exports signal {rule.signal} (samples seen: {sorted(names)})"
        # A value from a real exporter, not the absent() fallback.
        assert all(v != float("inf") for v in value.values()), (rule.name, value)
