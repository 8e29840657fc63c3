"""A real Prometheus (Debian package `prometheus`) on 127.0.0.1 with the generated rules.

It scrapes the real gateway (`agent_runtime.gateway`) in front of an agent that fails every
request and exports its queue gauges, evaluates the generated rule file every second, and the
alerts we expect show up as firing in its /api/v1/alerts. Bounded: 60 s at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from prometheus_client import generate_latest

from agent_runtime.config import AlertRule, Discovery, Route, RuntimeConfig, StaticEndpoint
from agent_runtime.gateway import Gateway
from agent_runtime.metrics_signals import AgentQueueMetrics
from components.monitoring_rules import prometheus_rule_groups

from .conftest import write_rules

DEADLINE_SECONDS = 60
ROUTE = "promit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture
async def failing_agent() -> AsyncIterator[int]:
    """An agent that answers 500 to everything and reports a backlog of 150 on /metrics."""
    queue = AgentQueueMetrics()
    queue.length.labels(ROUTE).set(150)
    queue.oldest_age.labels(ROUTE).set(42)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(queue.registry), content_type="text/plain")

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", fail)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


@pytest_asyncio.fixture
async def gateway(failing_agent: int) -> AsyncIterator[Gateway]:
    config = RuntimeConfig(
        routes=(
            Route(
                name=ROUTE,
                path_prefix=f"/{ROUTE}",
                cluster=ROUTE,
                discovery=Discovery(kind="static", endpoints=(StaticEndpoint(host="127.0.0.1", port=failing_agent),)),
            ),
        )
    )
    gw = Gateway(config)
    await gw.start("127.0.0.1", 0)
    assert gw.port and gw.admin_port
    yield gw
    await gw.stop()


async def _traffic(port: int, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(
                    f"http://127.0.0.1:{port}/{ROUTE}/work", timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    await r.read()
            await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_prometheus_fires_generated_alerts(
    prometheus_bin: str, promtool: str, tmp_path: Path, gateway: Gateway, failing_agent: int
) -> None:
    started = time.monotonic()
    short = [
        AlertRule(name="ItErrorRate", signal="error_rate", threshold=0.5, window_seconds=10, **{"for": 2}),
        AlertRule(name="ItQueueBacklog", signal="queue_length", threshold=100, **{"for": 2}),
    ]
    rules = write_rules(tmp_path / "rules.yaml", prometheus_rule_groups(short, slo_objective_percent=99.9))
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {"job_name": "gateway", "static_configs": [{"targets": [f"127.0.0.1:{gateway.admin_port}"]}]},
                    {"job_name": "agents", "static_configs": [{"targets": [f"127.0.0.1:{failing_agent}"]}]},
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stop = asyncio.Event()
    load = asyncio.create_task(_traffic(gateway.port, stop))
    firing: dict[str, dict] = {}
    try:
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < DEADLINE_SECONDS - 5:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(
                        f"http://127.0.0.1:{port}/api/v1/alerts", timeout=aiohttp.ClientTimeout(total=2)
                    ) as r:
                        body = await r.json()
                        for a in body["data"]["alerts"]:
                            if a["state"] == "firing":
                                firing[a["labels"]["alertname"]] = a
                if {"ItErrorRate", "ItQueueBacklog"} <= set(firing):
                    break
                await asyncio.sleep(0.5)
    finally:
        stop.set()
        await load
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "ItErrorRate" in firing and "ItQueueBacklog" in firing, (
        f"firing: {sorted(firing)}\n" + (tmp_path / "prometheus.log").read_text()[-3000:]
    )
    err = firing["ItErrorRate"]
    assert err["labels"]["route"] == ROUTE and err["labels"]["signal"] == "error_rate"
    assert float(err["value"]) > 0.5
    assert err["annotations"]["runbook_url"].endswith("#iterrorrate")
    assert firing["ItQueueBacklog"]["labels"]["cluster"] == ROUTE
    assert float(firing["ItQueueBacklog"]["value"]) == 150
    assert time.monotonic() - started < DEADLINE_SECONDS
