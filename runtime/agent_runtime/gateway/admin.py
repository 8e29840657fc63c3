"""The admin listener's handler: `/healthz`, `/readyz` and `/metrics`, never on the routes' port."""

from __future__ import annotations

from collections.abc import Callable

from .. import metrics as m
from .http1 import Request, ServerConnection
from .paths import BadTarget, split_target
from .routes import RouteState

__all__ = ["Admin"]


class Admin:
    """Answers the admin endpoints from the routes the gateway currently serves."""

    def __init__(self, routes: Callable[[], dict[str, RouteState]]) -> None:
        self._routes = routes

    def ready(self) -> tuple[bool, list[str]]:
        """Ready when at least one route can serve; routes without endpoints are listed."""
        missing = [name for name, rs in self._routes().items() if not rs.balancer.endpoints]
        return (not self._routes() or len(missing) < len(self._routes())), missing

    async def handle(self, req: Request, conn: ServerConnection) -> None:
        try:
            path, _ = split_target(req.target)
        except BadTarget as exc:
            conn.reply(400, str(exc))
            return
        if req.method not in ("GET", "HEAD"):
            conn.reply(405, "method not allowed", [("Allow", "GET, HEAD")])
        elif path == "/healthz":
            conn.reply(200, "ok")
        elif path == "/readyz":
            ok, missing = self.ready()
            lines = ["ready" if ok else "not ready"]
            lines += [f"route {name}: no endpoints" for name in missing]
            conn.reply(200 if ok else 503, "\n".join(lines))
        elif path == "/metrics":
            for name, rs in self._routes().items():
                m.route_ready.labels(name).set(1 if rs.balancer.endpoints else 0)
            conn.respond(200, [("Content-Type", m.CONTENT_TYPE_LATEST)], m.render())
        else:
            conn.reply(404, "not found")

