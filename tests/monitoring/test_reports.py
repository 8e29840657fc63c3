"""The reports against a real Prometheus (Debian's `prometheus`) scraping a real gateway.

Two routes: `steady` (every request 200 after 150 ms) and `flaky` (every 5th request 500, and a
burst of only 500s for a few seconds in the middle). A kube exporter stands in for cAdvisor and
kube-state-metrics (whose pods this machine does not run) with known usage, requests and limits.
Prometheus scrapes both every second; the reports' numbers are checked against what was sent.
Bounded: at most MAX_REQUESTS requests and DEADLINE_SECONDS in all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent_runtime.config import BreakerConfig, Discovery, OutlierConfig, Route, RuntimeConfig, StaticEndpoint
from agent_runtime.gateway import Gateway
from agent_runtime.metrics_signals import REQUESTS_TOTAL
from agent_runtime.report import Prometheus, ReportError, run
from agent_runtime.report.capacity import CPU_USAGE, MEMORY_WORKING_SET, RESOURCE_LIMITS, RESOURCE_REQUESTS

DEADLINE_SECONDS = 90
MAX_REQUESTS = 4000
PHASE_SECONDS = 4.0
BURST_SECONDS = 3.0
PODS = {"workers-5dd6584dd-abcde": (0.20, 300 * 2**20), "workers-5dd6584dd-fghij": (0.10, 200 * 2**20)}
STEADY_SECONDS = 0.15  # the steady route's answer time: slower than flaky's, well inside one bucket
STEADY_SECONDS = 0.15  # the steady route's answer time: slower than flaky's, well inside one bucket
REQUEST_CPU, REQUEST_MEMORY, LIMIT_CPU, LIMIT_MEMORY = 0.5, 512 * 2**20, 1.0, 2**30


@dataclass
class Agent:
    port: int = 0
    burst: bool = False
    flaky_calls: int = 0


@pytest_asyncio.fixture
async def agent() -> AsyncIterator[Agent]:
    state = Agent()

    async def steady(_: web.Request) -> web.Response:
        await asyncio.sleep(STEADY_SECONDS)
        return web.Response(text="ok")

    async def flaky(_: web.Request) -> web.Response:
        state.flaky_calls += 1
        if state.burst or state.flaky_calls % 5 == 0:
            return web.Response(status=500, text="broken")
        return web.Response(text="ok")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/steady/{tail:.*}", steady)
    app.router.add_get("/flaky/{tail:.*}", flaky)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


class KubeMetrics:
    """cAdvisor and kube-state-metrics families for two pods: CPU counters growing at a known
    rate (cores), a constant working set, requests and limits."""

    def __init__(self) -> None:
        self.t0 = time.time()

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        cpu = CounterMetricFamily(CPU_USAGE.removesuffix("_total"), "cpu", labels=["namespace", "pod", "container"])
        mem = GaugeMetricFamily(MEMORY_WORKING_SET, "mem", labels=["namespace", "pod", "container"])
        req = GaugeMetricFamily(RESOURCE_REQUESTS, "req", labels=["namespace", "pod", "container", "resource"])
        lim = GaugeMetricFamily(RESOURCE_LIMITS, "lim", labels=["namespace", "pod", "container", "resource"])
        for pod, (cores, memory) in PODS.items():
            cpu.add_metric(["agents", pod, "agent"], cores * (now - self.t0))
            mem.add_metric(["agents", pod, "agent"], memory)
            for family, c, m in ((req, REQUEST_CPU, REQUEST_MEMORY), (lim, LIMIT_CPU, LIMIT_MEMORY)):
                family.add_metric(["agents", pod, "agent", "cpu"], c)
                family.add_metric(["agents", pod, "agent", "memory"], m)
        # The pause container and the pod-level series cAdvisor also exports, which must not count.
        cpu.add_metric(["agents", "workers-5dd6584dd-abcde", "POD"], 5 * (now - self.t0))
        mem.add_metric(["agents", "workers-5dd6584dd-abcde", ""], 10 * 2**30)
        yield from (cpu, mem, req, lim)

    def describe(self) -> Iterator[Metric]:
        return iter(())


@pytest_asyncio.fixture
async def kube_exporter() -> AsyncIterator[int]:
    registry = CollectorRegistry()
    registry.register(KubeMetrics())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


def _route(name: str, port: int) -> Route:
    return Route(
        name=name,
        path_prefix=f"/{name}",
        cluster=name,
        discovery=Discovery(kind="static", endpoints=(StaticEndpoint(host="127.0.0.1", port=port),)),
        # The burst must show as it happened: no breaker answering for the agent afterwards, no
        # ejection of the only endpoint.
        breaker=BreakerConfig(enabled=False),
        outlier=OutlierConfig(consecutive_5xx=100_000, consecutive_gateway_failure=100_000),
    )


@pytest_asyncio.fixture
async def gateway(agent: Agent) -> AsyncIterator[Gateway]:
    gw = Gateway(RuntimeConfig(routes=(_route("steady", agent.port), _route("flaky", agent.port))))
    await gw.start("127.0.0.1", 0)
    yield gw
    await gw.stop()


@pytest_asyncio.fixture
async def prometheus(prometheus_bin: str, tmp_path: Path, gateway: Gateway, kube_exporter: int) -> AsyncIterator[str]:
    from tests.monitoring.test_prometheus_integration import _free_port

    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "gateway", "static_configs": [{"targets": [f"127.0.0.1:{gateway.admin_port}"]}]},
            # honor_labels: the exporter's namespace/pod labels are the pods', as with kube-state-metrics.
            {"job_name": "kube", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{kube_exporter}"]}]},
        ],
    }))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # ready within 20 s
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{url}/-/ready", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("prometheus did not become ready: " + (tmp_path / "prometheus.log").read_text()[-3000:])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class Sent:
    codes: dict[str, dict[int, int]] = field(default_factory=lambda: {"steady": {}, "flaky": {}})
    burst: tuple[float, float] = (0.0, 0.0)

    def add(self, route: str, code: int) -> None:
        self.codes[route][code] = self.codes[route].get(code, 0) + 1

    def total(self) -> int:
        return sum(n for c in self.codes.values() for n in c.values())


async def _traffic(port: int, agent: Agent, started: float) -> Sent:
    sent = Sent()
    async with aiohttp.ClientSession() as session:

        async def phase(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end and sent.total() < MAX_REQUESTS:
                assert time.monotonic() - started < DEADLINE_SECONDS - 30
                for route in ("steady", "flaky"):
                    async with session.get(
                        f"http://127.0.0.1:{port}/{route}/x", timeout=aiohttp.ClientTimeout(total=5)
                    ) as r:
                        await r.read()
                        sent.add(route, r.status)

        await phase(PHASE_SECONDS)
        agent.burst = True
        t0 = time.time()
        await phase(BURST_SECONDS)
        agent.burst = False
        sent.burst = (t0, time.time())
        await phase(PHASE_SECONDS)
    return sent


def _args(kind: str, url: str, out: Path, since_seconds: float, **extra: object) -> argparse.Namespace:
    values = dict(
        kind=kind, prometheus=url, since=f"{since_seconds:.0f}s", until=None, step="1s", scrape_interval="1s",
        namespace=None, out=str(out), slo_objective=99.0, incident_error_ratio=0.5, cpu_cost=0.04,
        memory_cost=0.005, project_days=30.0,
    )
    values.update(extra)
    return argparse.Namespace(**values)


async def _scraped(url: str, expected: int) -> None:
    """Wait until Prometheus has scraped every request sent (at most 15 s)."""
    prom = Prometheus(url)
    for _ in range(60):
        rows = await asyncio.to_thread(prom.instant, f"sum({REQUESTS_TOTAL})", time.time())
        if rows and rows[0][1] >= expected:
            return
        await asyncio.sleep(0.25)
    pytest.fail(f"Prometheus never saw {expected} requests: {rows}")


@pytest.mark.asyncio
async def test_reports_match_the_traffic_sent(
    prometheus: str, gateway: Gateway, agent: Agent, tmp_path: Path
) -> None:
    started = time.monotonic()
    t_start = time.time()
    await asyncio.sleep(2)  # a few scrapes before traffic, so the routes are seen up first
    sent = await _traffic(gateway.port, agent, started)
    await _scraped(prometheus, sent.total())
    await asyncio.sleep(1.5)  # one more scrape after the last request
    since = time.time() - t_start + 3
    out = tmp_path / "reports"

    perf = await asyncio.to_thread(run, _args("performance", prometheus, out, since))
    for route in ("steady", "flaky"):
        f = perf["routes"][route]
        assert f["requests"] == sum(sent.codes[route].values()), (route, f, sent.codes)
        assert f["codes"] == {str(c): n for c, n in sorted(sent.codes[route].items())}
        assert f["errors_5xx"] == sent.codes[route].get(500, 0)
    steady = perf["routes"]["steady"]
    # The agent answers `steady` after 150 ms: the median is in the (100, 250] ms bucket.
    assert 0.100 < steady["p50_seconds"] <= 0.250, steady
    assert perf["routes"]["flaky"]["p50_seconds"] < steady["p50_seconds"]
    assert "slowest route: `steady`" in perf["bottlenecks"][0]
    assert (out / "performance-throughput.png").stat().st_size > 5000
    assert "| steady |" in (out / "performance.md").read_text()

    rel = await asyncio.to_thread(run, _args("reliability", prometheus, out, since))
    flaky, ok = rel["routes"]["flaky"], rel["routes"]["steady"]
    expected_avail = 100 * sent.codes["flaky"].get(200, 0) / sum(sent.codes["flaky"].values())
    assert flaky["availability_percent"] == pytest.approx(expected_avail, abs=1e-9)
    assert not flaky["slo_met"] and ok["slo_met"] and ok["availability_percent"] == 100
    assert ok["uptime_percent"] == 100 and ok["incidents"] == []
    # One incident: the burst, measured at 1 s resolution (the scrape interval).
    assert len(flaky["incidents"]) == 1, flaky["incidents"]
    incident = flaky["incidents"][0]
    burst_start, burst_end = sent.burst
    assert abs(incident["start"] - burst_start) <= 2.0, (incident, sent.burst)
    assert abs(flaky["mttr_seconds"] - (burst_end - burst_start)) <= 2.0, (flaky["mttr_seconds"], sent.burst)
    assert flaky["error_budget_spent"] > 1

    cap = await asyncio.to_thread(run, _args("capacity", prometheus, out, since))
    workers = cap["clusters"]["workers"]
    assert list(cap["clusters"]) == ["workers"]
    assert workers["cpu_request_cores"] == REQUEST_CPU and workers["memory_limit_bytes"] == LIMIT_MEMORY
    # Per-pod usage 0.1 and 0.2 cores: the p90 over both pods' samples is near 0.2.
    assert workers["cpu_usage_p90_cores"] == pytest.approx(0.2, rel=0.1)
    assert workers["recommended_cpu_request_cores"] == pytest.approx(0.2 * 1.15, rel=0.1)
    assert workers["memory_usage_p90_bytes"] == 300 * 2**20
    assert workers["recommended_memory_request_bytes"] == pytest.approx(300 * 2**20 * 1.15)
    assert workers["pods_mean"] == pytest.approx(2, abs=0.1)
    per_pod = REQUEST_CPU * 0.04 + REQUEST_MEMORY / 2**30 * 0.005
    assert workers["monthly_cost_requests"] == pytest.approx(workers["pods_mean"] * per_pod * 730)
    assert workers["monthly_cost_recommended"] < workers["monthly_cost_requests"]
    assert json.loads((out / "capacity.json").read_text())["clusters"]["workers"]["pods_mean"] > 1
    assert time.monotonic() - started < DEADLINE_SECONDS


def test_unreachable_prometheus_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"Prometheus at http://127.0.0.1:9: .*cannot reach it"):
        run(_args("capacity", "http://127.0.0.1:9", tmp_path, 60))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"since": "7x"}, "--since: '7x' is not a positive duration"),
        ({"step": "0s"}, "--step: '0s' is not a positive duration"),
        ({"prometheus": "prometheus:9090"}, "--prometheus: 'prometheus:9090' is not an http"),
        ({"slo_objective": 100.0}, "--slo-objective: 100 must be a percentage"),
        ({"until": "2026-01-01T00:00:00"}, "--until: .* has no time zone"),
        ({"since": "1000d", "step": "1s"}, "--step: 1s over .* more than Prometheus' 11000 points"),
    ],
)
def test_bad_input_names_the_option(tmp_path: Path, extra: dict, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        run(_args("performance", "http://127.0.0.1:9", tmp_path, 60, **extra))


def test_command_line_prints_the_error_without_a_traceback(tmp_path: Path) -> None:
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "agent_runtime", "report", "reliability", "--prometheus", "http://127.0.0.1:9",
         "--since", "bogus", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "report: --since: 'bogus' is not a positive duration such as 7d, 36h, 1h30m or 90s"
