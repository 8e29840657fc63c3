"""tools/drills: load, records, analysis and the report, against a real gateway and real reference
agents on 127.0.0.1, one of them killed mid-run (what a drill on the node does, without the node).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tools.drills import analysis, report
from tools.drills.load import LoadRunner, Workload
from tools.drills.records import DrillLog, PodEvent

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "runtime")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            assert proc.poll() is None, f"{proc.args} exited {proc.returncode}"
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.05)


@pytest.fixture
def two_agents_behind_a_gateway(tmp_path):
    procs: dict[str, subprocess.Popen] = {}
    ports = {}
    for name in ("agent-a", "agent-b"):
        ports[name] = _free_port()
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "agent_runtime", "agent", "--host", "127.0.0.1", "--port", str(ports[name])],
            env={**ENV, "POD_NAME": name}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port, admin = _free_port(), _free_port()
    endpoints = [{"host": "127.0.0.1", "port": p} for p in ports.values()]
    config = {
        "gateway": {"host": "127.0.0.1", "port": port, "admin_host": "127.0.0.1", "admin_port": admin},
        "routes": [
            {"name": "chat", "path_prefix": "/v1/chat", "cluster": "chat",
             "discovery": {"kind": "static", "endpoints": endpoints}},
            {"name": "plans", "path_prefix": "/v1/plans", "cluster": "plans",
             "balancer": {"strategy": "consistent_hash", "hash_header": "x-conversation-id"},
             "discovery": {"kind": "static", "endpoints": endpoints}},
        ],
    }
    (tmp_path / "runtime.json").write_text(json.dumps(config))
    procs["gateway"] = subprocess.Popen(
        [sys.executable, "-m", "agent_runtime", "gateway", "--config", str(tmp_path / "runtime.json")],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for name, p in ports.items():
            _wait_http(f"http://127.0.0.1:{p}/healthz", procs[name])
        _wait_http(f"http://127.0.0.1:{admin}/readyz", procs["gateway"])
        yield f"http://127.0.0.1:{port}", procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def test_a_killed_agent_shows_in_the_records_the_analysis_and_the_report(two_agents_behind_a_gateway, tmp_path):
    base_url, procs = two_agents_behind_a_gateway
    workload = Workload(short_per_second=40, streams_per_second=4, stream_seconds=1.0, conversations=4,
                        timeout_seconds=10)
    runner = LoadRunner(base_url, workload, max_seconds=4.0)
    log = DrillLog("kill-agent-b")

    async def drill():
        load = asyncio.create_task(runner.run())
        await asyncio.sleep(1.5)
        log.events.append(PodEvent(runner.now(), "agent-b", "fault", "SIGKILL"))
        procs["agent-b"].send_signal(signal.SIGKILL)
        return await load

    log.requests = asyncio.run(drill())
    fault_t = log.events[0].t

    shorts = [r for r in log.requests if r.kind == "short"]
    streams = [r for r in log.requests if r.kind == "stream"]
    # Open loop: the schedule, not the system, decides how many were sent (4 s at 40/s and 4/s).
    assert 150 <= len(shorts) <= 161 and 14 <= len(streams) <= 17, (len(shorts), len(streams))
    before = {r.endpoint for r in shorts if r.start < fault_t}
    assert before == {"agent-a", "agent-b"}, before
    # After the kill, what succeeds was served by the survivor.
    after = {r.endpoint for r in log.requests if r.ok and r.start > fault_t + 0.5}
    assert after == {"agent-a"}, after
    # The idempotent GETs are retried onto the survivor: none of them fails.
    assert analysis.failures(shorts) == [], analysis.failures(shorts)
    # Runs streaming from agent-b when it died are cut off: recorded as failures, never as done.
    cut = [r for r in streams if not r.ok]
    assert cut and all(r.endpoint in ("agent-b", None) for r in cut), cut
    # Once the gateway has seen agent-b fail, a new run goes to agent-a (a refused connection is
    # retried even for a POST: nothing was sent). A second covers a loaded machine.
    assert all(r.start < fault_t + 1.0 for r in cut), (fault_t, cut)
    moved = analysis.moved_conversations(log.requests, surviving={"agent-a"})
    assert moved == []  # conversations that lived on agent-a stayed there

    log.check("no idempotent request failed", not analysis.failures(shorts))
    log.figures["availability_percent"] = round(analysis.availability(log.requests) * 100, 2)
    written = report.write_report([log], tmp_path / "report", objective_percent=99.5)
    assert written["drills"][0]["failed"] == len(cut)
    png = tmp_path / "report" / "kill-agent-b.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| kill-agent-b | pass |" in markdown and "![timeline](kill-agent-b.png)" in markdown
    again = DrillLog.read(tmp_path / "report" / "kill-agent-b.json")
    assert len(again.requests) == len(log.requests) and again.checks == log.checks
