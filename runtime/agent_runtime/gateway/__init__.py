"""The gateway: a uvloop + httptools HTTP/1.1 reverse proxy in front of the agent clusters.

Modules, one job each: `app` (lifecycle, listeners, reload), `proxy` (routing, admission, the
try loop), `relay` (the answer to the client, tunnels after a 101), `admin` (`/healthz`, `/readyz`,
`/metrics`), `http1` (the client-side protocol), `upstream` (the keep-alive pool to agents), `attempt` (one
try, recorded once), `body` (bodies with backpressure), `headers`, `paths` (target parsing and
normalisation), `routes` (per-route state), `timers` (the one timeout sweep), `cli` (the process).
"""

from .app import RETRY_BUFFER_BYTES, Gateway
from .cli import main, register, run, setup_logging
from .routes import RouteState
from .routes import getaddrinfo_resolver as _getaddrinfo_resolver

__all__ = ["Gateway", "RETRY_BUFFER_BYTES", "RouteState", "main", "register", "run", "setup_logging"]
