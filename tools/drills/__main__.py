"""`python -m tools.drills [--workdir NODE_DIR] [--gateway URL] [--out DIR] [DRILL...]`

Runs drills (all by default) against the node stack on a node brought up by `make cluster-up`,
through its gateway on 127.0.0.1, and writes the reliability report (report.md, report.json, one
timeline PNG and JSON log per drill) to DIR. Exit status 1 when a promise was broken."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tools.drills import drills, report
from tools.node import deploy
from tools.node.__main__ import DEFAULT_WORKDIR
from tools.node.node import Node

SLO_PERCENT = 99.5  # stacks/Pulumi.node.yaml monitoring.slo.availability_objective


def node_target(node: Node, gateway_url: str) -> drills.Target:
    def kill(container_id: str) -> None:
        subprocess.run([*node.ctr(), "-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", container_id],
                       check=True, capture_output=True)

    return drills.Target(kubeconfig=node.kubeconfig, namespace=deploy.NAMESPACE,
                         gateway_url=gateway_url, kill_container=kill)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.drills")
    parser.add_argument("drills", nargs="*", choices=[*drills.DRILLS, []], default=[])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--out", type=Path, default=Path("build/drills"))
    args = parser.parse_args(argv)
    target = node_target(Node.load(args.workdir), args.gateway)
    logs = []
    for name in args.drills or list(drills.DRILLS):
        print(f"drill {name} ...", flush=True)
        log = drills.DRILLS[name](target)
        print(f"  {'pass' if log.passed else 'FAIL'}: {log.figures}", flush=True)
        logs.append(log)
    written = report.write_report(logs, args.out, objective_percent=SLO_PERCENT)
    print(f"report: {args.out / 'report.md'}")
    return 0 if written["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
