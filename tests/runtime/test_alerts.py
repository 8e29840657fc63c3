"""In-process alert evaluation (agent_runtime.alerts) against a real webhook on 127.0.0.1.

Time is a fake clock stepped by the tests; the gateway's registry is a real prometheus_client
registry holding the gateway's own metric declarations (`tests/gateway_metrics.py`); notifications
go over real HTTP to an aiohttp receiver.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from agent_runtime.alerts import (
    AlertEvaluator,
    DnsSource,
    HttpSource,
    RegistrySource,
    SignalComputer,
    expand,
    fingerprint,
    histogram_quantile,
    samples_from_registry,
)
from agent_runtime.config import AlertingConfig, AlertRule
from agent_runtime.metrics_signals import AgentQueueMetrics
from tests.gateway_metrics import GatewayReplica
from tests.runtime.conftest import FakeClock, Receiver


class Clock(FakeClock):
    """The fake clock at a realistic epoch: notifications carry its time as dates."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__(start)


def traffic(m: GatewayReplica, route: str, ok: int, errors: int = 0) -> None:
    m.request(route, 200, n=ok)
    if errors:
        m.request(route, 503, n=errors)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ERROR_RULE = AlertRule(
    name="HighErrors",
    signal="error_rate",
    threshold=0.05,
    window_seconds=30,
    severity="critical",
    labels={"team": "agents"},
    annotations={"summary": "{{ $labels.route }} fails {{ $value | humanizePercentage }}"},
    **{"for": 60, "keep_firing_for": 30},
)


@pytest.mark.asyncio
async def test_pending_firing_keep_firing_resolved_over_real_webhook(receiver: Receiver) -> None:
    clock = Clock()
    m = GatewayReplica()
    config = AlertingConfig(
        rules=(ERROR_RULE,), webhook_url=receiver.url, evaluation_interval_seconds=10, external_url="http://gw:8080"
    )
    ev = AlertEvaluator(config, sources=[RegistrySource(m.registry)], clock=clock)
    try:
        traffic(m, "chat", 100)
        assert await ev.evaluate_once() == []
        states = []
        for _ in range(6):  # 10% errors every 10 s
            clock.advance(10)
            traffic(m, "chat", 90, 10)
            await ev.evaluate_once()
            states.append(ev.alerts()[0].state if ev.alerts() else "inactive")
        # pending from the first bad evaluation; firing once `for` (60 s) has passed
        assert states == ["pending"] * 6
        assert receiver.take() == []
        clock.advance(10)
        traffic(m, "chat", 90, 10)
        await ev.evaluate_once()
        fired_at = clock.now
        [note] = receiver.take()
        labels = {
            "alertname": "HighErrors",
            "route": "chat",
            "severity": "critical",
            "signal": "error_rate",
            "team": "agents",
        }
        assert note == {
            "version": "4",
            "groupKey": '{}:{alertname="HighErrors"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "agent-runtime",
            "groupLabels": {"alertname": "HighErrors"},
            "commonLabels": labels,
            "commonAnnotations": note["alerts"][0]["annotations"],
            "externalURL": "http://gw:8080",
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": note["alerts"][0]["annotations"],
                    "startsAt": rfc3339(fired_at),
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://gw:8080",
                    "fingerprint": fingerprint(labels),
                }
            ],
        }
        assert note["alerts"][0]["annotations"]["summary"] == "chat fails 10%"
        assert note["alerts"][0]["annotations"]["runbook_url"].endswith("#higherrors")

        # Still failing: firing, unchanged, nothing sent again (deduplicated).
        for _ in range(3):
            clock.advance(10)
            traffic(m, "chat", 90, 10)
            assert await ev.evaluate_once() == []
        # Errors stop. The 30 s window clears after 3 evaluations; keep_firing_for holds 30 s more.
        cleared_at = None
        for _ in range(10):
            clock.advance(10)
            traffic(m, "chat", 100)
            await ev.evaluate_once()
            ratio = ev.signals.compute("error_rate", window_seconds=30)[(("route", "chat"),)]
            if ratio <= 0.05 and cleared_at is None:
                cleared_at = clock.now
            if receiver.payloads:
                break
        [note] = receiver.take()
        assert cleared_at is not None and clock.now - cleared_at == 30
        assert note["status"] == "resolved"
        [alert] = note["alerts"]
        assert alert["status"] == "resolved"
        assert alert["endsAt"] == rfc3339(clock.now)
        assert alert["startsAt"] == rfc3339(fired_at)
        # Resolved is announced once.
        clock.advance(10)
        traffic(m, "chat", 100)
        assert await ev.evaluate_once() == []
        assert ev.alerts()[0].state == "inactive"
    finally:
        await ev.close()


