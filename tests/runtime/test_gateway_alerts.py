"""A gateway with alert rules (a stack without Prometheus) evaluates them on its own metrics and
notifies the webhook in the Alertmanager format."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from tests.runtime.conftest import route

pytestmark = pytest.mark.asyncio


async def test_error_rate_alert_fires_to_the_webhook(agents, make_gateway, unused_tcp_port):
    received: list[dict] = []

    async def webhook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/alerts", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        for agent in agents:
            agent.mode = "fail"
        gw = await make_gateway({
            "gateway": {"host": "127.0.0.1", "port": 8080},
            "routes": [route("chat", "/", agents, retry={"max_attempts": 1})],
            "alerts": {
                "webhook_url": f"http://127.0.0.1:{unused_tcp_port}/alerts",
                "evaluation_interval_seconds": 0.2,
                "rules": [{"name": "ChatErrors", "signal": "error_rate", "threshold": 0.5,
                           "for": 0, "window_seconds": 2, "severity": "critical"}],
            },
        })
        firing = None
        for _ in range(100):
            async with gw.get("/work") as response:
                assert response.status >= 500
            firing = next((n for n in received if n["status"] == "firing"), None)
            if firing:
                break
            await asyncio.sleep(0.1)
        assert firing is not None, f"no firing notification; got {received}"
        assert firing["version"] == "4"
        alert = firing["alerts"][0]
        assert alert["labels"]["alertname"] == "ChatErrors"
        assert alert["labels"]["route"] == "chat"
        assert alert["labels"]["severity"] == "critical"
        await gw.gateway.stop()
        assert gw.gateway._alerts_task is None, "evaluation stops with the gateway"
    finally:
        await runner.cleanup()
