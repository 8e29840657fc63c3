"""agent_runtime.agent: the reference agent, run as its own process on 127.0.0.1 as a pod runs it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    def __init__(self, **env: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent_runtime", "agent", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, "PYTHONPATH": str(RUNTIME), "POD_NAME": "agent-0", "AGENT_CLUSTER": "chat",
                 "AGENT_CAPABILITIES": "chat,plan", **env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(f"agent did not start: {self.proc.stdout.read() if self.proc.stdout else ''}")

    def request(self, method: str, path: str, body: object = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def agent():
    a = Agent()
    yield a
    a.stop()


def _events(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_capabilities_under_any_route_prefix_name_the_pod(agent):
    status, headers, body = agent.request("GET", "/v1/chat/capabilities")
    assert status == 200
    assert headers["x-agent-pod"] == "agent-0"
    assert json.loads(body) == {"cluster": "chat", "capabilities": ["chat", "plan"], "pod": "agent-0"}


def test_a_run_streams_accepted_start_progress_done(agent):
    status, headers, body = agent.request(
        "POST", "/v1/plans/run", {"duration_seconds": 0.3, "interval_seconds": 0.1},
        headers={"x-conversation-id": "c-1", "content-type": "application/json"})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-agent-pod"] == "agent-0"
    kinds = [kind for kind, _ in _events(body)]
    assert kinds[:2] == ["accepted", "start"] and kinds[-1] == "done"
    assert 2 <= kinds.count("progress") <= 4
    assert _events(body)[0][1]["conversation"] == "c-1"


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"), (b"[1]", "body"), ({"duration_seconds": "long"}, "duration_seconds"),
    ({"duration_seconds": 31}, "duration_seconds"), ({"interval_seconds": 0}, "interval_seconds"),
    ({"duration_seconds": True}, "duration_seconds"),
])
def test_a_bad_run_request_gets_one_400_naming_the_field(agent, body, field):
    status, headers, raw = agent.request("POST", "/run", body)
    assert status == 400
    assert json.loads(raw)["error"].startswith(f"{field}:")
    assert headers["x-agent-pod"] == "agent-0"


def test_an_oversized_body_is_refused_with_413(agent):
    status, _, _ = agent.request("POST", "/run", b"{" + b" " * 70_000 + b"}")
    assert status == 413


def test_past_its_concurrency_it_answers_429_with_retry_after():
    agent = Agent(AGENT_MAX_CONCURRENT="1")
    try:
        long_run = threading.Thread(target=agent.request, args=("POST", "/run", {"duration_seconds": 1.5}))
        long_run.start()
        time.sleep(0.4)
        status, headers, _ = agent.request("POST", "/run", {"duration_seconds": 0.1})
        long_run.join()
        assert status == 429 and headers["retry-after"] == "1"
        assert agent.request("POST", "/run", {"duration_seconds": 0.1})[0] == 200
    finally:
        agent.stop()


def test_sigterm_drains_readiness_first_and_lets_the_run_in_flight_finish(agent):
    result: dict = {}

    def stream():
        result["run"] = agent.request("POST", "/run", {"duration_seconds": 1.5, "interval_seconds": 0.2})

    runner = threading.Thread(target=stream)
    runner.start()
    time.sleep(0.4)
    agent.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert agent.request("GET", "/readyz")[0] == 503
    assert agent.request("GET", "/healthz")[0] == 200
    assert agent.proc.poll() is None  # still serving the run
    runner.join()
    status, _, body = result["run"]
    assert status == 200 and _events(body)[-1][0] == "done"
    assert agent.proc.wait(10) == 0


def test_metrics_count_requests_by_kind_and_status(agent):
    agent.request("GET", "/v1/chat/capabilities")
    agent.request("POST", "/run", {"duration_seconds": "x"})
    _, _, body = agent.request("GET", "/metrics")
    text = body.decode()
    assert 'agent_requests_total{kind="capabilities",code="200"} 1' in text
    assert 'agent_requests_total{kind="run",code="400"} 1' in text
    assert "agent_runs_in_flight 0" in text


def test_burn_keeps_a_core_busy_without_blocking_probes(agent):
    result: dict = {}
    burner = threading.Thread(target=lambda: result.update(
        burn=agent.request("POST", "/burn", {"seconds": 1.0})))
    started = time.monotonic()
    burner.start()
    time.sleep(0.2)
    assert agent.request("GET", "/healthz", timeout=1)[0] == 200
    burner.join()
    assert result["burn"][0] == 200 and time.monotonic() - started >= 1.0