@pytest.mark.asyncio
async def test_grouping_common_labels_and_partial_resolution(receiver: Receiver) -> None:
    clock = Clock()
    m = GatewayReplica()
    rule = ERROR_RULE.model_copy(update={"for_seconds": 0.0, "keep_firing_for_seconds": 0.0, "annotations": {}})
    config = AlertingConfig(rules=(rule,), webhook_url=receiver.url, group_by=("alertname", "severity"))
    ev = AlertEvaluator(config, sources=[RegistrySource(m.registry)], clock=clock)
    try:
        traffic(m, "chat", 10)
        traffic(m, "search", 10)
        await ev.evaluate_once()
        clock.advance(10)
        traffic(m, "chat", 50, 50)
        traffic(m, "search", 80, 20)
        await ev.evaluate_once()
        [note] = receiver.take()
        assert note["groupKey"] == '{}:{alertname="HighErrors",severity="critical"}'
        assert note["groupLabels"] == {"alertname": "HighErrors", "severity": "critical"}
        assert [a["labels"]["route"] for a in note["alerts"]] == ["chat", "search"]
        assert "route" not in note["commonLabels"] and note["commonLabels"]["team"] == "agents"
        assert "summary" not in note["commonAnnotations"]  # it names the route, so it differs

        clock.advance(40)  # search recovers, chat still fails
        traffic(m, "chat", 50, 50)
        traffic(m, "search", 100)
        await ev.evaluate_once()
        [note] = receiver.take()
        assert note["status"] == "firing"
        assert [(a["labels"]["route"], a["status"]) for a in note["alerts"]] == [
            ("chat", "firing"),
            ("search", "resolved"),
        ]
    finally:
        await ev.close()


@pytest.mark.asyncio
async def test_failed_webhook_is_retried_and_unchanged_groups_repeat(receiver: Receiver) -> None:
    clock = Clock()
    m = GatewayReplica()
    rule = AlertRule(name="BreakerOpen", signal="breaker_open", threshold=0, **{"for": 0})
    config = AlertingConfig(rules=(rule,), webhook_url=receiver.url, repeat_interval_seconds=100)
    ev = AlertEvaluator(config, sources=[RegistrySource(m.registry)], clock=clock)
    try:
        m.breaker_state.labels("chat", "e1").set(1)
        receiver.fail_next = 1
        await ev.evaluate_once()
        assert receiver.take() == [] and ev.notification_failures == 1
        clock.advance(10)
        await ev.evaluate_once()  # retried
        [note] = receiver.take()
        assert note["alerts"][0]["labels"]["route"] == "chat"
        clock.advance(50)
        assert await ev.evaluate_once() == []
        clock.advance(50)  # 100 s after the last send: repeat
        assert len(await ev.evaluate_once()) == 1
        assert receiver.take()[0]["status"] == "firing"
    finally:
        await ev.close()


