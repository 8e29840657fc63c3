"""`python -m tools.node up|deploy|down|status [--workdir DIR] [--port PORT] [--image NAME=ARCHIVE]`

The node for `make cluster-up` / `make cluster-down`: its processes outlive the command;
`down` (from any shell) finds them by the PIDs recorded in DIR/state.json. `deploy` runs
`pulumi up` of the node stack on it (images imported, volumes made first) and forwards
127.0.0.1:GATEWAY_PORT to the deployed gateway."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tools.node import netns
from tools.node.node import Node, down, up
from tools.node.procs import Processes

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORKDIR = Path(os.environ.get("AGENT_PLATFORM_NODE_DIR", "/var/tmp/agent-platform-node"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.node")
    parser.add_argument("command", choices=("up", "deploy", "down", "status"))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--port", type=int, default=16443,
                        help="the API server's port on the host's 127.0.0.1")
    parser.add_argument("--image", action="append", default=[], metavar="NAME=ARCHIVE",
                        help="an OCI archive to import under NAME before pods start")
    parser.add_argument("--gateway-port", type=int, default=8080,
                        help="deploy: the host's 127.0.0.1 port forwarded to the gateway")
    args = parser.parse_args(argv)
    if args.command == "deploy":
        return _deploy(Node.load(args.workdir), args.gateway_port)
    if args.command == "up":
        extra = dict(item.split("=", 1) for item in args.image)
        node = up("cli", args.workdir, args.port, {k: Path(v) for k, v in extra.items()},
                  detach=True, log=lambda line: print(line, flush=True))
        print(f"node up in {node.ready_seconds}s; export KUBECONFIG={node.kubeconfig}")
        return 0
    if args.command == "down":
        problems = down(args.workdir)
        for problem in problems:
            print(f"left behind: {problem}", file=sys.stderr)
        print("node down" if not problems else "node partly down")
        return 1 if problems else 0
    if not (args.workdir / "state.json").exists():
        print(f"no node in {args.workdir}")
        return 1
    node = Node.load(args.workdir)
    procs = Processes.from_json(node.logs, node.procs)
    for name in procs.procs:
        print(f"{name:26} pid {procs.procs[name][0]:>8}  {'running' if procs.alive(name) else 'DEAD'}")
    print(f"netns {node.netns}: {'present' if netns.exists(node.netns) else 'missing'}")
    print(f"KUBECONFIG={node.kubeconfig}  (started to Ready: {node.ready_seconds}s)")
    return 0


def _deploy(node: Node, gateway_port: int) -> int:
    import subprocess
    import urllib.request

    from tools.node import deploy

    deploy.prepare(node)
    engine = [sys.executable, str(REPO / "tools" / "engine.py"), "up", "--stack", deploy.STACK,
              "--policy-pack", "policies"]
    if subprocess.run(engine, cwd=REPO, env=node.env()).returncode != 0:
        return 1
    host, port = deploy.gateway_service(node)
    procs = Processes.from_json(node.logs, node.procs)
    if "forward-gateway" in procs.procs and procs.alive("forward-gateway"):
        procs.stop("forward-gateway")
    procs.die_with_parent = False
    procs.start("forward-gateway", [sys.executable, "-m", "tools.node.forward", node.netns,
                                    str(gateway_port), host, str(port)],
                env={**os.environ, "PYTHONPATH": str(REPO)})
    node.procs = procs.to_json()
    node.save()  # `down` stops the forwarder with the rest
    url = f"http://127.0.0.1:{gateway_port}/v1/chat/capabilities"
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                print(f"$ curl {url}\n{resp.read().decode()}  (served by {resp.headers['x-agent-pod']})")
                return 0
        except OSError:
            time.sleep(0.2)
    print(f"the gateway does not answer on {url}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
