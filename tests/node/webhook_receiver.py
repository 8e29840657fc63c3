"""`python -m tests.node.webhook_receiver HOST PORT FILE`: an Alertmanager-style webhook receiver
that appends every JSON body POSTed to it as one line of FILE and answers 200 (what a chat or
paging integration does with the gateway's notifications)."""

from __future__ import annotations

import http.server
import json
import sys
from pathlib import Path


def main(host: str, port: int, out: Path) -> None:
    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            with open(out, "a") as fh:
                fh.write(json.dumps(body) + "\n")
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    http.server.ThreadingHTTPServer((host, port), Receiver).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