@pytest.mark.asyncio
async def test_scraped_metrics_from_several_replicas(receiver: Receiver) -> None:
    """HttpSource scrapes real /metrics pages; breaker_open takes the worst replica."""
    registries = [GatewayReplica(), GatewayReplica()]
    registries[0].breaker_state.labels("chat", "e1").set(1)
    registries[0].breaker_state.labels("chat", "e2").set(2)
    registries[1].breaker_state.labels("chat", "e1").set(1)
    runners, urls = [], []
    for g in registries:

        async def metrics(_: web.Request, g: GatewayReplica = g) -> web.Response:
            return web.Response(body=g.render(), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/metrics")  # type: ignore[union-attr]
    rule = AlertRule(name="BreakerOpen", signal="breaker_open", threshold=1, **{"for": 0})
    config = AlertingConfig(rules=(rule,), webhook_url=receiver.url)
    ev = AlertEvaluator(config, sources=[HttpSource(u) for u in urls] + [HttpSource("http://127.0.0.1:9/metrics")])
    try:
        await ev.evaluate_once()  # the unreachable third source is logged, not fatal
        [note] = receiver.take()
        assert note["alerts"][0]["labels"]["route"] == "chat"
        assert ev.alerts()[0].value == 2
    finally:
        await ev.close()
        for r in runners:
            await r.cleanup()


def test_multi_window_burn_resets_with_the_short_window() -> None:
    """The SLO page needs both windows: it stops minutes after the burn, not an hour after."""
    clock = Clock()
    m = GatewayReplica()
    rule = AlertRule(
        name="Burn",
        signal="availability",
        comparison="<",
        threshold=1 - 14.4 * 0.001,
        window_seconds=3600,
        short_window_seconds=300,
        **{"for": 0},
    )
    ev = AlertEvaluator(AlertingConfig(rules=(rule,)), sources=[], clock=clock)
    firing = []
    for minute in range(90):
        traffic(m, "chat", 970, 30) if minute < 60 else traffic(m, "chat", 1000)
        ev.evaluate(samples_from_registry(m.registry), clock())
        firing.append(any(a.state == "firing" for a in ev.alerts()))
        clock.advance(60)
    assert firing[1] and firing[59]
    # The burn stopped at minute 60: the 1 h ratio is still 3% for a while, the 5 m one is clean.
    assert firing.index(False, 60) <= 66
    assert not any(firing[66:])


def test_signals_match_promql_definitions() -> None:
    g = GatewayReplica()
    q = AgentQueueMetrics()
    reg_samples = lambda: samples_from_registry(g.registry) + samples_from_registry(q.registry)  # noqa: E731
    s = SignalComputer(max_window_seconds=600)
    s.ingest(0, reg_samples())
    for _ in range(95):
        g.observe("chat", 0.2)
    for _ in range(5):
        g.observe("chat", 15)
    g.count("chat", 200, endpoint="e1", n=99)
    g.count("chat", 500, endpoint="e1", n=1)  # series born after the first look: counted
    q.length.labels("workers").set(7)
    g.ejected.labels("chat").set(2)
    s.ingest(60, reg_samples())
    assert s.compute("error_rate", window_seconds=300) == {(("route", "chat"),): 0.01}
    assert s.compute("availability", window_seconds=300) == {(("route", "chat"),): 0.99}
    # p99: rank 99 of 100 falls in the gateway's (10, 30] bucket: 10 + 20 * (99 - 95) / 5
    assert s.compute("latency_p99_seconds") == {(("route", "chat"),): pytest.approx(26.0)}
    assert s.compute("queue_length") == {(("cluster", "workers"),): 7}
    assert s.compute("endpoints_ejected") == {(("route", "chat"),): 2}
    assert s.compute("error_rate", route="search") == {}
    assert s.compute("error_rate", exclude=["chat"]) == {}


def test_counter_reset_and_long_window_thinning() -> None:
    g = GatewayReplica()
    s = SignalComputer(max_window_seconds=3 * 86400, resolution_seconds=30)
    for i in range(3 * 86400 // 30 + 1):  # three days at 30 s
        g.count("chat", 200, endpoint="e1", n=1)
        s.ingest(i * 30.0, samples_from_registry(g.registry))
    series = next(iter(s._series.values()))
    assert len(series.times) < 1500  # thinned, not 8,641
    assert s.compute("availability", window_seconds=86400) == {(("route", "chat"),): 1.0}
    # A restart (counter back to 0) must not read as a negative or a huge increase.
    g2 = GatewayReplica()
    g2.count("chat", 200, endpoint="e1", n=5)
    g2.count("chat", 500, endpoint="e1", n=5)
    t = 3 * 86400 + 30.0
    s.ingest(t, samples_from_registry(g2.registry))
    ratio = s.compute("error_rate", window_seconds=60)[(("route", "chat"),)]
    # last minute: 200s went 17281 -> 5 (a reset: +5, +3 before it), 500s born with 5
    assert 0 < ratio < 1


def test_histogram_quantile_edges() -> None:
    inf = math.inf
    assert histogram_quantile(0.5, [(1, 0), (inf, 0)]) != histogram_quantile(0.5, [(1, 0), (inf, 0)])  # NaN
    assert histogram_quantile(0.99, [(1, 10), (inf, 100)]) == 1  # rank in +Inf: upper bound below it
    assert histogram_quantile(0.5, [(1, 50), (2, 100), (inf, 100)]) == 1
    assert histogram_quantile(0.75, [(1, 50), (2, 100), (inf, 100)]) == 1.5


@pytest.mark.parametrize(
    "template,value,expected",
    [
        ("{{ $value | humanizePercentage }}", 0.0625, "6.25%"),
        ("{{ $value | humanizeDuration }}", 95400, "1d 2h 30m 0s"),
        ("{{ $value | humanizeDuration }}", 960, "16m 0s"),
        ("{{ $value | humanizeDuration }}", 18.0, "18s"),
        ("{{ $value | humanizeDuration }}", 0.25, "250ms"),
        ("{{ $value | humanize }}", 123456, "123.5k"),
        ("{{ $value | humanize }}", 0.002, "2m"),
        ("{{ $value }}", 2.0, "2"),
        ("{{ $value }}", 0.1, "0.1"),
        ("{{$labels.route}}/{{ $labels.missing }}", 1, "chat/"),
    ],
)
def test_templates_render_like_prometheus(template: str, value: float, expected: str) -> None:
    assert expand(template, {"route": "chat"}, value) == expected


def test_fingerprint_matches_alertmanager() -> None:
    # An empty label set hashes to the FNV-1a offset basis, as in prometheus/common.
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"a": "b"}) == fingerprint({"a": "b"})
    assert fingerprint({"a": "b", "c": "d"}) != fingerprint({"a": "bc", "": "d"})


