"""The smallest useful aiohttp reverse proxy: the floor of what any aiohttp-based gateway costs.

    python bench/_aiohttp_proxy.py LISTEN_PORT UPSTREAM_PORT

One pooled ClientSession, uvloop, no routing, balancing, retries, metrics or logs. bench/runtime.py
measures it beside agent_runtime's gateway so the gateway's own overhead is visible apart from
the framework's.
"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection", "host",
              "content-length"}


def main(listen: int, upstream: int) -> None:
    base = f"http://127.0.0.1:{upstream}"

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def proxy(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read() if request.body_exists else None
        async with request.app["session"].request(request.method, base + request.raw_path, headers=headers,
                                                  data=body, allow_redirects=False) as upstream_response:
            payload = await upstream_response.read()
            out = {k: v for k, v in upstream_response.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream_response.status, body=payload, headers=out)

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", proxy)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    web.run_app(
        app, host="127.0.0.1", port=listen, access_log=None, print=None, loop=loop_factory() if loop_factory else None
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
