"""`python -m tools.drills [--workdir NODE_DIR] [--gateway URL] [--out DIR] [DRILL...]`

Runs drills (all by default) against the node stack on a node brought up by `make cluster-up`,
through its gateway on 127.0.0.1, and writes the reliability report (report.md, report.json, one
timeline PNG and JSON log per drill) to DIR. Exit status 1 when a promise was broken."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from tools.drills import drills, report
from tools.node import deploy
from tools.node.__main__ import DEFAULT_WORKDIR
from tools.node.node import Node

REPO = Path(__file__).resolve().parents[2]

SLO_PERCENT = 99.5  # stacks/Pulumi.node.yaml monitoring.slo.availability_objective


def node_target(node: Node, gateway_url: str,
                redeploy: Callable[[str, dict[str, str]], None] | None = None) -> drills.Target:
    def kill(container_id: str) -> None:
        subprocess.run([*node.ctr(), "-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", container_id],
                       check=True, capture_output=True)

    return drills.Target(kubeconfig=node.kubeconfig, namespace=deploy.NAMESPACE,
                         gateway_url=gateway_url, kill_container=kill, redeploy=redeploy)


def redeploy_from_scratch_copy(node: Node) -> Callable[[str, dict[str, str]], None]:
    """`pulumi up` of the node stack as `make cluster-up` deployed it (same state backend), from a
    scratch copy of the stack files with the drill's change, so the repository's stay as they are."""
    sys.path.insert(0, str(REPO / "tools"))
    import engine

    def redeploy(cluster: str, env: dict[str, str]) -> None:
        with tempfile.TemporaryDirectory(prefix="drill-rollout-") as tmp:
            work = Path(tmp)
            shutil.copy(REPO / "Pulumi.yaml", work / "Pulumi.yaml")
            shutil.copytree(REPO / "stacks", work / "stacks")
            stack_file = work / "stacks" / f"Pulumi.{deploy.STACK}.yaml"
            document = yaml.safe_load(stack_file.read_text())
            deploy.add_cluster_env(document["config"], cluster, env)
            stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
            os.environ["KUBECONFIG"] = str(node.kubeconfig)
            result = engine.run("up", deploy.STACK, ["policies"], echo=False, work_dir=work)
            if result.summary.result != "succeeded":
                raise RuntimeError(f"pulumi up: {result.summary.result}")

    return redeploy


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.drills")
    parser.add_argument("drills", nargs="*", choices=[*drills.DRILLS, []], default=[])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--out", type=Path, default=Path("build/drills"))
    args = parser.parse_args(argv)
    node = Node.load(args.workdir)
    target = node_target(node, args.gateway, redeploy_from_scratch_copy(node))
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