def test_cli_once_reads_a_textfile_and_exits_nonzero_when_firing(tmp_path: Path) -> None:
    """`python -m agent_runtime.alerts --once`: a backup older than allowed fires at once."""
    registry = CollectorRegistry()
    from prometheus_client import Gauge

    Gauge("agent_backup_last_success_timestamp_seconds", "x", ["source"], registry=registry).labels("db").set(1000)
    prom = tmp_path / "backup.prom"
    prom.write_bytes(generate_latest(registry))
    config = tmp_path / "alerts.json"
    config.write_text(
        json.dumps({"rules": [{"name": "BackupMissed", "signal": "backup_age_seconds", "threshold": 3600, "for": 0}]})
    )
    result = subprocess.run(
        [sys.executable, "-m", "agent_runtime.alerts", "--config", str(config), "--metrics-file", str(prom), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["alert"]["source"] == "db"
    config.write_text(json.dumps({"rules": [{"name": "x", "signal": "nope", "threshold": 1}]}))
    result = subprocess.run(
        [sys.executable, "-m", "agent_runtime.alerts", "--config", str(config), "--metrics-file", str(prom), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "rules[0].signal" in result.stderr


@pytest.mark.asyncio
async def test_run_loop_stops(receiver: Receiver) -> None:
    m = GatewayReplica()
    config = AlertingConfig(rules=(ERROR_RULE,), webhook_url=receiver.url, evaluation_interval_seconds=0.05)
    ev = AlertEvaluator(config, sources=[RegistrySource(m.registry)])
    stop = asyncio.Event()
    task = asyncio.create_task(ev.run(stop))
    await asyncio.sleep(0.2)
    assert not task.done(), "the loop keeps evaluating until told to stop"
    stop.set()
    await asyncio.wait_for(task, 2)
    assert task.done() and task.exception() is None
    await ev.close()


@pytest.mark.asyncio
async def test_dns_source_scrapes_every_address_the_name_has_now() -> None:
    """A headless Service's name: each ready pod is one address on the same port; the queue is their sum."""
    queues = {"127.0.0.1": 3.0, "127.0.0.2": 4.0}
    port = None
    runners = []
    for address, length in queues.items():
        registry = CollectorRegistry()
        AgentQueueMetrics(registry).length.labels("workers").set(length)

        async def metrics(_: web.Request, registry: CollectorRegistry = registry) -> web.Response:
            return web.Response(body=generate_latest(registry), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, address, port or 0)
        await site.start()
        port = port or site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
    answers = [["127.0.0.1", "127.0.0.2", "127.0.0.3"], ["127.0.0.2"]]  # .3 never answers; then a pod left

    async def resolve(host: str, p: int) -> list[str]:
        assert (host, p) == ("workers-headless.agents.svc.cluster.local", port)
        return answers.pop(0)

    source = DnsSource("workers-headless.agents.svc.cluster.local", port, resolve=resolve, timeout_seconds=1)
    try:
        first = [s for s in await source.collect() if s.name == "agent_queue_length"]
        assert sorted(s.value for s in first) == [3.0, 4.0]
        assert {dict(s.labels)["instance"] for s in first} == {f"127.0.0.1:{port}", f"127.0.0.2:{port}"}
        second = [s for s in await source.collect() if s.name == "agent_queue_length"]
        assert [s.value for s in second] == [4.0]
        real = DnsSource("localhost", port)
        assert 3.0 in [s.value for s in await real.collect() if s.name == "agent_queue_length"]
    finally:
        for r in runners:
            await r.cleanup()
