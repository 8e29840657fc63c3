"""`python -m agent_runtime`: one clear line for a bad config, and a gateway that really serves."""

from __future__ import annotations

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

from agent_runtime.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "runtime")}
    return subprocess.run(
        [sys.executable, "-m", "agent_runtime", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def good_config(port: int, backend_port: int) -> dict:
    return {
        "gateway": {"host": "127.0.0.1", "port": port},
        "routes": [
            {
                "name": "agents",
                "path_prefix": "/",
                "cluster": "agents",
                "discovery": {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": backend_port}]},
            }
        ],
    }


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda c: c["routes"][0].update(breaker={"failure_rate_threshold": 150}),
            "routes[0].breaker.failure_rate_threshold",
        ),
        (lambda c: c["routes"][0]["discovery"].update(kind="dns"), "routes[0].discovery"),
        (lambda c: c["gateway"].update(max_in_flite=10), "gateway.max_in_flite"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key_path(tmp_path, mutate, expected):
    cfg = good_config(18080, 18081)
    mutate(cfg)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(cfg))
    proc = run_cli("gateway", "--config", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(bad) in lines[0] and expected in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_and_malformed_files_are_one_line_too(tmp_path):
    proc = run_cli("gateway", "--config", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such file" in proc.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"routes": [')
    proc = run_cli("gateway", "--config", str(broken))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not valid JSON" in proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gateway_process_serves_and_stops_on_sigterm(tmp_path):
    port, admin_port = free_port(), free_port()
    path = tmp_path / "runtime.json"
    cfg = good_config(port, free_port())
    cfg["gateway"].update(admin_host="127.0.0.1", admin_port=admin_port)
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "runtime")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_runtime", "gateway", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        # The only agent is down: a clear 502, not a hang.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code in (502, 503)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    logs = [json.loads(line) for line in out.splitlines()]
    assert any(line.get("route") == "agents" and line.get("status") in (502, 503) for line in logs)
    assert "Traceback" not in err


def test_cli_registry_has_gateway_and_skips_missing_modules(monkeypatch):
    import agent_runtime.__main__ as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("agent_runtime.gateway", "agent_runtime.not_there"))
    args = build_parser().parse_args(["gateway", "--config", "x.json", "--port", "9"])
    assert args.command == "gateway" and args.config == "x.json" and args.port == 9
