"""`gateway --workers N`: N processes share the proxy and admin ports through SO_REUSEPORT."""

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

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_share_the_port_and_stop_together(tmp_path):
    backend = subprocess.Popen([sys.executable, "-m", "http.server", str(free_port_b := free_port()),
                                "--bind", "127.0.0.1", "--directory", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port, admin = free_port(), free_port()
    cfg = {"gateway": {"host": "127.0.0.1", "port": port, "admin_host": "127.0.0.1", "admin_port": admin},
           "routes": [{"name": "r", "path_prefix": "/", "cluster": "r",
                       "discovery": {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": free_port_b}]}}]}
    path = tmp_path / "runtime.json"
    path.write_text(json.dumps(cfg))
    (tmp_path / "hello.txt").write_text("hi")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "runtime")}
    proc = subprocess.Popen([sys.executable, "-m", "agent_runtime", "gateway", "--config", str(path), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        for _ in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=5) as r:
                assert r.read() == b"hi"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        backend.terminate()
        backend.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    starts = [json.loads(line) for line in out.splitlines() if "gateway listening" in line]
    assert len(starts) == 2  # both workers bound the same ports
    served = [json.loads(line) for line in out.splitlines() if '"route"' in line]
    assert len(served) == 20 and all(s["status"] == 200 for s in served)
